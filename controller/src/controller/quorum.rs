//! The controller's Raft quorum: opening it (importing an old single-node
//! `metadata.log` on the way), the commit path every operation takes,
//! snapshots by size, and shutdown.
//!
//! A quorum of one (the default) elects itself at once; with several voters a
//! commit is durable once a majority synced its entry to their RocksDB logs.
//! Raft runs with one leader per term (openraft's `single-term-leader`), so a
//! term is a Kafka leader epoch. Every leader a node learns of is logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};

use super::*;
use crate::raft::{MetadataEntry, NodeId};
use crate::rpc::client::VoterNetwork;
use crate::rpc::now_ms;
use crate::store::{import_legacy_log, open_store};

/// Held while an operation validates and commits: operations run one at a
/// time, each against the image its predecessor left.
pub type WriteGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

/// How long opening waits for a quorum of this node alone to elect itself.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// How often a node waiting for the rest of its quorum says so.
const QUORUM_WAIT_REPORT: Duration = Duration::from_secs(10);

fn not_controller<E: std::fmt::Display>(e: E) -> ControllerError {
    ControllerError::NotController(format!("This node is not the active controller: {e}"))
}

fn fatal<E: std::fmt::Display>(e: E) -> ControllerError {
    ControllerError::Storage(format!("the metadata quorum stopped: {e}"))
}

impl QuorumController {
    /// Opens this node's quorum when it is the only voter; see
    /// [`QuorumController::open_with_listener`].
    pub async fn open(config: ControllerConfig) -> Result<Self, ControllerError> {
        Self::open_with_listener(config, None).await
    }

