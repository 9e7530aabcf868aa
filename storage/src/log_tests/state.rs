//! Time index, leader epochs, producer state, flushing and roll tests.

use std::fs;

use super::{fill, headers, small};
use crate::batch::test_util::{batch, simple, B};
use crate::{Log, LogConfig, SequenceCheck};

#[test]
fn timestamp_lookups() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { index_interval_bytes: 0, ..small() };
    let mut log = Log::open(d.path(), cfg.clone(), 0).unwrap();
    let ts = [100, 300, 200, 500, 400, 500, 50, 600, 100, 550];
    let mut batches = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        let b = simple(i as i64, 1, t);
        log.append(&b, 0).unwrap();
        batches.push(b);
    }
    let check = |log: &Log| {
        let find = |t: i64| log.find_batch_by_timestamp(t).unwrap().map(|b| headers(&b)[0].base_offset);
        assert_eq!(find(0), Some(0));
        assert_eq!(find(100), Some(0));
        assert_eq!(find(101), Some(1));
        assert_eq!(find(350), Some(3));
        assert_eq!(find(501), Some(7));
        assert_eq!(find(600), Some(7));
        assert_eq!(find(601), None);
        let max = log.batch_with_max_timestamp().unwrap().unwrap();
        assert_eq!(headers(&max)[0].base_offset, 7);
    };
    check(&log);
    log.close().unwrap();
    let log = Log::open(d.path(), cfg.clone(), 0).unwrap();
    check(&log);
    drop(log);
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    check(&log);
    // ties: the first batch with the max wins
    log.append(&simple(10, 1, 600), 0).unwrap();
    let max = log.batch_with_max_timestamp().unwrap().unwrap();
    assert_eq!(headers(&max)[0].base_offset, 7);
    // lookups respect the log start offset
    log.delete_records_before(8).unwrap();
    let b = log.find_batch_by_timestamp(0).unwrap().unwrap();
    assert_eq!(headers(&b)[0].base_offset, 8);
    let empty = tempfile::tempdir().unwrap();
    let log = Log::open(empty.path(), LogConfig::default(), 0).unwrap();
    assert!(log.batch_with_max_timestamp().unwrap().is_none());
    assert!(log.find_batch_by_timestamp(0).unwrap().is_none());
}

#[test]
fn epoch_cache_end_offsets() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    for (base, epoch) in [(0, 1), (2, 1), (4, 3), (6, 3), (8, 5)] {
        let b = batch(B { base_offset: base, count: 2, leader_epoch: epoch, ..B::default() });
        log.append(&b, 0).unwrap();
    }
    let check = |log: &Log| {
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(log.end_offset_for_epoch(0), (0, 0));
        assert_eq!(log.end_offset_for_epoch(1), (1, 4));
        assert_eq!(log.end_offset_for_epoch(2), (1, 4));
        assert_eq!(log.end_offset_for_epoch(3), (3, 8));
        assert_eq!(log.end_offset_for_epoch(4), (3, 8));
        assert_eq!(log.end_offset_for_epoch(5), (5, 10));
        assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    };
    check(&log);
    let text = fs::read_to_string(d.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n3\n1 0\n3 4\n5 8\n");
    drop(log);
    let log = Log::open(d.path(), small(), 0).unwrap();
    check(&log);
}

