//! Crash recovery and reopen tests.

use std::fs::{self, OpenOptions};
use std::io::Write;

use super::{fill, log_file, small};
use crate::batch::test_util::simple;
use crate::{Log, LogConfig, CLEAN_SHUTDOWN_FILE};

#[test]
fn clean_reopen_skips_recovery() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 20, 2);
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    assert!(d.path().join(CLEAN_SHUTDOWN_FILE).exists());
    // Corrupt a payload byte of the last batch: a clean open does not validate CRCs.
    let last = *bases.last().unwrap();
    let path = log_file(d.path(), last);
    let mut data = fs::read(&path).unwrap();
    let n = data.len();
    data[n - 1] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert!(!d.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(log.recovery_point(), 40);
    let all = log.read(0, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(all.len(), batches.concat().len());
}

#[test]
fn unclean_reopen_recovers_everything_written() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 20, 2);
    drop(log); // crash: no marker
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(&log.read(0, usize::MAX, i64::MAX, false).unwrap()[..], &batches.concat()[..]);
    fill(&mut log, 1, 1);
    assert_eq!(log.log_end_offset(), 41);
}

#[test]
fn torn_tail_truncated_and_appends_continue() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    let batches = fill(&mut log, 5, 2);
    drop(log);
    let path = log_file(d.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.size_in_bytes(), batches[..4].concat().len() as u64);
    let info = log.append(&simple(8, 3, 5), 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (8, 10));
    drop(log);
    let log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 11);
}

#[test]
fn torn_header_in_older_segment_deletes_later_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 20, 2);
    let bases = log.segment_base_offsets();
    drop(log);
    // No recovery-point file yet (never flushed), so every segment is scanned.
    let second = bases[1];
    let path = log_file(d.path(), second);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 70).unwrap();
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert!(log.log_end_offset() < bases[2]);
    assert!(!log_file(d.path(), bases[2]).exists());
}

#[test]
fn corrupted_crc_in_last_batch_truncated() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    fill(&mut log, 4, 2);
    drop(log);
    let path = log_file(d.path(), 0);
    let mut data = fs::read(&path).unwrap();
    let n = data.len();
    data[n - 3] ^= 0x55;
    fs::write(&path, &data).unwrap();
    let log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn garbage_after_last_batch_truncated() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 12, 2);
    log.flush().unwrap();
    let last = *log.segment_base_offsets().last().unwrap();
    let size = log.size_in_bytes();
    drop(log);
    let mut f = OpenOptions::new().append(true).open(log_file(d.path(), last)).unwrap();
    f.write_all(&[0xAB; 200]).unwrap();
    drop(f);
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.size_in_bytes(), size);
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(&log.read(0, usize::MAX, i64::MAX, false).unwrap()[..], &batches.concat()[..]);
}

#[test]
fn missing_or_corrupt_indexes_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_bytes: 1000, index_interval_bytes: 50, ..LogConfig::default() };
    let mut log = Log::open(d.path(), cfg.clone(), 0).unwrap();
    let batches = fill(&mut log, 30, 2);
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    let idx = |b: i64, ext: &str| d.path().join(format!("{b:020}.{ext}"));
    let first_index = fs::read(idx(bases[0], "index")).unwrap();
    assert!(!first_index.is_empty());
    fs::remove_file(idx(bases[0], "index")).unwrap();
    fs::remove_file(idx(bases[0], "timeindex")).unwrap();
    let last = *bases.last().unwrap();
    fs::write(idx(last, "index"), [0xFFu8; 21]).unwrap();
    fs::write(idx(bases[1], "index"), [0xFFu8; 16]).unwrap(); // well-sized but pointing nowhere
    let log = Log::open(d.path(), cfg.clone(), 0).unwrap();
    assert_eq!(fs::read(idx(bases[0], "index")).unwrap(), first_index);
    assert_eq!(fs::metadata(idx(last, "index")).unwrap().len() % 8, 0);
    for offset in 0..60 {
        let got = log.read(offset, 1, i64::MAX, true).unwrap();
        assert_eq!(&got[..], &batches[(offset / 2) as usize][..]);
    }
    assert_eq!(&log.find_batch_by_timestamp(1000).unwrap().unwrap()[..], &batches[0][..]);
}

/// A log of `n` 2-record batches rolled into several segments by `small()`, whose rolled segments
/// are flushed (as the broker does after a roll), plus one unflushed batch.
fn flushed_log(dir: &std::path::Path, n: usize) -> (Log, Vec<Vec<u8>>) {
    let mut log = Log::open(dir, small(), 0).unwrap();
    let mut batches = fill(&mut log, n, 2);
    log.flush_rolled_segments().unwrap();
    batches.extend(fill(&mut log, 1, 2));
    (log, batches)
}

