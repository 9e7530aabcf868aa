//! Zero-copy view of Kafka v2 record-batch headers.
//!
//! A batch on disk is exactly the wire format: a 61-byte header followed by opaque records.
//! All integers are big-endian:
//!
//! | offset | field                | type |
//! |-------:|----------------------|------|
//! | 0      | baseOffset           | i64  |
//! | 8      | batchLength          | i32 (bytes after this field; total = 12 + batchLength) |
//! | 12     | partitionLeaderEpoch | i32  |
//! | 16     | magic                | i8 (always 2) |
//! | 17     | crc                  | u32 (CRC32C of bytes 21..end) |
//! | 21     | attributes           | i16  |
//! | 23     | lastOffsetDelta      | i32  |
//! | 27     | baseTimestamp        | i64  |
//! | 35     | maxTimestamp         | i64  |
//! | 43     | producerId           | i64  |
//! | 51     | producerEpoch        | i16  |
//! | 53     | baseSequence         | i32  |
//! | 57     | recordsCount         | i32  |
//!
//! The store never looks inside the records.

use crate::error::{Result, StorageError};

/// Size of the fixed v2 batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before (and including) the batchLength field: `baseOffset` + `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported record-batch magic value.
pub const MAGIC_V2: i8 = 2;
/// Offset of the first byte covered by the CRC (the attributes field).
pub const CRC_START: usize = 21;
/// "No timestamp" sentinel used by Kafka.
pub const NO_TIMESTAMP: i64 = -1;
/// "No sequence" sentinel used by Kafka.
pub const NO_SEQUENCE: i32 = -1;

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The parsed fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version (2).
    pub magic: i8,
    /// CRC32C over bytes 21..end.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// lastOffset - baseOffset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which must hold at least [`HEADER_SIZE`] bytes).
    /// Checks only that the batch length is at least a header's worth; not magic or CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < HEADER_SIZE {
            return Err(StorageError::InvalidAppend(format!(
                "batch header needs {HEADER_SIZE} bytes, got {}",
                buf.len()
            )));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if (h.batch_length as i64) < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
            return Err(StorageError::InvalidAppend(format!(
                "batch at offset {} has invalid length {}",
                h.base_offset, h.batch_length
            )));
        }
        Ok(h)
    }

    /// Total size of the batch in bytes (header included).
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Sequence number of the last record (wrapping past `i32::MAX` to 0), or -1 without sequences.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Compression codec (attribute bits 0-2).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// True when timestamps are LogAppendTime (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// True for transactional batches (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True for control batches such as transaction markers (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// `seq + inc` with Kafka's wrap-around from `i32::MAX` to 0.
pub fn increment_sequence(seq: i32, inc: i32) -> i32 {
    if seq > i32::MAX - inc {
        inc - (i32::MAX - seq) - 1
    } else {
        seq + inc
    }
}

/// Returns true when the CRC32C stored in `batch` (a whole batch) matches its contents.
pub fn crc_is_valid(batch: &[u8]) -> bool {
    if batch.len() < HEADER_SIZE {
        return false;
    }
    let stored = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    crc32c::crc32c(&batch[CRC_START..]) == stored
}

/// Overwrites the base offset of the batch at the start of `batch` (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= 8 {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Overwrites the partition leader epoch of the batch at the start of `batch` (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if batch.len() >= 16 {
        batch[12..16].copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Iterator over the batches of a buffer holding whole, concatenated batches.
/// Yields `(header, batch bytes)`; an incomplete or malformed batch ends iteration with an error.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, pos: 0 }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let h = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let size = h.total_size();
        if size > rest.len() {
            self.pos = self.buf.len();
            return Some(Err(StorageError::InvalidAppend(format!(
                "batch at offset {} claims {} bytes but only {} remain",
                h.base_offset,
                size,
                rest.len()
            ))));
        }
        self.pos += size;
        Some(Ok((h, &rest[..size])))
    }
}

