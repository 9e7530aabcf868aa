//! One partition replica on this broker: its log, its high watermark and the
//! leader-side append and read paths.
//!
//! Invariants: the log is touched only under `state`'s lock, so a sequence
//! check and the append it allows are atomic; the high watermark only moves
//! forward except on truncation, and on a single-replica ISR it is the log
//! end offset after every append.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tracing::warn;
use uuid::Uuid;
use weir_protocol::batch;
use weir_protocol::ErrorCode;
use weir_storage::{CleanOptions, CleanStats, Log, SequenceCheck, StorageError};

use super::cleaner_codec::KafkaCodecs;
use super::log_dir_failure::LogDirFailure;
use super::validate::{validate_records, RecordsRejected};
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

/// This broker's leadership of a partition, from the metadata image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// Whether this broker leads the partition (only the leader takes
    /// produce requests and serves consumers).
    pub is_leader: bool,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// How many replicas are in sync.
    pub isr_size: usize,
}

struct State {
    log: Log,
    settings: TopicSettings,
    leadership: Leadership,
}

/// A partition replica led by this broker.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub index: i32,
    state: Mutex<State>,
    high_watermark: AtomicI64,
    /// `leadership.is_leader`, readable without the state lock: a fetch's
    /// lookup must not wait behind an append's disk write.
    is_leader: AtomicBool,
    /// Set when the topic is deleted; a request still holding the partition
    /// then finds it gone instead of writing into a removed directory.
    deleted: AtomicBool,
    /// Set when log cleaning failed: the partition is not cleaned again.
    uncleanable: AtomicBool,
    /// The log dir's failure state: an I/O error of this log fails the dir.
    log_dir: Arc<LogDirFailure>,
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
        log_dir: Arc<LogDirFailure>,
    ) -> Result<Partition, StorageError> {
        let log = Log::open_with_recovery_point(dir, settings.log.clone(), now_ms, recovery_point)?;
        let high_watermark = AtomicI64::new(log.log_end_offset());
        Ok(Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            is_leader: AtomicBool::new(leadership.is_leader),
            state: Mutex::new(State { log, settings, leadership }),
            high_watermark,
            deleted: AtomicBool::new(false),
            uncleanable: AtomicBool::new(false),
            log_dir,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the log half-written
        // (appends are single writes), so carry on with the inner state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The error code a client gets for a failed log operation; an I/O
    /// failure fails the log dir.
    fn storage_error(&self, e: &StorageError) -> ErrorCode {
        self.log_dir.fail_on(&format!("partition {}", self.name()), e);
        storage_error_code(e)
    }

    /// The state, unless the partition was deleted or its log dir failed.
    fn live_state(&self) -> Result<MutexGuard<'_, State>, ErrorCode> {
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
    pub fn update(&self, settings: TopicSettings, leadership: Leadership) {
        let mut state = self.state();
        state.log.set_config(settings.log.clone());
        state.settings = settings;
        self.is_leader.store(leadership.is_leader, Ordering::Release);
        state.leadership = leadership;
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.state().leadership.leader_epoch
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
        let state = self.state();
        (state.log.log_start_offset(), state.log.log_end_offset())
    }

    /// Bytes on disk.
    pub fn size_in_bytes(&self) -> u64 {
        self.state().log.size_in_bytes()
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
        if required_acks == -1 && (state.leadership.isr_size as i32) < state.settings.min_insync_replicas {
            return Err(RecordsRejected::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {} for partition {name}",
                    state.leadership.isr_size, state.settings.min_insync_replicas
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
                SequenceCheck::Duplicate { first_offset, .. } => {
                    return Ok(AppendOutcome {
                        base_offset: first_offset,
                        log_append_time: -1,
                        log_start_offset: state.log.log_start_offset(),
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
        let info = state.log.append(&valid.bytes, now_ms).map_err(|e| {
            if !self.log_dir.fail_on(&format!("partition {name}"), &e) {
                warn!(partition = %name, error = %e, "append failed");
            }
            RecordsRejected::new(storage_error_code(&e), e.to_string())
        })?;
        // A single-replica ISR: the leader alone commits the append.
        if state.leadership.isr_size <= 1 {
            self.high_watermark.store(info.last_offset + 1, Ordering::Release);
        }
        Ok(AppendOutcome { base_offset, log_append_time, log_start_offset: info.log_start_offset })
    }

    /// Reads for a consumer: whole batches from `offset` below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadOutcome, ErrorCode> {
        let state = self.live_state()?;
        let high_watermark = self.high_watermark();
        let records =
            state.log.read(offset, max_bytes, high_watermark, min_one_batch).map_err(|e| self.storage_error(&e))?;
        Ok(ReadOutcome {
            records,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset: state.log.log_start_offset(),
        })
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
        state.log.delete_records_before(target).map_err(|e| self.storage_error(&e))
    }

    /// OffsetForLeaderEpoch: (epoch, end offset) for the requested epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.state().log.end_offset_for_epoch(epoch)
    }

    /// Background upkeep: retention (`cleanup.policy` with `delete`), log
    /// compaction (with `compact`; both for `compact,delete`), the
    /// time-based flush, then the fsync of segments sealed by a roll (as
    /// Kafka flushes them after a roll), made without holding the log so
    /// appends go on meanwhile; it advances the recovery point.
    pub fn housekeeping(&self, now_ms: i64, retention_due: bool, cleaning_due: bool) {
        self.housekeeping_locked(now_ms, retention_due, cleaning_due);
        let pending = match self.live_state() {
            Ok(mut state) => state.log.take_pending_flush(),
            Err(_) => return,
        };
        match pending {
            Ok(Some(pending)) => match pending.sync() {
                Ok(()) => {
                    if let Ok(mut state) = self.live_state() {
                        state.log.complete_flush(pending);
                    }
                }
                Err(e) => {
                    // An fsync that failed may have dropped the pages it was writing.
                    self.state().log.mark_failed(&e);
                    self.housekeeping_failed("flush of rolled segments", &e);
                }
            },
            Ok(None) => {}
            Err(e) => self.housekeeping_failed("flush of rolled segments", &e),
        }
    }

    fn housekeeping_locked(&self, now_ms: i64, retention_due: bool, cleaning_due: bool) {
        let Ok(mut state) = self.live_state() else { return };
        if retention_due && state.settings.delete {
            if let Err(e) = state.log.enforce_retention_below(now_ms, self.high_watermark()) {
                self.housekeeping_failed("retention", &e);
            }
        }
        if cleaning_due && state.settings.compact && !self.uncleanable.load(Ordering::Acquire) {
            if let Err(e) = self.clean_locked(&mut state, now_ms) {
                // As Kafka's LogCleanerManager: an error marks the partition
                // uncleanable until the broker restarts, instead of retrying
                // (and logging) forever; an I/O error fails the log dir.
                self.uncleanable.store(true, Ordering::Release);
                if !self.log_dir.fail_on(&format!("cleaning of partition {}", self.name()), &e) {
                    warn!(partition = %self.name(), error = %e, "log cleaning failed; not cleaning this partition again until restart");
                }
            }
        }
        if let Err(e) = state.log.flush_if_due(now_ms) {
            self.housekeeping_failed("flush", &e);
        }
    }

    /// A background operation failed: an I/O failure fails the log dir,
    /// anything else is logged.
    fn housekeeping_failed(&self, what: &str, e: &StorageError) {
        if !self.log_dir.fail_on(&format!("{what} of partition {}", self.name()), e) {
            warn!(partition = %self.name(), error = %e, "{what} failed");
        }
    }

    /// Compacts the log now if its dirty ratio calls for it (whatever the
    /// cleanup policy), never at or above the high watermark.
    pub fn clean(&self, now_ms: i64) -> Result<Option<CleanStats>, StorageError> {
        let mut state = self.state();
        self.clean_locked(&mut state, now_ms)
    }

    fn clean_locked(&self, state: &mut State, now_ms: i64) -> Result<Option<CleanStats>, StorageError> {
        let opts = CleanOptions {
            delete_retention_ms: state.settings.delete_retention_ms,
            min_cleanable_dirty_ratio: state.settings.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: state.settings.min_compaction_lag_ms,
            // Only replicated (and, with transactions, decided) records are cleaned.
            upper_bound: self.high_watermark(),
            ..CleanOptions::new(now_ms)
        };
        state.log.clean(&KafkaCodecs, &opts)
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
        std::fs::remove_dir_all(state.log.dir())
    }
}
