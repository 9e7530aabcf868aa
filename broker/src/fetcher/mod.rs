//! Replica fetchers: how a follower copies its leaders' logs, after Kafka's
//! `ReplicaFetcherManager` and `ReplicaFetcherThread`.
//!
//! Every partition this broker follows is assigned to one fetcher task per
//! source broker and fetcher index (`num.replica.fetchers`, the partition's
//! hash picking the index). A fetcher long-polls its leader with the real
//! Fetch API (v15: `replica_state` names this broker and its epoch; topic
//! ids; `last_fetched_epoch`), batched over all its partitions, fetching each
//! from its log end offset. What comes back is applied on the blocking pool:
//! records appended as they are with the leader's high watermark and log
//! start offset; a `diverging_epoch` truncates the log to where it agrees with
//! the leader; OFFSET_OUT_OF_RANGE (the leader's log no longer holds the
//! follower's log end, or holds less) restarts the log at the leader's log
//! start. Leadership errors delay the partition by `replica.fetch.backoff.ms`
//! until the metadata says more; a failed connection is retried after the
//! same backoff. The assignment follows the metadata image: [`ReplicaFetchers::reconcile`]
//! runs after every image this broker applies.
//!
//! Each fetcher keeps a KIP-227 fetch session with its leader
//! ([`session`]): once established, a request names only the partitions
//! whose fetch position changed, and the answer only those that moved.

pub mod client;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, ReplicaState};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use uuid::Uuid;
use weir_controller::MetadataImage;
use weir_protocol::ErrorCode;

use crate::broker::Broker;
use crate::replica::follower::FollowerAppendError;
use crate::replica::{now_ms, on_blocking_pool, Partition};
use client::{BrokerClient, ClientError};
use session::{FetchSessionHandler, SessionOutcome};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fetch may take beyond its own wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition assigned to a fetcher.
#[derive(Debug, Clone)]
struct Assigned {
    topic_id: Uuid,
    /// The leader epoch the metadata names: sent as `current_leader_epoch`,
    /// and what the follower's appends check.
    leader_epoch: i32,
    /// Not fetched before this (after an error).
    delayed_until: Option<Instant>,
}

/// A partition's key and assignment.
type AssignedPartition = ((String, i32), Assigned);

/// The partitions of one fetcher task.
#[derive(Default)]
struct FetcherShared {
    partitions: Mutex<BTreeMap<(String, i32), Assigned>>,
    changed: Notify,
    stopped: AtomicBool,
}

impl FetcherShared {
    fn partitions(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), Assigned>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn delay(&self, key: &(String, i32), epoch: i32, backoff: Duration) {
        if let Some(assigned) = self.partitions().get_mut(key).filter(|a| a.leader_epoch == epoch) {
            assigned.delayed_until = Some(Instant::now() + backoff);
        }
    }
}

/// A running fetcher task.
struct Fetcher {
    shared: Arc<FetcherShared>,
    task: tokio::task::JoinHandle<()>,
}

/// This broker's replica fetchers.
#[derive(Default)]
pub struct ReplicaFetchers {
    fetchers: Mutex<HashMap<(i32, usize), Fetcher>>,
    /// The broker the fetcher tasks work for (set once it exists).
    broker: std::sync::OnceLock<Weak<Broker>>,
}

