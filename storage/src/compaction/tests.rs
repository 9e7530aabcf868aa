//! Tests of [`Log::clean`] with uncompressed batches.

use std::fs;
use std::path::Path;

use bytes::Bytes;

use super::*;
use crate::batch::test_util::header_template as template;
use crate::batch::{BatchIter, NO_SEQUENCE};
use crate::segment::{INDEX_EXT, TIME_INDEX_EXT};
use crate::{LogConfig, SequenceCheck};

type Kv<'a> = (Option<&'a str>, Option<&'a str>);

fn records(base: i64, ts: i64, kvs: &[Kv<'_>]) -> Vec<CleanerRecord> {
    kvs.iter()
        .enumerate()
        .map(|(i, (k, v))| CleanerRecord {
            attributes: 0,
            offset: base + i as i64,
            timestamp: ts + i as i64,
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Bytes::from_static(&[0]),
        })
        .collect()
}

/// Appends one batch of `kvs` from producer `pid` (-1: none) at the log end.
fn append_p(log: &mut Log, kvs: &[Kv<'_>], ts: i64, pid: i64, seq: i32) -> i64 {
    let base = log.log_end_offset();
    let t = template(base, kvs.len() as i32, ts, pid, seq);
    let b = build_batch(&t, kvs.len() as i32, &encode_records(base, ts, &records(base, ts, kvs)));
    log.append(&b, ts).unwrap();
    base
}

fn append(log: &mut Log, kvs: &[Kv<'_>]) -> i64 {
    append_p(log, kvs, 1000, -1, NO_SEQUENCE)
}

fn kv<'a>(k: &'a str, v: &'a str) -> Kv<'a> {
    (Some(k), Some(v))
}

/// Every record of the log: (offset, key, value).
fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let bytes = log.read(log.log_start_offset(), usize::MAX, i64::MAX, false).unwrap();
    let mut out = Vec::new();
    for item in BatchIter::new(&bytes) {
        let (h, b) = item.unwrap();
        assert!(crate::batch::crc_is_valid(b));
        for r in decode_records(&h, &b[HEADER_SIZE..]).unwrap() {
            let s = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
            out.push((r.offset, r.key.as_ref().map(s).unwrap_or_default(), r.value.as_ref().map(s)));
        }
    }
    out
}

fn opts(now: i64) -> CleanOptions {
    CleanOptions { min_cleanable_dirty_ratio: 0.0, delete_retention_ms: 100, ..CleanOptions::new(now) }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, LogConfig::default(), 0).unwrap()
}

fn active_bytes(log: &Log) -> Vec<u8> {
    let base = *log.segment_base_offsets().last().unwrap();
    fs::read(offset_path(log.dir(), base, LOG_EXT)).unwrap()
}

#[test]
fn varint_and_record_round_trip() {
    let recs = records(100, -5, &[kv("a", "1"), (Some(""), None), (None, Some("x"))]);
    let mut t = template(90, 13, 7, -1, -1);
    t.base_timestamp = 1 << 40;
    let section = encode_records(t.base_offset, t.base_timestamp, &recs);
    t.records_count = 3;
    assert_eq!(decode_records(&t, &section).unwrap(), recs);
    assert!(decode_records(&t, &section[..section.len() - 1]).is_err());
    for v in [0i64, -1, 1, 63, -64, 64, i64::MAX, i64::MIN] {
        let mut b = Vec::new();
        write_varlong(&mut b, v);
        let mut p = 0;
        assert_eq!(read_varlong(&b, &mut p).unwrap(), v);
        assert_eq!(p, b.len());
    }
}

#[test]
fn keeps_latest_value_per_key_and_leaves_offsets_and_active_segment_alone() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("k1", "a"), kv("k2", "b")]); // 0, 1
    append(&mut log, &[(None, Some("keyless"))]); // 2
    log.roll().unwrap();
    append(&mut log, &[kv("k1", "c"), kv("k3", "d")]); // 3, 4
    log.roll().unwrap();
    append(&mut log, &[kv("k2", "e"), kv("k1", "f")]); // 5, 6 (active)
    let active = active_bytes(&log);
    let leo = log.log_end_offset();

    let stats = log.clean(&NoCompression, &opts(2000)).unwrap().expect("cleaned");
    assert_eq!((stats.first_dirty_offset, stats.end_offset), (0, 5));
    assert_eq!(stats.segments_cleaned, 2);
    assert_eq!(log.cleaner_checkpoint().unwrap(), Some(5));
    // k1@0 superseded by k1@3; the keyless record goes; k2@1 stays (k2@5 is in the active segment).
    let want = vec![
        (1, "k2".to_string(), Some("b".to_string())),
        (3, "k1".into(), Some("c".into())),
        (4, "k3".into(), Some("d".into())),
        (5, "k2".into(), Some("e".into())),
        (6, "k1".into(), Some("f".into())),
    ];
    assert_eq!(contents(&log), want);
    assert_eq!(active_bytes(&log), active);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.log_start_offset(), 0);
    // Nothing new is dirty: no second cleaning.
    assert!(log.clean(&NoCompression, &opts(2000)).unwrap().is_none());

    // Once the active segment rolls, its records supersede the older ones.
    log.roll().unwrap();
    append(&mut log, &[kv("k9", "z")]);
    let stats = log.clean(&NoCompression, &opts(3000)).unwrap().expect("cleaned");
    assert_eq!(stats.end_offset, 7);
    let keys: Vec<(i64, String)> = contents(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
    assert_eq!(keys, vec![(4, "k3".to_string()), (5, "k2".into()), (6, "k1".into()), (7, "k9".into())]);
    // The first segment stays even though cleaning emptied it.
    assert_eq!(log.segment_base_offsets(), vec![0, 3, 5, 7]);

    // Survives a reopen (indexes rebuilt or trusted) with the same content.
    let before = contents(&log);
    log.close().unwrap();
    let log = open(d.path());
    assert_eq!(contents(&log), before);
}

