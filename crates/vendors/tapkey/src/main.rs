//! tapkey-worker binary: everything is in `worker_runtime::serve_main`; `locks` lookups are
//! answered with the worker's own connections.

use accesshub_connections::Vendor;

/// mimalloc: glibc's malloc costs a worker (many small, short-lived allocations per message
/// and vendor call, across threads) noticeably more CPU per event.
// The image's single binary (crates/accesshub-image) brings its own.
#[cfg(not(accesshub_image))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(tapkey_adapter::NAME, |cfg| {
        worker_runtime::lookups::spawn(
            cfg.common.clone(),
            Vendor::Tapkey,
            cfg.connections.clone(),
            tapkey_adapter::lookup::answer,
        );
        Ok(tapkey_adapter::TapkeyHandler::new())
    })
    .await?;
    Ok(())
}
