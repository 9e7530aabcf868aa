//! The metadata quorum's storage: the Raft log and vote
//! ([`MetadataLogStore`], openraft's `RaftLogStorage`) and the metadata state
//! machine with its snapshots ([`MetadataStateMachine`], `RaftStateMachine`),
//! both in one RocksDB database under the metadata directory.
//!
//! Layout (column families):
//! - `log`: key = log index as 8 big-endian bytes, so key order is log order;
//!   value = the JSON of the openraft entry.
//! - `state`: `vote`, `committed` and `last_purged`, each JSON, and
//!   `format`, the layout's version (`format.rs`; one leader per term).
//! - `snapshot`: `meta` (JSON of the snapshot's openraft metadata) and
//!   `data` (the snapshot bytes of [`crate::snapshot`]), written together.
//!
//! Durability contract (what is on disk before openraft is told so):
//! - **append**: all entries of a call go in one write batch with a synced
//!   WAL; only then is openraft's flush callback invoked, so an entry counted
//!   towards a quorum survives kill -9 and power loss.
//! - **vote**: written with a synced WAL before `save_vote` returns: a node
//!   never votes twice in a term, even across a crash.
//! - **truncate**: the deletion is synced before returning, so conflicting
//!   entries cannot reappear after a crash behind newer appends.
//! - **purge**: `last_purged` and the deletion go in one batch, not synced: a
//!   purge lost in a crash leaves entries that the snapshot already covers.
//! - **committed**: written without sync: it only lets a restarted node
//!   re-apply its own log before hearing from the leader, and a stale value
//!   is merely lower.
//! - **state machine**: applied in memory only; it is persisted by snapshots,
//!   which are synced before `build_snapshot` / `install_snapshot` return.
//!   On open, the image is rebuilt from the latest snapshot and openraft
//!   re-applies the log after it up to `committed`.
//!
//! Every write runs on a blocking thread (`write_batch`), so a sync never
//! stalls a runtime worker.
//!
//! RocksDB checks its own blocks and WAL records with checksums; a database it
//! cannot open is refused with the path and RocksDB's message, and never
//! recreated over.

// openraft's storage traits return its `StorageError` (224 bytes); the helpers
// around them return the same type rather than convert back and forth.
#![allow(clippy::result_large_err)]

mod format;
mod import;
mod log;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use tokio::sync::watch;

pub use self::import::{import_legacy_log, Imported, IMPORTED_LOG_FILE};
pub use self::log::MetadataLogStore;
pub use self::state_machine::{MetadataSnapshotBuilder, MetadataStateMachine};
use crate::error::ControllerError;
use crate::image::MetadataImage;

/// Directory of the RocksDB database inside the metadata directory.
pub const RAFT_DB_DIR: &str = "raft";

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const CF_SNAPSHOT: &str = "snapshot";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_META: &str = "meta";
const KEY_DATA: &str = "data";

/// Opens (creating if needed) the quorum's database under `metadata_dir`
/// and returns its log store and state machine. The state machine starts
/// from the stored snapshot, if any, and publishes every image it applies on
/// `images`.
pub fn open_store(
    metadata_dir: &Path,
    images: watch::Sender<Arc<MetadataImage>>,
) -> Result<(MetadataLogStore, MetadataStateMachine), ControllerError> {
    let db = Arc::new(open_db(metadata_dir)?);
    let bytes_since_snapshot = Arc::new(AtomicU64::new(0));
    let state_machine = MetadataStateMachine::open(db.clone(), images, bytes_since_snapshot.clone())?;
    Ok((MetadataLogStore::new(db, bytes_since_snapshot), state_machine))
}

fn open_db(metadata_dir: &Path) -> Result<DB, ControllerError> {
    let path = metadata_dir.join(RAFT_DB_DIR);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Metadata is small: bound RocksDB's descriptors and its info logs.
    options.set_max_open_files(64);
    options.set_keep_log_file_num(2);
    options.set_max_log_file_size(1024 * 1024);
    let families = [CF_LOG, CF_STATE, CF_SNAPSHOT].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&options, &path, families).map_err(|e| {
        ControllerError::Storage(format!("cannot open the metadata quorum's database {}: {e}", path.display()))
    })?;
    format::upgrade(&db)?;
    Ok(db)
}

/// A handle on the open database, to wait for it to close.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    db: Arc<DB>,
}

impl StoreHandle {
    /// The log entries `first..=last`, or `None` when the log no longer
    /// starts at or before `first` (a snapshot covered and purged it). The
    /// caller bounds `last` by what is committed.
    pub async fn read_entries(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Option<Vec<crate::raft::Entry>>, ControllerError> {
        // RocksDB reads block: off the runtime threads, as the writes are.
        let db = self.db.clone();
        let entries = tokio::task::spawn_blocking(move || log::read_log_entries(&db, first..=last))
            .await
            .map_err(|e| ControllerError::Internal(format!("reading the metadata log: {e}")))?
            .map_err(|e| ControllerError::Storage(format!("cannot read the metadata log: {e}")))?;
        let contiguous = entries.iter().zip(first..).all(|(entry, index)| entry.log_id.index == index);
        Ok((contiguous && !entries.is_empty()).then_some(entries))
    }

    /// Waits (up to 10 s) until every other user of the database has let go
    /// of it, so it is closed once this handle drops: openraft's tasks end
    /// shortly after `Raft::shutdown` returns.
    pub async fn released(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.db) > 1 {
            if std::time::Instant::now() > deadline {
                tracing::warn!("the metadata quorum's database is still in use after shutdown");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

fn column<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, std::io::Error> {
    db.cf_handle(name).ok_or_else(|| std::io::Error::other(format!("column family {name} is missing")))
}

/// Write options that sync the WAL before the write returns.
fn synced() -> rocksdb::WriteOptions {
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    options
}

/// Free bytes the metadata volume must have for a write to be attempted.
///
/// RocksDB must never meet a full disk itself: the Debian build aborts the
/// process on a failed WAL write (an assertion in its file writer) instead
/// of returning the error. Below this reserve the write fails here with a
/// message, the quorum stops on this node, and the node exits cleanly. The
/// reserve holds many metadata batches and a snapshot of a large cluster.
pub const DISK_RESERVE_BYTES: u64 = 8 << 20;

fn check_free_space(db: &DB) -> std::io::Result<()> {
    let stat = rustix::fs::statvfs(db.path())?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < DISK_RESERVE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "the metadata volume of {} has {available} bytes free, below the {DISK_RESERVE_BYTES} bytes kept \
                 in reserve",
                db.path().display()
            ),
        ));
    }
    Ok(())
}

/// Writes `batch` (its WAL synced when `sync`) on a blocking thread, so an
/// fsync never stalls a runtime worker; refused while the volume is below
/// [`DISK_RESERVE_BYTES`].
async fn write_batch(db: &Arc<DB>, batch: WriteBatch, sync: bool) -> std::io::Result<()> {
    let db = db.clone();
    let written = tokio::task::spawn_blocking(move || {
        check_free_space(&db)?;
        let options = if sync { synced() } else { rocksdb::WriteOptions::default() };
        db.write_opt(batch, &options).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .await
    .map_err(std::io::Error::other)?;
    written
}

#[cfg(test)]
mod tests;
