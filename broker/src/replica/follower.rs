//! The follower's side of replication: the leader's batches appended as
//! they are, the high watermark and log start offset the leader reports,
//! and truncation when the logs diverged.
//!
//! A follower validates each batch's framing and CRC (as Kafka's
//! `appendAsFollower` does) but never rewrites one: offsets, leader epochs
//! and timestamps are the leader's. Its high watermark is the leader's,
//! capped at its own log end. Every step checks that the partition is still
//! a follower in the leader epoch the fetch was made in, so a response that
//! arrives after a leadership change is dropped.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use weir_protocol::{batch, ErrorCode};
use weir_storage::StorageError;

use super::partition::Partition;

/// Why a follower could not take what the leader sent.
#[derive(Debug)]
pub enum FollowerAppendError {
    /// The partition changed leadership since the fetch; drop the response.
    Stale,
    /// The leader's bytes are not whole, valid batches following the log.
    Invalid(String),
    /// The log failed.
    Storage(ErrorCode),
}

impl Partition {
    /// Whether the partition is still a follower of the leader epoch `epoch`.
    fn follows_in(&self, epoch: i32) -> bool {
        !self.is_leader() && self.leader_epoch() == epoch
    }

    /// The state a follower's fetch request carries: its log end offset (the
    /// fetch offset), the epoch of its last batch, and its log start offset.
    pub fn follower_fetch_state(&self) -> (i64, i32, i64) {
        let state = self.state();
        let log = &state.log;
        (log.log_end_offset(), log.latest_epoch().unwrap_or(-1), log.log_start_offset())
    }

    /// Appends the leader's batches (fetched in `leader_epoch`), then takes
    /// the leader's high watermark (capped at the log end) and log start
    /// offset (capped at the high watermark).
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &Bytes,
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
        now_ms: i64,
    ) -> Result<(), FollowerAppendError> {
        let mut state = self.live_state().map_err(FollowerAppendError::Storage)?;
        if !self.follows_in(leader_epoch) {
            return Err(FollowerAppendError::Stale);
        }
        if !records.is_empty() {
            // Whole v2 batches with valid CRCs; a partial trailing batch (a
            // response cut at its size limit) is left for the next fetch.
            let mut whole = 0;
            for item in batch::batches(records) {
                let (header, range) = match item {
                    Ok(found) => found,
                    Err(batch::BatchError::Truncated { .. }) => break,
                    Err(e) => return Err(FollowerAppendError::Invalid(e.to_string())),
                };
                batch::verify_crc(&records[range.clone()], &header)
                    .map_err(|e| FollowerAppendError::Invalid(format!("batch at {}: {e}", header.base_offset)))?;
                whole = range.end;
            }
            if whole > 0 {
                let appended = state.log.append_replica(&records[..whole], now_ms);
                self.publish(&state.log);
                appended.map_err(|e| self.follower_storage_error(&e))?;
            }
        }
        let log_end = state.log.log_end_offset();
        let high_watermark = leader_high_watermark.min(log_end);
        self.high_watermark.fetch_max(high_watermark, Ordering::AcqRel);
        let new_start = leader_log_start_offset.min(self.high_watermark());
        if new_start > state.log.log_start_offset() {
            let deleted = state.log.delete_records_before(new_start);
            self.publish(&state.log);
            deleted.map_err(|e| self.follower_storage_error(&e))?;
        }
        drop(state);
        self.watchers.wake();
        Ok(())
    }

    /// Truncates a diverged log to `offset` (at most its log end); the high
    /// watermark follows it down if it was above.
    pub fn truncate_as_follower(&self, leader_epoch: i32, offset: i64) -> Result<(), FollowerAppendError> {
        let mut state = self.live_state().map_err(FollowerAppendError::Storage)?;
        if !self.follows_in(leader_epoch) {
            return Err(FollowerAppendError::Stale);
        }
        let truncated = state.log.truncate_to(offset.max(0));
        self.publish(&state.log);
        truncated.map_err(|e| self.follower_storage_error(&e))?;
        let log_end = state.log.log_end_offset();
        self.high_watermark.fetch_min(log_end, Ordering::AcqRel);
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (the leader's log start,
    /// above this follower's log end).
    pub fn restart_as_follower_at(&self, leader_epoch: i32, offset: i64) -> Result<(), FollowerAppendError> {
        let mut state = self.live_state().map_err(FollowerAppendError::Storage)?;
        if !self.follows_in(leader_epoch) {
            return Err(FollowerAppendError::Stale);
        }
        let restarted = state.log.truncate_fully_and_start_at(offset);
        self.publish(&state.log);
        restarted.map_err(|e| self.follower_storage_error(&e))?;
        self.high_watermark.store(offset, Ordering::Release);
        Ok(())
    }

    /// Where a diverged follower truncates to: the end of the leader's epoch
    /// `epoch` at `leader_end_offset`, or earlier if its own log has that
    /// epoch end earlier (Kafka's `ReplicaFetcherThread` truncation).
    pub fn divergence_truncation_offset(&self, epoch: i32, leader_end_offset: i64) -> i64 {
        if epoch < 0 || leader_end_offset < 0 {
            // The leader knows no epoch at or below ours: keep only what was committed.
            return self.high_watermark();
        }
        let (own_epoch, own_end) = self.end_offset_for_epoch(epoch);
        if own_epoch < 0 {
            return self.high_watermark().min(leader_end_offset);
        }
        own_end.min(leader_end_offset)
    }

    fn follower_storage_error(&self, e: &StorageError) -> FollowerAppendError {
        match e {
            StorageError::InvalidAppend(reason) => FollowerAppendError::Invalid(reason.clone()),
            _ => FollowerAppendError::Storage(self.storage_error(e)),
        }
    }
}