#[test]
fn recovery_starts_at_recovery_point() {
    let d = tempfile::tempdir().unwrap();
    let (log, batches) = flushed_log(d.path(), 20);
    let bases = log.segment_base_offsets();
    let rp = log.recovery_point();
    assert!(bases.contains(&rp) && rp > bases[1], "the roll flush moves the recovery point to a segment base");
    let scanned = bases.iter().filter(|&&b| b >= rp).count();
    drop(log); // crash
               // A corrupt byte in a flushed, older segment is not rescanned (its indexes are sane)...
    let path = log_file(d.path(), bases[0]);
    let mut data = fs::read(&path).unwrap();
    data[70] ^= 1;
    fs::write(&path, &data).unwrap();
    let log = Log::open_with_recovery_point(d.path(), small(), 0, Some(rp)).unwrap();
    assert_eq!(log.log_end_offset(), 42);
    assert_eq!(log.segment_base_offsets(), bases);
    let stats = log.recovery_stats().unwrap();
    assert_eq!(stats.recovery_point, Some(rp));
    assert_eq!(stats.segments_scanned, scanned);
    assert!(scanned < bases.len());
    assert_eq!(stats.segments_total, bases.len());
    let above: Vec<&Vec<u8>> = batches.iter().filter(|b| super::headers(b)[0].base_offset >= rp).collect();
    assert_eq!(stats.batches_validated, above.len() as u64);
    assert_eq!(stats.bytes_scanned, above.iter().map(|b| b.len() as u64).sum::<u64>());
    assert_eq!(stats.bytes_truncated, 0);
    assert_eq!(log.recovery_point(), 42);
}

#[test]
fn recovery_point_inside_a_segment_rescans_that_segment_on() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 30, 2);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 5, "{bases:?}");
    drop(log);
    // An offset in the middle of the third segment: it and every later segment are scanned.
    let rp = bases[2] + 1;
    let log = Log::open_with_recovery_point(d.path(), small(), 0, Some(rp)).unwrap();
    let stats = log.recovery_stats().unwrap();
    assert_eq!(stats.segments_scanned, bases.len() - 2);
    assert_eq!(log.log_end_offset(), 60);
    drop(log);
    // Beyond the log end (a stale, too high value): the active segment is still scanned.
    let log = Log::open_with_recovery_point(d.path(), small(), 0, Some(1_000)).unwrap();
    assert_eq!(log.recovery_stats().unwrap().segments_scanned, 1);
    drop(log);
    // Unknown recovery point: everything is scanned.
    let log = Log::open_with_recovery_point(d.path(), small(), 0, None).unwrap();
    let stats = log.recovery_stats().unwrap();
    assert_eq!(stats.segments_scanned, bases.len());
    assert_eq!(stats.batches_validated, 30);
    assert_eq!(stats.bytes_scanned, log.size_in_bytes());
    log.close().unwrap();
    // A clean open scans nothing.
    let log = Log::open_with_recovery_point(d.path(), small(), 0, None).unwrap();
    assert!(log.recovery_stats().is_none());
}

#[test]
fn torn_tail_above_recovery_point_truncated() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, batches) = flushed_log(d.path(), 20);
    let rp = log.recovery_point();
    // More unflushed data: two more segments above the recovery point.
    let more = fill(&mut log, 8, 2);
    let bases = log.segment_base_offsets();
    assert!(bases.iter().filter(|&&b| b > rp).count() >= 2, "{bases:?} rp {rp}");
    drop(log);
    let last = *bases.last().unwrap();
    let path = log_file(d.path(), last);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let log = Log::open_with_recovery_point(d.path(), small(), 0, Some(rp)).unwrap();
    let stats = log.recovery_stats().unwrap();
    assert_eq!(stats.segments_scanned, bases.iter().filter(|&&b| b >= rp).count());
    assert!(stats.bytes_truncated > 0);
    let all: Vec<Vec<u8>> = batches.into_iter().chain(more).collect();
    let kept = &all[..all.len() - 1];
    assert_eq!(log.log_end_offset(), 2 * kept.len() as i64);
    assert_eq!(&log.read(0, usize::MAX, i64::MAX, false).unwrap()[..], &kept.concat()[..]);
}

#[test]
fn legacy_recovery_point_file_is_ignored_and_removed() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 20, 2);
    let n = log.segment_base_offsets().len();
    drop(log);
    fs::write(d.path().join("recovery-point"), "999\n").unwrap();
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.recovery_stats().unwrap().segments_scanned, n);
    assert!(!d.path().join("recovery-point").exists());
}

#[test]
fn roll_flush_advances_recovery_point_unless_truncated_meanwhile() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 3, 2);
    assert!(log.take_pending_flush().unwrap().is_none(), "no roll yet");
    fill(&mut log, 20, 2);
    let active = *log.segment_base_offsets().last().unwrap();
    let pending = log.take_pending_flush().unwrap().unwrap();
    assert_eq!(pending.up_to(), active);
    assert!(log.take_pending_flush().unwrap().is_none(), "taken once");
    pending.sync().unwrap();
    log.complete_flush(pending);
    assert_eq!(log.recovery_point(), active);
    assert_eq!(log.flush_count(), 0, "the active segment was not flushed");

    fill(&mut log, 10, 2);
    let pending = log.take_pending_flush().unwrap().unwrap();
    let up_to = pending.up_to();
    assert!(up_to > active);
    log.truncate_to(active + 2).unwrap();
    pending.sync().unwrap();
    log.complete_flush(pending);
    assert!(log.recovery_point() <= active + 2, "a flush taken before a truncation does not count");
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());
}
