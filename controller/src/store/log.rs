//! The Raft log and vote of the metadata quorum in RocksDB (openraft's
//! `RaftLogStorage`). The durability of each operation is the contract in
//! the parent module's doc.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{column, write_batch, CF_LOG, CF_STATE, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use crate::raft::{Entry, LogId, NodeId, TypeConfig};

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The Raft log store. Cheap to clone: clones share the database, and serve
/// as openraft's log readers for replication.
#[derive(Debug, Clone)]
pub struct MetadataLogStore {
    db: Arc<DB>,
    /// Encoded bytes appended since the last snapshot, shared with the state
    /// machine (which resets it) and the controller (which snapshots when it
    /// passes `metadata.log.max.record.bytes.between.snapshots`).
    bytes_since_snapshot: Arc<AtomicU64>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> std::result::Result<u64, std::io::Error> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| std::io::Error::other(format!("metadata log key of {} bytes", key.len())))
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, &e).into()
}

fn read_logs(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl MetadataLogStore {
    pub(super) fn new(db: Arc<DB>, bytes_since_snapshot: Arc<AtomicU64>) -> Self {
        MetadataLogStore { db, bytes_since_snapshot }
    }

    /// A handle to wait for the database to close after shutdown.
    pub fn handle(&self) -> super::StoreHandle {
        super::StoreHandle { db: self.db.clone() }
    }

    fn get_state<T: DeserializeOwned>(&self, key: &str, subject: ErrorSubject<NodeId>) -> Result<Option<T>> {
        let cf = column(&self.db, CF_STATE).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?;
        let Some(bytes) = self.db.get_cf(cf, key).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| io_error(subject, ErrorVerb::Read, e))
    }

    async fn put_state<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        sync: bool,
        subject: ErrorSubject<NodeId>,
    ) -> Result<()> {
        let cf = column(&self.db, CF_STATE).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        let bytes = serde_json::to_vec(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, key, bytes);
        write_batch(&self.db, batch, sync).await.map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }

    /// The entry with the highest index, if the log holds any.
    fn last_entry(&self) -> Result<Option<Entry>> {
        let cf = column(&self.db, CF_LOG).map_err(read_logs)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(read_logs)?;
                serde_json::from_slice(&value).map(Some).map_err(read_logs)
            }
        }
    }
}

/// The entries of `range` in the log, in order (synchronous: RocksDB reads).
pub(super) fn read_log_entries<RB: RangeBounds<u64>>(db: &DB, range: RB) -> Result<Vec<Entry>> {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let cf = column(db, CF_LOG).map_err(read_logs)?;
    let mut entries = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::From(&index_key(start), Direction::Forward)) {
        let (key, value) = item.map_err(read_logs)?;
        let index = key_index(&key).map_err(read_logs)?;
        if !range.contains(&index) {
            break;
        }
        let entry: Entry = serde_json::from_slice(&value).map_err(read_logs)?;
        if entry.log_id.index != index {
            return Err(read_logs(std::io::Error::other(format!(
                "metadata log key {index} holds the entry of index {}",
                entry.log_id.index
            ))));
        }
        entries.push(entry);
    }
    Ok(entries)
}

impl RaftLogReader<TypeConfig> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>> {
        read_log_entries(&self.db, range)
    }
}

impl RaftLogStorage<TypeConfig> for MetadataLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_state(KEY_LAST_PURGED, ErrorSubject::Store)?;
        let last_log_id = self.last_entry()?.map(|entry| entry.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        self.put_state(KEY_VOTE, vote, true, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_state(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        self.put_state(KEY_COMMITTED, &committed, false, ErrorSubject::Store).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>> {
        Ok(self.get_state::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = column(&self.db, CF_LOG).map_err(write_logs)?;
        let mut batch = WriteBatch::default();
        let mut bytes = 0u64;
        for entry in entries {
            let value = serde_json::to_vec(&entry).map_err(write_logs)?;
            bytes += value.len() as u64;
            batch.put_cf(cf, index_key(entry.log_id.index), value);
        }
        // On error the callback is dropped and openraft stops on the returned error.
        write_batch(&self.db, batch, true).await.map_err(write_logs)?;
        self.bytes_since_snapshot.fetch_add(bytes, Ordering::Relaxed);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<()> {
        tracing::debug!(from = log_id.index, "truncating the metadata log");
        let cf = column(&self.db, CF_LOG).map_err(write_logs)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        // delete_range's end is exclusive: the last possible index goes separately.
        batch.delete_cf(cf, index_key(u64::MAX));
        write_batch(&self.db, batch, true).await.map_err(write_logs)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<()> {
        tracing::debug!(upto = log_id.index, "purging the metadata log");
        let log = column(&self.db, CF_LOG).map_err(write_logs)?;
        let state = column(&self.db, CF_STATE).map_err(write_logs)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(state, KEY_LAST_PURGED, serde_json::to_vec(&log_id).map_err(write_logs)?);
        batch.delete_range_cf(log, index_key(0), index_key(log_id.index.saturating_add(1)));
        write_batch(&self.db, batch, false).await.map_err(write_logs)
    }
}
