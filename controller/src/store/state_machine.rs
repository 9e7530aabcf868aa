//! The metadata state machine (openraft's `RaftStateMachine`): committed
//! entries are replayed into the [`MetadataImage`], which is published to the
//! broker on a watch channel. The image lives in memory and is persisted by
//! snapshots ([`crate::snapshot`]), as the parent module's contract says.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rocksdb::{WriteBatch, DB};
use tokio::sync::watch;

use super::{column, write_batch, CF_SNAPSHOT, KEY_DATA, KEY_META};
use crate::error::ControllerError;
use crate::image::{ImageBuilder, MetadataImage};
use crate::raft::{Entry, LogId, MetadataApplied, NodeId, TypeConfig};
use crate::snapshot::{decode_snapshot, encode_snapshot};

type Result<T> = std::result::Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// The metadata image as of the last applied entry.
#[derive(Debug)]
pub struct MetadataStateMachine {
    db: Arc<DB>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: Membership,
    images: watch::Sender<Arc<MetadataImage>>,
    /// Encoded bytes the log store appended since the last snapshot; reset
    /// by snapshots (see [`MetadataLogStore`](super::MetadataLogStore)).
    bytes_since_snapshot: Arc<AtomicU64>,
}

/// Builds a snapshot of the image as it was when the builder was taken,
/// while the state machine goes on applying.
#[derive(Debug)]
pub struct MetadataSnapshotBuilder {
    db: Arc<DB>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: Membership,
    bytes_since_snapshot: Arc<AtomicU64>,
    /// `bytes_since_snapshot` when the builder was taken: what the snapshot covers.
    covered_bytes: u64,
}

fn snapshot_error(meta: Option<&Meta>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Snapshot(meta.map(|m| m.signature())), verb, &e).into()
}

fn image_offset(log_id: Option<&LogId>) -> i64 {
    log_id.map_or(-1, |id| i64::try_from(id.index).unwrap_or(i64::MAX))
}

/// Reads the stored snapshot: its metadata and bytes.
fn stored_snapshot(db: &DB) -> Result<Option<(Meta, Vec<u8>)>> {
    let read = |e| snapshot_error(None, ErrorVerb::Read, e);
    let cf = column(db, CF_SNAPSHOT).map_err(read)?;
    let (Some(meta), Some(data)) = (
        db.get_cf(cf, KEY_META).map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?,
        db.get_cf(cf, KEY_DATA).map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?,
    ) else {
        return Ok(None);
    };
    let meta: Meta = serde_json::from_slice(&meta).map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?;
    Ok(Some((meta, data)))
}

/// Stores `meta` and `data` as the one current snapshot, synced.
async fn store_snapshot(db: &Arc<DB>, meta: &Meta, data: &[u8]) -> Result<()> {
    let write = |e| snapshot_error(Some(meta), ErrorVerb::Write, e);
    let cf = column(db, CF_SNAPSHOT).map_err(write)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf, KEY_META, serde_json::to_vec(meta).map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, e))?);
    batch.put_cf(cf, KEY_DATA, data);
    write_batch(db, batch, true).await.map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, e))
}

impl MetadataStateMachine {
    /// Starts from the stored snapshot, or from the empty image.
    pub(super) fn open(
        db: Arc<DB>,
        images: watch::Sender<Arc<MetadataImage>>,
        bytes_since_snapshot: Arc<AtomicU64>,
    ) -> std::result::Result<Self, ControllerError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            ControllerError::Storage(format!("the stored metadata snapshot is unreadable: {e}"))
        };
        let stored = stored_snapshot(&db).map_err(|e| unreadable(&e))?;
        let (image, last_applied, membership) = match stored {
            None => (MetadataImage::default(), None, Membership::default()),
            Some((meta, data)) => {
                let image =
                    decode_snapshot(&data, image_offset(meta.last_log_id.as_ref())).map_err(|e| unreadable(&e))?;
                (image, meta.last_log_id, meta.last_membership)
            }
        };
        let image = Arc::new(image);
        images.send_replace(image.clone());
        Ok(MetadataStateMachine { db, image, last_applied, membership, images, bytes_since_snapshot })
    }

    /// Encoded bytes of the entries appended since the last snapshot; the
    /// controller snapshots when it passes its limit.
    pub fn bytes_since_snapshot(&self) -> Arc<AtomicU64> {
        self.bytes_since_snapshot.clone()
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let data = encode_snapshot(&self.image)
            .map_err(|e| StorageIOError::<NodeId>::read_state_machine(&std::io::Error::other(e.to_string())))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let snapshot_id = match &self.last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("--{nanos}"),
        };
        let meta = Meta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id };
        store_snapshot(&self.db, &meta, &data).await?;
        self.bytes_since_snapshot.fetch_sub(self.covered_bytes, Ordering::Relaxed);
        tracing::info!(
            last_offset = image_offset(self.last_applied.as_ref()),
            bytes = data.len(),
            topics = self.image.topics.len(),
            "metadata snapshot written"
        );
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = MetadataSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataApplied>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut builder = ImageBuilder::from_image((*self.image).clone());
        let mut replies = Vec::new();
        for entry in entries {
            let offset = image_offset(Some(&entry.log_id));
            let mut error = None;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(data) => {
                    if let Err(e) = builder.apply_committed(offset, &data.records) {
                        tracing::error!(offset, error = %e, "skipping a metadata log entry that does not apply");
                        error = Some(e.to_string());
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                }
            }
            builder.set_last_offset(offset);
            self.last_applied = Some(entry.log_id);
            replies.push(MetadataApplied { offset: entry.log_id.index, error });
        }
        self.image = Arc::new(builder.build());
        self.images.send_replace(self.image.clone());
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MetadataSnapshotBuilder {
            db: self.db.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            bytes_since_snapshot: self.bytes_since_snapshot.clone(),
            covered_bytes: self.bytes_since_snapshot.load(Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<()> {
        let data = snapshot.into_inner();
        let image = decode_snapshot(&data, image_offset(meta.last_log_id.as_ref()))
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, std::io::Error::other(e.to_string())))?;
        store_snapshot(&self.db, meta, &data).await?;
        tracing::info!(
            last_offset = image.last_offset,
            bytes = data.len(),
            topics = image.topics.len(),
            "metadata snapshot installed"
        );
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.bytes_since_snapshot.store(0, Ordering::Relaxed);
        self.images.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(stored_snapshot(&self.db)?.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
