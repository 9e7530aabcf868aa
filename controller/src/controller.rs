//! The quorum controller: validates requests, turns them into metadata
//! records, appends them to the metadata log as one atomic entry, replays
//! them into a new [`MetadataImage`] and publishes it on a watch channel.
//!
//! Invariants:
//! - state changes only through [`ImageBuilder::replay`]; a request's records
//!   are first replayed onto a scratch copy of the image, then committed
//!   through the Raft quorum as one entry, and the image the state machine
//!   publishes after applying it is what the caller sees, so a record that
//!   cannot be applied is never written;
//! - mutating calls are serialized by one async mutex, and each starts from
//!   an image that includes every entry committed before it;
//! - `validate_only` requests run every check but commit nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use crate::configs::{
    apply_incremental, apply_replacement, diff_records, validate_configs, AlterConfigOp, ConfigResource,
};
use crate::error::ControllerError;
use crate::ids::{kafka_uuid_string, random_kafka_uuid};
use crate::image::{BrokerRegistration, ImageBuilder, MetadataImage, PartitionRegistration, TopicImage};
use crate::placement::{initial_isr, place_replicas, validate_manual_assignment};
use crate::raft::TypeConfig;
use crate::records::{MetadataRecord, CONFIG_RESOURCE_TOPIC};
use crate::rpc::client::VoterFetchTimes;
use crate::store::StoreHandle;
use crate::topic_config::validate_topic_configs;
use crate::topic_name::{has_collision, has_collision_chars, validate_topic_name};

/// Most partitions one request may create (Kafka bounds records per user
/// operation at 10000 too); protects the controller from absurd counts.
pub const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;

/// Controller settings (Kafka property names in parentheses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// This node's id (`node.id`).
    pub node_id: i32,
    /// Directory holding `metadata.log` (`metadata.log.dir`).
    pub metadata_dir: PathBuf,
    /// Partitions of a topic created without a count (`num.partitions`).
    pub default_num_partitions: i32,
    /// Replication factor when none is given (`default.replication.factor`).
    pub default_replication_factor: i16,
    /// Producer ids per allocated block (Kafka: 1000).
    pub producer_id_block_size: i64,
    /// Bytes of records applied between two metadata snapshots
    /// (`metadata.log.max.record.bytes.between.snapshots`, Kafka: 20 MiB).
    pub snapshot_max_bytes: u64,
    /// `host:port` of this node's controller listener as the other voters
    /// reach it; empty while the quorum is this node alone.
    pub controller_address: String,
    /// The voters (`controller.quorum.voters`): node id -> controller
    /// listener `host:port`. Empty means this node alone.
    pub voters: BTreeMap<i32, String>,
    /// A broker not heard from for this long is fenced
    /// (`broker.session.timeout.ms`, Kafka: 9000).
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable` for topics that do not set it and
    /// when no cluster-wide dynamic default does (Kafka: false).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (Kafka: true): the active controller
    /// moves leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` (Kafka: 300 s).
    pub leader_imbalance_check_interval: std::time::Duration,
}

impl ControllerConfig {
    /// Kafka's defaults: 1 partition, replication factor 1, blocks of 1000,
    /// a snapshot every 20 MiB of records.
    pub fn new(node_id: i32, metadata_dir: impl Into<PathBuf>) -> Self {
        ControllerConfig {
            node_id,
            metadata_dir: metadata_dir.into(),
            default_num_partitions: 1,
            default_replication_factor: 1,
            producer_id_block_size: 1000,
            snapshot_max_bytes: 20 * 1024 * 1024,
            controller_address: String::new(),
            voters: BTreeMap::new(),
            broker_session_timeout_ms: 9_000,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval: std::time::Duration::from_secs(300),
        }
    }
}

/// A topic to create (one entry of a CreateTopics request).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CreateTopic {
    /// Topic name.
    pub name: String,
    /// Partition count, -1 for the default (must be -1 with assignments).
    pub num_partitions: i32,
    /// Replication factor, -1 for the default (must be -1 with assignments).
    pub replication_factor: i16,
    /// Manual assignment: (partition index, replica broker ids).
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs; entries without a value are ignored.
    pub configs: Vec<(String, Option<String>)>,
}