#[test]
fn unreadable_epoch_checkpoint_is_rebuilt_from_the_batches() {
    // Garbage (8 bytes, not even text), a truncated file, another version, non-numeric
    // fields, entries out of order, an empty file: each is rebuilt, after a clean or an
    // unclean shutdown, and the log opens with all its records.
    let damages: [&[u8]; 7] = [
        b"\xde\xad\xbe\xef\x00\xff\x13\x37",
        b"0\n3\n1 0\n",
        b"1\n1\n1 0\n",
        b"0\nthree\n",
        b"0\n1\none 0\n",
        b"0\n2\n5 8\n3 4\n",
        b"",
    ];
    for (i, damage) in damages.iter().enumerate() {
        for clean in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let mut log = Log::open(d.path(), small(), 0).unwrap();
            let mut written = Vec::new();
            for (base, epoch) in [(0, 1), (2, 1), (4, 3), (6, 3), (8, 5), (10, 5), (12, 5)] {
                let b = batch(B { base_offset: base, count: 2, leader_epoch: epoch, ..B::default() });
                log.append(&b, 0).unwrap();
                written.extend_from_slice(&b);
            }
            assert!(log.segment_base_offsets().len() > 1, "the batches span segments");
            if clean {
                log.close().unwrap();
            } else {
                drop(log);
            }
            let path = d.path().join("leader-epoch-checkpoint");
            fs::write(&path, damage).unwrap();
            let log = Log::open(d.path(), small(), 0).unwrap_or_else(|e| panic!("damage {i}, clean {clean}: {e}"));
            assert_eq!(log.log_end_offset(), 14);
            assert_eq!(&log.read(0, usize::MAX, i64::MAX, false).unwrap()[..], &written[..]);
            assert_eq!(log.epoch_entries(), vec![(1, 0), (3, 4), (5, 8)], "damage {i}, clean {clean}");
            assert_eq!(log.end_offset_for_epoch(3), (3, 8));
            assert_eq!(fs::read_to_string(&path).unwrap(), "0\n3\n1 0\n3 4\n5 8\n");
        }
    }
}

fn idem(base: i64, count: i32, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    batch(B {
        base_offset: base,
        count,
        ts: 5000 + base,
        producer_id: pid,
        producer_epoch: epoch,
        base_seq: seq,
        ..B::default()
    })
}

#[test]
fn sequence_checks() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.check_sequence(1, 0, 10, 12), SequenceCheck::Append);
    log.append(&idem(0, 3, 1, 0, 0), 0).unwrap();
    log.append(&idem(3, 2, 1, 0, 3), 0).unwrap();
    assert_eq!(
        log.check_sequence(1, 0, 0, 2),
        SequenceCheck::Duplicate { first_offset: 0, last_offset: 2, timestamp: 5000 }
    );
    assert_eq!(log.check_sequence(1, 0, 5, 5), SequenceCheck::Append);
    assert_eq!(log.check_sequence(1, 0, 6, 6), SequenceCheck::OutOfOrder { expected: 5 });
    assert_eq!(log.check_sequence(1, 0, 4, 4), SequenceCheck::OutOfOrder { expected: 5 });
    // epoch bump must restart at 0
    assert_eq!(log.check_sequence(1, 1, 5, 5), SequenceCheck::OutOfOrder { expected: 0 });
    assert_eq!(log.check_sequence(1, 1, 0, 0), SequenceCheck::Append);
    log.append(&idem(5, 1, 1, 1, 0), 0).unwrap();
    // fenced
    assert_eq!(log.check_sequence(1, 0, 5, 5), SequenceCheck::InvalidProducerEpoch { current: 1 });
    // other producers are independent
    assert_eq!(log.check_sequence(2, 0, 7, 7), SequenceCheck::Append);
}

/// A log over several segments holding 12 batches of two records from producer 42, epoch 3.
fn idempotent_log(dir: &std::path::Path) -> Log {
    let mut log = Log::open(dir, small(), 0).unwrap();
    for seq in 0..12 {
        log.append(&idem(i64::from(seq) * 2, 2, 42, 3, seq * 2), 0).unwrap();
    }
    log
}

