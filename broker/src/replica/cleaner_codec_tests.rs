//! The cleaner with real codecs: compressed batches from `RecordBatchEncoder`
//! are compacted and read back with `RecordBatchDecoder`, and a compacted
//! `__consumer_offsets` still loads.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_storage::batch::{crc_is_valid, BatchHeader, BatchIter};
use weir_storage::{CleanOptions, Log, LogConfig, RecordCodec};

use super::KafkaCodecs;
use crate::group::coordinator::Committer;

/// A commit outside any group membership.
const STANDALONE: Committer<'static> = Committer { member_id: "", instance: None, generation_id: -1, api_version: 9 };
use crate::group::coordinator::OffsetCommit;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::test_support::{create_topic, test_broker};

#[test]
fn every_codec_round_trips() {
    let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_be_bytes()).collect();
    for codec in 0..=4u8 {
        let packed = KafkaCodecs.compress(codec, &data).unwrap();
        assert_eq!(KafkaCodecs.decompress(codec, &packed).unwrap(), data, "codec {codec}");
        if codec != 0 {
            assert!(packed.len() < data.len() / 2, "codec {codec} compresses");
        }
    }
    assert!(KafkaCodecs.decompress(1, b"not gzip").is_err());
    assert!(KafkaCodecs.compress(5, b"x").is_err());
}

/// One batch at `base` of `kvs` (value `None` = tombstone) from producer
/// `pid` (-1: none), encoded by `kafka-protocol` with `compression`.
fn batch(base: i64, kvs: &[(&str, Option<&str>)], compression: Compression, pid: i64, base_seq: i32) -> Vec<u8> {
    let records: Vec<Record> = kvs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 3,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 5 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            // The encoder splits batches when offset - sequence changes.
            sequence: if pid >= 0 { base_seq + i as i32 } else { i as i32 - 1 },
            timestamp: 1_000 + base + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::from([("h".into(), Some(Bytes::from_static(b"hv")))]),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    assert_eq!(BatchIter::new(&buf).count(), 1);
    buf.to_vec()
}

fn decoded(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut bytes = log.read(log.log_start_offset(), usize::MAX, i64::MAX, false).unwrap();
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        for r in set.records {
            assert_eq!(r.headers.get("h".as_bytes()), Some(&Some(Bytes::from_static(b"hv"))));
            let s = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
            out.push((r.offset, s(r.key.unwrap()), r.value.map(s)));
        }
    }
    out
}

fn headers(log: &Log) -> Vec<BatchHeader> {
    let bytes = log.read(log.log_start_offset(), usize::MAX, i64::MAX, false).unwrap();
    BatchIter::new(&bytes)
        .map(|r| {
            let (h, b) = r.unwrap();
            assert!(crc_is_valid(b));
            h
        })
        .collect()
}

