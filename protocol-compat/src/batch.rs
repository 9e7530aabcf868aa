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

/// The header fields, parsed by the segment store's reader (one parser for
/// the wire and the disk: the format is the same).
pub use weir_storage::batch::{set_base_offset, set_partition_leader_epoch, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};

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

impl Compression {
    /// The codec of a batch.
    pub fn of(header: &BatchHeader) -> Compression {
        match header.compression() {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

/// Parses the header at the start of `buf` as the wire needs it: the whole
/// batch it announces must be present and it must be format v2. Does not
/// check the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_SIZE {
        return Err(BatchError::Truncated { needed: HEADER_SIZE, available: buf.len() });
    }
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let header = BatchHeader::parse(buf)
        .map_err(|_| BatchError::InvalidLength(i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]])))?;
    if buf.len() < header.total_size() {
        return Err(BatchError::Truncated { needed: header.total_size(), available: buf.len() });
    }
    Ok(header)
}

/// The CRC32C a batch should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks the stored CRC of a whole batch whose header already parsed.
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = compute_crc(&batch[..header.total_size()]);
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
        match parse_header(&self.records[self.position..]) {
            Ok(header) => {
                let range = self.position..self.position + header.total_size();
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

/// Turns the batch into a LogAppendTime batch stamped `timestamp`, as a
/// topic with `message.timestamp.type=LogAppendTime` does, and recomputes
/// the CRC (attributes and max timestamp are covered by it).
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTRIBUTE_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    set_max_timestamp(batch, timestamp);
}

/// Sets the header's max timestamp and recomputes the CRC (which covers it).
pub fn set_max_timestamp(batch: &mut [u8], timestamp: i64) {
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
        let h = parse_header(&b).unwrap();
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.records_count, 1);
        assert_eq!(h.max_timestamp, 1000);
        assert_eq!(Compression::of(&h), Compression::None);
        verify_crc(&b, &h).unwrap();
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = golden();
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = parse_header(&b).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.partition_leader_epoch), (42, 42, 7));
        verify_crc(&b, &h).unwrap();
        assert_eq!(&b[0..8], &[0, 0, 0, 0, 0, 0, 0, 42]);
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut b = golden();
        set_log_append_time(&mut b, 5555);
        let h = parse_header(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
        verify_crc(&b, &h).unwrap();
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = golden();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let h = parse_header(&b).unwrap();
        assert!(matches!(verify_crc(&b, &h), Err(BatchError::CrcMismatch { .. })));
        assert!(matches!(parse_header(&b[..30]), Err(BatchError::Truncated { .. })));
        let mut bad_magic = golden();
        bad_magic[16] = 1;
        assert_eq!(parse_header(&bad_magic), Err(BatchError::UnsupportedMagic(1)));
        let mut short = golden();
        short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(parse_header(&short), Err(BatchError::InvalidLength(3)));
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
}
