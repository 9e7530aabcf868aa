//! One partition replica on this broker: its log, its high watermark and the
//! leader-side append and read paths.
//!
//! Invariants: the log is changed only under `state`'s lock, so a sequence
//! check and the append it allows are atomic; the high watermark only moves
//! forward except on truncation, and on a single-replica ISR it is the log
//! end offset after every append.
//!
//! Threads: every method that touches the disk (append, read, timestamp
//! lookups, DeleteRecords, housekeeping) is synchronous and is called off
//! the async runtime's workers (see [`super::on_blocking_pool`]). What a
//! request checks first (leadership, leader epoch, log start and end
//! offsets, size) is published in atomics after every change, so it never
//! waits for the lock that an append's write holds. A read that starts in a
//! sealed segment does not take the lock: it reads the sealed segments this
//! partition republishes whenever the log's segments change (see
//! `weir_storage::read`); log cleaning holds the lock only to
//! plan and to swap the cleaned segments in. Appends wake the fetches parked
//! on this partition only ([`Partition::watch`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tracing::warn;
use uuid::Uuid;
use weir_protocol::batch;
use weir_protocol::ErrorCode;
use weir_storage::{Log, SealedSegments, SequenceCheck, StorageError};

use super::leader::ReplicationState;
use super::log_dir_failure::LogDirFailure;
use super::validate::{validate_records, RecordsRejected};
use super::watchers::Watchers;
use crate::admin::configs::TopicSettings;

/// What the leader tells the producer about an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record appended (or of the original, for a duplicate).
    pub base_offset: i64,
    /// The log append time stamped on the batch, or -1 under CreateTime.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Offset of the last record appended (or of the original's, for a
    /// duplicate): acks=all waits for the high watermark to pass it.
    pub last_offset: i64,
}

/// What a Fetch gets from one partition.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Whole batches.
    pub records: Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Last stable offset (the high watermark while there are no transactions).
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
}

/// A partition's replicas as the metadata image has them, seen from this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Whether this broker leads the partition (only the leader takes
    /// produce requests and serves consumers).
    pub is_leader: bool,
    /// The leader's broker id (-1: none).
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch (bumped by every change, ISR changes included).
    pub partition_epoch: i32,
    /// The replicas.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

impl Leadership {
    /// From the image's registration of the partition, for broker `node_id`.
    pub fn of(registration: &weir_controller::PartitionRegistration, node_id: i32) -> Leadership {
        Leadership {
            is_leader: registration.leader == node_id,
            leader: registration.leader,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            replicas: registration.replicas.clone(),
            isr: registration.isr.clone(),
        }
    }
}

pub(super) struct State {
    pub(super) log: Log,
    pub(super) settings: TopicSettings,
    leadership: Leadership,
}

/// The epoch cache as published: entry count and log start offset when
/// taken (to tell when to take it again), and the entries.
type PublishedEpochs = (usize, i64, Arc<Vec<(i32, i64)>>);

/// A partition replica led by this broker.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub index: i32,
    state: Mutex<State>,
    /// Held by a log cleaning from its plan to its swap, so that one partition
    /// is cleaned by one cleaning at a time while the state lock is free.
    pub(super) cleaning: Mutex<()>,
    pub(super) high_watermark: AtomicI64,
    /// The leader's view of the followers (see `leader.rs`); taken after
    /// `state` when both are needed, never before.
    replication: Mutex<ReplicationState>,
    /// `leadership.is_leader`, `leadership.leader_epoch` and the log's
    /// offsets and size, readable without the state lock: a request's checks
    /// must not wait behind an append's disk write.
    is_leader: AtomicBool,
    leader_epoch: AtomicI32,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    size_in_bytes: AtomicU64,
    /// The topic's `min.insync.replicas`.
    min_insync_replicas: AtomicI32,
    /// Parked requests waiting for this partition to change.
    pub(super) watchers: Watchers,
    /// The settings and leadership last applied: an image that changes
    /// neither skips the state lock (an append held up by a slow disk must
    /// not stall the broker's metadata updates).
    applied: Mutex<(TopicSettings, Leadership)>,
    /// The log's sealed segments with the segments version they were taken
    /// at, republished under the state lock whenever the version moves:
    /// reads of sealed segments take it without the state lock.
    sealed: RwLock<(u64, Arc<SealedSegments>)>,
    /// The leader epoch cache's entries, republished when they change (with
    /// the log start offset, which trims them): OffsetForLeaderEpoch and a
    /// follower's divergence check read it without the state lock.
    epochs: RwLock<PublishedEpochs>,
    /// Set when the topic is deleted; a request still holding the partition
    /// then finds it gone instead of writing into a removed directory.
    deleted: AtomicBool,
    /// Set when log cleaning failed: the partition is not cleaned again.
    pub(super) uncleanable: AtomicBool,
    /// The log dir's failure state: an I/O error of this log fails the dir.
    pub(super) log_dir: Arc<LogDirFailure>,
}

