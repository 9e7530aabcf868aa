//! Validation of a producer's records before the leader appends them, as
//! Kafka's LogValidator does it: one v2 batch per partition, intact CRC,
//! within `max.message.bytes`, consistent counts, no control batches from
//! clients, a sequence with every producer id, then every record walked
//! (through its codec, in bounded memory) for its framing, a key on
//! compacted topics and a timestamp within the configured bounds. The header's
//! max timestamp is set to the records' own, as Kafka does; nothing else of
//! the producer's bytes changes.
//!
//! Everything the walk refuses (unknown codec, records that do not
//! decompress, broken framing, counts that do not match) is INVALID_RECORD,
//! which clients do not retry; Kafka answers some of these with
//! UNKNOWN_SERVER_ERROR or stores them.

use bytes::{Bytes, BytesMut};
use weir_protocol::batch::{self, BatchError, BatchHeader};
use weir_protocol::records::{walk_records, RecordInfo};
use weir_storage::batch::NO_TIMESTAMP;

use weir_protocol::ErrorCode;

use crate::admin::configs::TopicSettings;

/// Why a partition's records were refused: Kafka's error code, its message
/// and, for per-record problems, (record index, message) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsRejected {
    /// The partition error.
    pub code: ErrorCode,
    /// Human-readable reason, sent as the partition's error message.
    pub message: String,
    /// Per-record errors (index within the batch, message).
    pub record_errors: Vec<(i32, String)>,
}

impl RecordsRejected {
    /// A rejection with no per-record detail.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RecordsRejected { code, message: message.into(), record_errors: Vec::new() }
    }
}

/// A batch that passed validation, copied so the leader can rewrite its header.
#[derive(Debug)]
pub struct ValidBatch {
    /// The batch bytes.
    pub bytes: BytesMut,
    /// Its parsed header.
    pub header: BatchHeader,
}

/// Validates the records a Produce request carries for one partition.
pub fn validate_records(
    records: &Bytes,
    settings: &TopicSettings,
    topic_partition: &str,
    now_ms: i64,
) -> Result<ValidBatch, RecordsRejected> {
    let mut iter = batch::batches(records);
    let (header, range) = match iter.next() {
        None => return Err(RecordsRejected::new(ErrorCode::InvalidRecord, "Produce request contains no record batch")),
        Some(Ok(found)) => found,
        Some(Err(BatchError::UnsupportedMagic(magic))) => {
            return Err(RecordsRejected::new(
                ErrorCode::InvalidRecord,
                format!(
                    "Produce requests with version 3 and above only accept record batches with magic 2, got {magic}"
                ),
            ))
        }
        Some(Err(e)) => return Err(RecordsRejected::new(ErrorCode::CorruptMessage, e.to_string())),
    };
    if range.end != records.len() {
        return Err(RecordsRejected::new(
            ErrorCode::InvalidRecord,
            "Produce requests with version 3 and above may only contain exactly one record batch",
        ));
    }
    if header.total_size() > settings.max_message_bytes {
        return Err(RecordsRejected::new(
            ErrorCode::MessageTooLarge,
            format!(
                "The record batch size in the append to {topic_partition} is {} bytes which exceeds the maximum configured value of {}.",
                header.total_size(),
                settings.max_message_bytes
            ),
        ));
    }
    let bytes = &records[range];
    batch::verify_crc(bytes, &header)
        .map_err(|e| RecordsRejected::new(ErrorCode::CorruptMessage, format!("{e} in {topic_partition}")))?;
    if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
        return Err(RecordsRejected::new(
            ErrorCode::InvalidRecord,
            format!(
                "Record batch with {} records and last offset delta {} is inconsistent",
                header.records_count, header.last_offset_delta
            ),
        ));
    }
    if header.is_control() {
        return Err(RecordsRejected::new(ErrorCode::InvalidRecord, "Clients are not allowed to write control records"));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(RecordsRejected::new(
            ErrorCode::InvalidRecord,
            format!(
                "Invalid sequence number {} in record batch with producerId {} in topic partition {topic_partition}",
                header.base_sequence, header.producer_id
            ),
        ));
    }
    let mut checks = RecordChecks::new(&header, settings, topic_partition, now_ms);
    walk_records(bytes, &header, |record| checks.check(record)).map_err(|e| {
        RecordsRejected::new(ErrorCode::InvalidRecord, format!("{e} in topic partition {topic_partition}"))
    })?;
    let max_timestamp = checks.finish()?;
    let mut bytes = BytesMut::from(bytes);
    if !header.is_log_append_time() && max_timestamp != header.max_timestamp {
        // As Kafka: the header carries the records' real max timestamp.
        batch::set_max_timestamp(&mut bytes, max_timestamp);
    }
    Ok(ValidBatch { bytes, header })
}

