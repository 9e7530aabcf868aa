//! A zero-copy view over Kafka v2 record batches (magic 2).
//!
//! Layout of the 61-byte header, all big-endian:
//!
//! | offset | field                  | type |
//! |-------:|------------------------|------|
//! | 0      | base offset            | i64  |
//! | 8      | batch length (after this field) | i32 |
//! | 12     | partition leader epoch | i32  |
//! | 16     | magic (2)              | i8   |
//! | 17     | CRC32C of bytes 21..end| u32  |
//! | 21     | attributes             | i16  |
//! | 23     | last offset delta      | i32  |
//! | 27     | base timestamp         | i64  |
//! | 35     | max timestamp          | i64  |
//! | 43     | producer id            | i64  |
//! | 51     | producer epoch         | i16  |
//! | 53     | base sequence          | i32  |
//! | 57     | records count          | i32  |
//!
//! The CRC covers attributes onwards, so the leader may rewrite the base
//! offset and the partition leader epoch without recomputing it; switching a
//! batch to LogAppendTime changes attributes and max timestamp and so
//! recomputes the CRC. Records themselves are never decoded here.

use std::ops::Range;

/// Size of the v2 batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the batch length field's coverage starts (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const ATTRIBUTE_TIMESTAMP_TYPE: i16 = 0x08;

/// Why a batch is not a valid v2 batch. Each maps to CORRUPT_MESSAGE or
/// INVALID_RECORD at the produce path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or than the batch announces.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the header says the batch has.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// A batch length below the header size.
    #[error("record batch length {0} is below the v2 header size")]
    InvalidLength(i32),
    /// Not message format v2.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
}

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy (Java clients use the xerial framing).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A codec id Kafka does not define.
    Unknown(u8),
}

/// The decoded header fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the length field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Message format version (2).
    pub magic: i8,
    /// Stored CRC32C.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset of the last record relative to the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(v)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`, checking that the whole batch
    /// it announces is present and that it is format v2. Does not check the CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::Truncated { needed: HEADER_SIZE, available: buf.len() });
        }
        let batch_length = be_i32(buf, 8);
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let size = LOG_OVERHEAD + batch_length as usize;
        if buf.len() < size {
            return Err(BatchError::Truncated { needed: size, available: buf.len() });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Total size of the batch in bytes, header included.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Sequence of the last record (wrapping like Kafka's at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }

    /// The compression codec.
    pub fn compression(&self) -> Compression {
        match (self.attributes & 0x07) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// Whether timestamps are log append times.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_TIMESTAMP_TYPE != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Whether the batch was written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// The CRC32C a batch should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks the stored CRC of a whole batch whose header already parsed.
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = compute_crc(&batch[..header.size()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    Ok(())
}

/// Iterates over the batches of a record set, yielding each header with its
/// byte range. Stops at the first malformed batch, yielding its error.
pub fn batches(records: &[u8]) -> Batches<'_> {
    Batches { records, position: 0, failed: false }
}

/// Iterator returned by [`batches`].
pub struct Batches<'a> {
    records: &'a [u8],
    position: usize,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.records.len() {
            return None;
        }
        match BatchHeader::parse(&self.records[self.position..]) {
            Ok(header) => {
                let range = self.position..self.position + header.size();
                self.position = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Sets the base offset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Turns the batch into a LogAppendTime batch stamped `timestamp`, as a
/// topic with `message.timestamp.type=LogAppendTime` does, and recomputes
/// the CRC (attributes and max timestamp are covered by it).
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = be_i16(batch, 21) | ATTRIBUTE_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A golden batch: base offset 0, one uncompressed record "a"->"b" at
    /// timestamp 1000, no producer, CRC computed over the bytes below.
    fn golden() -> Vec<u8> {
        let record: &[u8] = &[
            0x10, // length 8 (zigzag)
            0x00, // attributes
            0x00, // timestamp delta 0
            0x00, // offset delta 0
            0x02, b'a', // key
            0x02, b'b', // value
            0x00, // headers
        ];
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + record.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&1000i64.to_be_bytes());
        b.extend_from_slice(&1000i64.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(record);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn golden_batch_parses_and_verifies() {
        let b = golden();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.size(), b.len());
        assert_eq!(h.records_count, 1);
        assert_eq!(h.max_timestamp, 1000);
        assert_eq!(h.compression(), Compression::None);
        verify_crc(&b, &h).unwrap();
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = golden();
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.partition_leader_epoch), (42, 42, 7));
        verify_crc(&b, &h).unwrap();
        assert_eq!(&b[0..8], &[0, 0, 0, 0, 0, 0, 0, 42]);
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut b = golden();
        set_log_append_time(&mut b, 5555);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
        verify_crc(&b, &h).unwrap();
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = golden();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let h = BatchHeader::parse(&b).unwrap();
        assert!(matches!(verify_crc(&b, &h), Err(BatchError::CrcMismatch { .. })));
        assert!(matches!(BatchHeader::parse(&b[..30]), Err(BatchError::Truncated { .. })));
        let mut bad_magic = golden();
        bad_magic[16] = 1;
        assert_eq!(BatchHeader::parse(&bad_magic), Err(BatchError::UnsupportedMagic(1)));
        let mut short = golden();
        short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&short), Err(BatchError::InvalidLength(3)));
    }

    #[test]
    fn iterates_concatenated_batches_and_stops_at_garbage() {
        let mut set = golden();
        set.extend_from_slice(&golden());
        set.extend_from_slice(&[1, 2, 3]);
        let items: Vec<_> = batches(&set).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    }

    #[test]
    fn sequence_wraps() {
        let mut h = BatchHeader::parse(&golden()).unwrap();
        h.base_sequence = i32::MAX;
        h.last_offset_delta = 1;
        assert_eq!(h.last_sequence(), 0);
    }
}
