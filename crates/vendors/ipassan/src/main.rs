//! `ipassan-worker`: connecX facility bookings → iPassan asset bookings. Everything but the
//! handler comes from worker-runtime's `serve_main`; `assets` lookups are answered with the
//! worker's own connections.

use accesshub_connections::Vendor;
use ipassan_adapter::{IpassanHandler, WORKER};

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(WORKER, |cfg| {
        worker_runtime::lookups::spawn(
            cfg.common.clone(),
            Vendor::Ipassan,
            cfg.connections.clone(),
            ipassan_adapter::lookup::answer,
        );
        Ok(IpassanHandler::default())
    })
    .await?;
    Ok(())
}