    /// Opens this node's quorum: imports an old `metadata.log` once, opens the
    /// RocksDB store, starts Raft and, given one, serves the controller
    /// `listener` (Raft RPCs and operations forwarded by other voters). A new
    /// quorum is initialized with the configured voters (every voter does so
    /// alike); a stored quorum whose voters differ from the configured ones is
    /// refused. Returns once a leader is known and the cluster id is set,
    /// which the leader writes on the very first start.
    pub async fn open_with_listener(
        config: ControllerConfig,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<Self, ControllerError> {
        if config.default_num_partitions < 1
            || config.default_replication_factor < 1
            || config.producer_id_block_size < 1
        {
            return Err(ControllerError::InvalidConfig(
                "num.partitions, default.replication.factor and the producer id block size must be at least 1"
                    .to_string(),
            ));
        }
        let node_id = NodeId::try_from(config.node_id)
            .map_err(|_| ControllerError::InvalidConfig(format!("node.id {} must not be negative", config.node_id)))?;
        let voters = configured_voters(&config, node_id)?;
        if voters.len() > 1 && listener.is_none() {
            return Err(ControllerError::InvalidConfig(
                "a quorum of several voters needs a controller listener".to_string(),
            ));
        }
        let node = BasicNode::new(config.controller_address.clone());
        if let Some(imported) = import_legacy_log(&config.metadata_dir, node_id, node)? {
            tracing::info!(entries = imported.entries, last_offset = imported.last_index, "metadata.log imported");
        }
        let (publish, images) = watch::channel(Arc::new(MetadataImage::default()));
        let (log, state_machine) = open_store(&config.metadata_dir, publish)?;
        let store = log.handle();
        let bytes_since_snapshot = state_machine.bytes_since_snapshot();
        let rank = voters.keys().position(|id| *id == node_id).unwrap_or(0);
        let (election_timeout_min, election_timeout_max) = election_timeout_range(rank);
        let raft_config = openraft::Config {
            cluster_name: "weir-metadata".to_string(),
            heartbeat_interval: 200,
            election_timeout_min,
            election_timeout_max,
            // Snapshots follow metadata.log.max.record.bytes.between.snapshots instead.
            snapshot_policy: SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::InvalidConfig(format!("Raft settings: {e}")))?;
        let voter_fetch_times = Arc::new(VoterFetchTimes::default());
        let network = VoterNetwork::new(voter_fetch_times.clone());
        let raft = Raft::new(node_id, Arc::new(raft_config), network, log, state_machine).await.map_err(fatal)?;
        voter_fetch_times.watch(raft.metrics());
        let snapshots = tokio::spawn(snapshot_when_due(
            raft.clone(),
            images.clone(),
            bytes_since_snapshot,
            config.snapshot_max_bytes,
        ));
        let (stop_listener, listener_stopped) = watch::channel(false);
        let controller = QuorumController {
            config,
            raft: raft.clone(),
            images,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            store,
            tasks: Arc::new(std::sync::Mutex::new(vec![snapshots.abort_handle()])),
            stop_listener: Arc::new(stop_listener),
            sessions: Default::default(),
            observers: Default::default(),
            voter_fetch_times,
        };
        let session_timer = tokio::spawn(super::sessions::fence_expired_sessions(controller.clone()));
        controller.track(session_timer.abort_handle());
        if controller.config.auto_leader_rebalance_enable {
            let rebalance = tokio::spawn(super::election::rebalance_leaders_periodically(controller.clone()));
            controller.track(rebalance.abort_handle());
        }
        let leader_log = tokio::spawn(log_leader_changes(raft.clone()));
        controller.track(leader_log.abort_handle());
        if let Some(listener) = listener {
            let server = tokio::spawn(crate::rpc::server::serve(
                listener,
                raft.clone(),
                Some(controller.clone()),
                listener_stopped,
            ));
            controller.track(server.abort_handle());
        }
        match controller.start_quorum(node_id, voters).await {
            Ok(()) => Ok(controller),
            Err(e) => {
                controller.shutdown().await;
                Err(e)
            }
        }
    }

    fn track(&self, task: tokio::task::AbortHandle) {
        self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(task);
    }

    /// Initializes a new quorum, checks a stored one's voters, waits for a
    /// leader and for the cluster id.
    async fn start_quorum(&self, node_id: NodeId, voters: BTreeMap<NodeId, BasicNode>) -> Result<(), ControllerError> {
        let raft = &self.raft;
        if !raft.is_initialized().await.map_err(fatal)? {
            match raft.initialize(voters.clone()).await {
                Ok(()) => tracing::info!(node_id, voters = ?voters.keys(), "initialized a new metadata quorum"),
                // Another voter's identical initialization reached this node first.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(fatal(e)),
            }
        }
        // The membership reaches the metrics shortly after initialize returns.
        let metrics = raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.membership_config.membership().voter_ids().next().is_some(), "a stored voter set")
            .await
            .map_err(fatal)?;
        let stored: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let configured: Vec<NodeId> = voters.keys().copied().collect();
        if stored != configured {
            return Err(ControllerError::InvalidConfig(format!(
                "controller.quorum.voters names {configured:?}, but the metadata quorum stored in {} has the voters \
                 {stored:?}",
                self.config.metadata_dir.display()
            )));
        }
        // Elections may change hands while the voters start together: retry
        // until the cluster id is in the image. A node alone gives up after
        // LEADER_WAIT; one of several waits for the others as long as it
        // takes (as a Kafka node waits for its quorum), saying so now and then.
        let alone = voters.len() == 1;
        let started = tokio::time::Instant::now();
        let mut next_report = started + QUORUM_WAIT_REPORT;
        loop {
            let elected = raft
                .wait(Some(Duration::from_millis(500)))
                .metrics(|m| m.current_leader.is_some(), "a leader of the metadata quorum")
                .await;
            match elected {
                Ok(_) if !self.image().cluster_id.is_empty() => break,
                Ok(metrics) if metrics.current_leader == Some(node_id) => match self.write_cluster_id().await {
                    Ok(()) => break,
                    Err(ControllerError::NotController(_)) => {}
                    Err(e) => return Err(e),
                },
                Ok(_) => {
                    let mut images = self.images.clone();
                    let got_id =
                        tokio::time::timeout(Duration::from_millis(500), images.wait_for(|i| !i.cluster_id.is_empty()))
                            .await;
                    if matches!(got_id, Ok(Ok(_))) {
                        break;
                    }
                }
                Err(openraft::metrics::WaitError::Timeout(..)) => {}
                Err(e) => return Err(fatal(e)),
            }
            let now = tokio::time::Instant::now();
            if alone && now - started >= LEADER_WAIT {
                return Err(not_controller(format!("no leader and cluster id within {LEADER_WAIT:?}")));
            }
            if now >= next_report {
                next_report = now + QUORUM_WAIT_REPORT;
                tracing::info!(
                    voters = ?voters.keys().collect::<Vec<_>>(),
                    waited_s = (now - started).as_secs(),
                    "waiting for a majority of the controller quorum's voters"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let image = self.image();
        tracing::info!(
            last_offset = image.last_offset,
            topics = image.topics.len(),
            cluster_id = %image.cluster_id,
            leader = ?raft.current_leader().await,
            "metadata quorum ready"
        );
        Ok(())
    }

    /// Writes the cluster id if the image has none (the very first start).
    async fn write_cluster_id(&self) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        if self.image().cluster_id.is_empty() {
            let cluster_id = kafka_uuid_string(random_kafka_uuid());
            self.commit(&guard, vec![MetadataRecord::ClusterId { cluster_id }]).await?;
        }
        Ok(())
    }

    /// Serializes an operation, and makes sure the image it starts from holds
    /// every committed entry (this node still leads and has applied up to
    /// the quorum's commit point).
    pub(super) async fn lock(&self) -> Result<WriteGuard<'_>, ControllerError> {
        let guard = self.write_lock.lock().await;
        self.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(e) => not_controller(e),
            RaftError::Fatal(e) => fatal(e),
        })?;
        Ok(guard)
    }

    /// Checks `records` against a scratch copy of the image, commits them as
    /// one entry through the quorum and returns the image after them.
    pub(super) async fn commit(
        &self,
        _guard: &WriteGuard<'_>,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        let current = self.image();
        if records.is_empty() {
            return Ok(current);
        }
        ImageBuilder::from_image((*current).clone()).replay_entry(current.last_offset + 1, &records)?;
        let written = self.raft.client_write(MetadataEntry { records }).await.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(e)) => not_controller(e),
            RaftError::APIError(e) => ControllerError::Internal(format!("metadata quorum refused the entry: {e}")),
            RaftError::Fatal(e) => fatal(e),
        })?;
        if let Some(error) = written.data.error {
            return Err(ControllerError::Internal(format!("metadata entry was committed but not applied: {error}")));
        }
        // The state machine publishes before openraft answers the write.
        Ok(self.image())
    }

    /// Stops the quorum and waits until only this controller holds its
    /// store, which closes when the controller is dropped. Later operations
    /// fail with a storage error.
    pub async fn shutdown(&self) {
        let _ = self.stop_listener.send(true);
        for task in self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not stop cleanly");
        }
        self.store.released().await;
    }
}