/// A topic named in a DeleteTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TopicRef {
    /// By name.
    Name(String),
    /// By id.
    Id(Uuid),
}

/// The metadata controller of this node: the request logic above a Raft
/// quorum ([`quorum`] holds its lifecycle and the commit path).
///
/// Cheap to clone: clones share the quorum (the controller listener holds one
/// to run operations forwarded by the other voters).
#[derive(Clone)]
pub struct QuorumController {
    config: ControllerConfig,
    raft: openraft::Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Serializes operations: each validates against the image its
    /// predecessor's commit left behind.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    store: StoreHandle,
    /// Background tasks stopped at shutdown: snapshots, the controller listener.
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Tells the controller listener's connections to stop.
    stop_listener: Arc<watch::Sender<bool>>,
    /// Brokers' last heartbeats, while this node is the active controller.
    sessions: Arc<std::sync::Mutex<sessions::BrokerSessions>>,
    /// Observers' progress, while this node is the active controller.
    observers: Arc<std::sync::Mutex<observers::Observers>>,
    /// The voters' last answers, while this node is the active controller.
    voter_fetch_times: Arc<VoterFetchTimes>,
}

impl std::fmt::Debug for QuorumController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumController").field("config", &self.config).finish_non_exhaustive()
    }
}

impl QuorumController {
    /// The settings this controller was opened with.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The latest image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// Resolves when this node's Raft stops on its own (a storage error such
    /// as a full disk, or a panic in the Raft core), with the reason; never
    /// after [`QuorumController::shutdown`]. The node must then stop, as
    /// Kafka halts a controller whose metadata log cannot be written.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            let failure = match &metrics.borrow_and_update().running_state {
                Err(openraft::error::Fatal::Stopped) | Ok(()) => None,
                Err(fatal) => Some(fatal.to_string()),
            };
            if let Some(reason) = failure {
                return reason;
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        let mut receiver = self.images.clone();
        receiver.borrow_and_update();
        receiver
    }

    /// The leader's side of [`QuorumController::create_topics`].
    pub(super) async fn create_topics_local(
        &self,
        topics: Vec<CreateTopic>,
        validate_only: bool,
    ) -> Vec<Result<Arc<TopicImage>, ControllerError>> {
        let guard = match self.lock().await {
            Ok(guard) => guard,
            Err(e) => return topics.iter().map(|_| Err(e.clone())).collect(),
        };
        let image = self.image();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in &topics {
            *counts.entry(t.name.as_str()).or_default() += 1;
        }
        let mut start = image.partition_count();
        let mut accepted: Vec<&str> = Vec::new();
        let mut records = Vec::new();
        let mut results: Vec<Result<Arc<TopicImage>, ControllerError>> = Vec::with_capacity(topics.len());
        for t in &topics {
            let planned = if counts.get(t.name.as_str()).copied().unwrap_or(0) > 1 {
                Err(ControllerError::InvalidRequest("Duplicate topic name.".to_string()))
            } else {
                self.plan_topic(&image, t, &accepted, start)
            };
            match planned {
                Ok((topic, topic_records)) => {
                    start += topic.partitions.len();
                    accepted.push(t.name.as_str());
                    records.extend(topic_records);
                    results.push(Ok(Arc::new(topic)));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if validate_only || records.is_empty() {
            return results;
        }
        match self.commit(&guard, records).await {
            Ok(new_image) => results
                .into_iter()
                .map(|r| {
                    r.and_then(|t| {
                        new_image
                            .topic(&t.name)
                            .cloned()
                            .ok_or_else(|| ControllerError::Internal(format!("topic {} missing after commit", t.name)))
                    })
                })
                .collect(),
            Err(e) => results.into_iter().map(|r| r.and(Err(e.clone()))).collect(),
        }
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        t: &CreateTopic,
        accepted: &[&str],
        start: usize,
    ) -> Result<(TopicImage, Vec<MetadataRecord>), ControllerError> {
        validate_topic_name(&t.name)?;
        if image.topics.contains_key(&t.name) {
            return Err(ControllerError::TopicAlreadyExists(format!("Topic '{}' already exists.", t.name)));
        }
        if has_collision_chars(&t.name) {
            let existing = image.topics.keys().map(String::as_str).chain(accepted.iter().copied());
            if let Some(other) = existing.into_iter().find(|other| has_collision(&t.name, other)) {
                return Err(ControllerError::InvalidTopic(format!(
                    "Topic '{}' collides with existing topic: {other}",
                    t.name
                )));
            }
        }
        let configs: BTreeMap<String, String> =
            t.configs.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect();
        validate_topic_configs(&configs)?;
        let placements = self.plan_partitions(image, t, start)?;
        let id = random_kafka_uuid();
        let mut records = vec![MetadataRecord::Topic { name: t.name.clone(), topic_id: id }];
        records.extend(configs.iter().map(|(k, v)| MetadataRecord::Config {
            resource_type: CONFIG_RESOURCE_TOPIC,
            resource_name: t.name.clone(),
            name: k.clone(),
            value: Some(v.clone()),
        }));
        let mut builder = ImageBuilder::new();
        builder.replay(&records[0])?;
        for (p, replicas) in placements.into_iter().enumerate() {
            let record = partition_record(&image.brokers, id, p as i32, replicas);
            builder.replay(&record)?;
            records.push(record);
        }
        let topic = builder.image().topic(&t.name).map(|t| (**t).clone());
        let topic = topic.ok_or_else(|| ControllerError::Internal("planned topic vanished".to_string()))?;
        Ok((topic, records))
    }

    fn plan_partitions(
        &self,
        image: &MetadataImage,
        t: &CreateTopic,
        start: usize,
    ) -> Result<Vec<Vec<i32>>, ControllerError> {
        if !t.assignments.is_empty() {
            if t.replication_factor != -1 {
                return Err(ControllerError::InvalidRequest(
                    "A manual partition assignment was specified, but replication factor was not set to -1."
                        .to_string(),
                ));
            }
            if t.num_partitions != -1 {
                return Err(ControllerError::InvalidRequest(
                    "A manual partition assignment was specified, but numPartitions was not set to -1.".to_string(),
                ));
            }
            if t.assignments.len() > MAX_PARTITIONS_PER_REQUEST {
                return Err(too_many_partitions());
            }
            let mut parts: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut rf = None;
            for (p, replicas) in &t.assignments {
                if parts.contains_key(p) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Found multiple manual partition assignments for partition {p}"
                    )));
                }
                validate_manual_assignment(&image.brokers, *p, replicas, rf)?;
                rf = Some(replicas.len());
                parts.insert(*p, replicas.clone());
            }
            if parts.keys().enumerate().any(|(i, p)| *p != i as i32) {
                return Err(ControllerError::InvalidReplicaAssignment(
                    "partitions should be a consecutive 0-based integer sequence".to_string(),
                ));
            }
            return Ok(parts.into_values().collect());
        }
        if t.replication_factor < -1 || t.replication_factor == 0 {
            return Err(ControllerError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
            ));
        }
        if t.num_partitions < -1 || t.num_partitions == 0 {
            return Err(ControllerError::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".to_string(),
            ));
        }
        let num_partitions =
            if t.num_partitions == -1 { self.config.default_num_partitions } else { t.num_partitions } as usize;
        if num_partitions > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_partitions());
        }
        let rf = if t.replication_factor == -1 { self.config.default_replication_factor } else { t.replication_factor };
        place_replicas(&image.brokers, start, num_partitions, rf)
    }

    /// The leader's side of [`QuorumController::delete_topics`].
    pub(super) async fn delete_topics_local(
        &self,
        topics: Vec<TopicRef>,
    ) -> Vec<Result<(String, Uuid), ControllerError>> {
        let guard = match self.lock().await {
            Ok(guard) => guard,
            Err(e) => return topics.iter().map(|_| Err(e.clone())).collect(),
        };
        let image = self.image();
        let mut counts: HashMap<&TopicRef, usize> = HashMap::new();
        for t in &topics {
            *counts.entry(t).or_default() += 1;
        }
        let mut removed = HashSet::new();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for t in &topics {
            let duplicate = counts.get(t).copied().unwrap_or(0) > 1;
            let found = match t {
                TopicRef::Name(_) if duplicate => {
                    Err(ControllerError::InvalidRequest("Duplicate topic name.".to_string()))
                }
                TopicRef::Id(_) if duplicate => Err(ControllerError::InvalidRequest("Duplicate topic id.".to_string())),
                TopicRef::Name(name) => image.topic(name).ok_or_else(|| {
                    ControllerError::UnknownTopicOrPartition(
                        "This server does not host this topic-partition.".to_string(),
                    )
                }),
                TopicRef::Id(id) if id.is_nil() => Err(ControllerError::InvalidRequest(format!(
                    "Attempt to find topic with invalid topicId {}",
                    kafka_uuid_string(*id)
                ))),
                TopicRef::Id(id) => image.topic_by_id(*id).ok_or_else(|| {
                    ControllerError::UnknownTopicId("This server does not host this topic ID.".to_string())
                }),
            };
            results.push(found.map(|topic| {
                if removed.insert(topic.id) {
                    records.push(MetadataRecord::RemoveTopic { topic_id: topic.id });
                }
                (topic.name.clone(), topic.id)
            }));
        }
        if let Err(e) = self.commit(&guard, records).await {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        results
    }

    /// The leader's side of [`QuorumController::create_partitions`].
    pub(super) async fn create_partitions_local(
        &self,
        topic: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let t = image.topic(topic).ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition("This server does not host this topic-partition.".to_string())
        })?;
        let current = t.partitions.len();
        if new_total < 0 || (new_total as usize) < current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {new_total}."
            )));
        }
        if new_total as usize == current {
            return Err(ControllerError::InvalidPartitions(format!("Topic already has {current} partitions.")));
        }
        let additional = new_total as usize - current;
        if additional > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_partitions());
        }
        let rf = t.replication_factor();
        let placements = match assignments {
            Some(assignments) => {
                if assignments.len() != additional {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    )));
                }
                for (i, replicas) in assignments.iter().enumerate() {
                    let partition = (current + i) as i32;
                    validate_manual_assignment(&image.brokers, partition, replicas, Some(rf))?;
                }
                assignments
            }
            None => {
                let rf = i16::try_from(rf)
                    .map_err(|_| ControllerError::Internal(format!("invalid replication factor {rf}")))?;
                place_replicas(&image.brokers, image.partition_count(), additional, rf)?
            }
        };
        let records: Vec<MetadataRecord> = placements
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| partition_record(&image.brokers, t.id, (current + i) as i32, replicas))
            .collect();
        if !validate_only {
            self.commit(&guard, records).await?;
        }
        Ok(())
    }
}

