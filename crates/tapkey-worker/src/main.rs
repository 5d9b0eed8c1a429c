//! tapkey-worker binary: everything is in `worker_runtime::serve_main`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    worker_runtime::serve_main(tapkey_worker::NAME, |_| {
        Ok(tapkey_worker::TapkeyHandler::new())
    })
    .await?;
    Ok(())
}
