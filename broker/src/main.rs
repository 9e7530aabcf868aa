//! `weir`: a broker that speaks the Apache Kafka protocol.

use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weir_broker::config::BrokerConfig;

#[global_allocator]
static ALLOCATOR: weir_broker::alloc::WeirAllocator = weir_broker::alloc::WeirAllocator;

/// A Kafka-compatible broker.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
struct Args {
    /// YAML file of Kafka broker properties (weir.yaml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sets one property, `key=value`, over the file and the environment; repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = BrokerConfig::load(args.config.as_deref(), &args.overrides)?;
    let running = weir_broker::server::start(config).await?;
    wait_for_stop_signal().await;
    running.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
