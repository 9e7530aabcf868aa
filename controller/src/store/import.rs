//! One-time import of a single-node data dir written before the quorum:
//! its `metadata.log` (see [`crate::log`]) becomes the quorum's first
//! snapshot, with this node as the only voter, so every topic, config,
//! broker epoch and producer id carries over.
//!
//! The import runs only into an empty database (no vote, no log, no
//! snapshot). The snapshot, and `last_purged` set to the snapshot's last log
//! id, are written in one synced batch; only then is the old file renamed to
//! `metadata.log.imported` (kept, never deleted). A crash before the rename
//! finds a non-empty database next time and just finishes the rename.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, Membership, SnapshotMeta, StoredMembership};
use rocksdb::WriteBatch;

use super::format::KEY_FORMAT;
use super::{column, open_db, synced, CF_LOG, CF_SNAPSHOT, CF_STATE, KEY_DATA, KEY_LAST_PURGED, KEY_META};
use crate::error::ControllerError;
use crate::image::ImageBuilder;
use crate::log::{MetadataLog, METADATA_LOG_FILE};
use crate::raft::{LogId, NodeId};
use crate::snapshot::encode_snapshot;

/// Name the old metadata log is renamed to once imported.
pub const IMPORTED_LOG_FILE: &str = "metadata.log.imported";

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Entries read from the old log.
    pub entries: usize,
    /// Log index the snapshot covers (the old log's last offset).
    pub last_index: u64,
}

fn storage(context: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Storage(format!("{context}: {e}"))
}

/// Imports `metadata_dir/metadata.log` into the quorum's database if there is
/// one and the database is empty; `node_id` at `node` becomes the only voter.
/// Returns what was imported, or `None` when there was nothing to do.
pub fn import_legacy_log(
    metadata_dir: &Path,
    node_id: NodeId,
    node: BasicNode,
) -> Result<Option<Imported>, ControllerError> {
    let legacy = metadata_dir.join(METADATA_LOG_FILE);
    if !legacy.exists() {
        return Ok(None);
    }
    let db = open_db(metadata_dir)?;
    // Empty but for the format version every open writes.
    let empty = |cf: &str| -> Result<bool, ControllerError> {
        let handle = column(&db, cf).map_err(|e| storage("metadata database", e))?;
        for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (key, _) = item.map_err(|e| storage("metadata database", e))?;
            if !(cf == CF_STATE && *key == *KEY_FORMAT.as_bytes()) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let imported = if empty(CF_LOG)? && empty(CF_STATE)? && empty(CF_SNAPSHOT)? {
        let opened = MetadataLog::open(metadata_dir)?;
        let mut builder = ImageBuilder::new();
        for (offset, entry) in opened.entries.iter().enumerate() {
            builder.replay_entry(offset as i64, entry)?;
        }
        let image = builder.build();
        // Offsets of the old log become Raft indexes, so broker epochs (the
        // offset of a registration) keep their meaning; an empty old log
        // still leaves index 0 behind the snapshot.
        let last_index = opened.entries.len().saturating_sub(1) as u64;
        let last_log_id = LogId::new(CommittedLeaderId::new(0, node_id), last_index);
        let membership = Membership::new(vec![BTreeSet::from([node_id])], BTreeMap::from([(node_id, node)]));
        let meta = SnapshotMeta {
            last_log_id: Some(last_log_id),
            last_membership: StoredMembership::new(Some(last_log_id), membership),
            snapshot_id: format!("imported-{last_index}"),
        };
        let data = encode_snapshot(&image)?;
        let encode = |e: serde_json::Error| storage("encoding the imported snapshot", e);
        let mut batch = WriteBatch::default();
        let snapshot = column(&db, CF_SNAPSHOT).map_err(|e| storage("metadata database", e))?;
        let state = column(&db, CF_STATE).map_err(|e| storage("metadata database", e))?;
        batch.put_cf(snapshot, KEY_META, serde_json::to_vec(&meta).map_err(encode)?);
        batch.put_cf(snapshot, KEY_DATA, &data);
        batch.put_cf(state, KEY_LAST_PURGED, serde_json::to_vec(&last_log_id).map_err(encode)?);
        db.write_opt(batch, &synced()).map_err(|e| storage("writing the imported snapshot", e))?;
        tracing::info!(
            entries = opened.entries.len(),
            topics = image.topics.len(),
            last_index,
            "imported the single-node metadata.log as the quorum's first snapshot"
        );
        Some(Imported { entries: opened.entries.len(), last_index })
    } else {
        tracing::warn!(
            path = %legacy.display(),
            "the quorum's database already holds metadata (imported before a crash, or written by the quorum); \
             setting {METADATA_LOG_FILE} aside without importing it"
        );
        None
    };
    drop(db);
    std::fs::rename(&legacy, metadata_dir.join(IMPORTED_LOG_FILE))
        .map_err(|e| storage(&format!("renaming {}", legacy.display()), e))?;
    Ok(imported)
}