fn too_many_partitions() -> ControllerError {
    ControllerError::PolicyViolation("Excessively large number of partitions per request.".to_string())
}

/// A new partition: ISR = its unfenced replicas, led by the first of them.
fn partition_record(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    topic_id: Uuid,
    partition_id: i32,
    replicas: Vec<i32>,
) -> MetadataRecord {
    let isr = initial_isr(brokers, &replicas);
    MetadataRecord::Partition {
        topic_id,
        partition_id,
        leader: isr.first().copied().unwrap_or(-1),
        isr,
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

mod brokers;
mod config_ops;
mod election;
mod forward;
mod observers;
mod operations;
mod partitions;
mod quorum;
mod reassignment;
mod sessions;

pub use election::{Election, ElectionResults, ElectionTargets};
pub use forward::{Forwarded, Operation, Outcome};
pub(crate) use forward::{CATCH_UP_TIMEOUT, FORWARD_TIMEOUT, UNREACHABLE_RETRY};
pub use observers::{FetchedData, FetchedEntry, FetchedMetadata, MetadataFetch, QuorumLeader};
pub use operations::ControllerOperations;
pub use partitions::AlterPartition;
pub use quorum::{QuorumDescription, QuorumReplica, WriteGuard};
pub use reassignment::{ReassignmentResults, ReassignmentTargets};
pub use sessions::{BrokerHeartbeat, HeartbeatReply};

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod election_tests;
#[cfg(test)]
mod reassignment_tests;
#[cfg(test)]
mod sessions_tests;
#[cfg(test)]
mod tests;
