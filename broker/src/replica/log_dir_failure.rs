//! A failed log dir, as Kafka's `LogDirFailureChannel` handles it.
//!
//! The first I/O error of any log in the log dir (a write, fsync, open or read
//! failing; see `weir_storage::failure`) or of the dir's recovery-point
//! checkpoint fails the whole dir: every partition in it goes offline at once
//! (KAFKA_STORAGE_ERROR to clients, this broker in Metadata's
//! `offline_replicas`), nothing is written to the dir again, and since Weir
//! has one log dir the broker then stops, as Kafka halts a broker whose last
//! live log dir failed. Acknowledged records are on disk; the next start
//! recovers the logs from their recovery points.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::sync::Notify;
use tracing::error;
use weir_storage::StorageError;

/// The failure state of the log dir.
#[derive(Debug)]
pub struct LogDirFailure {
    dir: PathBuf,
    reason: OnceLock<String>,
    failed: Notify,
}

impl LogDirFailure {
    /// The state of a live `dir`.
    pub fn new(dir: &Path) -> LogDirFailure {
        LogDirFailure { dir: dir.to_path_buf(), reason: OnceLock::new(), failed: Notify::new() }
    }

    /// Fails the dir (logged once, with what failed).
    pub fn fail(&self, what: &str, error: &dyn std::fmt::Display) {
        if self.reason.set(format!("{what}: {error}")).is_ok() {
            error!(
                dir = %self.dir.display(),
                failed = what,
                error = %error,
                "the log dir failed; its partitions are offline. Shutdown broker because all log dirs in {} have failed",
                self.dir.display()
            );
            // A permit is stored if nobody waits yet.
            self.failed.notify_one();
        }
    }

    /// Fails the dir if `error` is an I/O failure of a log (not a refusal of
    /// bad input); true if it did.
    pub fn fail_on(&self, what: &str, error: &StorageError) -> bool {
        let io = matches!(error, StorageError::Io { .. } | StorageError::LogFailed(_));
        if io {
            self.fail(what, error);
        }
        io
    }

    /// Why the dir failed, if it did.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Waits until the dir fails (returns at once if it already did).
    pub async fn failed(&self) {
        if self.reason.get().is_none() {
            self.failed.notified().await;
        }
    }
}
