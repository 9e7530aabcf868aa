//! The log dir's offset checkpoints, as Kafka's LogManager and ReplicaManager
//! keep them: `recovery-point-offset-checkpoint` (offsets below each log's
//! recovery point are fsynced: recovery after a crash rescans only above it)
//! and `replication-offset-checkpoint` (each partition's high watermark: a
//! restarted replica serves nothing above it until the ISR has it again).
//! Both are replaced atomically; one that cannot be written fails the log dir.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use tracing::warn;
use weir_storage::{read_offset_checkpoint, write_offset_checkpoint, OffsetMap, RECOVERY_POINT_CHECKPOINT_FILE};

use super::{ReplicaManager, PARTITION_METADATA_FILE};

/// Kafka's per-log-dir file of high watermarks.
const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

impl ReplicaManager {
    /// Writes every hosted partition's high watermark to the log dir's
    /// `replication-offset-checkpoint` (atomically), as Kafka's
    /// ReplicaManager does every `replica.high.watermark.checkpoint.interval.ms`
    /// and at shutdown: a restarted replica serves no record above it until
    /// the ISR has it again.
    pub fn checkpoint_high_watermarks(&self) {
        let entries: OffsetMap = self.all().iter().map(|p| ((p.topic.clone(), p.index), p.high_watermark())).collect();
        self.write_high_watermarks(&entries);
    }

    pub(super) fn write_high_watermarks(&self, entries: &OffsetMap) {
        self.write_offsets(
            &self.last_high_watermark_checkpoint,
            HIGH_WATERMARK_CHECKPOINT_FILE,
            "high-watermark",
            entries,
        );
    }

    /// Writes every hosted log's recovery point to the log dir's
    /// `recovery-point-offset-checkpoint` (atomically); a failure is logged.
    pub fn checkpoint_recovery_points(&self) {
        let entries: OffsetMap = self.all().iter().map(|p| ((p.topic.clone(), p.index), p.recovery_point())).collect();
        self.write_checkpoint(&entries);
    }

    pub(super) fn write_checkpoint(&self, entries: &OffsetMap) {
        self.write_offsets(&self.last_checkpoint, RECOVERY_POINT_CHECKPOINT_FILE, "recovery-point", entries);
    }

    /// Replaces one of the log dir's offset checkpoint files, serialized by
    /// `last` (which records when). As Kafka: a checkpoint that cannot be
    /// written fails the log dir.
    fn write_offsets(&self, last: &Mutex<Instant>, file: &str, what: &str, entries: &OffsetMap) {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if self.log_dir_failure.reason().is_some() {
            return;
        }
        if let Err(e) = write_offset_checkpoint(&self.log_dir, file, entries) {
            self.log_dir_failure.fail(&format!("the {what} checkpoint"), &e);
        }
        *last = Instant::now();
    }

    /// The high-watermark checkpoint, if its interval has passed.
    pub fn checkpoint_high_watermarks_if_due(&self) {
        let interval = std::time::Duration::from_millis(self.config.replication.high_watermark_checkpoint_interval_ms);
        let due = self.last_high_watermark_checkpoint.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= interval;
        if due {
            self.checkpoint_high_watermarks();
        }
    }
}

/// The high watermarks in the log dir's `replication-offset-checkpoint`; none
/// (every log starts from its log start) when it is missing or unreadable.
pub(super) fn read_high_watermarks(log_dir: &Path) -> OffsetMap {
    match read_offset_checkpoint(log_dir, HIGH_WATERMARK_CHECKPOINT_FILE) {
        Ok(entries) => entries.unwrap_or_default(),
        Err(e) => {
            warn!(dir = %log_dir.display(), error = %e, "unreadable {HIGH_WATERMARK_CHECKPOINT_FILE}; high watermarks restart at the log start offsets");
            OffsetMap::new()
        }
    }
}

/// The recovery points in the log dir's checkpoint. A garbled file, or a
/// missing one while partition directories exist, is logged once at warn and
/// gives none: every log then recovers from offset 0 after an unclean shutdown.
pub(super) fn read_recovery_points(log_dir: &Path) -> OffsetMap {
    match read_offset_checkpoint(log_dir, RECOVERY_POINT_CHECKPOINT_FILE) {
        Ok(Some(entries)) => entries,
        Ok(None) => {
            let has_partitions = std::fs::read_dir(log_dir)
                .map(|entries| entries.flatten().any(|e| e.path().join(PARTITION_METADATA_FILE).exists()))
                .unwrap_or(false);
            if has_partitions {
                warn!(dir = %log_dir.display(), "no {RECOVERY_POINT_CHECKPOINT_FILE}; logs shut down uncleanly are recovered from offset 0");
            }
            OffsetMap::new()
        }
        Err(e) => {
            warn!(dir = %log_dir.display(), error = %e, "unreadable {RECOVERY_POINT_CHECKPOINT_FILE}; logs shut down uncleanly are recovered from offset 0");
            OffsetMap::new()
        }
    }
}
