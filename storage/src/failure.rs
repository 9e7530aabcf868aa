//! A log that hit an I/O error takes no more operations.
//!
//! As Kafka takes a log dir offline at its first `IOException`, a [`Log`] whose file operation
//! failed (a write, fsync, resize, rename, removal, open or read) is *failed*: every later public
//! operation returns [`StorageError::LogFailed`] without touching the disk, so a half-done append
//! (a torn batch, an index entry that was not written, a leader-epoch checkpoint that was not
//! replaced) is never followed by more data, and [`Log::close`] never writes the clean-shutdown
//! marker over it. The next [`Log::open`] recovers from whatever is on disk. The public operations
//! below are the guarded entry points; the crate's `*_unguarded` versions hold the work.

use bytes::Bytes;

use crate::compaction::{CleanOptions, CleanPlan, CleanRun, CleanStats, RecordCodec};
use crate::error::{Result, StorageError};
use crate::log::{AppendInfo, Log, PendingFlush};

impl Log {
    /// Why the log failed, if it did (see the module docs).
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Marks the log failed because an operation made outside it failed (an fsync of a
    /// [`PendingFlush`]).
    pub fn mark_failed(&mut self, error: &StorageError) {
        Self::record_failure(&self.failure, error);
    }

    fn check_usable(&self) -> Result<()> {
        match self.failure.get() {
            Some(reason) => Err(StorageError::LogFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Keeps the first failure; the caller, who got the error, reports it.
    fn record_failure(failure: &std::sync::OnceLock<String>, error: &StorageError) {
        let _ = failure.set(error.to_string());
    }

    fn note_failure<T>(failure: &std::sync::OnceLock<String>, result: Result<T>) -> Result<T> {
        if let Err(e @ StorageError::Io { .. }) = &result {
            Self::record_failure(failure, e);
        }
        result
    }

    /// Appends one or more v2 batches whose offsets are already assigned. The first base offset must
    /// equal [`Log::log_end_offset`] and batches must be contiguous, otherwise `InvalidAppend`. Rolls
    /// first when the active segment would exceed `segment.bytes`, is older than `segment.ms` (since
    /// its first append) or has a full index. Maintains the indexes, the leader-epoch cache and the
    /// producer state, and fsyncs per `flush.messages`. The CRC is not rechecked.
    pub fn append(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.check_usable()?;
        let result = self.append_unguarded(records, now_ms, false);
        Self::note_failure(&self.failure, result)
    }

    /// Appends a leader's batches on a follower, as they are: like [`Log::append`], except that a
    /// batch may start above the offset after the previous one (a compacted leader's log has gaps).
    pub fn append_replica(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.check_usable()?;
        let result = self.append_unguarded(records, now_ms, true);
        Self::note_failure(&self.failure, result)
    }

    /// Records that leader epoch `epoch` starts at the log end offset, as a new leader does before
    /// it appends anything (Kafka's `makeLeader`), so OffsetForLeaderEpoch and a follower's
    /// divergence check know where the previous epoch ended. No-op unless `epoch` is newer than the
    /// latest one.
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<()> {
        self.check_usable()?;
        let leo = self.log_end_offset();
        let result = if self.epochs.latest_epoch().is_none_or(|latest| latest < epoch) {
            self.epochs.assign(epoch, leo)
        } else {
            Ok(())
        };
        Self::note_failure(&self.failure, result)
    }

    /// Empties the log and restarts it at `offset` (a follower whose log ends below the leader's
    /// log start): every segment, the epoch cache and the producer state go.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let result = self.truncate_fully_and_start_at_unguarded(offset);
        Self::note_failure(&self.failure, result)
    }

    /// After a roll, the segments below the new active segment that are not yet known flushed, as
    /// duplicated file handles to fsync without holding the log; `None` if nothing awaits.
    pub fn take_pending_flush(&mut self) -> Result<Option<PendingFlush>> {
        self.check_usable()?;
        let result = self.take_pending_flush_unguarded();
        Self::note_failure(&self.failure, result)
    }

    /// Takes, syncs and completes the pending flush of rolled segments in one go.
    pub fn flush_rolled_segments(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.flush_rolled_segments_unguarded();
        Self::note_failure(&self.failure, result)
    }

    /// Whole batches starting with the one containing `offset`, concatenated (possibly across
    /// segments), taken only from batches whose base offset is < `max_offset`, stopping before
    /// exceeding `max_bytes` unless `min_one_batch` and nothing was taken yet (then one whole batch
    /// is returned). `offset == log_end_offset` gives an empty result; an offset below the log start
    /// or above the log end is `OffsetOutOfRange`.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one_batch: bool) -> Result<Bytes> {
        self.check_usable()?;
        let result = self.read_unguarded(offset, max_bytes, max_offset, min_one_batch);
        Self::note_failure(&self.failure, result)
    }

    /// The first batch (at or above the log start offset) whose max timestamp is >= `ts`, found via
    /// the time index; `None` if there is none.
    pub fn find_batch_by_timestamp(&self, ts: i64) -> Result<Option<Bytes>> {
        self.check_usable()?;
        let result = self.find_batch_by_timestamp_unguarded(ts);
        Self::note_failure(&self.failure, result)
    }

    /// The batch holding the largest max timestamp in the log (the first one on ties).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>> {
        self.check_usable()?;
        let result = self.batch_with_max_timestamp_unguarded();
        Self::note_failure(&self.failure, result)
    }

    /// fsyncs per `flush.ms` if the last flush is at least that old and something is unflushed.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<()> {
        self.check_usable()?;
        let result = self.flush_if_due_unguarded(now_ms);
        Self::note_failure(&self.failure, result)
    }

