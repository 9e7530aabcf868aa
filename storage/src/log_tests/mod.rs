//! Tests of the `Log` API: append/read here; recovery, retention and state in submodules.

use std::path::Path;

mod faults;
mod recovery;
mod retention;
mod sealed_reads;
mod state;

use crate::batch::test_util::simple;
use crate::batch::BatchHeader;
use crate::{Log, LogConfig, StorageError};

pub(super) fn small() -> LogConfig {
    LogConfig { segment_bytes: 400, index_interval_bytes: 100, ..LogConfig::default() }
}

pub(super) fn log_file(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Appends `n` batches of `count` records with increasing timestamps; returns all batches.
pub(super) fn fill(log: &mut Log, n: usize, count: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let base = log.log_end_offset();
        let b = simple(base, count, 1000 + base);
        log.append(&b, 0).unwrap();
        out.push(b);
    }
    out
}

pub(super) fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    crate::batch::BatchIter::new(bytes).map(|r| r.unwrap().0).collect()
}

#[test]
fn append_read_round_trip_across_rolls() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 30, 3);
    assert_eq!(log.log_end_offset(), 90);
    assert!(log.segment_base_offsets().len() > 5);
    let all: Vec<u8> = batches.concat();
    assert_eq!(log.size_in_bytes(), all.len() as u64);
    assert_eq!(&log.read(0, usize::MAX, i64::MAX, false).unwrap()[..], &all[..]);
    for offset in 0..90 {
        let got = log.read(offset, 1, i64::MAX, true).unwrap();
        let idx = (offset / 3) as usize;
        assert_eq!(&got[..], &batches[idx][..], "offset {offset}");
        let rest = log.read(offset, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(&rest[..], &batches[idx..].concat()[..]);
    }
    assert!(log.read(90, 1000, i64::MAX, true).unwrap().is_empty());
}

#[test]
fn max_bytes_min_one_and_max_offset() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), LogConfig::default(), 0).unwrap();
    let batches = fill(&mut log, 5, 3);
    let size = batches[0].len();
    assert!(log.read(0, size - 1, i64::MAX, false).unwrap().is_empty());
    assert_eq!(&log.read(0, size - 1, i64::MAX, true).unwrap()[..], &batches[0][..]);
    let two = log.read(4, size * 2 + size / 2, i64::MAX, false).unwrap();
    assert_eq!(&two[..], &batches[1..3].concat()[..]);
    // max_offset is exclusive on base offsets: batches at 0 and 3 only
    let hw = log.read(0, usize::MAX, 6, false).unwrap();
    assert_eq!(&hw[..], &batches[..2].concat()[..]);
    let hw = log.read(0, usize::MAX, 7, true).unwrap();
    assert_eq!(&hw[..], &batches[..3].concat()[..]);
    assert!(log.read(6, usize::MAX, 6, true).unwrap().is_empty());
}

#[test]
fn out_of_range() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 10, 2);
    match log.read(21, 100, i64::MAX, true) {
        Err(StorageError::OffsetOutOfRange { requested: 21, log_start: 0, log_end: 20 }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(log.read(-1, 100, i64::MAX, true).is_err());
    log.delete_records_before(7).unwrap();
    assert!(matches!(log.read(6, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { log_start: 7, .. })));
    // offset 7 is inside the batch 6..7, which is returned whole
    let b = log.read(7, 1, i64::MAX, true).unwrap();
    assert_eq!(headers(&b)[0].base_offset, 6);
    assert!(matches!(log.delete_records_before(21), Err(StorageError::OffsetOutOfRange { .. })));
}

#[test]
fn invalid_appends_rejected() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    fill(&mut log, 2, 2);
    let err = log.append(&simple(5, 1, 0), 0).unwrap_err();
    assert!(matches!(err, StorageError::InvalidAppend(_)), "{err}");
    let mut two = simple(4, 2, 0);
    two.extend_from_slice(&simple(7, 1, 0)); // gap: 6 is missing
    assert!(matches!(log.append(&two, 0), Err(StorageError::InvalidAppend(_))));
    let mut cut = simple(4, 1, 0);
    cut.pop();
    assert!(matches!(log.append(&cut, 0), Err(StorageError::InvalidAppend(_))));
    assert!(matches!(log.append(&[], 0), Err(StorageError::InvalidAppend(_))));
    let mut bad_magic = simple(4, 1, 0);
    bad_magic[16] = 1;
    assert!(matches!(log.append(&bad_magic, 0), Err(StorageError::InvalidAppend(_))));
    assert_eq!(log.log_end_offset(), 4);
    // several contiguous batches in one call
    let mut ok = simple(4, 2, 0);
    ok.extend_from_slice(&simple(6, 1, 0));
    let info = log.append(&ok, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (4, 6));
}