/// Builds valid v2 batches for tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// Parameters of a test batch.
    #[derive(Clone, Copy)]
    pub struct B {
        pub base_offset: i64,
        pub count: i32,
        pub ts: i64,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_seq: i32,
        pub leader_epoch: i32,
        pub payload: usize,
    }

    impl Default for B {
        fn default() -> Self {
            B {
                base_offset: 0,
                count: 1,
                ts: 1000,
                producer_id: -1,
                producer_epoch: -1,
                base_seq: -1,
                leader_epoch: 0,
                payload: 20,
            }
        }
    }

    /// Encodes one batch with a correct CRC32C over fake record bytes.
    pub fn batch(b: B) -> Vec<u8> {
        let mut v = Vec::with_capacity(61 + b.payload);
        v.extend_from_slice(&b.base_offset.to_be_bytes());
        let len = (61 - 12 + b.payload) as i32;
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&b.leader_epoch.to_be_bytes());
        v.push(2);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(&0i16.to_be_bytes());
        v.extend_from_slice(&(b.count - 1).to_be_bytes());
        v.extend_from_slice(&b.ts.to_be_bytes());
        v.extend_from_slice(&b.ts.to_be_bytes());
        v.extend_from_slice(&b.producer_id.to_be_bytes());
        v.extend_from_slice(&b.producer_epoch.to_be_bytes());
        v.extend_from_slice(&b.base_seq.to_be_bytes());
        v.extend_from_slice(&b.count.to_be_bytes());
        for i in 0..b.payload {
            v.push((i as u8).wrapping_mul(31).wrapping_add(b.base_offset as u8));
        }
        let crc = crc32c::crc32c(&v[21..]);
        v[17..21].copy_from_slice(&crc.to_be_bytes());
        v
    }

    /// The header of a batch of `n` records at `base` from producer `pid` (-1: none) starting at
    /// sequence `seq`, for `compaction::build_batch` (which fills in length, count and CRC).
    pub fn header_template(base: i64, n: i32, ts: i64, pid: i64, seq: i32) -> super::BatchHeader {
        super::BatchHeader {
            base_offset: base,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: ts,
            max_timestamp: ts + i64::from(n) - 1,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            base_sequence: seq,
            records_count: n,
        }
    }

    /// A simple batch at `base` with `count` records and timestamp `ts`.
    pub fn simple(base: i64, count: i32, ts: i64) -> Vec<u8> {
        batch(B { base_offset: base, count, ts, ..B::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn parse_round_trip() {
        let b = batch(B {
            base_offset: 42,
            count: 3,
            ts: 7,
            producer_id: 9,
            producer_epoch: 1,
            base_seq: 5,
            leader_epoch: 4,
            payload: 10,
        });
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 44);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.partition_leader_epoch, 4);
        assert_eq!(h.max_timestamp, 7);
        assert_eq!(h.producer_id, 9);
        assert_eq!(h.last_sequence(), 7);
        assert!(crc_is_valid(&b));
        let mut bad = b.clone();
        bad[70] ^= 1;
        assert!(!crc_is_valid(&bad));
        // base offset and leader epoch are outside the CRC
        let mut moved = b.clone();
        set_base_offset(&mut moved, 100);
        set_partition_leader_epoch(&mut moved, 8);
        assert!(crc_is_valid(&moved));
        assert_eq!(BatchHeader::parse(&moved).unwrap().base_offset, 100);
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }

    #[test]
    fn iter_detects_truncation() {
        let mut buf = simple(0, 1, 1);
        buf.extend_from_slice(&simple(1, 1, 1));
        let n = BatchIter::new(&buf).count();
        assert_eq!(n, 2);
        buf.truncate(buf.len() - 1);
        let r: Vec<_> = BatchIter::new(&buf).collect();
        assert!(r[0].is_ok());
        assert!(r[1].is_err());
    }
}
