//! The leader's record checks on batches from `kafka-protocol`'s encoder.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

use super::*;
use crate::admin::configs::resolve_topic_configs;
use crate::config::BrokerConfig;
use crate::replica::plain_record;

const NOW: i64 = 1_700_000_000_000;

fn settings(overrides: &[(&str, &str)]) -> TopicSettings {
    let broker = BrokerConfig::from_raw(BTreeMap::new()).unwrap();
    let overrides: BTreeMap<String, String> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TopicSettings::from_resolved(&resolve_topic_configs(&broker, &overrides))
}

/// One batch of records with the given keys and timestamps.
fn batch(records: &[(Option<&str>, i64)], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, timestamp))| {
            plain_record(
                i,
                *timestamp,
                key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                Some(Bytes::from_static(b"value")),
            )
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    out.freeze()
}

#[test]
fn a_compacted_topic_refuses_records_without_keys_and_bounds_the_error_list() {
    let compact = settings(&[("cleanup.policy", "compact")]);
    let ok = batch(&[(Some("a"), NOW), (Some("b"), NOW)], Compression::Lz4);
    assert!(validate_records(&ok, &compact, "t-0", NOW).is_ok());
    let keyless: Vec<(Option<&str>, i64)> = (0..1500).map(|i| (if i == 7 { Some("k") } else { None }, NOW)).collect();
    let rejected = validate_records(&batch(&keyless, Compression::Zstd), &compact, "t-0", NOW).unwrap_err();
    assert_eq!(rejected.code, ErrorCode::InvalidRecord);
    assert_eq!(rejected.record_errors.len(), MAX_RECORD_ERRORS);
    assert_eq!(rejected.record_errors[7].0, 8, "record 7 has a key");
    assert!(rejected.message.contains("1499 record errors"), "{}", rejected.message);
    // The same records are fine where keys are not needed.
    assert!(validate_records(&batch(&keyless, Compression::Zstd), &settings(&[]), "t-0", NOW).is_ok());
}

#[test]
fn every_record_timestamp_is_checked_not_only_the_header() {
    let bounded = settings(&[("message.timestamp.before.max.ms", "3600000")]);
    let records = [(Some("a"), NOW), (Some("b"), NOW - 10 * 86_400_000), (Some("c"), NOW)];
    let rejected = validate_records(&batch(&records, Compression::Gzip), &bounded, "t-0", NOW).unwrap_err();
    assert_eq!(rejected.code, ErrorCode::InvalidTimestamp);
    assert_eq!(rejected.record_errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1]);
    // Kafka's `-1` (no timestamp) is not checked.
    assert!(validate_records(&batch(&[(Some("a"), -1)], Compression::None), &bounded, "t-0", NOW).is_ok());
}

#[test]
fn the_header_max_timestamp_is_set_to_the_records_own() {
    let mut lying = BytesMut::from(&batch(&[(Some("a"), NOW - 5), (Some("b"), NOW - 1)], Compression::Snappy)[..]);
    batch::set_max_timestamp(&mut lying, NOW + 1_000_000);
    let valid = validate_records(&lying.freeze(), &settings(&[]), "t-0", NOW).unwrap();
    let header = batch::parse_header(&valid.bytes).unwrap();
    assert_eq!(header.max_timestamp, NOW - 1);
    batch::verify_crc(&valid.bytes, &header).unwrap();
}

#[test]
fn a_producer_id_needs_a_sequence() {
    let mut bytes = BytesMut::from(&batch(&[(Some("a"), NOW)], Compression::None)[..]);
    bytes[43..51].copy_from_slice(&7i64.to_be_bytes());
    let crc = batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let rejected = validate_records(&bytes.freeze(), &settings(&[]), "t-0", NOW).unwrap_err();
    assert_eq!(rejected.code, ErrorCode::InvalidRecord);
    assert!(rejected.message.contains("Invalid sequence number -1"), "{}", rejected.message);
}

#[test]
fn list_offsets_finds_records_inside_compressed_batches() {
    let b = batch(&[(Some("a"), 10), (Some("b"), 30), (Some("c"), 20)], Compression::Zstd);
    assert_eq!(find_record_by_timestamp(&b, Some(15)), Some((1, 30)));
    assert_eq!(find_record_by_timestamp(&b, Some(31)), None);
    assert_eq!(find_record_by_timestamp(&b, None), Some((1, 30)));
}
