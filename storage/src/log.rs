//! [`Log`]: one partition — an ordered set of segments plus its leader-epoch cache and producer state.
//!
//! Invariants:
//! * segments are keyed by base offset; each segment's offsets lie in `[base, next segment's base)`;
//! * the last segment is the only one appended to (the *active* segment);
//! * `log_start_offset` is in `[first segment base, log_end_offset]`;
//! * every offset below `recovery_point` has been fsynced (log, indexes and directory entries). The
//!   caller persists it (Kafka's `recovery-point-offset-checkpoint`, see [`crate::checkpoint`]) and
//!   hands it back to [`Log::open_with_recovery_point`]; recovery after a crash then rescans only the
//!   segments from the one holding it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{BatchHeader, BatchIter, MAGIC_V2};
use crate::config::LogConfig;
use crate::epoch::LeaderEpochCache;
use crate::error::{IoContext, Result, StorageError};
use crate::file_system::{create_truncate, fs};
use crate::fsutil::{fsync_dir, remove_if_exists, write_atomic};
use crate::producer_state::{ProducerStateManager, SequenceCheck};
use crate::segment::Segment;

/// Marker written by [`Log::close`] after everything is flushed; its absence on open means recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Text file holding the log start offset when it is above the first segment's base offset.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Per-partition recovery-point file written by earlier versions; deleted on open (the recovery
/// point now lives in the log dir's `recovery-point-offset-checkpoint`).
pub(crate) const LEGACY_RECOVERY_POINT_FILE: &str = "recovery-point";

/// What the recovery scan of an unclean open did (see [`Log::recovery_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// The recovery point handed to the open (`None`: unknown, everything was rescanned).
    pub recovery_point: Option<i64>,
    /// Segments in the log after the open.
    pub segments_total: usize,
    /// Segments rescanned (from the one holding the recovery point on, plus any whose indexes were
    /// found broken).
    pub segments_scanned: usize,
    /// Bytes of those segments read and CRC-validated.
    pub bytes_scanned: u64,
    /// Batches validated.
    pub batches_validated: u64,
    /// Bytes cut off at the first invalid byte (0 for an intact log).
    pub bytes_truncated: u64,
}

/// Sealed segments waiting to be fsynced after a roll, taken by [`Log::take_pending_flush`]: the
/// caller fsyncs them with [`PendingFlush::sync`] without holding the log, then hands them back to
/// [`Log::complete_flush`] to advance the recovery point (Kafka flushes rolled segments
/// asynchronously in the same way).
#[derive(Debug)]
pub struct PendingFlush {
    files: Vec<(File, PathBuf)>,
    bases: Vec<i64>,
    dir: PathBuf,
    up_to: i64,
    truncations: u64,
}

impl PendingFlush {
    /// The recovery point once this flush completes.
    pub fn up_to(&self) -> i64 {
        self.up_to
    }

    /// fsyncs the sealed segments' log and index files and the partition directory.
    pub fn sync(&self) -> Result<()> {
        for (file, path) in &self.files {
            fs().sync_data(file, path).ctx(|| format!("fsync {}", path.display()))?;
        }
        fsync_dir(&self.dir)
    }
}

/// Result of a successful [`Log::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset of the first appended batch.
    pub first_offset: i64,
    /// Last offset of the last appended batch.
    pub last_offset: i64,
    /// Largest max timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// One partition log stored in a directory (see the crate docs for the layout).
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Segments by base offset. Sealed ones are shared with lock-free readers and cleanings (see
    /// [`crate::read`]); the active one never is, so the writer gets it mutably.
    pub(crate) segments: BTreeMap<i64, Arc<Segment>>,
    /// Bumped whenever `segments` changes (see [`Log::segments_version`]).
    pub(crate) segments_version: u64,
    pub(crate) log_start_offset: i64,
    /// Value last written to the log-start-offset file (`None`: no file).
    pub(crate) persisted_log_start: Option<i64>,
    /// Offsets below this are fsynced.
    pub(crate) recovery_point: i64,
    /// Base offset of the newest segment rolled since the last flush: everything below it awaits
    /// an fsync ([`Log::take_pending_flush`]).
    pub(crate) roll_flush_pending: Option<i64>,
    /// Truncations so far; a [`PendingFlush`] taken before one is stale.
    pub(crate) truncations: u64,
    /// What the last open's recovery scan did (`None` after a clean open).
    pub(crate) recovery_stats: Option<RecoveryStats>,
    pub(crate) last_flush_ms: i64,
    /// Latest wall-clock time seen from the caller (for operations that take no `now_ms`).
    pub(crate) now_hint_ms: i64,
    pub(crate) epochs: LeaderEpochCache,
    pub(crate) producers: ProducerStateManager,
    pub(crate) flush_count: u64,
    /// Files were created or removed since the directory was last fsynced.
    pub(crate) dir_dirty: bool,
    /// Set by the first I/O error (see [`crate::failure`]).
    pub(crate) failure: std::sync::OnceLock<String>,
}

