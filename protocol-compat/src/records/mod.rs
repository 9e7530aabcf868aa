//! A walk over the records inside one v2 batch, checking their framing as
//! Kafka's `DefaultRecord` reader and `LogValidator` do, without keeping
//! them: the leader validates a producer's batch with it and then stores the
//! producer's bytes unchanged.
//!
//! Each record is
//! `length varint, attributes i8, timestamp delta varlong, offset delta
//! varint, key (varint length, -1 = null), value (likewise), header count
//! varint, headers (key: varint length >= 0, value: varint length, -1 =
//! null)`, and its `length` must cover exactly those fields.
//!
//! Memory stays bounded whatever the lengths and counts say: nothing is
//! allocated from a length or count read off the wire; keys, values and
//! headers are skipped, never copied; a compressed records section is
//! streamed through its codec ([`decompress`]). A length can never reach past
//! its record, and a record past the batch's data, so a lying count or
//! length costs at most one pass over the bytes really present.
//!
//! Stricter than Kafka in two places, both to keep every client able to read
//! what Weir stores: a key or value length below -1 (Kafka reads any
//! negative length as null, librdkafka refuses the record) and offset deltas
//! that are not 0, 1, 2, ... (Kafka rewrites such a compressed batch, which
//! Weir never does) are refused.

pub mod decompress;

use std::io::BufRead;

use crate::batch::{BatchHeader, Compression};

/// What the validator needs to know of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Position of the record in its batch (0-based).
    pub index: i32,
    /// Offset delta from the batch's base offset.
    pub offset_delta: i32,
    /// The record's timestamp: the base timestamp plus its delta, or, in a
    /// LogAppendTime batch, the batch's max timestamp (as Kafka reads it).
    pub timestamp: i64,
    /// Whether the key is non-null.
    pub has_key: bool,
}

/// Why the records of a batch are not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// Attribute bits 0-2 name no codec Kafka defines.
    #[error("Unknown compression type id: {0}")]
    UnknownCompression(u8),
    /// The records section does not decompress with the batch's codec.
    #[error("the records do not decompress with {codec}: {reason}")]
    Decompression {
        /// The codec's name.
        codec: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// A record's framing is broken.
    #[error("record {index}: {reason}")]
    InvalidRecord {
        /// Position of the record in its batch.
        index: i32,
        /// What is wrong.
        reason: String,
    },
    /// The records do not fill the batch exactly as its header says.
    #[error("{0}")]
    InvalidBatch(String),
}

/// Walks every record of `batch` (a whole v2 batch whose header `header`
/// parsed and whose CRC matched), calling `visit` for each in order, and
/// checks that exactly `header.records_count` records fill the records
/// section.
pub fn walk_records(batch: &[u8], header: &BatchHeader, visit: impl FnMut(&RecordInfo)) -> Result<(), RecordsError> {
    let section = &batch[crate::batch::HEADER_SIZE.min(batch.len())..header.total_size().min(batch.len())];
    let codec = match Compression::of(header) {
        Compression::Unknown(id) => return Err(RecordsError::UnknownCompression(id)),
        _ => header.compression(),
    };
    if codec == 0 {
        // Uncompressed, the common case: the walk reads the slice directly.
        walk(&mut &section[..], codec, header, visit)
    } else {
        walk(&mut decompress::reader(codec, section)?, codec, header, visit)
    }
}

fn walk<R: BufRead + ?Sized>(
    source: &mut R,
    codec: u8,
    header: &BatchHeader,
    mut visit: impl FnMut(&RecordInfo),
) -> Result<(), RecordsError> {
    let mut cursor = Cursor { source, left: 0 };
    let count = header.records_count.max(0);
    for index in 0..count {
        let info = cursor.record(index, header).map_err(|reason| match reason {
            Failure::Io(reason) => RecordsError::Decompression { codec: decompress::codec_name(codec), reason },
            Failure::Record(reason) => RecordsError::InvalidRecord { index, reason },
            Failure::EndOfRecords => RecordsError::InvalidBatch(format!(
                "Incorrect declared batch size: the header counts {count} records, the data ends after {index}"
            )),
        })?;
        visit(&info);
    }
    match cursor.at_end() {
        Ok(true) => Ok(()),
        Ok(false) => Err(RecordsError::InvalidBatch(format!(
            "Incorrect declared batch size: bytes remain after the {count} records the header counts"
        ))),
        Err(Failure::Io(reason)) => Err(RecordsError::Decompression { codec: decompress::codec_name(codec), reason }),
        Err(_) => Err(RecordsError::InvalidBatch("the records section does not end cleanly".into())),
    }
}

