//! Validation of a producer's records before the leader appends them, as
//! Kafka's LogValidator does it: one v2 batch per partition, intact CRC,
//! within `max.message.bytes`, consistent counts, no control batches from
//! clients, keys on compacted topics, timestamps within the configured
//! bounds. Only the batch header is read, except on compacted topics where
//! every key must be seen.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use weir_protocol::batch::{self, BatchError, BatchHeader};

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
    if !header.is_log_append_time()
        && header.max_timestamp >= 0
        && (now_ms.saturating_sub(header.base_timestamp.min(header.max_timestamp)) > settings.timestamp_before_max_ms
            || header.max_timestamp.saturating_sub(now_ms) > settings.timestamp_after_max_ms)
    {
        return Err(RecordsRejected::new(
            ErrorCode::InvalidTimestamp,
            format!(
                "Timestamp {} of a record in {topic_partition} is out of the range allowed by message.timestamp.before/after.max.ms",
                header.max_timestamp
            ),
        ));
    }
    if settings.compact {
        check_keys(bytes, topic_partition)?;
    }
    Ok(ValidBatch { bytes: BytesMut::from(bytes), header })
}

/// A compacted topic keeps the latest record per key, so every record needs one.
fn check_keys(batch_bytes: &[u8], topic_partition: &str) -> Result<(), RecordsRejected> {
    let mut buf = Bytes::copy_from_slice(batch_bytes);
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| RecordsRejected::new(ErrorCode::CorruptMessage, format!("records do not decode: {e}")))?;
    let message = format!("Compacted topic cannot accept message without key in topic partition {topic_partition}.");
    let record_errors: Vec<(i32, String)> = set
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| (i as i32, message.clone()))
        .collect();
    if record_errors.is_empty() {
        return Ok(());
    }
    Err(RecordsRejected {
        code: ErrorCode::InvalidRecord,
        message: format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first error: {message}",
            record_errors.len()
        ),
        record_errors,
    })
}

/// The offset and timestamp of the first record in `batch_bytes` whose
/// timestamp is at least `target` (ListOffsets by timestamp), or of the
/// record carrying the batch's max timestamp when `target` is `None`.
pub fn find_record_by_timestamp(batch_bytes: &Bytes, target: Option<i64>) -> Option<(i64, i64)> {
    let header = batch::parse_header(batch_bytes).ok()?;
    if header.is_log_append_time() {
        // Every record carries the batch's append time.
        return Some((header.base_offset, header.max_timestamp));
    }
    let mut buf = batch_bytes.clone();
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    match target {
        Some(ts) => set.records.iter().find(|r| r.timestamp >= ts).map(|r| (r.offset, r.timestamp)),
        None => set.records.iter().fold(None::<(i64, i64)>, |best, r| match best {
            Some((_, t)) if t >= r.timestamp => best,
            _ => Some((r.offset, r.timestamp)),
        }),
    }
}
