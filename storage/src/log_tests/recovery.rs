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

#[test]
fn recovery_starts_at_recovery_point() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 20, 2);
    log.flush().unwrap();
    let bases = log.segment_base_offsets();
    fill(&mut log, 1, 2);
    drop(log);
    // A corrupt byte in a flushed, older segment is not rescanned (its indexes are sane)...
    let path = log_file(d.path(), bases[0]);
    let mut data = fs::read(&path).unwrap();
    data[70] ^= 1;
    fs::write(&path, &data).unwrap();
    let log = Log::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 42);
    assert_eq!(log.segment_base_offsets()[0], bases[0]);
}
