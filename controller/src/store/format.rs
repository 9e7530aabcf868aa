//! The database's format version, and the one upgrade so far.
//!
//! - Format 1 (the first quorum build, without a `format` key): openraft's
//!   default "advanced" leader ids, `{"term": t, "node_id": n}`, in which one
//!   term may have several leaders one after another.
//! - Format 2: standard Raft, one leader per term (openraft's
//!   `single-term-leader`), so a Kafka leader epoch names exactly one leader.
//!   A log id's leader is its term alone, and the vote's leader id is
//!   `{"term": t, "voted_for": n}`.
//!
//! The upgrade rewrites the vote, `committed`, `last_purged`, every log entry
//! and the snapshot's metadata in one synced batch together with the new
//! version, so a crash leaves either format whole. It changes only values of
//! the old shape, so it is safe on a database that is already partly in the
//! new one (an imported `metadata.log` is written by this build).

use rocksdb::{IteratorMode, WriteBatch, DB};
use serde_json::Value;

use super::{column, synced, CF_LOG, CF_SNAPSHOT, CF_STATE, KEY_COMMITTED, KEY_LAST_PURGED, KEY_META, KEY_VOTE};
use crate::error::ControllerError;

/// The format this build writes.
pub(super) const FORMAT_VERSION: u64 = 2;
/// The `state` key holding the format version.
pub(super) const KEY_FORMAT: &str = "format";

fn storage(what: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Storage(format!("{what}: {e}"))
}

/// Brings `db` to [`FORMAT_VERSION`], refusing a newer one.
pub(super) fn upgrade(db: &DB) -> Result<(), ControllerError> {
    let state = column(db, CF_STATE)?;
    let stored = db.get_cf(state, KEY_FORMAT).map_err(|e| storage("reading the format version", e))?;
    let version = match stored {
        None => 1,
        Some(bytes) => serde_json::from_slice::<u64>(&bytes).map_err(|e| storage("reading the format version", e))?,
    };
    if version == FORMAT_VERSION {
        return Ok(());
    }
    if version > FORMAT_VERSION {
        return Err(ControllerError::Storage(format!(
            "the metadata quorum's database is in format {version}, written by a newer Weir; this build reads \
             format {FORMAT_VERSION}"
        )));
    }
    let mut batch = WriteBatch::default();
    let mut rewritten = 0usize;
    let mut rewrite = |cf, key: &[u8], value: &[u8], at: &[&[&str]], vote: bool| -> Result<(), ControllerError> {
        let mut json: Value = serde_json::from_slice(value).map_err(|e| storage("reading a stored value", e))?;
        let mut changed = false;
        for path in at {
            changed |= upgrade_leader_id(&mut json, path, vote);
        }
        if changed {
            batch.put_cf(cf, key, serde_json::to_vec(&json).map_err(|e| storage("encoding a stored value", e))?);
            rewritten += 1;
        }
        Ok(())
    };
    for (key, path, vote) in [
        (KEY_VOTE, &["leader_id"][..], true),
        (KEY_COMMITTED, &["leader_id"][..], false),
        (KEY_LAST_PURGED, &["leader_id"][..], false),
    ] {
        if let Some(value) = db.get_cf(state, key).map_err(|e| storage("reading the Raft state", e))? {
            rewrite(state, key.as_bytes(), &value, &[path], vote)?;
        }
    }
    let log = column(db, CF_LOG)?;
    for item in db.iterator_cf(log, IteratorMode::Start) {
        let (key, value) = item.map_err(|e| storage("reading the Raft log", e))?;
        rewrite(log, &key, &value, &[&["log_id", "leader_id"]], false)?;
    }
    let snapshot = column(db, CF_SNAPSHOT)?;
    if let Some(value) = db.get_cf(snapshot, KEY_META).map_err(|e| storage("reading the snapshot metadata", e))? {
        let paths: &[&[&str]] = &[&["last_log_id", "leader_id"], &["last_membership", "log_id", "leader_id"]];
        rewrite(snapshot, KEY_META.as_bytes(), &value, paths, false)?;
    }
    batch.put_cf(state, KEY_FORMAT, FORMAT_VERSION.to_string());
    db.write_opt(batch, &synced()).map_err(|e| storage("upgrading the metadata quorum's database", e))?;
    if rewritten > 0 {
        tracing::info!(from = version, to = FORMAT_VERSION, values = rewritten, "metadata quorum database upgraded");
    }
    Ok(())
}

/// Rewrites the format-1 leader id at `path` of `json`: `{term, node_id}`
/// becomes the term (a log id's leader) or `{term, voted_for}` (the vote's).
/// Returns whether anything changed.
fn upgrade_leader_id(json: &mut Value, path: &[&str], vote: bool) -> bool {
    let mut at = json;
    for key in path {
        match at.get_mut(*key) {
            Some(next) => at = next,
            None => return false,
        }
    }
    let (Some(term), Some(node_id)) = (at.get("term").cloned(), at.get("node_id").cloned()) else {
        return false;
    };
    *at = if vote { serde_json::json!({ "term": term, "voted_for": node_id }) } else { term };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_one_leader_ids_become_standard_raft_ones() {
        let mut entry = serde_json::json!({"log_id": {"leader_id": {"term": 3, "node_id": 2}, "index": 7}});
        assert!(upgrade_leader_id(&mut entry, &["log_id", "leader_id"], false));
        assert_eq!(entry, serde_json::json!({"log_id": {"leader_id": 3, "index": 7}}));
        // Already upgraded, or absent: left alone.
        assert!(!upgrade_leader_id(&mut entry, &["log_id", "leader_id"], false));
        assert!(!upgrade_leader_id(&mut serde_json::json!(null), &["leader_id"], false));

        let mut vote = serde_json::json!({"leader_id": {"term": 4, "node_id": 1}, "committed": true});
        assert!(upgrade_leader_id(&mut vote, &["leader_id"], true));
        assert_eq!(vote, serde_json::json!({"leader_id": {"term": 4, "voted_for": 1}, "committed": true}));
        let vote: openraft::Vote<u64> = serde_json::from_value(vote).unwrap();
        assert_eq!((vote.leader_id().term, vote.leader_id().voted_for, vote.is_committed()), (4, Some(1), true));
        let log_id: openraft::LogId<u64> = serde_json::from_value(entry["log_id"].clone()).unwrap();
        assert_eq!((log_id.leader_id.term, log_id.index), (3, 7));
    }
}
