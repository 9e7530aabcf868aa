//! Startup safety: reconcile and the orphan sweep delete only what the image
//! does not place on this broker, never a partition whose log failed to open;
//! such a partition is offline until a later reconcile opens it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use uuid::Uuid;
use weir_controller::{kafka_uuid_string, random_kafka_uuid, MetadataImage, PartitionRegistration, TopicImage};
use weir_protocol::ErrorCode;

use super::{now_ms, plain_record, ReplicaManager, PARTITION_METADATA_FILE};
use crate::config::BrokerConfig;

const NODE: i32 = 1;

fn manager(dir: &Path) -> ReplicaManager {
    let mut raw = BTreeMap::new();
    raw.insert("log.dirs".to_string(), dir.display().to_string());
    raw.insert("node.id".to_string(), NODE.to_string());
    ReplicaManager::new(Arc::new(BrokerConfig::from_raw(raw).expect("config"))).expect("manager")
}

/// An image placing every partition of `topics` (name, id, partition count) on this broker.
fn image(topics: &[(&str, Uuid, usize)]) -> Arc<MetadataImage> {
    let mut image = MetadataImage::default();
    for &(name, id, count) in topics {
        let partitions = (0..count)
            .map(|_| PartitionRegistration {
                replicas: vec![NODE],
                isr: vec![NODE],
                leader: NODE,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect();
        image.topics.insert(name.to_string(), Arc::new(TopicImage { name: name.to_string(), id, partitions }));
        image.topic_ids.insert(id, name.to_string());
    }
    Arc::new(image)
}

fn record_batch(values: &[&str]) -> Bytes {
    let now = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            partition_leader_epoch: 0,
            ..plain_record(i, now, None, Some(Bytes::copy_from_slice(v.as_bytes())))
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encodes");
    buf.freeze()
}

fn metadata_file(id: Uuid) -> String {
    format!("version: 0\ntopic_id: {}\n", kafka_uuid_string(id))
}

const FIRST_INDEX: &str = "00000000000000000000.index";
const FIRST_LOG: &str = "00000000000000000000.log";

#[test]
fn partitions_that_fail_to_open_stay_on_disk_and_offline() {
    let d = tempfile::tempdir().unwrap();
    let (kept, garbled, recreated, gone) =
        (random_kafka_uuid(), random_kafka_uuid(), random_kafka_uuid(), random_kafka_uuid());
    let img = image(&[("kept", kept, 2), ("garbled", garbled, 1), ("recreated", recreated, 1)]);

    // A topic deleted and re-created under the same name: the old directory goes.
    let old = d.path().join("recreated-0");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join(PARTITION_METADATA_FILE), metadata_file(random_kafka_uuid())).unwrap();
    std::fs::write(old.join("old-data"), b"x").unwrap();

    let first = manager(d.path());
    first.reconcile(&img);
    assert!(!old.join("old-data").exists(), "an earlier topic's data was replaced");
    assert_eq!(std::fs::read_to_string(old.join(PARTITION_METADATA_FILE)).unwrap(), metadata_file(recreated));
    for (topic, index) in [("kept", 0), ("kept", 1), ("garbled", 0)] {
        let partition = first.lookup(topic, index).expect("opened");
        partition.append(&record_batch(&["a", "b", "c"]), -1, now_ms()).expect("appended");
    }
    first.shutdown();

    // kept-0 cannot be opened (its index is a directory, even for root);
    // garbled-0's partition.metadata is garbage; gone-0 is a topic the image does not have.
    let kept0 = d.path().join("kept-0");
    let log_bytes = std::fs::read(kept0.join(FIRST_LOG)).unwrap();
    assert!(!log_bytes.is_empty());
    std::fs::remove_file(kept0.join(FIRST_INDEX)).unwrap();
    std::fs::create_dir(kept0.join(FIRST_INDEX)).unwrap();
    let garbled0 = d.path().join("garbled-0");
    std::fs::write(garbled0.join(PARTITION_METADATA_FILE), b"\xde\xad\xbe\xef garbage").unwrap();
    let gone0 = d.path().join("gone-0");
    std::fs::create_dir_all(&gone0).unwrap();
    std::fs::write(gone0.join(PARTITION_METADATA_FILE), metadata_file(gone)).unwrap();
    std::fs::write(gone0.join(FIRST_LOG), b"").unwrap();

    let second = manager(d.path());
    second.reconcile(&img);
    second.delete_orphan_dirs();
    assert!(!gone0.exists(), "a topic the image does not have is removed");
    assert_eq!(std::fs::read(kept0.join(FIRST_LOG)).unwrap(), log_bytes, "kept-0's records are untouched");
    assert!(garbled0.join(FIRST_LOG).exists(), "garbled-0 is kept");
    assert_eq!(std::fs::read(garbled0.join(PARTITION_METADATA_FILE)).unwrap(), b"\xde\xad\xbe\xef garbage");
    for (topic, index) in [("kept", 0), ("garbled", 0)] {
        assert!(second.get(topic, index).is_none());
        assert_eq!(second.lookup(topic, index).err(), Some(ErrorCode::KafkaStorageError), "{topic}-{index}");
        assert_eq!(second.absent_error(topic, index), ErrorCode::KafkaStorageError);
        assert_eq!(second.offline_replica(topic, index), Some(NODE));
        assert!(second.offline_error(topic, index).is_some());
    }
    assert_eq!(second.lookup("kept", 1).expect("kept-1 opens").offsets(), (0, 3));
    assert_eq!(second.absent_error("nope", 0), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(second.offline_replica("kept", 1), None);

    // Another reconcile (any metadata change) leaves them alone too.
    second.reconcile(&img);
    assert!(kept0.join(FIRST_LOG).exists() && garbled0.join(FIRST_LOG).exists());

    // Once the damage is undone, the next reconcile opens them with their records.
    std::fs::remove_dir(kept0.join(FIRST_INDEX)).unwrap();
    std::fs::write(garbled0.join(PARTITION_METADATA_FILE), metadata_file(garbled)).unwrap();
    second.reconcile(&img);
    for (topic, index) in [("kept", 0), ("garbled", 0)] {
        let partition = second.lookup(topic, index).expect("online again");
        assert_eq!(partition.offsets(), (0, 3), "{topic}-{index}");
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(second.offline_error(topic, index), None);
    }
    second.shutdown();

    // A topic deleted while its partition was offline: the sweep removes it,
    // garbled partition.metadata or not.
    std::fs::write(garbled0.join(PARTITION_METADATA_FILE), b"garbage").unwrap();
    let third = manager(d.path());
    third.reconcile(&image(&[("kept", kept, 2), ("recreated", recreated, 1)]));
    third.delete_orphan_dirs();
    assert!(!garbled0.exists());
    assert!(kept0.join(FIRST_LOG).exists());
    third.shutdown();
}

#[test]
fn no_orphan_sweep_before_the_first_reconcile() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("t-0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(PARTITION_METADATA_FILE), metadata_file(random_kafka_uuid())).unwrap();
    manager(d.path()).delete_orphan_dirs();
    assert!(dir.exists());
}

/// Kafka's `recovery-point-offset-checkpoint`: written at shutdown with every
/// log's end, handed back at the next open, and dropped for a deleted topic.
#[test]
fn recovery_points_are_checkpointed_in_the_log_dir() {
    use weir_storage::{read_offset_checkpoint, RECOVERY_POINT_CHECKPOINT_FILE};
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (random_kafka_uuid(), random_kafka_uuid());
    let first = manager(d.path());
    first.reconcile(&image(&[("a", a, 2), ("b", b, 1)]));
    first.lookup("a", 1).unwrap().append(&record_batch(&["x", "y", "z"]), -1, now_ms()).expect("append");
    first.checkpoint_recovery_points();
    let cp = read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap().unwrap();
    assert_eq!(cp.len(), 3);
    assert_eq!(cp[&("a".to_string(), 1)], 0, "nothing flushed yet");
    first.shutdown();
    let cp = read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap().unwrap();
    assert_eq!(cp[&("a".to_string(), 1)], 3);
    assert_eq!(cp[&("b".to_string(), 0)], 0);

    // Deleting a topic rewrites the checkpoint without it.
    let second = manager(d.path());
    second.reconcile(&image(&[("a", a, 2), ("b", b, 1)]));
    second.reconcile(&image(&[("a", a, 2)]));
    let cp = read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap().unwrap();
    assert_eq!(cp.len(), 2, "{cp:?}");
    assert_eq!(second.lookup("a", 1).unwrap().recovery_point(), 3);
    second.shutdown();

    // A garbled checkpoint opens every log anyway (recovering from 0) and is rewritten.
    std::fs::write(d.path().join(RECOVERY_POINT_CHECKPOINT_FILE), b"0\nnot a count\n").unwrap();
    let third = manager(d.path());
    third.reconcile(&image(&[("a", a, 2)]));
    assert_eq!(third.lookup("a", 1).unwrap().offsets(), (0, 3));
    third.shutdown();
    let cp = read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap().unwrap();
    assert_eq!(cp[&("a".to_string(), 1)], 3);
}

/// A failed log dir (Kafka's LogDirFailureChannel): every partition in it is
/// offline at once, even to a request already holding one; nothing is opened,
/// flushed, checkpointed or marked clean in it again; the next start recovers
/// every record.
#[test]
fn a_failed_log_dir_takes_every_partition_offline_and_is_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (random_kafka_uuid(), random_kafka_uuid());
    let first = manager(d.path());
    first.reconcile(&image(&[("a", a, 2)]));
    let held = first.lookup("a", 0).unwrap();
    held.append(&record_batch(&["x", "y"]), -1, now_ms()).expect("append");
    assert!(first.log_dir_failure().reason().is_none());

    first.log_dir_failure().fail("partition a-1", &"append: No space left on device (os error 28)");
    for index in [0, 1] {
        assert_eq!(first.lookup("a", index).err(), Some(ErrorCode::KafkaStorageError));
        assert_eq!(first.offline_replica("a", index), Some(NODE));
    }
    assert_eq!(first.absent_error("nope", 0), ErrorCode::UnknownTopicOrPartition);
    let refused = held.append(&record_batch(&["z"]), -1, now_ms()).expect_err("a failed dir takes no append");
    assert_eq!(refused.code, ErrorCode::KafkaStorageError);
    assert_eq!(held.read(0, 1 << 20, true).err(), Some(ErrorCode::KafkaStorageError));
    drop(held);

    let before: Vec<_> = walk(d.path());
    first.reconcile(&image(&[("a", a, 2), ("b", b, 1)]));
    first.housekeeping(true, true);
    first.checkpoint_recovery_points();
    first.shutdown();
    assert_eq!(walk(d.path()), before, "the failed log dir was written to");
    assert!(!d.path().join("a-0").join(weir_storage::CLEAN_SHUTDOWN_FILE).exists());

    let second = manager(d.path());
    second.reconcile(&image(&[("a", a, 2)]));
    assert_eq!(second.lookup("a", 0).unwrap().offsets(), (0, 2), "the acknowledged records are recovered");
    second.shutdown();
}

/// Every file under `dir` with its length, sorted.
fn walk(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), e.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}
