//! Partition replicas on this broker, kept in step with the metadata image.
//!
//! [`ReplicaManager::reconcile`] opens a log for every partition the image
//! places on this broker, applies config and leadership changes, and deletes
//! the logs of partitions the image no longer has (including a topic that was
//! deleted and re-created under the same name: its id differs). An append
//! wakes the fetches parked on its partition ([`Partition::watch`]).
//!
//! Storage work never runs on an async runtime worker: request handlers hand
//! it to tokio's blocking pool ([`on_blocking_pool`]); synchronous callers
//! that may sit on a worker (the group coordinator writing under its lock)
//! go through [`off_runtime`]. A slow disk then stalls the requests that
//! wait for it, not every connection served by the same worker.
//!
//! Only what the image says is not placed here is ever deleted. A partition
//! the image places here whose log cannot be opened (an I/O error, a
//! `partition.metadata` that cannot be read) is *offline*, as a Kafka replica
//! in a failed log dir: its files stay untouched, the error is logged once,
//! Metadata shows the replica offline and the data APIs answer
//! KAFKA_STORAGE_ERROR ([`ReplicaManager::lookup`], [`ReplicaManager::absent_error`]).
//! Every later reconcile tries to open it again.
//!
//! Recovery points: as Kafka's LogManager, the log dir's
//! `recovery-point-offset-checkpoint` holds every hosted log's recovery point
//! (offsets below it are fsynced). It is read once at start and handed to each
//! log's open, so recovery after a crash rescans only the segments from the
//! one holding it; it is written every
//! `log.flush.offset.checkpoint.interval.ms`, after a partition is deleted,
//! and at shutdown after the logs are closed. A missing (with partitions on
//! disk) or garbled file is logged once at warn and every log then recovers
//! from offset 0.

mod checkpoints;
pub mod cleaner_codec;
pub mod follower;
mod housekeeping;
pub mod isr;
pub mod leader;
pub mod log_dir_failure;
pub mod partition;
pub mod validate;
pub mod watchers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{Record, TimestampType};
use tracing::{debug, error, info, warn};
use uuid::Uuid;
use weir_controller::{ids, MetadataImage};
use weir_protocol::ErrorCode;
use weir_storage::OffsetMap;

use crate::admin::configs::TopicSettings;
use crate::config::BrokerConfig;
pub use log_dir_failure::LogDirFailure;
pub use partition::{Leadership, Partition};

/// Name of the file in each partition directory that records its topic id,
/// in Kafka's format.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// One record of a batch written without a producer (no id, epoch or
/// sequence), at position `index`: what the group coordinator writes to
/// `__consumer_offsets`, and what tests build. The sequence keeps
/// `kafka-protocol`'s encoder from splitting the records into several batches
/// (it starts a new one whenever offset minus sequence changes).
pub fn plain_record(index: usize, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        sequence: index as i32 - 1,
        timestamp,
        key,
        value,
        headers: IndexMap::new(),
    }
}

/// All partition replicas hosted by this broker.
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    log_dir: PathBuf,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    /// Partitions the image places here whose log could not be opened, with the error.
    offline: RwLock<HashMap<(String, i32), String>>,
    /// The partitions the last reconcile found placed here by the image, with
    /// their topic ids (`None` before the first reconcile).
    placed: RwLock<Option<HashMap<(String, i32), Uuid>>>,
    /// Serializes reconciles; true once the manager shut down, after which
    /// no reconcile opens a log again.
    reconcile_lock: Mutex<bool>,
    /// The image of the last reconcile: tells a partition led elsewhere
    /// (NOT_LEADER_OR_FOLLOWER) from one that does not exist.
    last_image: RwLock<Option<Arc<MetadataImage>>>,
    /// Recovery points read from the log dir's checkpoint at start, for the
    /// first open of each log.
    recovery_points_at_start: Mutex<OffsetMap>,
    /// High watermarks read from the log dir's `replication-offset-checkpoint`
    /// at start, for the first open of each log.
    high_watermarks_at_start: Mutex<OffsetMap>,
    /// Serializes recovery-point checkpoint writes; holds the time of the last one.
    last_checkpoint: Mutex<Instant>,
    /// Serializes high-watermark checkpoint writes; holds the time of the last one.
    last_high_watermark_checkpoint: Mutex<Instant>,
    /// Whether the log dir failed (then every partition here is offline).
    log_dir_failure: Arc<LogDirFailure>,
}

