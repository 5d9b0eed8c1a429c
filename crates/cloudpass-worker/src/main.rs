//! cloudpass-worker binary: everything is in `worker_runtime::serve_main`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(cloudpass_worker::NAME, |_| {
        Ok(cloudpass_worker::CloudpassHandler::new())
    })
    .await?;
    Ok(())
}