#[test]
fn reads_at_removed_offsets_return_the_next_batch() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    for i in 0..4 {
        append(&mut log, &[kv("a", &i.to_string())]); // 0..3
    }
    append(&mut log, &[kv("b", "x")]); // 4
    log.roll().unwrap();
    append(&mut log, &[kv("a", "mid")]); // 5: a segment that cleaning empties
    log.roll().unwrap();
    append(&mut log, &[kv("c", "y")]); // 6
    log.roll().unwrap();
    append(&mut log, &[kv("a", "last")]); // 7
    log.roll().unwrap();
    append(&mut log, &[kv("z", "active")]); // 8
    let stats = log.clean(&NoCompression, &opts(2000)).unwrap().expect("cleaned");
    assert_eq!(stats.segments_deleted, 1);
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 7, 8]);
    let offsets: Vec<i64> = contents(&log).into_iter().map(|(o, _, _)| o).collect();
    assert_eq!(offsets, vec![4, 6, 7, 8]);
    for (asked, got) in [(0, 4), (2, 4), (3, 4), (4, 4), (5, 6), (6, 6), (7, 7), (8, 8)] {
        let b = log.read(asked, 1, i64::MAX, true).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, got, "read at {asked}");
    }
    assert!(log.read(9, 100, i64::MAX, true).unwrap().is_empty());
}