impl Log {
    /// [`Log::open_with_recovery_point`] without a known recovery point: after an unclean shutdown
    /// every segment is rescanned.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log> {
        Self::open_with_recovery_point(dir, config, now_ms, None)
    }

    /// Opens or creates the partition directory. Without the clean-shutdown marker, recovers:
    /// segments from the one holding `recovery_point` on (at least the last one; all of them when it
    /// is `None`) are scanned and every
    /// batch validated (size bounds, magic 2, CRC32C, increasing offsets); the log is truncated at the
    /// first invalid byte (logged once with `tracing::warn`) and later segments are deleted; the
    /// scanned segments' indexes are rebuilt. Indexes of other segments are sanity-checked and rebuilt
    /// if broken. Producer state is rebuilt from the newest snapshot plus the batches after it.
    /// The marker is removed after opening, so a later crash means recovery next time.
    /// Files left by a cleaning interrupted by a crash are deleted first. A `leader-epoch-checkpoint`
    /// that cannot be parsed is rebuilt from the batches' leader epochs (logged once with `warn`).
    /// A recovery logs one `info` line with what it scanned ([`Log::recovery_stats`]).
    pub fn open_with_recovery_point(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        recovery_point: Option<i64>,
    ) -> Result<Log> {
        crate::compaction::remove_leftovers(dir)?;
        crate::recovery::open(dir, config, now_ms, recovery_point)
    }

    /// What the recovery scan of the open did; `None` if the log was shut down cleanly.
    pub fn recovery_stats(&self) -> Option<RecoveryStats> {
        self.recovery_stats
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (takes effect for subsequent appends, rolls and retention).
    pub fn set_config(&mut self, config: LogConfig) {
        // Only the active segment is indexed further; a sealed segment that a truncation makes
        // active again is reopened with the log's config.
        if let Ok(active) = self.active_mut() {
            active.set_config(&config);
        }
        self.config = config;
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().map_or(self.log_start_offset, Segment::next_offset)
    }

    /// Size in bytes of all segments.
    pub fn size_in_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Offsets below this are known to be fsynced: the value to persist and hand back to
    /// [`Log::open_with_recovery_point`].
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// How many times the log was fsynced since it was opened (by [`Log::flush`], `flush.messages`
    /// or `flush.ms`).
    pub fn flush_count(&self) -> u64 {
        self.flush_count
    }

    pub(crate) fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back().map(|s| &**s)
    }

    /// The active segment, to write. Lock-free readers never hold it (they take sealed segments
    /// only, and a truncation reopens a held segment before it becomes active again).
    pub(crate) fn active_mut(&mut self) -> Result<&mut Segment> {
        let active = self
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| StorageError::Corruption("partition has no segment".into()))?;
        Arc::get_mut(active).ok_or_else(|| StorageError::Corruption("the active segment is shared".into()))
    }

    pub(crate) fn append_unguarded(&mut self, records: &[u8], now_ms: i64, gaps_allowed: bool) -> Result<AppendInfo> {
        self.now_hint_ms = self.now_hint_ms.max(now_ms);
        if records.is_empty() {
            return Err(StorageError::InvalidAppend("no record batches".into()));
        }
        let leo = self.log_end_offset();
        let mut headers: Vec<BatchHeader> = Vec::new();
        let mut expected = leo;
        for item in BatchIter::new(records) {
            let (h, _) = item?;
            if h.magic != MAGIC_V2 {
                return Err(StorageError::InvalidAppend(format!(
                    "batch at offset {} has magic {}",
                    h.base_offset, h.magic
                )));
            }
            if h.last_offset_delta < 0 {
                return Err(StorageError::InvalidAppend(format!(
                    "batch at offset {} has negative lastOffsetDelta",
                    h.base_offset
                )));
            }
            if h.base_offset != expected && !(gaps_allowed && h.base_offset > expected) {
                return Err(StorageError::InvalidAppend(format!(
                    "batch base offset {} but expected {expected}",
                    h.base_offset
                )));
            }
            expected = h.last_offset() + 1;
            headers.push(h);
        }
        let last_offset = expected - 1;
        let max_timestamp = headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1);

        self.maybe_roll(records.len() as u64, last_offset, now_ms)?;
        let config = self.config.clone();
        self.active_mut()?.append(records, &headers, now_ms, &config)?;
        for h in &headers {
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 && self.epochs.latest_epoch().is_none_or(|l| l < epoch) {
                self.epochs.assign(epoch, h.base_offset)?;
            }
            self.producers.update(h);
        }
        if self.log_end_offset() - self.recovery_point >= self.config.flush_messages {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        let first_offset = headers.first().map_or(leo, |h| h.base_offset);
        Ok(AppendInfo { first_offset, last_offset, max_timestamp, log_start_offset: self.log_start_offset })
    }

    fn maybe_roll(&mut self, append_size: u64, max_offset: i64, now_ms: i64) -> Result<()> {
        let Some(seg) = self.active() else {
            return Ok(());
        };
        if seg.size() == 0 {
            return Ok(());
        }
        let roll = seg.size().saturating_add(append_size) > self.config.segment_bytes
            || seg.time_waited_for_roll(now_ms) > self.config.segment_ms
            || seg.index_full()
            || seg.size().saturating_add(append_size) > u32::MAX as u64
            || max_offset - seg.base_offset() > i32::MAX as i64;
        if roll {
            self.roll()?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset and snapshots producer state there. The
    /// sealed segments then await an fsync ([`Log::take_pending_flush`]).
    pub(crate) fn roll(&mut self) -> Result<()> {
        let new_base = self.log_end_offset();
        self.active_mut()?.on_become_inactive()?;
        let seg = Segment::create(&self.dir, new_base, &self.config)?;
        self.segments.insert(new_base, Arc::new(seg));
        self.segments_version += 1;
        self.dir_dirty = true;
        if new_base > self.recovery_point {
            self.roll_flush_pending = Some(new_base);
        }
        self.producers.take_snapshot(new_base)
    }

    pub(crate) fn take_pending_flush_unguarded(&mut self) -> Result<Option<PendingFlush>> {
        let Some(up_to) = self.roll_flush_pending.take() else { return Ok(None) };
        if up_to <= self.recovery_point {
            return Ok(None);
        }
        let from = self.segments.range(..=self.recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b);
        let mut files = Vec::new();
        let mut bases = Vec::new();
        for (&base, seg) in self.segments.range(from..up_to) {
            files.extend(seg.file_handles()?);
            bases.push(base);
        }
        Ok(Some(PendingFlush { files, bases, dir: self.dir.clone(), up_to, truncations: self.truncations }))
    }

    /// Advances the recovery point to what a successfully synced [`PendingFlush`] covers, unless
    /// the log was truncated meanwhile.
    pub fn complete_flush(&mut self, flushed: PendingFlush) {
        if flushed.truncations == self.truncations && flushed.up_to <= self.log_end_offset() {
            self.recovery_point = self.recovery_point.max(flushed.up_to);
            // Sealed segments are not written again (compaction fsyncs what it rewrites).
            for base in &flushed.bases {
                if let Some(seg) = self.segments.get(base) {
                    seg.mark_flushed();
                }
            }
        }
    }

    pub(crate) fn flush_rolled_segments_unguarded(&mut self) -> Result<()> {
        if let Some(pending) = self.take_pending_flush()? {
            pending.sync()?;
            self.complete_flush(pending);
        }
        Ok(())
    }

    pub(crate) fn find_batch_by_timestamp_unguarded(&self, ts: i64) -> Result<Option<Bytes>> {
        for seg in self.segments.values() {
            if seg.size() > 0 && seg.max_timestamp() >= ts {
                if let Some(b) = seg.find_by_timestamp(ts, self.log_start_offset)? {
                    return Ok(Some(Bytes::from(b)));
                }
            }
        }
        Ok(None)
    }

    pub(crate) fn batch_with_max_timestamp_unguarded(&self) -> Result<Option<Bytes>> {
        let mut best: Option<&Arc<Segment>> = None;
        for seg in self.segments.values().filter(|s| s.size() > 0) {
            if best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp()) {
                best = Some(seg);
            }
        }
        match best {
            Some(seg) => Ok(seg.find_by_timestamp(seg.max_timestamp(), i64::MIN)?.map(Bytes::from)),
            None => Ok(None),
        }
    }

    pub(crate) fn flush_if_due_unguarded(&mut self, now_ms: i64) -> Result<()> {
        self.now_hint_ms = self.now_hint_ms.max(now_ms);
        if self.log_end_offset() > self.recovery_point
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
        {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        Ok(())
    }

    pub(crate) fn flush_unguarded(&mut self) -> Result<()> {
        for seg in self.segments.values() {
            seg.flush()?;
        }
        if self.dir_dirty {
            // Segment, snapshot and checkpoint creations/deletions must be durable together with data.
            fsync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.recovery_point = self.log_end_offset();
        self.roll_flush_pending = None;
        self.flush_count += 1;
        Ok(())
    }

    pub(crate) fn close_unguarded(mut self) -> Result<()> {
        self.active_mut()?.on_become_inactive()?;
        self.producers.take_snapshot(self.log_end_offset())?;
        self.flush()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs().open(&marker, &create_truncate()).ctx(|| format!("create {}", marker.display()))?;
        // The marker promises that everything above is durable; its directory entry must be too.
        fsync_dir(&self.dir)
    }

    /// Deletes the partition directory and everything in it.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs().remove_dir_all(&dir).ctx(|| format!("remove {}", dir.display()))
    }

    /// The latest leader epoch recorded, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Leader-epoch entries `(epoch, start offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// How many leader-epoch entries there are.
    pub fn epoch_entry_count(&self) -> usize {
        self.epochs.entries().len()
    }

    /// For OffsetForLeaderEpoch, as Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch <=
    /// `epoch` and the start offset of the next epoch (or the log end offset if it is the latest);
    /// `(-1, -1)` when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Idempotent-producer sequence check for a batch with `producer_id >= 0`, before it is appended
    /// (Kafka's ProducerStateManager rules).
    pub fn check_sequence(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SequenceCheck {
        self.producers.check_sequence(producer_id, producer_epoch, first_seq, last_seq)
    }

    /// Number of producer ids with state.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Writes the log-start-offset file if the log start is above the first segment, else removes it.
    pub(crate) fn persist_log_start(&mut self) -> Result<()> {
        let first_base = self.segments.keys().next().copied().unwrap_or(self.log_start_offset);
        if self.log_start_offset > first_base {
            if self.persisted_log_start != Some(self.log_start_offset) {
                write_atomic(&self.dir, LOG_START_OFFSET_FILE, format!("{}\n", self.log_start_offset).as_bytes())?;
                self.persisted_log_start = Some(self.log_start_offset);
            }
        } else if self.persisted_log_start.is_some() {
            remove_if_exists(&self.dir.join(LOG_START_OFFSET_FILE))?;
            self.persisted_log_start = None;
            self.dir_dirty = true;
        }
        Ok(())
    }

    /// Rebuilds producer state: newest snapshot <= log end, then replays batch headers after it.
    pub(crate) fn rebuild_producer_state(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        self.producers.delete_snapshots_after(leo)?;
        let from = self.producers.load_latest_snapshot(leo)?.unwrap_or(i64::MIN);
        for seg in self.segments.values() {
            if seg.next_offset() <= from {
                continue;
            }
            let mut pos = if from > seg.base_offset() {
                match seg.translate_offset(from)? {
                    Some((p, _)) => p,
                    None => continue,
                }
            } else {
                0
            };
            while let Some(h) = seg.header_at(pos)? {
                self.producers.update(&h);
                pos += h.total_size() as u64;
            }
        }
        self.producers.truncate_head(self.log_start_offset);
        Ok(())
    }
}