    /// fsyncs every segment's log and indexes and the directory, then advances the recovery point.
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.flush_unguarded();
        Self::note_failure(&self.failure, result)
    }

    /// Flushes, writes a producer-state snapshot and then the clean-shutdown marker.
    pub fn close(self) -> Result<()> {
        self.check_usable()?;
        let failure = self.failure.clone();
        let result = self.close_unguarded();
        Self::note_failure(&failure, result)
    }

    /// Removes everything at or above `offset` (follower divergence): later segments are deleted, the
    /// segment holding `offset` is cut before the batch containing it and re-indexed; the epoch cache
    /// is truncated and producer state rebuilt. If `offset` is below the first segment, the log is
    /// emptied and restarted at `offset`. When `offset >= log_end_offset` no record goes, only epoch
    /// entries starting at the log end (an epoch with no record yet). The recovery point drops to
    /// the new log end: the caller must persist it (Kafka checkpoints the log dir's
    /// recovery points right after a truncation) before appending past a stale persisted value.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let result = self.truncate_to_unguarded(offset);
        Self::note_failure(&self.failure, result)
    }

    /// DeleteRecords: raises the log start offset to `offset` (which must be <= the log end offset,
    /// else `OffsetOutOfRange`), persists it and deletes segments entirely below it. Returns the new
    /// log start offset (unchanged if `offset` is not above it).
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.check_usable()?;
        let result = self.delete_records_before_unguarded(offset);
        Self::note_failure(&self.failure, result)
    }

    /// Deletes whole segments past `retention.ms` (by the segment's largest timestamp) or beyond
    /// `retention.bytes`, oldest first, and advances the log start offset. As in Kafka, an expired
    /// non-empty active segment is first rolled so it can be deleted; an empty active segment is
    /// never deleted. Returns how many segments were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.check_usable()?;
        let result = self.enforce_retention_unguarded(now_ms);
        Self::note_failure(&self.failure, result)
    }

    /// Like [`Log::enforce_retention`], but never deletes a segment holding offsets at or above
    /// `high_watermark` (Kafka only deletes segments that are fully replicated).
    pub fn enforce_retention_below(&mut self, now_ms: i64, high_watermark: i64) -> Result<usize> {
        self.check_usable()?;
        let result = self.enforce_retention_below_unguarded(now_ms, high_watermark);
        Self::note_failure(&self.failure, result)
    }

    /// The offset below which the log was compacted, from the checkpoint file (if any).
    pub fn cleaner_checkpoint(&self) -> Result<Option<i64>> {
        self.check_usable()?;
        let result = self.cleaner_checkpoint_unguarded();
        Self::note_failure(&self.failure, result)
    }

    /// The share of the cleanable bytes that are dirty (0 when nothing is cleanable).
    pub fn cleanable_dirty_ratio(&self, opts: &CleanOptions) -> Result<f64> {
        self.check_usable()?;
        let result = self.cleanable_dirty_ratio_unguarded(opts);
        Self::note_failure(&self.failure, result)
    }

    /// Compacts the log if its cleanable dirty ratio is above `min_cleanable_dirty_ratio` (see the
    /// compaction module docs): [`Log::plan_clean`], [`CleanPlan::run`] and [`Log::finish_clean`]
    /// in one call, holding the log throughout. Returns `None` when there was nothing to do. On
    /// error, segments not yet swapped are untouched and the checkpoint does not move.
    pub fn clean(&mut self, codec: &dyn RecordCodec, opts: &CleanOptions) -> Result<Option<CleanStats>> {
        let Some(plan) = self.plan_clean(opts)? else { return Ok(None) };
        self.finish_clean(plan.run(codec))
    }

    /// Chooses what a cleaning covers if the cleanable dirty ratio calls for one, holding the
    /// segments so that the cleaning can run without the log ([`CleanPlan::run`]).
    pub fn plan_clean(&self, opts: &CleanOptions) -> Result<Option<CleanPlan>> {
        self.check_usable()?;
        let result = self.plan_clean_unguarded(opts);
        Self::note_failure(&self.failure, result)
    }

    /// Swaps in the cleaned copies of a run and moves the cleaner checkpoint. A truncation since
    /// the plan drops the whole run (`None`, whatever happened to it); otherwise a run that failed
    /// returns its error, which fails the log if it was an I/O error. A copy whose segment the log
    /// no longer has is dropped.
    pub fn finish_clean(&mut self, run: CleanRun) -> Result<Option<CleanStats>> {
        if let Err(e) = self.check_usable() {
            run.discard_copies();
            return Err(e);
        }
        let result = self.finish_clean_unguarded(run);
        Self::note_failure(&self.failure, result)
    }
}
