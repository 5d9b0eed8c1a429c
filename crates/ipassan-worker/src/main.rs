//! `ipassan-worker`: connecX facility bookings → iPassan asset bookings. Everything but the
//! handler comes from worker-runtime's `serve_main`.

use accesshub_config::CommonConfig;
use ipassan_worker::{IpassanHandler, WORKER};

/// Serves `assets` lookups when the connection store can be opened (it needs
/// `ACCESSHUB_ENCRYPTION_KEY`); the worker itself runs either way.
fn spawn_lookups(common: CommonConfig) {
    tokio::spawn(async move {
        let secrets = match accesshub_store::SecretBox::from_env() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ACCESSHUB_ENCRYPTION_KEY unusable: asset lookups disabled");
                return;
            }
        };
        let pool = match accesshub_store::connect_lazy(&common.database_url, 2) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "asset lookups disabled");
                return;
            }
        };
        let bus = match accesshub_bus::connect(&common).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "asset lookups disabled");
                return;
            }
        };
        let store = accesshub_connections::ConnectionStore::new(pool, secrets);
        match ipassan_worker::lookup::serve(&bus, store).await {
            Ok(task) => {
                let _ = task.await;
            }
            Err(e) => tracing::warn!(error = %e, "asset lookups disabled"),
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(WORKER, |cfg| {
        spawn_lookups(cfg.common.clone());
        Ok(IpassanHandler::default())
    })
    .await?;
    Ok(())
}