/// Per-record errors kept for the response; the count goes on past it. A
/// bound, because a compressed batch can hold millions of records.
const MAX_RECORD_ERRORS: usize = 1000;

/// Kafka's per-record checks (keys on compacted topics, timestamps), with
/// the max timestamp of the records.
struct RecordChecks<'a> {
    header: &'a BatchHeader,
    settings: &'a TopicSettings,
    topic_partition: &'a str,
    now_ms: i64,
    max_timestamp: i64,
    errors: Vec<(i32, String)>,
    error_count: usize,
    any_timestamp_error: bool,
}

impl<'a> RecordChecks<'a> {
    fn new(header: &'a BatchHeader, settings: &'a TopicSettings, topic_partition: &'a str, now_ms: i64) -> Self {
        RecordChecks {
            header,
            settings,
            topic_partition,
            now_ms,
            max_timestamp: NO_TIMESTAMP,
            errors: Vec::new(),
            error_count: 0,
            any_timestamp_error: false,
        }
    }

    fn check(&mut self, record: &RecordInfo) {
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        if self.settings.compact && !record.has_key {
            let message = format!(
                "Compacted topic cannot accept message without key in topic partition {}.",
                self.topic_partition
            );
            self.reject(record.index, message, false);
        } else if let Some(message) = self.timestamp_error(record) {
            self.reject(record.index, message, true);
        }
    }

    fn timestamp_error(&self, record: &RecordInfo) -> Option<String> {
        if !self.settings.log_append_time && record.timestamp != NO_TIMESTAMP {
            let (earliest, latest) = (
                self.now_ms.saturating_sub(self.settings.timestamp_before_max_ms),
                self.now_ms.saturating_add(self.settings.timestamp_after_max_ms),
            );
            (record.timestamp < earliest || record.timestamp > latest).then(|| {
                format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{earliest}, {latest}]",
                    record.timestamp, record.offset_delta
                )
            })
        } else if self.header.is_log_append_time() {
            Some(format!(
                "Invalid timestamp type in message {} of {}. Producer should not set timestamp type to LogAppendTime.",
                record.index, self.topic_partition
            ))
        } else {
            None
        }
    }

    fn reject(&mut self, index: i32, message: String, timestamp: bool) {
        self.error_count += 1;
        self.any_timestamp_error |= timestamp;
        if self.errors.len() < MAX_RECORD_ERRORS {
            self.errors.push((index, message));
        }
    }

    /// The records' max timestamp, or the rejection of the batch, as
    /// Kafka's `processRecordErrors` words it.
    fn finish(self) -> Result<i64, RecordsRejected> {
        if self.errors.is_empty() {
            return Ok(self.max_timestamp);
        }
        let message = if self.any_timestamp_error {
            "One or more records have been rejected due to invalid timestamp".to_string()
        } else {
            let shown: Vec<String> = self
                .errors
                .iter()
                .take(3)
                .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{message}')"))
                .collect();
            format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                self.error_count,
                shown.join(", ")
            )
        };
        let code = if self.any_timestamp_error { ErrorCode::InvalidTimestamp } else { ErrorCode::InvalidRecord };
        Err(RecordsRejected { code, message, record_errors: self.errors })
    }
}

/// The offset and timestamp of the first record in `batch_bytes` whose
/// timestamp is at least `target` (ListOffsets by timestamp), or of the
/// first record carrying the batch's max timestamp when `target` is `None`.
pub fn find_record_by_timestamp(batch_bytes: &Bytes, target: Option<i64>) -> Option<(i64, i64)> {
    let header = batch::parse_header(batch_bytes).ok()?;
    let mut found: Option<(i32, i64)> = None;
    walk_records(batch_bytes, &header, |record| match (target, found) {
        (Some(ts), None) if record.timestamp >= ts => found = Some((record.offset_delta, record.timestamp)),
        (None, Some((_, best))) if best >= record.timestamp => {}
        (None, _) => found = Some((record.offset_delta, record.timestamp)),
        _ => {}
    })
    .ok()?;
    found.map(|(delta, timestamp)| (header.base_offset + i64::from(delta), timestamp))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
