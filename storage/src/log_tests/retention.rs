//! Retention, DeleteRecords, truncation and deletion tests.

use super::{fill, small};
use crate::batch::test_util::{batch, simple, B};
use crate::{Log, LogConfig, SequenceCheck};

#[test]
fn retention_by_time() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: 1000, ..small() };
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    // timestamps 1000 + base offset
    fill(&mut log, 20, 2);
    let bases = log.segment_base_offsets();
    // now = 2000 + 16: segments whose max timestamp < 1016 are expired
    let deleted = log.enforce_retention(2016).unwrap();
    assert!(deleted >= 1);
    let remaining = log.segment_base_offsets();
    assert_eq!(remaining[..], bases[deleted..]);
    assert_eq!(log.log_start_offset(), remaining[0]);
    assert!(log.read(0, 100, i64::MAX, true).is_err());
    // everything expired: the active segment is rolled and deleted, offsets continue
    let deleted = log.enforce_retention(1_000_000).unwrap();
    assert_eq!(deleted, remaining.len());
    assert_eq!(log.segment_base_offsets(), vec![40]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 40));
    assert_eq!(log.size_in_bytes(), 0);
    assert_eq!(log.enforce_retention(2_000_000).unwrap(), 0);
    log.append(&simple(40, 1, 5), 0).unwrap();
    log.close().unwrap();
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 41));
}

#[test]
fn retention_by_size() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 20, 2);
    let total = log.size_in_bytes();
    let mut cfg = small();
    cfg.retention_bytes = (total / 2) as i64;
    log.set_config(cfg.clone());
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    // Kafka semantics: only segments whose removal keeps the size >= retention.bytes are deleted.
    let size = log.size_in_bytes();
    assert!(size >= cfg.retention_bytes as u64);
    let first = log.segment_base_offsets()[0];
    assert_eq!(log.log_start_offset(), first);
    let first_size = log.read(first, usize::MAX, log.segment_base_offsets()[1], false).unwrap().len() as u64;
    assert!(size - first_size < cfg.retention_bytes as u64);
    assert_eq!(log.enforce_retention(0).unwrap(), 0);
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn retention_respects_high_watermark() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: 0, ..small() };
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    fill(&mut log, 20, 2);
    let bases = log.segment_base_offsets();
    let deleted = log.enforce_retention_below(1_000_000, bases[2]).unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(log.log_start_offset(), bases[2]);
}

#[test]
fn delete_records_before_persists() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 20, 2);
    let bases = log.segment_base_offsets();
    let target = bases[2] + 3;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.segment_base_offsets()[0], bases[2]);
    assert_eq!(log.delete_records_before(1).unwrap(), target);
    assert!(d.path().join(crate::LOG_START_OFFSET_FILE).exists());
    drop(log); // unclean
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_start_offset(), target);
    log.close().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_start_offset(), target);
    // delete everything: the active segment stays, start == end
    assert_eq!(log.delete_records_before(40).unwrap(), 40);
    assert!(log.read(40, 100, i64::MAX, true).unwrap().is_empty());
    // retention then removes the remaining (now empty of readable data) segments except the active one
    log.enforce_retention(0).unwrap();
    assert_eq!(log.log_start_offset(), 40);
}

#[test]
fn truncate_to_mid_batch_and_below_start() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    for i in 0..20i64 {
        let b = batch(B {
            base_offset: i * 2,
            count: 2,
            ts: 1000 + i,
            leader_epoch: (i / 5) as i32, // epochs 0..3 starting at 0, 10, 20, 30
            producer_id: 9,
            producer_epoch: 0,
            base_seq: (i * 2) as i32,
            ..B::default()
        });
        log.append(&b, 0).unwrap();
    }
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10), (2, 20), (3, 30)]);
    log.truncate_to(21).unwrap(); // inside batch 20..21: whole batch removed
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 20));
    assert!(log.segment_base_offsets().iter().all(|&b| b <= 20));
    // producer state rebuilt: seq 20..21 is no longer a duplicate, it is the next expected one
    assert_eq!(log.check_sequence(9, 0, 20, 21), SequenceCheck::Append);
    assert!(matches!(log.check_sequence(9, 0, 18, 19), SequenceCheck::Duplicate { .. }));
    log.append(&simple(20, 1, 5), 0).unwrap();
    drop(log);
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 21);
    assert_eq!(log.read(19, 1000, i64::MAX, false).unwrap().len(), simple(18, 2, 0).len() + simple(20, 1, 5).len());
    // truncation at or beyond the end keeps every record, but drops an epoch that starts at the
    // log end with no record in it (a leadership that wrote nothing)
    log.assign_leader_epoch(7).unwrap();
    assert_eq!(log.latest_epoch(), Some(7));
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 21);
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.end_offset_for_epoch(1), (1, 21));
    // below the first segment: restart empty at the offset
    log.delete_records_before(15).unwrap();
    let first = log.segment_base_offsets()[0];
    log.truncate_to(first - 1).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (first - 1, first - 1));
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.check_sequence(9, 0, 77, 77), SequenceCheck::Append);
}

#[test]
fn delete_removes_directory() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("topic-0");
    let mut log = Log::open(&dir, small(), 0).unwrap();
    fill(&mut log, 3, 1);
    assert_eq!(log.dir(), dir.as_path());
    log.delete().unwrap();
    assert!(!dir.exists());
}