#[test]
fn tombstones_survive_the_first_cleaning_and_go_after_delete_retention() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("k", "v"), kv("other", "o")]); // 0, 1
    log.roll().unwrap();
    append(&mut log, &[(Some("k"), None), kv("x", "1")]); // 2, 3: tombstone for k
    log.roll().unwrap();
    append(&mut log, &[kv("y", "1")]); // 4 (active)

    log.clean(&NoCompression, &opts(10_000)).unwrap().expect("cleaned");
    let c = contents(&log);
    assert!(c.contains(&(2, "k".to_string(), None)), "tombstone kept: {c:?}");
    assert!(!c.iter().any(|(o, _, _)| *o == 0), "old value of k removed");
    // The tombstone's batch now carries its delete horizon (now + delete.retention.ms).
    let b = log.read(2, 1, i64::MAX, true).unwrap();
    let h = BatchHeader::parse(&b).unwrap();
    assert_eq!(delete_horizon(&h), Some(10_100));
    assert_eq!((h.base_offset, h.last_offset()), (2, 3));

    // Before the horizon: kept.
    log.roll().unwrap();
    append(&mut log, &[kv("y", "2")]);
    log.clean(&NoCompression, &opts(10_099)).unwrap().expect("cleaned");
    assert!(contents(&log).contains(&(2, "k".to_string(), None)));
    // After it: removed; the rest of the batch stays readable.
    log.roll().unwrap();
    append(&mut log, &[kv("y", "3")]);
    let stats = log.clean(&NoCompression, &opts(10_100)).unwrap().expect("cleaned");
    assert_eq!(stats.tombstones_removed, 1);
    let c = contents(&log);
    assert!(!c.iter().any(|(_, k, _)| k == "k"), "{c:?}");
    assert!(c.contains(&(3, "x".to_string(), Some("1".to_string()))));
}

#[test]
fn dirty_ratio_upper_bound_and_compaction_lag_limit_cleaning() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("a", "1")]);
    log.roll().unwrap();
    append_p(&mut log, &[kv("a", "2")], 5000, -1, NO_SEQUENCE);
    log.roll().unwrap();
    append(&mut log, &[kv("a", "3")]);
    // Everything is dirty (ratio 1.0), which is not above a minimum of 1.0.
    let mut o = opts(6000);
    o.min_cleanable_dirty_ratio = 1.0;
    assert!(log.clean(&NoCompression, &o).unwrap().is_none());
    assert_eq!(log.cleanable_dirty_ratio(&o).unwrap(), 1.0);
    // The upper bound (high watermark) at 1 keeps segment 1 out.
    let mut o = opts(6000);
    o.upper_bound = 1;
    let stats = log.clean(&NoCompression, &o).unwrap().expect("cleaned");
    assert_eq!(stats.end_offset, 1);
    assert_eq!(contents(&log).len(), 3);
    // Segment 1's record (timestamp 5000) is within a 2000 ms compaction lag of 6000.
    log.roll().unwrap();
    append(&mut log, &[kv("b", "1")]);
    let mut o = opts(6000);
    o.min_compaction_lag_ms = 2000;
    assert!(log.clean(&NoCompression, &o).unwrap().is_none());
    o.now_ms = 8000;
    let stats = log.clean(&NoCompression, &o).unwrap().expect("cleaned");
    assert_eq!(stats.end_offset, 3);
    let offsets: Vec<i64> = contents(&log).into_iter().map(|(o, _, _)| o).collect();
    assert_eq!(offsets, vec![2, 3]);
}

