//! Idempotent-producer state: per producer id, its epoch and its last 5 batches' sequence ranges.
//!
//! Snapshots `<20-digit offset>.snapshot` hold the state as of that offset (i.e. built from every
//! batch below it). They are taken on segment roll and on clean close; only the newest 2 are kept.
//! On open the state is loaded from the newest valid snapshot <= the log end offset and brought up to
//! date by replaying the batch headers after it.
//!
//! Snapshot format (big-endian): `version: u16 (=1)`, `crc: u32` (CRC32C of everything after it),
//! `count: u32`, then per producer: `producer_id: i64`, `epoch: i16`, `last_timestamp: i64`,
//! `last_offset: i64`, `batch_count: u8`, then per batch (oldest first): `first_seq: i32`,
//! `last_seq: i32`, `first_offset: i64`, `last_offset: i64`, `timestamp: i64`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::batch::{increment_sequence, BatchHeader};
use crate::error::{IoContext, Result};
use crate::file_system::fs;
use crate::fsutil::{offset_file_name, parse_offset_file_name, remove_if_exists, write_atomic};

/// Extension of producer-state snapshot files.
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
/// How many batches per producer are remembered for duplicate detection (Kafka's value).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;
const SNAPSHOTS_KEPT: usize = 2;
const VERSION: u16 = 1;

