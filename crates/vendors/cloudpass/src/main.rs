//! cloudpass-worker binary: everything is in `worker_runtime::serve_main`; lookups (`sites`,
//! `time-restrictions`) are answered with the worker's own connections.

use accesshub_connections::Vendor;

#[tokio::main]
pub async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(cloudpass_adapter::NAME, |cfg| {
        worker_runtime::lookups::spawn(
            cfg.common.clone(),
            Vendor::Cloudpass,
            cfg.connections.clone(),
            cloudpass_adapter::lookup::answer,
        );
        Ok(cloudpass_adapter::CloudpassHandler::new())
    })
    .await?;
    Ok(())
}
