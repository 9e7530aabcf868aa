//! Removing data: retention (time and size), DeleteRecords and truncation (follower divergence).
//!
//! Segments are only ever deleted whole and oldest first; the log start offset then moves up to the
//! first remaining segment's base (or higher, for DeleteRecords). Truncation cuts at a batch
//! boundary: the batch holding the target offset is removed entirely.

use tracing::info;

use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::segment::Segment;
use std::sync::Arc;

impl Log {
    pub(crate) fn truncate_to_unguarded(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        if offset >= self.log_end_offset() {
            // No record goes, but an epoch entry starting at the log end does, as in Kafka: a
            // broker that became leader (assigning its epoch at the log end) and lost the
            // leadership before appending would otherwise send that epoch as its last fetched
            // epoch forever, and its new leader would answer every fetch with a divergence.
            let leo = self.log_end_offset();
            return self.epochs.truncate_from_end(leo);
        }
        info!(dir = %self.dir.display(), offset, "truncating log");
        self.segments_version += 1;
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        if offset < first_base {
            return self.truncate_fully_and_start_at_unguarded(offset);
        }
        let later: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = self.segments.remove(&base) {
                seg.remove_files()?;
            }
        }
        self.dir_dirty = true;
        let config = self.config.clone();
        let now = self.now_hint_ms;
        self.take_back_active()?;
        self.active_mut()?.truncate_to(offset, &config, now)?;
        let leo = self.log_end_offset();
        self.log_start_offset = self.log_start_offset.min(leo);
        self.epochs.truncate_from_end(leo)?;
        self.rebuild_producer_state()?;
        self.after_truncation()
    }

    /// Makes the last segment (a sealed one a truncation turned active again) the writer's own:
    /// if a lock-free reader still holds it, the log reopens it from its files instead, after
    /// unlinking its indexes so that the rebuild never shortens a file the reader has mapped.
    fn take_back_active(&mut self) -> Result<()> {
        let Some(mut entry) = self.segments.last_entry() else { return Ok(()) };
        if Arc::get_mut(entry.get_mut()).is_some() {
            return Ok(());
        }
        let base = *entry.key();
        entry.get().retire();
        entry.get().unlink_indexes()?;
        let mut reopened = Segment::open(&self.dir, base, &self.config)?;
        reopened.recover(&self.config, false, self.now_hint_ms)?;
        entry.insert(Arc::new(reopened));
        Ok(())
    }

    pub(crate) fn truncate_fully_and_start_at_unguarded(&mut self, offset: i64) -> Result<()> {
        self.segments_version += 1;
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.remove_files()?;
        }
        let seg = Segment::create(&self.dir, offset, &self.config)?;
        self.segments.insert(offset, Arc::new(seg));
        self.dir_dirty = true;
        self.log_start_offset = offset;
        self.epochs.clear()?;
        self.producers.clear_all()?;
        self.after_truncation()
    }

    /// Common tail of truncations: the recovery point must not claim more than what remains, or a
    /// crash could skip recovering the rewritten active segment; a flush of rolled segments taken
    /// before the truncation no longer counts.
    fn after_truncation(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(leo);
        self.roll_flush_pending = self.roll_flush_pending.filter(|&p| p <= leo);
        self.truncations += 1;
        self.persist_log_start()
    }

    pub(crate) fn delete_records_before_unguarded(&mut self, offset: i64) -> Result<i64> {
        let leo = self.log_end_offset();
        if offset < 0 || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: leo,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.raise_log_start(offset)?;
        let start = self.log_start_offset;
        self.delete_old_segments(i64::MAX, |_, next| next.is_some_and(|n| n <= start))?;
        self.persist_log_start()?;
        Ok(self.log_start_offset)
    }

    fn raise_log_start(&mut self, offset: i64) -> Result<()> {
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            // Persisted before the leader-epoch cache is cut, so that a failure in between can
            // only leave cache entries below the log start (the next open cuts them), never a
            // cache that starts above it.
            self.persist_log_start()?;
            self.epochs.truncate_from_start(offset)?;
            self.producers.truncate_head(offset);
        }
        Ok(())
    }

    pub(crate) fn enforce_retention_unguarded(&mut self, now_ms: i64) -> Result<usize> {
        self.enforce_retention_below(now_ms, i64::MAX)
    }

    pub(crate) fn enforce_retention_below_unguarded(&mut self, now_ms: i64, high_watermark: i64) -> Result<usize> {
        self.now_hint_ms = self.now_hint_ms.max(now_ms);
        let mut deleted = 0;
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            deleted += self.delete_old_segments(high_watermark, |seg, _| {
                now_ms.saturating_sub(seg.largest_timestamp()) > retention_ms
            })?;
        }
        let retention_bytes = self.config.retention_bytes;
        let size = self.size_in_bytes();
        if retention_bytes >= 0 && size > retention_bytes as u64 {
            let mut diff = size - retention_bytes as u64;
            deleted += self.delete_old_segments(high_watermark, |seg, _| {
                if seg.size() <= diff {
                    diff -= seg.size();
                    true
                } else {
                    false
                }
            })?;
        }
        let start = self.log_start_offset;
        deleted += self.delete_old_segments(high_watermark, |_, next| next.is_some_and(|n| n <= start))?;
        Ok(deleted)
    }

    /// Deletes the longest prefix of segments matching `pred(segment, next segment's base)`, never
    /// past `high_watermark` nor an empty active segment. Rolls first if every segment goes.
    fn delete_old_segments<F>(&mut self, high_watermark: i64, mut pred: F) -> Result<usize>
    where
        F: FnMut(&Segment, Option<i64>) -> bool,
    {
        let leo = self.log_end_offset();
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut doomed = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let Some(seg) = self.segments.get(&base) else {
                break;
            };
            let next = bases.get(i + 1).copied();
            if next.is_none() && seg.size() == 0 {
                break;
            }
            if next.unwrap_or(leo) > high_watermark || !pred(seg, next) {
                break;
            }
            doomed.push(base);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        if doomed.len() == bases.len() {
            self.roll()?;
        }
        self.segments_version += 1;
        for base in &doomed {
            if let Some(seg) = self.segments.remove(base) {
                info!(dir = %self.dir.display(), segment = base, "deleting segment");
                seg.remove_files()?;
            }
        }
        self.dir_dirty = true;
        let first_base = self.segments.keys().next().copied().unwrap_or(leo);
        self.raise_log_start(first_base)?;
        self.persist_log_start()?;
        Ok(doomed.len())
    }
}
