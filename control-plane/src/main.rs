use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = lifecycled::Config::parse();
    lifecycled::telemetry::init_tracing(config.log_format)?;
    lifecycled::run(config).await
}
