//! `dormakaba-worker`: reservations and key requests → Saflok / Ambiance. Everything but the
//! handler comes from worker-runtime's `serve_main`; `encoder-test` lookups are answered with
//! the worker's own connections.

use accesshub_connections::Vendor;
use dormakaba_adapter::{DormakabaHandler, WORKER};

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(WORKER, |cfg| {
        worker_runtime::lookups::spawn(
            cfg.common.clone(),
            Vendor::Dormakaba,
            cfg.connections.clone(),
            dormakaba_adapter::lookup::answer,
        );
        Ok(DormakabaHandler::new())
    })
    .await?;
    Ok(())
}