/// Outcome of [`crate::Log::check_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is the next in sequence (or from a new producer / new epoch starting at 0): append it.
    Append,
    /// The same (epoch, first_seq, last_seq) is one of the last 5 batches appended for this
    /// producer: don't append, answer with the original offsets.
    Duplicate {
        /// First offset of the original batch.
        first_offset: i64,
        /// Last offset of the original batch.
        last_offset: i64,
        /// Max timestamp of the original batch.
        timestamp: i64,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder {
        /// The sequence number the broker expected as `first_seq`.
        expected: i32,
    },
    /// Epoch older than the current one: INVALID_PRODUCER_EPOCH.
    InvalidProducerEpoch {
        /// The producer's current epoch.
        current: i16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
    timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_timestamp: i64,
    last_offset: i64,
}

/// In-memory producer state of one partition plus its snapshot files.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// Empty state for the partition in `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        ProducerStateManager { dir: dir.to_path_buf(), producers: HashMap::new() }
    }

    /// Number of producers tracked.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Applies one appended (or replayed) batch.
    pub(crate) fn update(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let e = self.producers.entry(h.producer_id).or_insert_with(|| ProducerEntry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_timestamp: h.max_timestamp,
            last_offset: h.last_offset(),
        });
        if e.epoch != h.producer_epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.last_timestamp = h.max_timestamp;
        e.last_offset = h.last_offset();
        if h.is_control() || h.base_sequence < 0 {
            return;
        }
        e.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        while e.batches.len() > MAX_CACHED_BATCHES {
            e.batches.pop_front();
        }
    }

    /// Kafka's duplicate and sequence validation for a client batch, before it is appended.
    pub(crate) fn check_sequence(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SequenceCheck {
        let Some(e) = self.producers.get(&producer_id) else {
            return SequenceCheck::Append;
        };
        if producer_epoch == e.epoch {
            if let Some(b) = e.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
                return SequenceCheck::Duplicate {
                    first_offset: b.first_offset,
                    last_offset: b.last_offset,
                    timestamp: b.timestamp,
                };
            }
        }
        if producer_epoch < e.epoch {
            return SequenceCheck::InvalidProducerEpoch { current: e.epoch };
        }
        if producer_epoch > e.epoch {
            return if first_seq == 0 { SequenceCheck::Append } else { SequenceCheck::OutOfOrder { expected: 0 } };
        }
        let expected = match e.batches.back() {
            Some(b) => increment_sequence(b.last_seq, 1),
            None => 0,
        };
        if first_seq == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Forgets every producer and deletes all snapshots.
    pub(crate) fn clear_all(&mut self) -> Result<()> {
        self.producers.clear();
        self.delete_snapshots_after(i64::MIN)
    }

    /// Forgets producers whose last batch is below the new log start offset.
    pub(crate) fn truncate_head(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| e.last_offset >= log_start_offset);
    }

    fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut body = Vec::new();
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let Some(e) = self.producers.get(id) else {
                continue;
            };
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.extend_from_slice(&e.last_offset.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(buf: &[u8]) -> std::result::Result<HashMap<i64, ProducerEntry>, String> {
        let mut r = Reader { buf, pos: 0 };
        if r.u16()? != VERSION {
            return Err("unsupported version".into());
        }
        let crc = r.u32()?;
        if crc32c::crc32c(&buf[6..]) != crc {
            return Err("CRC mismatch".into());
        }
        let count = r.u32()?;
        let mut map = HashMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_timestamp = r.i64()?;
            let last_offset = r.i64()?;
            let n = r.u8()?;
            let mut batches = VecDeque::new();
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            map.insert(id, ProducerEntry { epoch, batches, last_timestamp, last_offset });
        }
        if r.pos != buf.len() {
            return Err("trailing bytes".into());
        }
        Ok(map)
    }

    /// Writes `<offset>.snapshot` and removes all but the newest 2 snapshots.
    pub(crate) fn take_snapshot(&self, offset: i64) -> Result<()> {
        write_atomic(&self.dir, &offset_file_name(offset, SNAPSHOT_EXT), &self.encode())?;
        let snaps = list_snapshots(&self.dir)?;
        if snaps.len() > SNAPSHOTS_KEPT {
            for o in &snaps[..snaps.len() - SNAPSHOTS_KEPT] {
                remove_if_exists(&self.snapshot_path(*o))?;
            }
        }
        Ok(())
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir.join(offset_file_name(offset, SNAPSHOT_EXT))
    }

    /// Deletes snapshots taken above `offset` (they describe truncated data).
    pub(crate) fn delete_snapshots_after(&self, offset: i64) -> Result<()> {
        for o in list_snapshots(&self.dir)? {
            if o > offset {
                remove_if_exists(&self.snapshot_path(o))?;
            }
        }
        Ok(())
    }

    /// Replaces the in-memory state with the newest valid snapshot <= `max_offset` (deleting
    /// unreadable ones). Returns the snapshot's offset, or `None` (empty state) if there is none.
    pub(crate) fn load_latest_snapshot(&mut self, max_offset: i64) -> Result<Option<i64>> {
        self.producers.clear();
        for o in list_snapshots(&self.dir)?.into_iter().rev() {
            if o > max_offset {
                continue;
            }
            let path = self.snapshot_path(o);
            let buf = fs().read(&path).ctx(|| format!("read {}", path.display()))?;
            match Self::decode(&buf) {
                Ok(map) => {
                    self.producers = map;
                    return Ok(Some(o));
                }
                Err(reason) => {
                    warn!(snapshot = %path.display(), "discarding unreadable producer snapshot: {reason}");
                    remove_if_exists(&path)?;
                }
            }
        }
        Ok(None)
    }
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for ent in fs().read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let ent = ent.ctx(|| format!("list {}", dir.display()))?;
        if let Some(o) = ent.file_name().to_str().and_then(|n| parse_offset_file_name(n, SNAPSHOT_EXT)) {
            out.push(o);
        }
    }
    out.sort_unstable();
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let s = self.buf.get(self.pos..self.pos + N).ok_or_else(|| "truncated snapshot".to_string())?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        self.pos += N;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_util::{batch, B};
    use std::fs;

    fn hdr(base: i64, count: i32, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        BatchHeader::parse(&batch(B {
            base_offset: base,
            count,
            producer_id: pid,
            producer_epoch: epoch,
            base_seq: seq,
            ..B::default()
        }))
        .unwrap()
    }

    #[test]
    fn sequence_rules() {
        let d = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(d.path());
        assert_eq!(m.check_sequence(7, 0, 42, 43), SequenceCheck::Append);
        m.update(&hdr(0, 2, 7, 0, 0)); // seq 0..1 at offsets 0..1
        m.update(&hdr(2, 3, 7, 0, 2)); // seq 2..4 at offsets 2..4
        assert_eq!(m.check_sequence(7, 0, 5, 5), SequenceCheck::Append);
        assert_eq!(
            m.check_sequence(7, 0, 0, 1),
            SequenceCheck::Duplicate { first_offset: 0, last_offset: 1, timestamp: 1000 }
        );
        assert_eq!(m.check_sequence(7, 0, 7, 7), SequenceCheck::OutOfOrder { expected: 5 });
        assert_eq!(m.check_sequence(7, 1, 3, 3), SequenceCheck::OutOfOrder { expected: 0 });
        assert_eq!(m.check_sequence(7, 1, 0, 0), SequenceCheck::Append);
        m.update(&hdr(5, 1, 7, 1, 0));
        assert_eq!(m.check_sequence(7, 0, 5, 5), SequenceCheck::InvalidProducerEpoch { current: 1 });
        // only the last 5 batches are remembered
        for i in 1..=5 {
            m.update(&hdr(5 + i, 1, 7, 1, i as i32));
        }
        assert_eq!(m.check_sequence(7, 1, 0, 0), SequenceCheck::OutOfOrder { expected: 6 });
        assert!(matches!(m.check_sequence(7, 1, 1, 1), SequenceCheck::Duplicate { .. }));
    }

    #[test]
    fn sequence_wraps_around() {
        let d = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(d.path());
        m.update(&hdr(0, 2, 1, 0, i32::MAX - 1));
        assert_eq!(m.check_sequence(1, 0, 0, 3), SequenceCheck::Append);
    }

    #[test]
    fn snapshots_round_trip_and_prune() {
        let d = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new(d.path());
        m.update(&hdr(0, 2, 7, 3, 0));
        m.update(&hdr(2, 2, 8, 0, 10));
        for o in [2, 4, 6] {
            m.take_snapshot(o).unwrap();
        }
        assert_eq!(list_snapshots(d.path()).unwrap(), vec![4, 6]);
        let mut m2 = ProducerStateManager::new(d.path());
        assert_eq!(m2.load_latest_snapshot(5).unwrap(), Some(4));
        assert_eq!(m2.producers, m.producers);
        // a corrupt snapshot is skipped
        let p = d.path().join(offset_file_name(6, SNAPSHOT_EXT));
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        assert_eq!(m2.load_latest_snapshot(100).unwrap(), Some(4));
        assert_eq!(list_snapshots(d.path()).unwrap(), vec![4]);
    }
}