/// The shortest election timeout, that of the voter with the lowest id (ms).
const ELECTION_TIMEOUT_BASE_MS: u64 = 1000;
/// Width of each voter's election timeout range (ms).
const ELECTION_TIMEOUT_SPREAD_MS: u64 = 200;
/// Least distance between two voters' election timeouts (ms).
const ELECTION_TIMEOUT_GAP_MS: u64 = 200;

/// The election timeout range (min, max in ms) of the voter ranked `rank`
/// (0-based, by node id) in the voter set.
///
/// openraft 0.9 draws a node's election timeout once, when the node starts,
/// and keeps it for every round. Two voters that drew close values time out
/// together after a leader dies, each votes for itself, and they split the
/// vote again every round until their timeouts drift apart: failovers of
/// 20-30 s were seen. Disjoint ranges, one per voter, keep any two voters'
/// timeouts at least [`ELECTION_TIMEOUT_GAP_MS`] apart, so one survivor
/// always asks first and is elected in the first round.
pub(super) fn election_timeout_range(rank: usize) -> (u64, u64) {
    let step = ELECTION_TIMEOUT_SPREAD_MS + ELECTION_TIMEOUT_GAP_MS;
    let min = ELECTION_TIMEOUT_BASE_MS + step * u64::try_from(rank).unwrap_or(u64::MAX).min(16);
    (min, min + ELECTION_TIMEOUT_SPREAD_MS)
}

/// The voter set: `controller.quorum.voters`, or this node alone.
fn configured_voters(
    config: &ControllerConfig,
    node_id: NodeId,
) -> Result<BTreeMap<NodeId, BasicNode>, ControllerError> {
    if config.voters.is_empty() {
        return Ok(BTreeMap::from([(node_id, BasicNode::new(config.controller_address.clone()))]));
    }
    let mut voters = BTreeMap::new();
    for (id, address) in &config.voters {
        let id = NodeId::try_from(*id).map_err(|_| {
            ControllerError::InvalidConfig(format!("controller.quorum.voters: node id {id} is negative"))
        })?;
        voters.insert(id, BasicNode::new(address.clone()));
    }
    if !voters.contains_key(&node_id) {
        return Err(ControllerError::InvalidConfig(format!(
            "node.id {node_id} is not one of controller.quorum.voters {:?}: a controller must be a voter",
            voters.keys().collect::<Vec<_>>()
        )));
    }
    Ok(voters)
}

/// One replica of the metadata log as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumReplica {
    /// The node id.
    pub id: i32,
    /// Offset after its last log entry, -1 if unknown.
    pub log_end_offset: i64,
    /// When the leader last heard from it (ms since the epoch), -1 if unknown.
    pub last_fetch_timestamp: i64,
    /// When it was last known to be caught up with the leader (ms), -1 if unknown.
    pub last_caught_up_timestamp: i64,
    /// `host:port` of its controller listener; empty for a quorum of one
    /// without a controller listener.
    pub address: String,
}