#[test]
fn compressed_batches_are_compacted_with_their_codec_and_header() {
    for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
        log.append(&batch(0, &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))], compression, -1, -1), 0).unwrap();
        // Idempotent producer 42, sequences 10..13.
        let p = batch(3, &[("a", Some("2")), ("d", Some("2")), ("e", None), ("b", Some("2"))], compression, 42, 10);
        log.append(&p, 0).unwrap();
        log.append(&batch(7, &[("d", Some("3")), ("b", Some("3"))], compression, -1, -1), 0).unwrap();
        let active_base = log.log_end_offset();
        log.append(&batch(active_base, &[("z", Some("z"))], Compression::None, -1, -1), 0).unwrap();
        // Roll by hand: a config with tiny segments rolls on the next append.
        log.set_config(LogConfig { segment_bytes: 1, ..LogConfig::default() });
        log.append(&batch(active_base + 1, &[("y", Some("y"))], Compression::None, -1, -1), 0).unwrap();
        log.set_config(LogConfig::default());
        assert_eq!(log.segment_base_offsets(), vec![0, 10]);

        let opts = CleanOptions { min_cleanable_dirty_ratio: 0.0, ..CleanOptions::new(50_000) };
        let stats = log.clean(&KafkaCodecs, &opts).unwrap().expect("cleaned");
        assert_eq!(stats.end_offset, 10);
        let want: Vec<(i64, String, Option<String>)> = [
            (2, "c", Some("1")),
            (3, "a", Some("2")),
            (5, "e", None),
            (7, "d", Some("3")),
            (8, "b", Some("3")),
            (9, "z", Some("z")),
            (10, "y", Some("y")),
        ]
        .into_iter()
        .map(|(o, k, v)| (o, k.to_string(), v.map(str::to_string)))
        .collect();
        assert_eq!(decoded(&log), want, "{compression:?}");

        let hs = headers(&log);
        assert_eq!(hs.len(), 5);
        // Plain batch: shrunk to its one record, still compressed the same way.
        assert_eq!((hs[0].base_offset, hs[0].last_offset(), hs[0].records_count), (2, 2, 1));
        assert_eq!(hs[0].compression(), compression as u8);
        assert_eq!((hs[0].base_timestamp, hs[0].max_timestamp), (1_002, 1_002));
        // Producer batch: same offsets span and sequences, its producer, the
        // tombstone's delete horizon in the base timestamp.
        let h = hs[1];
        assert_eq!((h.base_offset, h.last_offset_delta, h.records_count), (3, 3, 2));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence()), (42, 5, 10, 13));
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(h.compression(), compression as u8);
        assert_ne!(h.attributes & weir_storage::DELETE_HORIZON_FLAG, 0);
        assert_eq!(h.base_timestamp, 50_000 + 86_400_000);
        assert_eq!(h.max_timestamp, 1_005);
        // The untouched batch is copied as it was.
        assert_eq!(
            &log.read(7, 1, i64::MAX, true).unwrap()[..],
            &batch(7, &[("d", Some("3")), ("b", Some("3"))], compression, -1, -1)[..]
        );
        // The producer can go on with sequence 14.
        assert_eq!(log.check_sequence(42, 5, 14, 14), weir_storage::SequenceCheck::Append);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn compacted_consumer_offsets_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        test_broker(dir.path(), &[("offsets.topic.num.partitions", "1"), ("offsets.topic.segment.bytes", "2048")])
            .await;
    create_topic(&broker, "t", 3).await;
    let commit = async |group: &str, offset: i64| {
        let commits = (0..3)
            .map(|p| OffsetCommit {
                topic: "t".into(),
                partition: p,
                offset: offset + i64::from(p),
                leader_epoch: -1,
                metadata: Some(format!("m{offset}")),
            })
            .collect();
        let results = broker.groups.commit(&broker, group, STANDALONE, commits).await;
        assert!(results.iter().all(Option::is_none), "{results:?}");
    };
    commit("early", 7).await;
    for i in 0..200 {
        commit("busy", i * 10).await;
    }
    let partition = broker.replicas.get(OFFSETS_TOPIC, 0).expect("offsets partition");
    let before = partition.size_in_bytes();
    let stats = partition.clean(crate::replica::now_ms()).unwrap().expect("cleaned");
    assert!(stats.segments_cleaned > 5, "{stats:?}");
    assert!(partition.size_in_bytes() < before / 4, "{} -> {}", before, partition.size_in_bytes());

    // A fresh coordinator replays the compacted partition, as after a restart
    // or a leadership change.
    let fresh = GroupCoordinator::new(&broker.config, broker.controller.subscribe());
    let (tx, rx) = std::sync::mpsc::channel();
    let b = broker.clone();
    std::thread::spawn(move || {
        fresh.follow_leadership(&b, &b.image());
        let _ = tx.send(fresh);
    });
    let fresh = rx.recv_timeout(Duration::from_secs(20)).expect("loading terminates");
    let offsets = |group: &str| {
        let mut v: Vec<(i32, i64, String)> = fresh
            .fetch_offsets(&broker, group, None, None)
            .expect("no member to check")
            .into_iter()
            .map(|(_, p, v)| {
                let v = v.expect("an offset");
                (p, v.offset, v.metadata)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(offsets("busy"), vec![(0, 1990, "m1990".into()), (1, 1991, "m1990".into()), (2, 1992, "m1990".into())]);
    assert_eq!(offsets("early"), vec![(0, 7, "m7".into()), (1, 8, "m7".into()), (2, 9, "m7".into())]);
    broker.replicas.shutdown();
}
