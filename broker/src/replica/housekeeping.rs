//! A partition's background upkeep: retention, log compaction, time-based
//! flushes and the fsync of segments sealed by a roll, run by the
//! housekeeping task on the blocking pool.

use std::sync::atomic::Ordering;

use tracing::warn;
use weir_storage::{CleanOptions, CleanStats, StorageError};

use super::cleaner_codec::KafkaCodecs;
use super::partition::Partition;

impl Partition {
    /// Background upkeep: retention (`cleanup.policy` with `delete`), log
    /// compaction (with `compact`; both for `compact,delete`), the
    /// time-based flush, then the fsync of segments sealed by a roll (as
    /// Kafka flushes them after a roll), made without holding the log so
    /// appends go on meanwhile; it advances the recovery point.
    pub fn housekeeping(&self, now_ms: i64, retention_due: bool, cleaning_due: bool) {
        self.housekeeping_locked(now_ms, retention_due);
        let compact = self.live_state().is_ok_and(|state| state.settings.compact);
        if cleaning_due && compact && !self.uncleanable.load(Ordering::Acquire) {
            if let Err(e) = self.clean(now_ms) {
                // As Kafka's LogCleanerManager: an error marks the partition
                // uncleanable until the broker restarts, instead of retrying
                // (and logging) forever; an I/O error fails the log dir.
                self.uncleanable.store(true, Ordering::Release);
                if !self.log_dir.fail_on(&format!("cleaning of partition {}", self.name()), &e) {
                    warn!(partition = %self.name(), error = %e, "log cleaning failed; not cleaning this partition again until restart");
                }
            }
        }
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

    fn housekeeping_locked(&self, now_ms: i64, retention_due: bool) {
        let Ok(mut state) = self.live_state() else { return };
        if retention_due && state.settings.delete {
            let deleted = state.log.enforce_retention_below(now_ms, self.high_watermark());
            self.publish(&state.log);
            if let Err(e) = deleted {
                self.housekeeping_failed("retention", &e);
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
    /// cleanup policy), never at or above the high watermark. The lock is
    /// held to plan the cleaning and to swap its segments in, not while it
    /// reads and rewrites them: appends and reads go on meanwhile.
    pub fn clean(&self, now_ms: i64) -> Result<Option<CleanStats>, StorageError> {
        let _one_at_a_time = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
        let plan = {
            let state = self.state();
            let opts = CleanOptions {
                delete_retention_ms: state.settings.delete_retention_ms,
                min_cleanable_dirty_ratio: state.settings.min_cleanable_dirty_ratio,
                min_compaction_lag_ms: state.settings.min_compaction_lag_ms,
                // Only replicated (and, with transactions, decided) records are cleaned.
                upper_bound: self.high_watermark(),
                ..CleanOptions::new(now_ms)
            };
            state.log.plan_clean(&opts)?
        };
        let Some(plan) = plan else { return Ok(None) };
        let run = plan.run(&KafkaCodecs);
        let mut state = self.state();
        let cleaned = state.log.finish_clean(run);
        self.publish(&state.log);
        cleaned
    }
}
