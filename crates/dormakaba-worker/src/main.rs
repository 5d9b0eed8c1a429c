//! `dormakaba-worker`: reservations and key requests → Saflok / Ambiance. Everything but the
//! handler comes from worker-runtime's `serve_main`.

use accesshub_config::CommonConfig;
use dormakaba_worker::{DormakabaHandler, WORKER};
use worker_runtime::WorkerError;

/// Serves `encoder-test` lookups when the connection store can be opened (it needs
/// `ACCESSHUB_ENCRYPTION_KEY`); the worker itself runs either way.
fn spawn_lookups(common: CommonConfig) {
    tokio::spawn(async move {
        let secrets = match accesshub_store::SecretBox::from_env() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ACCESSHUB_ENCRYPTION_KEY unusable: encoder-test lookups disabled");
                return;
            }
        };
        let pool = match accesshub_store::connect_lazy(&common.database_url, 2) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "lookups disabled");
                return;
            }
        };
        let bus = match accesshub_bus::connect(&common).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "lookups disabled");
                return;
            }
        };
        let store = accesshub_connections::ConnectionStore::new(pool, secrets);
        match dormakaba_worker::lookup::serve(&bus, store).await {
            Ok(task) => {
                let _ = task.await;
            }
            Err(e) => tracing::warn!(error = %e, "lookups disabled"),
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(WORKER, |cfg| {
        let handler =
            DormakabaHandler::new(&cfg.common).map_err(|e| WorkerError::Handler(e.to_string()))?;
        spawn_lookups(cfg.common.clone());
        Ok(handler)
    })
    .await?;
    Ok(())
}