#[test]
fn dedupe_survives_reopen_clean_and_unclean() {
    let d = tempfile::tempdir().unwrap();
    let log = idempotent_log(d.path());
    assert!(log.segment_base_offsets().len() > 2);
    let dup = SequenceCheck::Duplicate { first_offset: 22, last_offset: 23, timestamp: 5022 };
    assert_eq!(log.check_sequence(42, 3, 22, 23), dup);
    log.close().unwrap();
    let snaps: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".snapshot"))
        .collect();
    assert_eq!(snaps.len(), 2);

    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.check_sequence(42, 3, 22, 23), dup);
    assert_eq!(log.check_sequence(42, 3, 24, 24), SequenceCheck::Append);
    log.append(&idem(24, 1, 42, 3, 24), 0).unwrap();
    drop(log); // crash: state = snapshot + replay of the batch after it

    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(
        log.check_sequence(42, 3, 24, 24),
        SequenceCheck::Duplicate { first_offset: 24, last_offset: 24, timestamp: 5024 }
    );
    assert_eq!(log.check_sequence(42, 3, 25, 25), SequenceCheck::Append);
    assert_eq!(log.check_sequence(42, 2, 25, 25), SequenceCheck::InvalidProducerEpoch { current: 3 });
    drop(log);

    // Without any snapshot, state is rebuilt from the whole log.
    for e in fs::read_dir(d.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert!(matches!(log.check_sequence(42, 3, 20, 21), SequenceCheck::Duplicate { .. }));
    assert_eq!(log.producer_count(), 1);
}

#[test]
fn flush_messages_fsyncs_each_append() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { flush_messages: 1, ..small() };
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    assert_eq!(log.flush_count(), 0);
    fill(&mut log, 3, 2);
    assert_eq!(log.flush_count(), 3);
    assert_eq!(log.recovery_point(), 6);

    let d2 = tempfile::tempdir().unwrap();
    let mut log = Log::open(d2.path(), small(), 0).unwrap();
    fill(&mut log, 3, 2);
    assert_eq!(log.flush_count(), 0);
    assert_eq!(log.recovery_point(), 0);
    let mut cfg = small();
    cfg.flush_ms = 100;
    log.set_config(cfg);
    log.flush_if_due(50).unwrap();
    assert_eq!(log.flush_count(), 0);
    log.flush_if_due(100).unwrap();
    assert_eq!(log.flush_count(), 1);
    log.flush_if_due(500).unwrap(); // nothing unflushed
    assert_eq!(log.flush_count(), 1);
}

#[test]
fn rolls_on_segment_ms_and_full_index() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: 100, ..LogConfig::default() };
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    log.append(&simple(0, 1, 0), 1000).unwrap();
    log.append(&simple(1, 1, 0), 1100).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    log.append(&simple(2, 1, 0), 1101).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);

    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_index_bytes: 24, // 3 offset entries, 2 time entries
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(d.path(), cfg, 0).unwrap();
    fill(&mut log, 8, 1);
    assert!(log.segment_base_offsets().len() >= 3);
    for o in 0..8 {
        let b = log.read(o, 1, i64::MAX, true).unwrap();
        assert_eq!(headers(&b)[0].base_offset, o);
    }
}

#[test]
fn dedupe_survives_crash_with_recovery_point() {
    let d = tempfile::tempdir().unwrap();
    let mut log = idempotent_log(d.path());
    log.flush_rolled_segments().unwrap();
    let rp = log.recovery_point();
    assert!(rp > 0 && rp < log.log_end_offset(), "rp {rp}");
    // Two more batches after the recovery point, then a crash; the snapshot files are gone too.
    log.append(&idem(24, 1, 42, 3, 24), 0).unwrap();
    log.append(&idem(25, 1, 7, 0, 0), 0).unwrap();
    drop(log);
    for snapshots in [true, false] {
        if !snapshots {
            for e in fs::read_dir(d.path()).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "snapshot") {
                    fs::remove_file(p).unwrap();
                }
            }
        }
        let log = Log::open_with_recovery_point(d.path(), small(), 0, Some(rp)).unwrap();
        assert!(log.recovery_stats().unwrap().segments_scanned < log.segment_base_offsets().len());
        let dup = |first, last, ts| SequenceCheck::Duplicate { first_offset: first, last_offset: last, timestamp: ts };
        assert_eq!(log.check_sequence(42, 3, 24, 24), dup(24, 24, 5024), "snapshots {snapshots}");
        assert_eq!(log.check_sequence(42, 3, 22, 23), dup(22, 23, 5022));
        assert_eq!(log.check_sequence(7, 0, 0, 0), dup(25, 25, 5025));
        assert_eq!(log.check_sequence(42, 3, 25, 25), SequenceCheck::Append);
        drop(log);
    }
}
