//! This broker's membership of the cluster, as Kafka's BrokerLifecycleManager
//! runs it: register with the active controller (fenced), heartbeat every
//! `broker.heartbeat.interval.ms`, get unfenced once the heartbeat shows the
//! metadata image caught up with the registration, and on SIGTERM ask the
//! controller to fence it before the logs close (controlled shutdown), so
//! clients stop being sent here without waiting for the session timeout.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::{debug, info, warn};
use uuid::Uuid;
use weir_controller::{
    BrokerHeartbeat, BrokerRegistration, ControllerError, ControllerNode, ControllerOperations, Endpoint,
    HeartbeatReply,
};

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// How long a controlled shutdown waits for the controller's answer; past
/// it the broker stops anyway and its session expires on the controller.
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How often registration and the first unfencing heartbeat are retried
/// while the quorum has no leader.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// This broker's registration.
#[derive(Debug)]
pub struct Membership {
    incarnation_id: Uuid,
    /// The broker epoch the controller gave the registration.
    epoch: AtomicI64,
}

impl Membership {
    /// The broker epoch of the current registration.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// Registers this broker, fenced, retrying while the quorum has no leader (a
/// node of several voters as long as it takes, as a Kafka broker keeps
/// registering until a controller answers).
pub async fn register(
    controller: &ControllerNode,
    config: &BrokerConfig,
    wait_for_quorum: bool,
) -> Result<Membership, ControllerError> {
    let incarnation_id = Uuid::new_v4();
    let registration = BrokerRegistration {
        id: config.node_id,
        incarnation_id,
        listeners: config
            .advertised_listeners
            .iter()
            .map(|l| Endpoint { name: l.name.clone(), host: l.host.clone(), port: l.port, security_protocol: 0 })
            .collect(),
        rack: config.raw.get("broker.rack").cloned(),
        fenced: true,
        epoch: 0,
    };
    let mut attempts = 0u32;
    loop {
        match controller.register_broker(registration.clone()).await {
            Ok(()) => break,
            Err(ControllerError::NotController(reason)) if wait_for_quorum => {
                attempts += 1;
                if attempts % 50 == 1 {
                    info!(%reason, "registration waits for the active controller");
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            // This id's previous incarnation (killed, or another process with the
            // same node.id) still holds a live session: wait until it expires.
            Err(ControllerError::DuplicateBrokerRegistration(reason)) => {
                attempts += 1;
                if attempts % 50 == 1 {
                    warn!(%reason, "registration refused; retrying until the other registration's session expires");
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(e) => return Err(e),
        }
    }
    // The registration call returns once this node's image holds it.
    let image = controller.image();
    let epoch = image
        .broker(config.node_id)
        .filter(|b| b.incarnation_id == incarnation_id)
        .map(|b| b.epoch)
        .ok_or_else(|| ControllerError::Internal("the registration is not in the metadata image".to_string()))?;
    Ok(Membership { incarnation_id, epoch: AtomicI64::new(epoch) })
}

/// Heartbeats until the controller unfences this broker (its image caught up).
pub async fn wait_until_unfenced(broker: &Broker) -> Result<(), ControllerError> {
    let mut attempts = 0u32;
    loop {
        match heartbeat(broker, false).await {
            Ok(reply) if !reply.fenced => {
                info!(broker_epoch = broker.membership.epoch(), "broker unfenced");
                return Ok(());
            }
            Ok(_) => {}
            Err(ControllerError::NotController(reason)) => {
                attempts += 1;
                if attempts % 50 == 1 {
                    info!(%reason, "unfencing waits for the active controller");
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

async fn heartbeat(broker: &Broker, want_shutdown: bool) -> Result<HeartbeatReply, ControllerError> {
    let heartbeat = BrokerHeartbeat {
        broker_id: broker.config.node_id,
        broker_epoch: broker.membership.epoch(),
        metadata_offset: broker.image().last_offset,
        want_shutdown,
    };
    broker.controller.broker_heartbeat(heartbeat).await
}

/// Heartbeats every `broker.heartbeat.interval.ms` until `stop`. A broker
/// fenced meanwhile (it was paused past its session) is unfenced by the next
/// heartbeat; a registration the controller no longer knows (stale epoch) is
/// made again.
pub fn spawn_heartbeats(broker: std::sync::Arc<Broker>, mut stop: broadcast::Receiver<()>) {
    tokio::spawn(async move {
        let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms.max(10));
        let mut fenced = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.recv() => return,
            }
            match heartbeat(&broker, false).await {
                Ok(reply) => {
                    if reply.fenced != fenced {
                        info!(fenced = reply.fenced, "the active controller changed this broker's fencing");
                    }
                    fenced = reply.fenced;
                }
                Err(ControllerError::NotController(reason)) => debug!(%reason, "heartbeat: no active controller"),
                Err(ControllerError::StaleBrokerEpoch(reason)) => {
                    warn!(%reason, "heartbeat refused; registering again");
                    reregister(&broker).await;
                }
                Err(e) => warn!(error = %e, "heartbeat failed"),
            }
        }
    });
}

async fn reregister(broker: &Broker) {
    match register(&broker.controller, &broker.config, true).await {
        Ok(membership) => {
            broker.membership.epoch.store(membership.epoch(), Ordering::Release);
            info!(
                broker_epoch = membership.epoch(),
                incarnation_id = %membership.incarnation_id,
                "registered again"
            );
        }
        Err(e) => warn!(error = %e, "registering again failed"),
    }
}

/// Controlled shutdown: asks the active controller to fence this broker now,
/// waiting at most [`CONTROLLED_SHUTDOWN_WAIT`].
pub async fn controlled_shutdown(broker: &Broker) {
    match tokio::time::timeout(CONTROLLED_SHUTDOWN_WAIT, heartbeat(broker, true)).await {
        Ok(Ok(_)) => info!("controlled shutdown: the controller fenced this broker"),
        Ok(Err(e)) => warn!(error = %e, "controlled shutdown refused; the broker's session will expire instead"),
        Err(_) => warn!(
            wait_s = CONTROLLED_SHUTDOWN_WAIT.as_secs(),
            "controlled shutdown got no answer; the broker's session will expire instead"
        ),
    }
}