impl ReplicaFetchers {
    /// Names the broker the fetcher tasks work for; before this, reconcile starts none.
    pub fn attach(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// Assigns every partition `image` has this broker follow to its
    /// fetcher, starting and stopping fetcher tasks as needed.
    pub fn reconcile(&self, broker: &Broker, image: &MetadataImage) {
        let Some(weak) = self.broker.get() else { return };
        let node_id = broker.config.node_id;
        let per_source = broker.config.replication.num_replica_fetchers;
        let mut wanted: HashMap<(i32, usize), BTreeMap<(String, i32), Assigned>> = HashMap::new();
        for topic in image.topics.values() {
            for (index, registration) in topic.partitions.iter().enumerate() {
                let leader = registration.leader;
                if leader < 0 || leader == node_id || !registration.replicas.contains(&node_id) {
                    continue;
                }
                let key = (topic.name.clone(), index as i32);
                let fetcher = fetcher_index(&key, per_source);
                let assigned =
                    Assigned { topic_id: topic.id, leader_epoch: registration.leader_epoch, delayed_until: None };
                wanted.entry((leader, fetcher)).or_default().insert(key, assigned);
            }
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        fetchers.retain(|source, fetcher| {
            if wanted.contains_key(source) {
                return true;
            }
            fetcher.shared.stopped.store(true, Ordering::Release);
            fetcher.shared.changed.notify_one();
            false
        });
        for (source, partitions) in wanted {
            let fetcher = fetchers.entry(source).or_insert_with(|| {
                let shared = Arc::new(FetcherShared::default());
                info!(leader = source.0, fetcher = source.1, "starting a replica fetcher");
                let task = tokio::spawn(run(weak.clone(), source, shared.clone()));
                Fetcher { shared, task }
            });
            let shared = &fetcher.shared;
            let mut current = shared.partitions();
            let merged = partitions
                .into_iter()
                .map(|(key, mut assigned)| {
                    // An error's backoff stands while the leader epoch is the same.
                    if let Some(old) = current.get(&key).filter(|old| old.leader_epoch == assigned.leader_epoch) {
                        assigned.delayed_until = old.delayed_until;
                    }
                    (key, assigned)
                })
                .collect();
            *current = merged;
            drop(current);
            shared.changed.notify_one();
        }
    }

    /// Stops every fetcher and waits for them, so that none still holds a
    /// partition when the logs close.
    pub async fn shutdown(&self) {
        let fetchers: Vec<Fetcher> =
            self.fetchers.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, f)| f).collect();
        for fetcher in fetchers {
            fetcher.shared.stopped.store(true, Ordering::Release);
            fetcher.task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), fetcher.task).await;
        }
    }
}

