//! Broker sessions on the active controller (KRaft's BrokerHeartbeatManager):
//! each registered broker heartbeats every `broker.heartbeat.interval.ms`; the
//! active controller fences a broker it has not heard from for
//! `broker.session.timeout.ms`, unfences a fenced one whose heartbeat shows it
//! applied the metadata log up to its registration, and fences at once a
//! broker that asks to shut down (controlled shutdown).
//!
//! Contact times live only in the active controller's memory, as in Kafka: a
//! newly elected controller starts every broker's session afresh (the clock
//! starts at its election), so a failover never fences a live broker.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::*;

/// How often the active controller looks for expired sessions.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// One heartbeat, as a broker sends it (Kafka's BrokerHeartbeatRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    /// The broker.
    pub broker_id: i32,
    /// Its epoch, from its registration.
    pub broker_epoch: i64,
    /// The last metadata offset its image applied.
    pub metadata_offset: i64,
    /// A controlled shutdown: fence this broker now.
    pub want_shutdown: bool,
}

/// The active controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Whether the broker is fenced after this heartbeat.
    pub fenced: bool,
}

/// When the active controller last heard from each broker, for one term of
/// its leadership.
#[derive(Debug, Default)]
pub(super) struct BrokerSessions {
    term: u64,
    last_contact: HashMap<i32, Instant>,
    /// Registrations (broker, epoch) in controlled shutdown: a heartbeat that
    /// was on its way before the shutdown request never unfences them again.
    shutting_down: HashSet<(i32, i64)>,
}

impl BrokerSessions {
    /// The contact times of `term`, empty when the leadership is new.
    fn for_term(&mut self, term: u64) -> &mut HashMap<i32, Instant> {
        if self.term != term {
            self.term = term;
            self.last_contact.clear();
        }
        &mut self.last_contact
    }
}

impl QuorumController {
    fn sessions(&self) -> std::sync::MutexGuard<'_, BrokerSessions> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The leader's side of [`QuorumController::broker_heartbeat`].
    pub(super) async fn broker_heartbeat_local(
        &self,
        heartbeat: BrokerHeartbeat,
    ) -> Result<HeartbeatReply, ControllerError> {
        let term = self.raft.metrics().borrow().current_term;
        let image = self.image();
        let registration = image.broker(heartbeat.broker_id).ok_or_else(|| {
            ControllerError::StaleBrokerEpoch(format!(
                "No broker registration found for broker {}",
                heartbeat.broker_id
            ))
        })?;
        if registration.epoch != heartbeat.broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch(format!(
                "Expected broker epoch {}, but got broker epoch {}",
                registration.epoch, heartbeat.broker_epoch
            )));
        }
        let in_shutdown = {
            let mut sessions = self.sessions();
            sessions.for_term(term).insert(heartbeat.broker_id, Instant::now());
            if heartbeat.want_shutdown {
                sessions.shutting_down.insert((heartbeat.broker_id, heartbeat.broker_epoch));
            }
            sessions.shutting_down.contains(&(heartbeat.broker_id, heartbeat.broker_epoch))
        };
        if in_shutdown {
            self.fence_broker_local(heartbeat.broker_id, "controlled shutdown").await?;
            return Ok(HeartbeatReply { fenced: true });
        }
        if registration.fenced {
            // Caught up: its image holds its own registration.
            if heartbeat.metadata_offset >= registration.epoch {
                self.unfence_broker_local(heartbeat.broker_id, heartbeat.broker_epoch).await?;
                return Ok(HeartbeatReply { fenced: false });
            }
            return Ok(HeartbeatReply { fenced: true });
        }
        Ok(HeartbeatReply { fenced: false })
    }

    /// Whether `broker_id` is unfenced and this active controller heard from
    /// it within the session timeout (a registration from another incarnation
    /// of it is then refused, as Kafka refuses it; a fenced broker has no
    /// session).
    pub(super) fn session_alive(&self, broker_id: i32) -> bool {
        if self.image().broker(broker_id).is_none_or(|b| b.fenced) {
            return false;
        }
        let term = self.raft.metrics().borrow().current_term;
        let timeout = Duration::from_millis(self.config.broker_session_timeout_ms);
        let mut sessions = self.sessions();
        sessions.for_term(term).get(&broker_id).is_some_and(|last| last.elapsed() <= timeout)
    }

    /// Brokers the active controller has not heard from within the session
    /// timeout: unfenced, and either silent for longer than it or never heard
    /// from since this leadership began longer ago than it.
    fn expired_sessions(&self, term: u64, leader_since: Instant, now: Instant) -> Vec<i32> {
        let timeout = Duration::from_millis(self.config.broker_session_timeout_ms);
        let image = self.image();
        let mut sessions = self.sessions();
        let contacts = sessions.for_term(term);
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = contacts.get(&b.id).copied().unwrap_or(leader_since);
                now.saturating_duration_since(last) > timeout
            })
            .map(|b| b.id)
            .collect()
    }
}

/// The active controller's session timer: fences every broker whose session
/// expired. Runs on every voter and acts only while this voter leads.
pub(super) async fn fence_expired_sessions(controller: QuorumController) {
    let mut leading: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(SESSION_CHECK_INTERVAL).await;
        let metrics = controller.raft.metrics().borrow().clone();
        if metrics.state != openraft::ServerState::Leader {
            leading = None;
            continue;
        }
        let term = metrics.current_term;
        let since = match leading {
            Some((t, since)) if t == term => since,
            _ => {
                let now = Instant::now();
                leading = Some((term, now));
                now
            }
        };
        for broker_id in controller.expired_sessions(term, since, Instant::now()) {
            match controller.fence_broker_local(broker_id, "no heartbeat within broker.session.timeout.ms").await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(broker = broker_id, error = %e, "could not fence a broker whose session expired")
                }
            }
        }
    }
}
