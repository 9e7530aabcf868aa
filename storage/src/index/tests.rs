//! Tests of the memory-mapped index files: preallocation, trimming, crash detection, descriptors.

use std::fs;
use std::path::Path;

use super::offset::OffsetIndex;
use super::time::TimeIndex;
use crate::batch::test_util::simple;
use crate::{Log, LogConfig};

/// Small index interval so that a few batches give index entries; one segment.
fn indexed() -> LogConfig {
    LogConfig { index_interval_bytes: 100, ..LogConfig::default() }
}

/// Appends `n` batches of 3 records with increasing timestamps; returns them.
fn fill(log: &mut Log, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let base = log.log_end_offset();
            let b = simple(base, 3, 1000 + base);
            log.append(&b, 0).unwrap();
            b
        })
        .collect()
}

/// Every offset reads back its batch, and every timestamp finds the right batch.
fn check_lookups(log: &Log, batches: &[Vec<u8>]) {
    for (i, b) in batches.iter().enumerate() {
        for off in (i as i64 * 3)..(i as i64 * 3 + 3) {
            assert_eq!(&log.read(off, 1, i64::MAX, true).unwrap()[..], &b[..], "offset {off}");
        }
        let ts = 1000 + i as i64 * 3;
        assert_eq!(&log.find_batch_by_timestamp(ts).unwrap().unwrap()[..], &b[..], "timestamp {ts}");
    }
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

const MAX: u64 = 10_485_760;

#[test]
fn preallocated_while_written_trimmed_when_sealed_mapped_lazily() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.index");
    let mut idx = OffsetIndex::open(&p, 100, 1020).unwrap();
    assert_eq!(len(&p), 0);
    idx.append(110, 500).unwrap();
    // Grown to the max size rounded down to whole entries, and mapped.
    assert_eq!(len(&p), 1016);
    assert!(idx.file().is_mapped());
    idx.append(120, 900).unwrap();
    idx.file().sync().unwrap();
    assert_eq!(idx.lookup(125).unwrap(), (120, 900));
    idx.trim_to_valid_size().unwrap();
    assert_eq!(len(&p), 16);
    assert!(!idx.file().is_mapped());
    assert_eq!(idx.lookup(115).unwrap(), (110, 500));
    drop(idx);

    let mut idx = OffsetIndex::open(&p, 100, 1020).unwrap();
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.last_entry(), Some((120, 900)));
    assert!(!idx.file().is_mapped(), "opening reads the last entry without mapping");
    assert!(idx.sanity_check(1000, false).is_ok());
    assert_eq!(idx.lookup(119).unwrap(), (110, 500));
    assert!(idx.file().is_mapped());
    // Writable again: the next append regrows it.
    idx.append(130, 950).unwrap();
    assert_eq!(idx.file().file_len(), 1016);
    assert_eq!(idx.lookup(1000).unwrap(), (130, 950));
    idx.reset().unwrap();
    assert_eq!(len(&p), 0);
    assert_eq!(idx.lookup(1000).unwrap(), (100, 0));
}

#[test]
fn final_time_entry_has_a_reserved_slot() {
    // As in Kafka, the time index is full one entry early: the last slot is for the final entry
    // written on roll or close (skip_full_check), which thus fits in the preallocated file.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.timeindex");
    let mut idx = TimeIndex::open(&p, 0, 36).unwrap();
    idx.maybe_append(10, 1, false).unwrap();
    idx.maybe_append(20, 2, false).unwrap();
    assert!(idx.is_full());
    idx.maybe_append(25, 3, false).unwrap(); // full: ignored
    idx.maybe_append(30, 3, true).unwrap();
    assert_eq!(len(&p), 36);
    assert_eq!(idx.lookup(35).unwrap(), (30, 3));
    // Past the maximum (segment.index.bytes lowered meanwhile), the file grows by what is needed.
    idx.file().set_max_bytes(12);
    idx.maybe_append(40, 4, true).unwrap();
    assert_eq!(len(&p), 48);
    assert_eq!(idx.lookup(45).unwrap(), (40, 4));
}

#[test]
fn crash_left_zero_tail_fails_the_sanity_check() {
    let d = tempfile::tempdir().unwrap();
    let (po, pt) = (d.path().join("x.index"), d.path().join("x.timeindex"));
    let mut o = OffsetIndex::open(&po, 0, 1024).unwrap();
    let mut t = TimeIndex::open(&pt, 0, 1200).unwrap();
    o.append(5, 300).unwrap();
    t.maybe_append(100, 5, false).unwrap();
    // Crash: dropped without being trimmed.
    drop((o, t));
    let o = OffsetIndex::open(&po, 0, 1024).unwrap();
    let t = TimeIndex::open(&pt, 0, 1200).unwrap();
    assert_eq!(o.len(), 128);
    assert!(o.sanity_check(1000, false).unwrap_err().contains("preallocated"));
    assert!(o.sanity_check(1000, true).is_err());
    assert!(t.sanity_check(false).unwrap_err().contains("preallocated"));
    assert!(t.sanity_check(true).is_err());
}

