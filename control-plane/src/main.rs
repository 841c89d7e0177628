use clap::Parser;
use lifecycled::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match cli.command {
        None => cli.serve,
        Some(Command::Serve(config)) => *config,
        Some(command) => {
            lifecycled::telemetry::init_tracing(lifecycled::LogFormat::Text)?;
            return lifecycled::cli::run_command(command).await;
        }
    };
    lifecycled::telemetry::init_tracing(config.log_format)?;
    lifecycled::run(config).await
}