/// Maps a storage failure on a client's request to Kafka's error code.
pub fn storage_error_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::Corruption(_) => ErrorCode::CorruptMessage,
        StorageError::InvalidAppend(_) => ErrorCode::InvalidRecord,
        _ => ErrorCode::KafkaStorageError,
    }
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir`. After an
    /// unclean shutdown only the segments from the one holding
    /// `recovery_point` (from the log dir's checkpoint; `None`: unknown, all
    /// of them) are rescanned.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: TopicSettings,
        leadership: Leadership,
        now_ms: i64,
        recovery_point: Option<i64>,
        high_watermark: Option<i64>,
        node_id: i32,
        log_dir: Arc<LogDirFailure>,
    ) -> Result<Partition, StorageError> {
        let mut log = Log::open_with_recovery_point(dir, settings.log.clone(), now_ms, recovery_point)?;
        if leadership.is_leader {
            // As Kafka's makeLeader: the leader's epoch starts at the log end.
            log.assign_leader_epoch(leadership.leader_epoch)?;
        }
        // As Kafka: the checkpointed high watermark (the log start without
        // one), within the log; a leader alone in its ISR raises it to the log
        // end at once, others as followers fetch.
        let high_watermark = AtomicI64::new(
            high_watermark.unwrap_or(log.log_start_offset()).clamp(log.log_start_offset(), log.log_end_offset()),
        );
        let partition = Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            is_leader: AtomicBool::new(leadership.is_leader),
            leader_epoch: AtomicI32::new(leadership.leader_epoch),
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            log_end_offset: AtomicI64::new(log.log_end_offset()),
            size_in_bytes: AtomicU64::new(log.size_in_bytes()),
            min_insync_replicas: AtomicI32::new(settings.min_insync_replicas),
            watchers: Watchers::default(),
            applied: Mutex::new((settings.clone(), leadership.clone())),
            sealed: RwLock::new((log.segments_version(), Arc::new(log.sealed_segments()))),
            epochs: RwLock::new((log.epoch_entry_count(), log.log_start_offset(), Arc::new(log.epoch_entries()))),
            state: Mutex::new(State { log, settings, leadership: leadership.clone() }),
            cleaning: Mutex::new(()),
            high_watermark,
            replication: Mutex::new(ReplicationState::new(node_id)),
            deleted: AtomicBool::new(false),
            uncleanable: AtomicBool::new(false),
            log_dir,
        };
        partition.leadership_changed(&leadership, now_ms);
        Ok(partition)
    }

    pub(super) fn replication(&self) -> MutexGuard<'_, ReplicationState> {
        self.replication.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the log half-written
        // (appends are single writes), so carry on with the inner state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes the log's offsets and size after a change (under the lock).
    pub(super) fn publish(&self, log: &Log) {
        self.log_start_offset.store(log.log_start_offset(), Ordering::Release);
        self.log_end_offset.store(log.log_end_offset(), Ordering::Release);
        self.size_in_bytes.store(log.size_in_bytes(), Ordering::Release);
        let version = log.segments_version();
        if self.sealed.read().unwrap_or_else(|p| p.into_inner()).0 != version {
            *self.sealed.write().unwrap_or_else(|p| p.into_inner()) = (version, Arc::new(log.sealed_segments()));
        }
        let epochs_now = (log.epoch_entry_count(), log.log_start_offset());
        let stale = {
            let published = self.epochs.read().unwrap_or_else(|p| p.into_inner());
            (published.0, published.1) != epochs_now || published.2.last().map(|e| e.0) != log.latest_epoch()
        };
        if stale {
            *self.epochs.write().unwrap_or_else(|p| p.into_inner()) =
                (epochs_now.0, epochs_now.1, Arc::new(log.epoch_entries()));
        }
    }

    /// Registers a parked request's waker: it is notified at the next append
    /// (or high watermark move) of this partition. A waker notified before
    /// its owner waits keeps the notification.
    pub fn watch(&self, waker: &Arc<tokio::sync::Notify>) {
        self.watchers.watch(waker);
    }

    /// The error code a client gets for a failed log operation; an I/O
    /// failure fails the log dir.
    pub(super) fn storage_error(&self, e: &StorageError) -> ErrorCode {
        self.log_dir.fail_on(&format!("partition {}", self.name()), e);
        storage_error_code(e)
    }

    /// The state, unless the partition was deleted or its log dir failed.
    pub(super) fn live_state(&self) -> Result<MutexGuard<'_, State>, ErrorCode> {
        let state = self.state();
        if self.deleted.load(Ordering::Acquire) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        if self.log_dir.reason().is_some() {
            return Err(ErrorCode::KafkaStorageError);
        }
        Ok(state)
    }

    /// `topic-partition`, for messages.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// Applies new topic configs and leadership from the metadata image.
    pub fn update(&self, settings: TopicSettings, leadership: Leadership, now_ms: i64) {
        {
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            if applied.0 == settings && applied.1 == leadership {
                return;
            }
            *applied = (settings.clone(), leadership.clone());
        }
        let mut state = self.state();
        if leadership.is_leader {
            // As Kafka's makeLeader: the new epoch starts at the log end.
            if let Err(e) = state.log.assign_leader_epoch(leadership.leader_epoch) {
                self.storage_error(&e);
            }
            self.publish(&state.log);
        }
        state.log.set_config(settings.log.clone());
        self.min_insync_replicas.store(settings.min_insync_replicas, Ordering::Release);
        state.settings = settings;
        self.is_leader.store(leadership.is_leader, Ordering::Release);
        self.leader_epoch.store(leadership.leader_epoch, Ordering::Release);
        state.leadership = leadership.clone();
        drop(state);
        self.leadership_changed(&leadership, now_ms);
        // A parked fetch re-checks: it may now be told that this broker no longer leads.
        self.watchers.wake();
    }

    /// Waits, parked on this partition, until the high watermark reaches
    /// `required` (every ISR member has the records below it):
    /// NOT_LEADER_OR_FOLLOWER if this broker stops leading meanwhile,
    /// REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_for_high_watermark(
        &self,
        required: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ErrorCode> {
        let waker = Arc::new(tokio::sync::Notify::new());
        loop {
            self.watch(&waker);
            if !self.is_leader() || self.deleted.load(Ordering::Acquire) {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if self.high_watermark() >= required {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, waker.notified()).await.is_err() {
                return Err(ErrorCode::RequestTimedOut);
            }
        }
    }

    /// The topic's `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas.load(Ordering::Acquire)
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Checks a client's `current_leader_epoch` against ours: -1 skips the check.
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<(), ErrorCode> {
        let ours = self.leader_epoch();
        match client_epoch {
            e if e < 0 || e == ours => Ok(()),
            e if e > ours => Err(ErrorCode::UnknownLeaderEpoch),
            _ => Err(ErrorCode::FencedLeaderEpoch),
        }
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Log start and end offsets.
    pub fn offsets(&self) -> (i64, i64) {
        (self.log_start_offset.load(Ordering::Acquire), self.log_end_offset.load(Ordering::Acquire))
    }

    /// Bytes on disk.
    pub fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes.load(Ordering::Acquire)
    }

    /// Offsets below this are fsynced (for the log dir's recovery-point checkpoint).
    pub fn recovery_point(&self) -> i64 {
        self.state().log.recovery_point()
    }

    /// Validates and appends a producer's records as leader: idempotence
    /// check, offset assignment, leader epoch and (if configured) log append
    /// time stamped into the header, then the append.
    pub fn append(&self, records: &Bytes, required_acks: i16, now_ms: i64) -> Result<AppendOutcome, RecordsRejected> {
        let mut state = self.live_state().map_err(|code| RecordsRejected::new(code, "the partition was deleted"))?;
        let name = self.name();
        if !state.leadership.is_leader {
            return Err(RecordsRejected::new(
                ErrorCode::NotLeaderOrFollower,
                format!("This broker is not the leader of {name}"),
            ));
        }
        let mut valid = validate_records(records, &state.settings, &name, now_ms)?;
        let isr_size = self.isr_size();
        if required_acks == -1 && (isr_size as i32) < state.settings.min_insync_replicas {
            return Err(RecordsRejected::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {isr_size} is insufficient to satisfy the min.isr requirement of {} for partition {name}",
                    state.settings.min_insync_replicas
                ),
            ));
        }
        let header = valid.header;
        if header.is_transactional() {
            return Err(RecordsRejected::new(
                ErrorCode::InvalidTxnState,
                "Transactional producers are not supported by this broker yet",
            ));
        }
        if header.producer_id >= 0 {
            match state.log.check_sequence(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.last_sequence(),
            ) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { first_offset, last_offset, .. } => {
                    return Ok(AppendOutcome {
                        base_offset: first_offset,
                        log_append_time: -1,
                        log_start_offset: state.log.log_start_offset(),
                        last_offset,
                    });
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(RecordsRejected::new(
                        ErrorCode::OutOfOrderSequenceNumber,
                        format!(
                            "Out of order sequence number for producer {} at offset {} in partition {name}: {} (incoming seq. number), {expected} (expected)",
                            header.producer_id,
                            state.log.log_end_offset(),
                            header.base_sequence
                        ),
                    ));
                }
                SequenceCheck::InvalidProducerEpoch { current } => {
                    return Err(RecordsRejected::new(
                        ErrorCode::InvalidProducerEpoch,
                        format!(
                            "Epoch of producer {} is {}, which is smaller than the last seen epoch {current}",
                            header.producer_id, header.producer_epoch
                        ),
                    ));
                }
            }
        }
        let base_offset = state.log.log_end_offset();
        batch::set_base_offset(&mut valid.bytes, base_offset);
        batch::set_partition_leader_epoch(&mut valid.bytes, state.leadership.leader_epoch);
        let log_append_time = if state.settings.log_append_time {
            batch::set_log_append_time(&mut valid.bytes, now_ms);
            now_ms
        } else {
            -1
        };
        let appended = state.log.append(&valid.bytes, now_ms);
        self.publish(&state.log);
        let info = appended.map_err(|e| {
            if !self.log_dir.fail_on(&format!("partition {name}"), &e) {
                warn!(partition = %name, error = %e, "append failed");
            }
            RecordsRejected::new(storage_error_code(&e), e.to_string())
        })?;
        drop(state);
        self.watchers.wake();
        // With the leader alone in the ISR, this commits the append.
        self.maybe_advance_high_watermark();
        Ok(AppendOutcome {
            base_offset,
            log_append_time,
            log_start_offset: info.log_start_offset,
            last_offset: info.last_offset,
        })
    }

    /// Reads for a consumer: whole batches from `offset` below the high
    /// watermark. A read starting in a sealed segment runs without the lock.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadOutcome, ErrorCode> {
        self.read_up_to(offset, max_bytes, self.high_watermark(), min_one_batch)
    }

    /// Whole batches from `offset` up to the log end, committed or not: what
    /// a coordinator replays when it loads the partition it now leads.
    pub fn read_written(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, ErrorCode> {
        self.read_up_to(offset, max_bytes, i64::MAX, true)
    }

    /// Whole batches from `offset` starting below `max_offset` (the high
    /// watermark for consumers, the log end for followers).
    pub(super) fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadOutcome, ErrorCode> {
        let high_watermark = self.high_watermark();
        let outcome = |records| ReadOutcome {
            records,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: self.log_start_offset.load(Ordering::Acquire),
        };
        let (log_start, log_end) = self.offsets();
        if self.deleted.load(Ordering::Acquire) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        if (log_start..=log_end).contains(&offset) && self.log_dir.reason().is_none() {
            let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner()).1.clone();
            match sealed.read(offset, max_bytes, max_offset, min_one_batch) {
                Ok(Some(records)) => return Ok(outcome(records)),
                // In the active segment, nothing there below the high watermark, or the log
                // replaced a segment: read under the lock.
                Ok(None) => {}
                Err(e) => return Err(self.storage_error(&e)),
            }
        }
        let state = self.live_state()?;
        let records =
            state.log.read(offset, max_bytes, max_offset, min_one_batch).map_err(|e| self.storage_error(&e))?;
        Ok(outcome(records))
    }

    /// ListOffsets by timestamp: the first record with timestamp >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, ErrorCode> {
        let found = self.live_state()?.log.find_batch_by_timestamp(ts).map_err(|e| self.storage_error(&e))?;
        Ok(found.and_then(|b| super::validate::find_record_by_timestamp(&b, Some(ts))))
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, ErrorCode> {
        let found = self.live_state()?.log.batch_with_max_timestamp().map_err(|e| self.storage_error(&e))?;
        Ok(found.and_then(|b| super::validate::find_record_by_timestamp(&b, None)))
    }

    /// DeleteRecords: raises the log start offset; `-1` means the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, ErrorCode> {
        let mut state = self.live_state()?;
        let high_watermark = self.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let deleted = state.log.delete_records_before(target);
        self.publish(&state.log);
        deleted.map_err(|e| self.storage_error(&e))
    }

    /// OffsetForLeaderEpoch: (epoch, end offset) for the requested epoch,
    /// from the published epoch cache (no lock an append holds).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let entries = self.epochs.read().unwrap_or_else(|p| p.into_inner()).2.clone();
        weir_storage::end_offset_for_epoch(&entries, epoch, self.offsets().1)
    }

    /// Flushes and closes the log, marking the shutdown clean.
    pub fn close(self) -> Result<(), StorageError> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        state.log.close()
    }

    /// Flushes the log without closing it (for a partition still referenced
    /// at shutdown: it is recovered at the next start, losing nothing).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.state().log.flush()
    }

    /// Deletes the partition's directory. Requests that still hold the
    /// partition get UNKNOWN_TOPIC_OR_PARTITION from now on; the open files
    /// go when the last of them lets go.
    pub fn delete(&self) -> std::io::Result<()> {
        let state = self.state();
        self.deleted.store(true, Ordering::Release);
        self.watchers.wake();
        std::fs::remove_dir_all(state.log.dir())
    }
}
