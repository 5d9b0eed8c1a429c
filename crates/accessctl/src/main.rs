use clap::Parser as _;

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = accessctl::Cli::parse();
    match accessctl::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(accessctl::exit::code_of(&e))
        }
    }
}