#[test]
fn producer_state_survives_cleaning_and_a_rebuild_from_the_log() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    // Producer 7: seq 0-1 (k1, k2), then seq 2 (k3). Producer 8: seq 0-1 (k4, k5).
    append_p(&mut log, &[kv("k1", "a"), kv("k2", "a")], 1000, 7, 0); // 0, 1
    append_p(&mut log, &[kv("k3", "a")], 1000, 7, 2); // 2
    append_p(&mut log, &[kv("k4", "a"), kv("k5", "a")], 1000, 8, 0); // 3, 4
    log.roll().unwrap();
    // Plain writes supersede all of producer 7's records and producer 8's last one.
    append(&mut log, &[kv("k1", "b"), kv("k2", "b"), kv("k3", "b"), kv("k5", "b")]); // 5..8
    log.roll().unwrap();
    append(&mut log, &[kv("z", "z")]);
    let stats = log.clean(&NoCompression, &opts(2000)).unwrap().expect("cleaned");
    assert_eq!(stats.empty_batches_retained, 1);
    assert_eq!(stats.batches_removed, 1);

    let all = log.read(0, usize::MAX, 5, false).unwrap();
    let hs: Vec<BatchHeader> = BatchIter::new(&all).map(|r| r.unwrap().0).collect();
    // Producer 7's first batch is gone; its last one stays as an empty batch with its sequences.
    assert_eq!(hs.len(), 2);
    assert_eq!((hs[0].producer_id, hs[0].records_count, hs[0].base_offset, hs[0].last_offset()), (7, 0, 2, 2));
    assert_eq!(hs[0].base_sequence, 2);
    // Producer 8's batch keeps k4 but still spans 3..4 with sequences 0..1.
    assert_eq!((hs[1].producer_id, hs[1].records_count, hs[1].base_offset, hs[1].last_offset()), (8, 1, 3, 4));
    assert_eq!(hs[1].last_sequence(), 1);

    let check = |log: &Log| {
        assert_eq!(log.check_sequence(7, 0, 3, 3), SequenceCheck::Append);
        assert!(matches!(log.check_sequence(7, 0, 2, 2), SequenceCheck::Duplicate { first_offset: 2, .. }));
        assert_eq!(log.check_sequence(8, 0, 2, 2), SequenceCheck::Append);
        assert!(matches!(log.check_sequence(8, 0, 0, 1), SequenceCheck::Duplicate { first_offset: 3, .. }));
    };
    check(&log);
    // Rebuild producer state from the cleaned log alone (as a follower or after losing snapshots).
    log.close().unwrap();
    for e in fs::read_dir(d.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    let log = open(d.path());
    check(&log);

    // A later batch from producer 7 lets the next cleaning drop the empty one.
    let mut log = log;
    append_p(&mut log, &[kv("q", "1")], 1000, 7, 3);
    log.roll().unwrap();
    append(&mut log, &[kv("z", "y")]);
    log.clean(&NoCompression, &opts(3000)).unwrap().expect("cleaned");
    let all = log.read(0, usize::MAX, 5, false).unwrap();
    assert_eq!(BatchIter::new(&all).count(), 1);
}

#[test]
fn leftovers_are_removed_and_an_interrupted_swap_recovers() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("a", "1"), kv("b", "1")]);
    append(&mut log, &[kv("a", "2")]);
    log.roll().unwrap();
    append(&mut log, &[kv("a", "3")]);
    let original = contents(&log);
    log.close().unwrap();

    // A cleaning that died before its swap: stale temp files, and (crash between deleting the
    // indexes and the rename) segment 0 without indexes.
    let seg0 = offset_path(d.path(), 0, LOG_EXT);
    let cleaned = cleaned_path(d.path(), 0);
    fs::write(&cleaned, b"half written").unwrap();
    let swap = d.path().join("00000000000000000000.log.swap");
    fs::write(&swap, b"junk").unwrap();
    fs::remove_file(offset_path(d.path(), 0, INDEX_EXT)).unwrap();
    fs::remove_file(offset_path(d.path(), 0, TIME_INDEX_EXT)).unwrap();
    let mut log = open(d.path());
    assert!(!cleaned.exists() && !swap.exists());
    assert_eq!(contents(&log), original);

    // A crash right after the rename: the cleaned log in place, no indexes, no clean-shutdown marker.
    log.clean(&NoCompression, &opts(2000)).unwrap().expect("cleaned");
    let compacted = contents(&log);
    let compacted_seg0 = fs::read(&seg0).unwrap();
    log.close().unwrap();
    drop(d);
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("a", "1"), kv("b", "1")]);
    append(&mut log, &[kv("a", "2")]);
    log.roll().unwrap();
    append(&mut log, &[kv("a", "3")]);
    log.flush().unwrap();
    drop(log);
    let seg0 = offset_path(d.path(), 0, LOG_EXT);
    fs::remove_file(offset_path(d.path(), 0, INDEX_EXT)).unwrap();
    fs::remove_file(offset_path(d.path(), 0, TIME_INDEX_EXT)).unwrap();
    fs::write(&seg0, &compacted_seg0).unwrap();
    let log = open(d.path());
    assert_eq!(contents(&log), compacted);
}