/// The state of the metadata quorum, from its leader (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumDescription {
    /// The leader's node id.
    pub leader_id: i32,
    /// The leader's epoch (Raft term).
    pub leader_epoch: i32,
    /// Offset after the last entry known committed and applied.
    pub high_watermark: i64,
    /// The voters, this leader first.
    pub voters: Vec<QuorumReplica>,
    /// Replicas that follow the log without voting.
    pub observers: Vec<QuorumReplica>,
}

impl QuorumController {
    /// The leader's side of DescribeQuorum: `NotController` when this node
    /// does not lead the quorum.
    ///
    /// Offsets are Raft log indexes + 1 (Kafka's end offsets). The leader's
    /// own timestamps are now, as in Kafka; observers' come from their
    /// fetches; other voters' are not tracked yet (-1).
    pub(super) fn describe_quorum_local(&self) -> Result<QuorumDescription, ControllerError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) || metrics.state != ServerState::Leader {
            return Err(not_controller(format!("the quorum's leader is {:?}", metrics.current_leader)));
        }
        let node = |id: NodeId| i32::try_from(id).unwrap_or(i32::MAX);
        let end_offset = |index: Option<u64>| index.map_or(0, |i| i64::try_from(i).unwrap_or(i64::MAX) + 1);
        let now = now_ms();
        let membership = metrics.membership_config.membership();
        let address = |id: NodeId| membership.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
        let replica = |id: NodeId| {
            if id == metrics.id {
                return QuorumReplica {
                    id: node(id),
                    log_end_offset: end_offset(metrics.last_log_index),
                    last_fetch_timestamp: now,
                    last_caught_up_timestamp: now,
                    address: address(id),
                };
            }
            let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).copied().flatten());
            let fetch = self.voter_fetch_times.get(id, metrics.current_term);
            QuorumReplica {
                id: node(id),
                log_end_offset: matched.map_or(-1, |m| end_offset(Some(m.index))),
                last_fetch_timestamp: fetch.map_or(-1, |f| f.last_fetch_timestamp),
                last_caught_up_timestamp: fetch.map_or(-1, |f| f.last_caught_up_timestamp),
                address: address(id),
            }
        };
        let mut voter_ids: Vec<NodeId> = membership.voter_ids().collect();
        voter_ids.sort_by_key(|id| (*id != metrics.id, *id));
        Ok(QuorumDescription {
            leader_id: node(metrics.id),
            leader_epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            high_watermark: end_offset(metrics.last_applied.map(|id| id.index)),
            voters: voter_ids.into_iter().map(replica).collect(),
            observers: self.observer_replicas(metrics.current_term),
        })
    }
}

/// Logs every leader this node learns of, one line per (epoch, leader): what
/// an operator reads after a failover, and what the cluster tests' checker
/// reads to prove no two nodes saw different leaders in one epoch.
async fn log_leader_changes(raft: Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    let mut last: Option<(u64, NodeId)> = None;
    loop {
        let seen = {
            let m = metrics.borrow_and_update();
            m.current_leader.map(|leader| (m.current_term, leader))
        };
        if let Some((epoch, leader)) = seen.filter(|seen| Some(*seen) != last) {
            last = Some((epoch, leader));
            tracing::info!(leader, epoch, "metadata quorum leader");
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Takes a snapshot whenever more than `max_bytes` of records were applied
/// since the last one (Kafka's `metadata.log.max.record.bytes.between.snapshots`);
/// openraft then purges the log it covers.
async fn snapshot_when_due(
    raft: Raft<TypeConfig>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    bytes_since_snapshot: Arc<AtomicU64>,
    max_bytes: u64,
) {
    while images.changed().await.is_ok() {
        if bytes_since_snapshot.load(Ordering::Relaxed) < max_bytes {
            continue;
        }
        let building = raft.metrics().borrow().snapshot;
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "cannot start a metadata snapshot");
            return;
        }
        // One snapshot at a time: wait until it is written before counting again.
        let _ = raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.snapshot != building, "metadata snapshot written")
            .await;
    }
}

#[cfg(test)]
impl QuorumController {
    /// Takes a snapshot now and purges the log it covers, so readers of the
    /// log must be sent the snapshot.
    pub(crate) async fn snapshot_and_purge(&self) {
        let building = self.raft.metrics().borrow().snapshot;
        self.raft.trigger().snapshot().await.expect("snapshot triggered");
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot != building, "snapshot written")
            .await
            .expect("snapshot written");
        let upto = metrics.snapshot.map(|id| id.index).expect("a snapshot");
        self.raft.trigger().purge_log(upto).await.expect("purge triggered");
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.purged.is_some_and(|p| p.index >= upto), "log purged")
            .await
            .expect("log purged");
    }
}