/// The active segment's indexes are preallocated; the process dies before closing (the files are
/// copied as they are on disk); the copy is opened unclean, then with a forged clean marker: both
/// times the indexes are rebuilt (trimmed on disk) and every lookup is right.
#[test]
fn preallocated_index_of_crashed_active_segment_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let live = d.path().join("live");
    let mut log = Log::open(&live, indexed(), 0).unwrap();
    let batches = fill(&mut log, 60);
    log.flush().unwrap();
    let (index, timeindex) = ("00000000000000000000.index", "00000000000000000000.timeindex");
    assert_eq!(len(&live.join(index)), MAX);
    assert_eq!(len(&live.join(timeindex)), MAX / 12 * 12);

    for (name, forge_marker) in [("unclean", false), ("marker", true)] {
        let crashed = d.path().join(name);
        copy_dir(&live, &crashed);
        if forge_marker {
            fs::write(crashed.join(crate::log::CLEAN_SHUTDOWN_FILE), b"").unwrap();
        }
        let reopened = Log::open(&crashed, indexed(), 0).unwrap();
        assert_eq!(reopened.log_end_offset(), 180, "{name}");
        let (li, lt) = (len(&crashed.join(index)), len(&crashed.join(timeindex)));
        assert!(li > 0 && li < 1000 && li % 8 == 0, "{name}: offset index rebuilt and trimmed, {li} bytes");
        assert!(lt > 0 && lt < 1000 && lt % 12 == 0, "{name}: time index rebuilt and trimmed, {lt} bytes");
        check_lookups(&reopened, &batches);
        reopened.close().unwrap();
    }
    // A clean close trims too, and the next open trusts the files.
    check_lookups(&log, &batches);
    log.close().unwrap();
    let li = len(&live.join(index));
    assert!(li > 0 && li < 1000, "{li}");
    let log = Log::open(&live, indexed(), 0).unwrap();
    assert_eq!(len(&live.join(index)), li);
    check_lookups(&log, &batches);
}

/// Open descriptors of this process pointing under `root`, by file extension.
fn fds_under(root: &Path) -> (usize, usize) {
    let (mut logs, mut other) = (0, 0);
    for e in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            if target.starts_with(root) {
                if target.extension().is_some_and(|x| x == "log") {
                    logs += 1;
                } else {
                    other += 1;
                }
            }
        }
    }
    (logs, other)
}

/// Index files of `root` mapped into this process.
fn index_maps_under(root: &Path) -> usize {
    let root = root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(root.as_str()) && (l.ends_with(".index") || l.ends_with(".timeindex")))
        .count()
}

/// One descriptor per segment (its `.log`), none for indexes, however many logs are open.
#[test]
fn one_descriptor_per_segment() {
    const N: usize = 200;
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    assert_eq!(fds_under(&root), (0, 0));
    let mut logs: Vec<Log> = (0..N).map(|i| Log::open(&root.join(format!("t-{i}")), indexed(), 0).unwrap()).collect();
    assert_eq!(fds_under(&root), (N, 0), "fresh logs");
    assert_eq!(index_maps_under(&root), 0);
    let batches: Vec<_> = logs.iter_mut().map(|l| fill(l, 10)).collect();
    assert_eq!(fds_under(&root), (N, 0), "after appends (indexes written)");
    assert_eq!(index_maps_under(&root), 2 * N, "active indexes are mapped");
    for l in logs.drain(..) {
        l.close().unwrap();
    }
    assert_eq!(fds_under(&root), (0, 0));
    assert_eq!(index_maps_under(&root), 0);

    let logs: Vec<Log> = (0..N).map(|i| Log::open(&root.join(format!("t-{i}")), indexed(), 0).unwrap()).collect();
    assert_eq!(fds_under(&root), (N, 0), "reopened logs");
    for (l, b) in logs.iter().zip(&batches) {
        check_lookups(l, b);
    }
    assert_eq!(fds_under(&root), (N, 0), "after lookups");
    // A clean reopen fully checks the active segment's indexes, which maps them.
    assert!(index_maps_under(&root) <= 2 * N);
}