/// Which of a source broker's fetchers takes `key` (Kafka hashes the
/// topic-partition the same way for every source).
fn fetcher_index(key: &(String, i32), per_source: usize) -> usize {
    let hash = key.0.bytes().fold(31u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    (hash.wrapping_mul(31).wrapping_add(key.1 as u64) % per_source.max(1) as u64) as usize
}

/// The address of `leader` on the listener brokers talk to each other on:
/// `inter.broker.listener.name`, else this broker's first listener's name,
/// else the leader's first listener.
fn leader_address(broker: &Broker, image: &MetadataImage, leader: i32) -> Option<String> {
    let registration = image.broker(leader).filter(|b| !b.fenced)?;
    let controller = broker.config.controller_listener_name();
    let name = broker
        .config
        .raw
        .get("inter.broker.listener.name")
        .cloned()
        .or_else(|| broker.config.advertised_listeners.iter().map(|l| l.name.clone()).find(|n| *n != controller));
    let endpoint = name
        .and_then(|name| registration.listeners.iter().find(|l| l.name == name))
        .or_else(|| registration.listeners.first())?;
    Some(format!("{}:{}", endpoint.host, endpoint.port))
}

/// One fetcher task: fetches its partitions from `source.0` until stopped.
async fn run(broker: Weak<Broker>, source: (i32, usize), shared: Arc<FetcherShared>) {
    let leader = source.0;
    let mut client: Option<BrokerClient> = None;
    let mut session = FetchSessionHandler::default();
    let mut last_error: Option<String> = None;
    loop {
        if shared.stopped.load(Ordering::Acquire) {
            debug!(leader, fetcher = source.1, "replica fetcher stopped");
            return;
        }
        let Some(broker) = broker.upgrade() else { return };
        let backoff = Duration::from_millis(broker.config.replication.fetch_backoff_ms);
        let now = Instant::now();
        let (ready, next_ready): (Vec<AssignedPartition>, Option<Instant>) = {
            let partitions = shared.partitions();
            let ready = partitions
                .iter()
                .filter(|(_, a)| a.delayed_until.is_none_or(|t| t <= now))
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect();
            (ready, partitions.values().filter_map(|a| a.delayed_until).filter(|&t| t > now).min())
        };
        if ready.is_empty() {
            let wait = next_ready.map_or(Duration::from_secs(60), |t| t - now);
            drop(broker);
            let _ = tokio::time::timeout(wait, shared.changed.notified()).await;
            continue;
        }
        let outcome = fetch_once(&broker, leader, &shared, &mut client, &mut session, ready).await;
        match outcome {
            Ok(()) => last_error = None,
            Err(e) => {
                client = None;
                session.reset();
                let message = e.to_string();
                if last_error.as_ref() != Some(&message) {
                    warn!(leader, fetcher = source.1, error = %message, "replica fetch failed; retrying after replica.fetch.backoff.ms");
                }
                last_error = Some(message);
                drop(broker);
                let _ = tokio::time::timeout(backoff, shared.changed.notified()).await;
            }
        }
    }
}

/// Why a fetch round did not complete.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("leader {0} has no reachable listener in the metadata")]
    NoAddress(i32),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// One fetch from the leader of the `ready` partitions, and applying its answer.
async fn fetch_once(
    broker: &Arc<Broker>,
    leader: i32,
    shared: &Arc<FetcherShared>,
    client: &mut Option<BrokerClient>,
    session: &mut FetchSessionHandler,
    ready: Vec<AssignedPartition>,
) -> Result<(), FetchError> {
    let image = broker.image();
    let address = leader_address(broker, &image, leader).ok_or(FetchError::NoAddress(leader))?;
    if client.is_none() {
        let client_id = format!("weir-replica-fetcher-{}", broker.config.node_id);
        *client = Some(BrokerClient::connect(&address, &client_id, CONNECT_TIMEOUT).await?);
    }
    let Some(connection) = client.as_mut() else { return Ok(()) };
    // The fetch state of each partition reads its log: on the blocking pool.
    let states = {
        let broker = broker.clone();
        on_blocking_pool(move || {
            ready
                .into_iter()
                .filter_map(|(key, assigned)| {
                    let partition = broker.replicas.get(&key.0, key.1)?;
                    (!partition.is_leader()).then(|| {
                        let state = partition.follower_fetch_state();
                        (key, assigned, partition, state)
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
    };
    if states.is_empty() {
        return Ok(());
    }
    let config = &broker.config.replication;
    let wanted = states
        .iter()
        .map(|((_, index), assigned, _, (log_end, last_epoch, log_start))| {
            let partition = FetchPartition::default()
                .with_partition(*index)
                .with_current_leader_epoch(assigned.leader_epoch)
                .with_fetch_offset(*log_end)
                .with_last_fetched_epoch(*last_epoch)
                .with_log_start_offset(*log_start)
                .with_partition_max_bytes(config.fetch_max_bytes);
            (assigned.topic_id, partition)
        })
        .collect();
    let session_request = session.build(wanted);
    let request = FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(broker.config.node_id))
                .with_replica_epoch(broker.membership.epoch()),
        )
        .with_max_wait_ms(config.fetch_wait_max_ms)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_response_max_bytes)
        .with_session_id(session_request.session_id)
        .with_session_epoch(session_request.session_epoch)
        .with_topics(session_request.topics.clone())
        .with_forgotten_topics_data(session_request.forgotten.clone());
    tracing::trace!(leader, partitions = states.len(), full = session_request.is_full(), "replica fetch");
    let timeout = Duration::from_millis(config.fetch_wait_max_ms.max(0) as u64) + REQUEST_TIMEOUT;
    let response = connection.fetch(&request, timeout).await?;
    match session.handle_response(&session_request, response.error_code, response.session_id) {
        SessionOutcome::Apply => {}
        SessionOutcome::Established(session_id) => {
            info!(leader, session_id, partitions = states.len(), "replica fetch session established");
        }
        SessionOutcome::Lost(code @ (ErrorCode::FetchSessionIdNotFound | ErrorCode::InvalidFetchSessionEpoch)) => {
            // The leader restarted or evicted the session: a full request at once.
            info!(leader, ?code, "replica fetch session lost; starting a new one");
            return Ok(());
        }
        SessionOutcome::Lost(code) => {
            return Err(FetchError::Client(ClientError::Protocol(format!("the leader refused the fetch: {code:?}"))));
        }
    }
    let backoff = Duration::from_millis(config.fetch_backoff_ms);
    let shared = shared.clone();
    let broker = broker.clone();
    on_blocking_pool(move || apply(&broker, &shared, states, response, backoff)).await;
    Ok(())
}

type FetchState = ((String, i32), Assigned, Arc<Partition>, (i64, i32, i64));

/// Applies a fetch response to the partitions it answers.
fn apply(broker: &Broker, shared: &FetcherShared, states: Vec<FetchState>, response: FetchResponse, backoff: Duration) {
    let mut by_key: HashMap<(Uuid, i32), FetchState> =
        states.into_iter().map(|s| ((s.1.topic_id, s.0 .1), s)).collect();
    let mut truncated = false;
    for topic in response.responses {
        for data in topic.partitions {
            let Some((key, assigned, partition, (log_end, _, _))) =
                by_key.remove(&(topic.topic_id, data.partition_index))
            else {
                continue;
            };
            let epoch = assigned.leader_epoch;
            let outcome = match ErrorCode::try_from_code(data.error_code) {
                None => {
                    let diverging = &data.diverging_epoch;
                    if diverging.epoch >= 0 || diverging.end_offset >= 0 {
                        let offset = partition.divergence_truncation_offset(diverging.epoch, diverging.end_offset);
                        info!(partition = %partition.name(), leader_epoch = diverging.epoch, leader_end_offset = diverging.end_offset, log_end, truncate_to = offset, "follower log diverged from the leader's; truncating");
                        truncated = true;
                        partition.truncate_as_follower(epoch, offset)
                    } else {
                        let records = data.records.clone().unwrap_or_default();
                        partition.append_as_follower(
                            epoch,
                            &records,
                            data.high_watermark,
                            data.log_start_offset,
                            now_ms(),
                        )
                    }
                }
                Some(ErrorCode::OffsetOutOfRange) => {
                    info!(partition = %partition.name(), log_end, leader_log_start = data.log_start_offset, "follower's log end is out of the leader's range; restarting the log at the leader's log start");
                    truncated = true;
                    partition.restart_as_follower_at(epoch, data.log_start_offset.max(0))
                }
                code => {
                    debug!(partition = %partition.name(), ?code, "replica fetch refused for a partition; backing off");
                    shared.delay(&key, epoch, backoff);
                    continue;
                }
            };
            match outcome {
                Ok(()) => {}
                Err(FollowerAppendError::Stale) => {
                    debug!(partition = %partition.name(), "dropped a replica fetch response from an earlier leader epoch");
                }
                Err(FollowerAppendError::Invalid(reason)) => {
                    warn!(partition = %partition.name(), %reason, "the leader's records do not follow this log; backing off");
                    shared.delay(&key, epoch, backoff);
                }
                Err(FollowerAppendError::Storage(code)) => {
                    warn!(partition = %partition.name(), ?code, "storage error appending the leader's records; backing off");
                    shared.delay(&key, epoch, backoff);
                }
            }
        }
    }
    if truncated {
        // As Kafka: the recovery points of truncated logs are persisted at once.
        broker.replicas.checkpoint_recovery_points();
    }
}