enum Failure {
    /// The decompressor failed.
    Io(String),
    /// The record is malformed.
    Record(String),
    /// The data ended before the record's length.
    EndOfRecords,
}

/// Reads fields off the records section; `left` is what remains of the
/// current record's declared length, and no read may go past it.
struct Cursor<'a, R: BufRead + ?Sized> {
    source: &'a mut R,
    left: u64,
}

impl<R: BufRead + ?Sized> Cursor<'_, R> {
    fn record(&mut self, index: i32, header: &BatchHeader) -> Result<RecordInfo, Failure> {
        // The length prefix is not part of the record, so no limit applies to it.
        self.left = u64::MAX;
        if self.source_is_empty()? {
            return Err(Failure::EndOfRecords);
        }
        let length = self.varint()?;
        if length < 0 {
            return Err(Failure::Record(format!("Invalid record size {length}")));
        }
        self.left = length as u64;
        let _attributes = self.byte()?;
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        let key_length = self.varint()?;
        self.skip_nullable(key_length, "key")?;
        let value_length = self.varint()?;
        self.skip_nullable(value_length, "value")?;
        let header_count = self.varint()?;
        if header_count < 0 {
            return Err(Failure::Record(format!("Found invalid number of record headers {header_count}")));
        }
        for _ in 0..header_count {
            let key_length = self.varint()?;
            if key_length < 0 {
                return Err(Failure::Record(format!("Invalid negative header key size {key_length}")));
            }
            self.skip(key_length as u64)?;
            let value_length = self.varint()?;
            self.skip_nullable(value_length, "header value")?;
        }
        if self.left != 0 {
            return Err(Failure::Record(format!(
                "Invalid record size: expected to read {length} bytes in record payload, but instead read {}",
                length as u64 - self.left
            )));
        }
        if offset_delta != index {
            return Err(Failure::Record(format!("Record {index} has offset delta {offset_delta}, expected {index}")));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        Ok(RecordInfo { index, offset_delta, timestamp, has_key: key_length >= 0 })
    }

    fn source_is_empty(&mut self) -> Result<bool, Failure> {
        Ok(self.source.fill_buf().map_err(|e| Failure::Io(e.to_string()))?.is_empty())
    }

    /// Whether the records section has no byte left.
    fn at_end(&mut self) -> Result<bool, Failure> {
        self.source_is_empty()
    }

    fn byte(&mut self) -> Result<u8, Failure> {
        if self.left == 0 {
            return Err(Failure::Record(
                "Found invalid record structure: a field runs past the record's length".into(),
            ));
        }
        let buf = self.source.fill_buf().map_err(|e| Failure::Io(e.to_string()))?;
        let Some(&b) = buf.first() else {
            return Err(Failure::Record("Found invalid record structure: the data ends inside a record".into()));
        };
        self.source.consume(1);
        self.left -= 1;
        Ok(b)
    }

    /// A zigzag varint of at most `bits` bits (32 or 64), as Kafka's
    /// `ByteUtils` reads it: 7 bits a byte, low bits first.
    fn zigzag(&mut self, bits: u32) -> Result<i64, Failure> {
        let mut raw: u64 = 0;
        let mut shift = 0;
        while shift < bits {
            let b = self.byte()?;
            let chunk = u64::from(b & 0x7f);
            if shift + 7 > bits && chunk >> (bits - shift) != 0 {
                break;
            }
            raw |= chunk << shift;
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
            shift += 7;
        }
        Err(Failure::Record("Found invalid record structure: varint is too long".into()))
    }

    fn varint(&mut self) -> Result<i32, Failure> {
        self.zigzag(32).map(|v| v as i32)
    }

    fn varlong(&mut self) -> Result<i64, Failure> {
        self.zigzag(64)
    }

    fn skip_nullable(&mut self, length: i32, what: &str) -> Result<(), Failure> {
        match length {
            -1 => Ok(()),
            l if l < -1 => Err(Failure::Record(format!("Invalid {what} size {l}"))),
            l => self.skip(l as u64),
        }
    }

    fn skip(&mut self, mut n: u64) -> Result<(), Failure> {
        if n > self.left {
            return Err(Failure::Record(format!(
                "Found invalid record structure: a field of {n} bytes runs past the record's length"
            )));
        }
        while n > 0 {
            let buf = self.source.fill_buf().map_err(|e| Failure::Io(e.to_string()))?;
            if buf.is_empty() {
                return Err(Failure::Record("Found invalid record structure: the data ends inside a record".into()));
            }
            let step = (buf.len() as u64).min(n) as usize;
            self.source.consume(step);
            self.left -= step as u64;
            n -= step as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