/// Runs storage work on tokio's blocking pool and waits for it, so that an
/// append, read or index lookup never blocks a runtime worker. A panic in `f`
/// resumes in the caller, as if `f` had run inline.
pub async fn on_blocking_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task; its caller goes with it.
            Err(e) => panic!("storage task cancelled: {e}"),
        },
    }
}

/// Runs storage work called from synchronous code that may be on a runtime
/// worker: on a multi-threaded runtime the worker first hands its other
/// tasks to another thread (`block_in_place`); anywhere else (a blocking-pool
/// thread, a current-thread runtime in tests, no runtime) `f` just runs.
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl ReplicaManager {
    /// A manager for the first log dir of `config`.
    pub fn new(config: Arc<BrokerConfig>) -> std::io::Result<ReplicaManager> {
        let log_dir = config.log_dirs[0].clone();
        std::fs::create_dir_all(&log_dir)?;
        let recovery_points_at_start = checkpoints::read_recovery_points(&log_dir);
        let high_watermarks_at_start = checkpoints::read_high_watermarks(&log_dir);
        Ok(ReplicaManager {
            config,
            partitions: RwLock::new(HashMap::new()),
            offline: RwLock::new(HashMap::new()),
            placed: RwLock::new(None),
            reconcile_lock: Mutex::new(false),
            last_image: RwLock::new(None),
            recovery_points_at_start: Mutex::new(recovery_points_at_start),
            high_watermarks_at_start: Mutex::new(high_watermarks_at_start),
            last_high_watermark_checkpoint: Mutex::new(Instant::now()),
            last_checkpoint: Mutex::new(Instant::now()),
            log_dir_failure: Arc::new(LogDirFailure::new(&log_dir)),
            log_dir,
        })
    }

    /// The log dir partitions live in.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The log dir's failure state.
    pub fn log_dir_failure(&self) -> &LogDirFailure {
        &self.log_dir_failure
    }

    /// A hosted partition (none once the log dir failed).
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        if self.log_dir_failure.reason().is_some() {
            return None;
        }
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&(topic.to_string(), partition)).cloned()
    }

    /// Whether the last reconcile applied exactly `image`.
    pub fn has_reconciled(&self, image: &Arc<MetadataImage>) -> bool {
        let last = self.last_image.read().unwrap_or_else(|p| p.into_inner());
        last.as_ref().is_some_and(|last| Arc::ptr_eq(last, image))
    }

    /// A partition this broker leads, or the error a client's request for it
    /// gets: NOT_LEADER_OR_FOLLOWER when it is hosted but led elsewhere, else
    /// [`ReplicaManager::absent_error`].
    pub fn lookup(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, ErrorCode> {
        match self.get(topic, partition) {
            Some(hosted) if hosted.is_leader() => Ok(hosted),
            Some(_) => Err(ErrorCode::NotLeaderOrFollower),
            None => Err(self.absent_error(topic, partition)),
        }
    }

    /// The error for a partition that [`ReplicaManager::get`] did not find:
    /// KAFKA_STORAGE_ERROR when it is offline here, NOT_LEADER_OR_FOLLOWER
    /// when the metadata places it on other brokers (as Kafka answers for a
    /// partition it knows but does not host), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn absent_error(&self, topic: &str, partition: i32) -> ErrorCode {
        if self.offline_error(topic, partition).is_some() {
            return ErrorCode::KafkaStorageError;
        }
        let image = self.last_image.read().unwrap_or_else(|p| p.into_inner()).clone();
        let known = image
            .as_ref()
            .and_then(|image| image.topic(topic))
            .is_some_and(|t| usize::try_from(partition).is_ok_and(|index| index < t.partitions.len()));
        if known {
            ErrorCode::NotLeaderOrFollower
        } else {
            ErrorCode::UnknownTopicOrPartition
        }
    }

    /// Why the log of a partition the image places here could not be opened,
    /// if it could not (the partition is offline on this broker).
    pub fn offline_error(&self, topic: &str, partition: i32) -> Option<String> {
        let key = (topic.to_string(), partition);
        if let Some(reason) = self.log_dir_failure.reason() {
            let placed = self.placed.read().unwrap_or_else(|p| p.into_inner());
            if placed.as_ref().is_some_and(|placed| placed.contains_key(&key)) {
                return Some(format!("the log dir failed: {reason}"));
            }
        }
        self.offline.read().unwrap_or_else(|p| p.into_inner()).get(&key).cloned()
    }

    /// This broker's id when its replica of the partition is offline, for
    /// Metadata's `offline_replicas`.
    pub fn offline_replica(&self, topic: &str, partition: i32) -> Option<i32> {
        self.offline_error(topic, partition).map(|_| self.config.node_id)
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Brings the hosted partitions in line with `image`.
    pub fn reconcile(&self, image: &Arc<MetadataImage>) {
        let closed = self.reconcile_lock.lock().unwrap_or_else(|p| p.into_inner());
        if *closed {
            return;
        }
        *self.last_image.write().unwrap_or_else(|p| p.into_inner()) = Some(image.clone());
        if self.log_dir_failure.reason().is_some() {
            // Nothing is opened, created or deleted in a failed log dir.
            return;
        }
        let node_id = self.config.node_id;
        let now = now_ms();
        let mut wanted: HashMap<(String, i32), Uuid> = HashMap::new();
        for topic in image.topics.values() {
            let settings = TopicSettings::for_topic(&self.config, image, &topic.name);
            for (index, registration) in topic.partitions.iter().enumerate() {
                if !registration.replicas.contains(&node_id) {
                    continue;
                }
                let key = (topic.name.clone(), index as i32);
                let leadership = Leadership::of(registration, node_id);
                wanted.insert(key.clone(), topic.id);
                match self.get(&topic.name, index as i32) {
                    Some(existing) if existing.topic_id == topic.id => {
                        existing.update(settings.clone(), leadership, now);
                    }
                    existing => {
                        if let Some(stale) = existing {
                            self.remove_and_delete(&key, stale.topic_id);
                        }
                        let dir = self.log_dir.join(format!("{}-{}", topic.name, index));
                        let recovery_point =
                            self.recovery_points_at_start.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
                        let high_watermark =
                            self.high_watermarks_at_start.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
                        let opened = prepare_partition_dir(&dir, topic.id).and_then(|()| {
                            Partition::open(
                                &dir,
                                &topic.name,
                                topic.id,
                                index as i32,
                                settings.clone(),
                                leadership,
                                now,
                                recovery_point,
                                high_watermark,
                                node_id,
                                self.log_dir_failure.clone(),
                            )
                            .map_err(|e| e.to_string())
                        });
                        match opened {
                            Ok(partition) => {
                                let was_offline =
                                    self.offline.write().unwrap_or_else(|p| p.into_inner()).remove(&key).is_some();
                                if was_offline {
                                    info!(partition = %partition.name(), "partition log opened; the partition is online again");
                                }
                                self.partitions
                                    .write()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(key, Arc::new(partition));
                            }
                            Err(e) => self.mark_offline(key, e),
                        }
                    }
                }
            }
        }
        let stale: Vec<((String, i32), Uuid)> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(key, p)| wanted.get(*key) != Some(&p.topic_id))
            .map(|(k, p)| (k.clone(), p.topic_id))
            .collect();
        for (key, topic_id) in stale {
            self.remove_and_delete(&key, topic_id);
        }
        // An offline partition the image no longer places here is forgotten;
        // its directory goes with the orphan sweep at the next start.
        self.offline.write().unwrap_or_else(|p| p.into_inner()).retain(|key, _| wanted.contains_key(key));
        *self.placed.write().unwrap_or_else(|p| p.into_inner()) = Some(wanted);
    }

    /// Records that a partition placed here could not be opened; logs the
    /// error once (again only if it changes).
    fn mark_offline(&self, key: (String, i32), reason: String) {
        let mut offline = self.offline.write().unwrap_or_else(|p| p.into_inner());
        let name = format!("{}-{}", key.0, key.1);
        if offline.get(&key) == Some(&reason) {
            debug!(partition = %name, error = %reason, "partition log still cannot be opened");
        } else {
            error!(partition = %name, error = %reason, "could not open the partition log; the partition is offline and its files are left untouched");
        }
        offline.insert(key, reason);
    }

    fn remove_and_delete(&self, key: &(String, i32), topic_id: Uuid) {
        let removed = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(current) if current.topic_id == topic_id => map.remove(key),
                _ => None,
            }
        };
        let Some(removed) = removed else { return };
        self.recovery_points_at_start.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        self.high_watermarks_at_start.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        match removed.delete() {
            Ok(()) => info!(partition = %removed.name(), "deleted partition log"),
            Err(e) => warn!(partition = %removed.name(), error = %e, "could not delete partition log"),
        }
        // As Kafka: the deleted log's recovery point and high watermark leave
        // the checkpoints at once, so a log re-created under the same name
        // never inherits them.
        self.checkpoint_recovery_points();
        self.checkpoint_high_watermarks();
    }

    /// Removes partition directories that the image (as of the last
    /// reconcile) does not place here: a topic deleted while this broker was
    /// down, a crash in the middle of a deletion, a replica moved away. A
    /// directory the image places here stays, whether or not its log opened
    /// (an earlier topic of the same name was already replaced by reconcile).
    /// Does nothing before the first reconcile. Called once at start, after
    /// the first reconcile.
    pub fn delete_orphan_dirs(&self) {
        let Some(wanted) = self.placed.read().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some((topic, index)) = name.rsplit_once('-') else { continue };
            let Ok(index) = index.parse::<i32>() else { continue };
            if topic.starts_with("__cluster_metadata") || !path.join(PARTITION_METADATA_FILE).exists() {
                continue;
            }
            if !wanted.contains_key(&(topic.to_string(), index)) {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => info!(dir = %path.display(), "removed the directory of a deleted partition"),
                    Err(e) => {
                        warn!(dir = %path.display(), error = %e, "could not remove an orphan partition directory")
                    }
                }
            }
        }
    }

    /// Retention, log compaction, time-based flushes and flushes of rolled
    /// segments for every partition; then the recovery-point checkpoint, if
    /// `log.flush.offset.checkpoint.interval.ms` has passed since the last.
    pub fn housekeeping(&self, retention_due: bool, cleaning_due: bool) {
        if self.log_dir_failure.reason().is_some() {
            return;
        }
        let now = now_ms();
        for partition in self.all() {
            partition.housekeeping(now, retention_due, cleaning_due);
        }
        let interval = std::time::Duration::from_millis(self.config.log_flush_offset_checkpoint_interval_ms);
        let due = self.last_checkpoint.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= interval;
        if due {
            self.checkpoint_recovery_points();
        }
        self.checkpoint_high_watermarks_if_due();
    }

    /// Closes every log cleanly (flush, producer snapshot, clean-shutdown
    /// marker), several at a time (each close waits on fsyncs), then writes
    /// the recovery-point checkpoint. Logs of a failed log dir are left as
    /// they are: the next start recovers them.
    pub fn shutdown(&self) {
        *self.reconcile_lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let drained: Vec<Arc<Partition>> =
            self.partitions.write().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, p)| p).collect();
        if let Some(reason) = self.log_dir_failure.reason() {
            warn!(dir = %self.log_dir.display(), %reason, partitions = drained.len(), "not closing the logs of the failed log dir");
            return;
        }
        let high_watermarks: OffsetMap =
            drained.iter().map(|p| ((p.topic.clone(), p.index), p.high_watermark())).collect();
        self.write_high_watermarks(&high_watermarks);
        let queue = Mutex::new(drained);
        let recovery_points = Mutex::new(OffsetMap::new());
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get() * 4).min(32);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let Some(partition) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { return };
                    let key = (partition.topic.clone(), partition.index);
                    if let Some(recovery_point) = self.close_partition(partition) {
                        recovery_points.lock().unwrap_or_else(|p| p.into_inner()).insert(key, recovery_point);
                    }
                });
            }
        });
        self.write_checkpoint(&recovery_points.into_inner().unwrap_or_else(|p| p.into_inner()));
    }

    /// Closes one log at shutdown; its recovery point for the checkpoint,
    /// unless the close failed.
    fn close_partition(&self, partition: Arc<Partition>) -> Option<i64> {
        let name = partition.name();
        match Arc::try_unwrap(partition) {
            Ok(p) => {
                // A close flushes everything: the recovery point is the log end.
                let (_, log_end) = p.offsets();
                match p.close() {
                    Ok(()) => Some(log_end),
                    Err(e) => {
                        if !self.log_dir_failure.fail_on(&format!("close of partition {name}"), &e) {
                            warn!(partition = %name, error = %e, "unclean close");
                        }
                        None
                    }
                }
            }
            Err(still_shared) => {
                warn!(partition = %name, "still in use at shutdown; flushed, and recovered at the next start");
                if let Err(e) = still_shared.flush() {
                    warn!(partition = %name, error = %e, "flush at shutdown failed");
                }
                Some(still_shared.recovery_point())
            }
        }
    }
}