#[test]
fn a_decoding_failure_leaves_the_log_untouched() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("a", "1")]);
    // A batch claiming gzip that NoCompression cannot read.
    let base = log.log_end_offset();
    let mut t = template(base, 1, 1000, -1, -1);
    t.attributes = 1;
    log.append(&build_batch(&t, 1, b"not gzip"), 0).unwrap();
    log.roll().unwrap();
    append(&mut log, &[kv("a", "2")]);
    let before = fs::read(offset_path(d.path(), 0, LOG_EXT)).unwrap();
    assert!(matches!(log.clean(&NoCompression, &opts(2000)), Err(StorageError::Corruption(_))));
    assert_eq!(fs::read(offset_path(d.path(), 0, LOG_EXT)).unwrap(), before);
    assert!(!cleaned_path(d.path(), 0).exists());
    assert_eq!(log.cleaner_checkpoint().unwrap(), None);
}

#[test]
fn a_cleaning_runs_while_the_log_takes_appends_and_drops_copies_of_segments_it_lost() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path());
    append(&mut log, &[kv("k1", "a"), kv("k2", "b")]); // 0, 1
    log.roll().unwrap();
    append(&mut log, &[kv("k1", "c")]); // 2
    log.roll().unwrap();
    append(&mut log, &[kv("k2", "d")]); // 3 (active at plan time)
    let plan = log.plan_clean(&opts(2000)).unwrap().expect("something to clean");
    // The log goes on while the cleaning runs without it: a new segment, more records.
    log.roll().unwrap();
    append(&mut log, &[kv("k3", "e")]); // 4
    let run = plan.run(&NoCompression);
    let stats = log.finish_clean(run).unwrap().expect("swapped in");
    assert_eq!((stats.first_dirty_offset, stats.end_offset), (0, 3));
    let got: Vec<i64> = contents(&log).iter().map(|r| r.0).collect();
    assert_eq!(got, vec![1, 2, 3, 4], "k1@0 superseded; everything appended meanwhile kept");
    assert_eq!(log.log_end_offset(), 5);

    // A segment deleted by DeleteRecords during the run: its copy is dropped, not resurrected.
    append(&mut log, &[kv("k3", "f")]); // 5
    log.roll().unwrap();
    append(&mut log, &[kv("k4", "g")]); // 6
    let plan = log.plan_clean(&opts(3000)).unwrap().expect("something to clean");
    log.delete_records_before(6).unwrap();
    let run = plan.run(&NoCompression);
    log.finish_clean(run).unwrap();
    let got: Vec<i64> = contents(&log).iter().map(|r| r.0).collect();
    assert_eq!(got, vec![6]);
    let leftovers: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(CLEANED_SUFFIX))
        .collect();
    assert!(leftovers.is_empty(), "no cleaned copy left behind: {leftovers:?}");

    // A truncation during the run drops the whole cleaning.
    append(&mut log, &[kv("k4", "h")]); // 7
    log.roll().unwrap();
    append(&mut log, &[kv("k5", "i")]); // 8
    let plan = log.plan_clean(&opts(4000)).unwrap().expect("something to clean");
    log.truncate_to(8).unwrap();
    assert_eq!(log.finish_clean(plan.run(&NoCompression)).unwrap(), None);
    let got: Vec<i64> = contents(&log).iter().map(|r| r.0).collect();
    assert_eq!(got, vec![6, 7]);
}
