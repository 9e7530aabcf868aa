//! Starting and stopping a broker: bind the listeners, serve until told to
//! stop, then drain connections and close every log cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::info;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::net::memory_pool::RequestMemoryPool;
use crate::net::quotas::ConnectionQuotas;
use crate::net::server::{bind, run_listener};

/// A running broker.
pub struct RunningBroker {
    /// The shared state.
    pub broker: Arc<Broker>,
    /// Where each listener is bound.
    pub bound: Vec<SocketAddr>,
    notify_shutdown: broadcast::Sender<()>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Binds the listeners, opens the broker's state, and starts serving and
/// the background work. An advertised port of 0 is replaced by the port its
/// listener was given (a listener on port 0 picks a free one).
pub async fn start(mut config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let tcp = bind(&listener.host, listener.port)
            .map_err(|e| anyhow::anyhow!("binding {}://{}:{}: {e}", listener.name, listener.host, listener.port))?;
        listeners.push((listener.name.clone(), tcp));
    }
    let controller_listener = match &config.controller_listener {
        Some(listener) => {
            let tcp = bind(&listener.host, listener.port).map_err(|e| {
                anyhow::anyhow!(
                    "binding the controller listener {}://{}:{}: {e}",
                    listener.name,
                    listener.host,
                    listener.port
                )
            })?;
            info!(listener = %listener.name, addr = %tcp.local_addr()?, "controller listener bound");
            Some(tcp)
        }
        None => None,
    };
    for advertised in &mut config.advertised_listeners {
        if advertised.port == 0 {
            if let Some((_, tcp)) = listeners.iter().find(|(name, _)| *name == advertised.name) {
                advertised.port = tcp.local_addr()?.port();
            }
        }
    }
    let broker = Broker::start(config, controller_listener).await?;
    let (notify_shutdown, _) = broadcast::channel(1);
    let (done_tx, done_rx) = mpsc::channel(1);
    let quotas = ConnectionQuotas::new(broker.config.connection_limits.clone());
    let pool = RequestMemoryPool::new(broker.config.queued_max_request_bytes);
    if let Some(bytes) = pool.capacity() {
        info!(queued_max_request_bytes = bytes, "request memory pool bounds requests read and not yet handled");
    }
    let mut bound = Vec::new();
    for (name, tcp) in listeners {
        let addr = tcp.local_addr()?;
        info!(listener = %name, %addr, "listening");
        bound.push(addr);
        tokio::spawn(run_listener(
            tcp,
            broker.clone(),
            quotas.clone(),
            pool.clone(),
            notify_shutdown.clone(),
            done_tx.clone(),
        ));
    }
    crate::lifecycle::spawn_heartbeats(broker.clone(), notify_shutdown.subscribe());
    spawn_housekeeping(broker.clone(), notify_shutdown.subscribe());
    spawn_group_timers(broker.clone(), notify_shutdown.subscribe());
    spawn_isr_expiration(broker.clone(), notify_shutdown.subscribe());
    info!(node_id = broker.config.node_id, cluster_id = %broker.image().cluster_id, "Weir started");
    Ok(RunningBroker { broker, bound, notify_shutdown, done_tx, done_rx })
}

/// Retention every `log.retention.check.interval.ms`, log compaction every
/// `log.cleaner.backoff.ms` (Kafka's cleaner sleeps that long when no log is
/// dirty enough; `log.cleaner.enable=false` turns it off), time-based flushes
/// every `log.flush.scheduler.interval.ms` (at most once a second).
fn spawn_housekeeping(broker: Arc<Broker>, mut stop: broadcast::Receiver<()>) {
    tokio::spawn(async move {
        let tick = Duration::from_millis(broker.config.log_flush_scheduler_interval_ms.clamp(100, 1000));
        let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms.max(100));
        let raw = |name: &str| broker.config.raw.get(name).map(|v| v.trim().to_string());
        let cleaner_enabled = raw("log.cleaner.enable").is_none_or(|v| v != "false");
        let cleaning_every = Duration::from_millis(
            raw("log.cleaner.backoff.ms").and_then(|v| v.parse().ok()).unwrap_or(15_000u64).max(100),
        );
        let mut last_retention = tokio::time::Instant::now();
        let mut last_cleaning = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.recv() => return,
            }
            let retention_due = last_retention.elapsed() >= retention_every;
            if retention_due {
                last_retention = tokio::time::Instant::now();
            }
            let cleaning_due = cleaner_enabled && last_cleaning.elapsed() >= cleaning_every;
            if cleaning_due {
                last_cleaning = tokio::time::Instant::now();
            }
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || b.replicas.housekeeping(retention_due, cleaning_due)).await;
        }
    });
}

/// Followers that stopped catching up leave the ISR: checked every half of
/// `replica.lag.time.max.ms`, as Kafka schedules `isr-expiration`.
fn spawn_isr_expiration(broker: Arc<Broker>, mut stop: broadcast::Receiver<()>) {
    tokio::spawn(async move {
        let every = Duration::from_millis((broker.config.replication.lag_time_max_ms / 2).max(50) as u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.recv() => return,
            }
            crate::replica::isr::shrink_lagging(&broker);
        }
    });
}

/// Group session expiry and rebalance deadlines, checked every 100 ms;
/// offset retention every `offsets.retention.check.interval.ms`.
fn spawn_group_timers(broker: Arc<Broker>, mut stop: broadcast::Receiver<()>) {
    tokio::spawn(async move {
        let retention_every = Duration::from_millis(broker.config.offsets_retention_check_interval_ms.max(100));
        let retention_ms = broker.config.offsets_retention_minutes.saturating_mul(60_000);
        let mut last_retention = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.recv() => return,
            }
            broker.groups.tick(&broker);
            if last_retention.elapsed() >= retention_every {
                last_retention = tokio::time::Instant::now();
                broker.groups.expire_offsets(&broker, retention_ms);
            }
        }
    });
}

impl RunningBroker {
    /// Stops accepting and heartbeating, asks the controller to fence this
    /// broker (controlled shutdown), lets every connection finish its current
    /// request, then closes the logs with their clean-shutdown markers.
    pub async fn shutdown(self) {
        let RunningBroker { broker, notify_shutdown, done_tx, mut done_rx, .. } = self;
        info!("shutting down");
        let _ = notify_shutdown.send(());
        crate::lifecycle::controlled_shutdown(&broker).await;
        drop(done_tx);
        // Every connection task holds a sender; recv returns None once all are gone.
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
        broker.fetchers.shutdown().await;
        tokio::task::block_in_place(|| broker.replicas.shutdown());
        broker.controller.shutdown().await;
        info!("stopped");
    }
}