/// Prepares a partition directory and writes Kafka's `partition.metadata`
/// (`version: 0`, `topic_id: <id>`), so the directory can be matched to its
/// topic id after a restart. A directory left by an earlier topic of the same
/// name (its file names another id) is removed first: its data is not this
/// topic's. A file that cannot be read or parsed is an error and nothing is
/// touched: whose data the directory holds is unknown.
fn prepare_partition_dir(dir: &Path, topic_id: Uuid) -> Result<(), String> {
    let path = dir.join(PARTITION_METADATA_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match parse_partition_metadata(&bytes) {
            Some(id) if id == topic_id => return Ok(()),
            Some(earlier) => {
                info!(dir = %dir.display(), earlier_topic_id = %ids::kafka_uuid_string(earlier), "removing the log of an earlier topic with the same name");
                std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
            }
            None => return Err(format!("{}: not a version 0 partition.metadata with a topic id", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let content = format!("version: 0\ntopic_id: {}\n", ids::kafka_uuid_string(topic_id));
    write_atomically(dir, PARTITION_METADATA_FILE, content.as_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// The topic id in a `partition.metadata` file (Kafka's format: `version: 0`,
/// then `topic_id: <base64 id>`), if the file is one.
fn parse_partition_metadata(bytes: &[u8]) -> Option<Uuid> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let version = lines.next()?.strip_prefix("version:")?.trim();
    if version != "0" {
        return None;
    }
    let id = lines.next()?.strip_prefix("topic_id:")?.trim();
    ids::parse_kafka_uuid(id)
}

/// Replaces `dir/name` with `contents` so that a crash leaves the old or the
/// new file, never a torn one: temporary file, fsync, rename, directory fsync.
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod startup_tests;

#[cfg(test)]
#[path = "replication_tests.rs"]
mod replication_tests;
