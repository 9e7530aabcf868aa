//! `weir`: a broker that speaks the Apache Kafka protocol.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weir_broker::config::{BrokerConfig, ProcessRoles};

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
    /// A throwaway broker for tests: listens on 127.0.0.1 (--port, default a
    /// free one), keeps its data in a new temporary directory that is removed
    /// on exit, and prints its bootstrap address on stdout once it is ready.
    #[arg(long)]
    dev: bool,
    /// The port for --dev (0 picks a free one).
    #[arg(long, requires = "dev", default_value_t = 0)]
    port: u16,
}

/// Without RUST_LOG: info, but openraft's own lines only from warn up (at info
/// it logs every vote and state transition, several lines per event).
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    install_storage_faults()?;
    let mut overrides = Vec::new();
    let dev_dir = if args.dev {
        let dir = dev_data_dir()?;
        overrides.push(format!("listeners=PLAINTEXT://127.0.0.1:{}", args.port));
        overrides.push(format!("advertised.listeners=PLAINTEXT://127.0.0.1:{}", args.port));
        overrides.push(format!("log.dirs={}", dir.display()));
        Some(dir)
    } else {
        None
    };
    overrides.extend(args.overrides);
    let config = BrokerConfig::load(args.config.as_deref(), &overrides)?;
    if config.process_roles == ProcessRoles::Controller {
        if dev_dir.is_some() {
            anyhow::bail!("--dev runs a broker; process.roles=controller does not go with it");
        }
        return run_dedicated_controller(config).await;
    }
    let running = match weir_broker::server::start(config).await {
        Ok(running) => running,
        Err(e) => {
            remove_dev_dir(dev_dir.as_deref());
            return Err(e);
        }
    };
    if dev_dir.is_some() {
        if let Some(addr) = running.bound.first() {
            // The bootstrap address is this mode's output, for scripts to read.
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "127.0.0.1:{}", addr.port())?;
            stdout.flush()?;
        }
    }
    let broker = running.broker.clone();
    let quorum_failure = tokio::select! {
        _ = wait_for_stop_signal() => None,
        _ = broker.replicas.log_dir_failure().failed() => None,
        reason = broker.controller.failed() => Some(reason),
    };
    if let Some(reason) = &quorum_failure {
        tracing::error!(%reason, "the metadata quorum stopped on this node; stopping the broker");
    }
    running.shutdown().await;
    remove_dev_dir(dev_dir.as_deref());
    // As Kafka halts a broker whose last log dir failed, or whose metadata log
    // cannot be written: a non-zero exit. After a metadata store failure the
    // process exits here, before the store is dropped: closing RocksDB after a
    // failed write can abort the process, and its synced log needs no close.
    if let Some(reason) = quorum_failure {
        tracing::error!(%reason, "stopped because the metadata quorum failed");
        std::process::exit(1);
    }
    match broker.replicas.log_dir_failure().reason() {
        Some(reason) => Err(anyhow::anyhow!("stopped because the log dir failed: {reason}")),
        None => Ok(()),
    }
}

/// A controller-only node: serves the quorum until told to stop; exits
/// non-zero, as a broker does, when its metadata store fails.
async fn run_dedicated_controller(config: BrokerConfig) -> anyhow::Result<()> {
    let running = weir_broker::dedicated_controller::start(config).await?;
    let quorum_failure = tokio::select! {
        _ = wait_for_stop_signal() => None,
        reason = running.failed() => Some(reason),
    };
    if let Some(reason) = quorum_failure {
        tracing::error!(%reason, "stopped because the metadata quorum failed");
        std::process::exit(1);
    }
    running.shutdown().await;
    Ok(())
}

/// Test hook: `WEIR_STORAGE_FAULTS` arms storage faults (see
/// `weir_storage::file_system::faults::Fault::parse`) before any log opens.
fn install_storage_faults() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("WEIR_STORAGE_FAULTS") else { return Ok(()) };
    let injector = weir_storage::file_system::faults::install()
        .ok_or_else(|| anyhow::anyhow!("WEIR_STORAGE_FAULTS: the storage already started"))?;
    for part in spec.split(';').filter(|p| !p.trim().is_empty()) {
        let fault = weir_storage::file_system::faults::Fault::parse(part.trim())
            .map_err(|e| anyhow::anyhow!("WEIR_STORAGE_FAULTS: {e}"))?;
        tracing::warn!(fault = part.trim(), "storage fault injection armed (WEIR_STORAGE_FAULTS; for tests only)");
        injector.arm(fault);
    }
    Ok(())
}

/// A new, empty directory for a --dev broker's data.
fn dev_data_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("weir-dev-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

fn remove_dev_dir(dir: Option<&std::path::Path>) {
    if let Some(dir) = dir {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the --dev data dir");
        }
    }
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
