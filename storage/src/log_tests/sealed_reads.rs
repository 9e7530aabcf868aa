//! Reads of sealed segments made without holding the log, racing appends, retention, cleaning and
//! truncation.

use std::sync::{Arc, Mutex};

use super::{fill, headers, small};
use crate::{Log, StorageError};

/// What a lock-free read of `offset` returns, else the same read under the log (as the broker
/// does); `None` when retention moved the log start past `offset` meanwhile.
fn read(log: &Mutex<Log>, offset: i64, max_bytes: usize) -> Option<Vec<u8>> {
    fn out_of_range<T>(offset: i64, e: StorageError) -> Option<T> {
        match e {
            StorageError::OffsetOutOfRange { log_start, .. } if log_start > offset => None,
            e => panic!("read at {offset}: {e}"),
        }
    }
    let (sealed, log_start) = {
        let log = log.lock().unwrap();
        (log.sealed_segments(), log.log_start_offset())
    };
    if offset < log_start {
        return None;
    }
    if let Some(bytes) = sealed.read(offset, max_bytes, i64::MAX, true).unwrap() {
        return Some(bytes.to_vec());
    }
    log.lock()
        .unwrap()
        .read(offset, max_bytes, i64::MAX, true)
        .map_or_else(|e| out_of_range(offset, e), |b| Some(b.to_vec()))
}

#[test]
fn sealed_reads_match_reads_under_the_log() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 30, 3);
    let sealed = log.sealed_segments();
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert_eq!(sealed.end(), active_base);
    assert!(sealed.read(89, usize::MAX, i64::MAX, true).unwrap().is_none(), "the active segment is read under the log");
    for offset in 0..active_base {
        let got = sealed.read(offset, usize::MAX, i64::MAX, false).unwrap().expect("data in sealed segments");
        let first = (offset / 3) as usize;
        assert!(got.len() >= batches[first].len());
        assert_eq!(&got[..], &batches[first..].concat()[..got.len()], "offset {offset}");
        // Only sealed segments: never the active segment's batches.
        assert!(headers(&got).iter().all(|h| h.last_offset() < active_base));
        assert_eq!(&sealed.read(offset, 1, i64::MAX, true).unwrap().unwrap()[..], &batches[first][..]);
    }
    let version = log.segments_version();
    fill(&mut log, 1, 1);
    assert_eq!(log.segments_version(), version, "an append without a roll keeps the view current");
    log.delete_records_before(30).unwrap();
    assert_ne!(log.segments_version(), version, "retention deleted segments");
}

#[test]
fn a_held_segment_survives_retention_cleaning_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let mut log = Log::open(d.path(), small(), 0).unwrap();
    let batches = fill(&mut log, 30, 3);
    // Retention deletes the held segments: the holder still reads them (or is told to re-read).
    let held = log.sealed_segments();
    log.delete_records_before(60).unwrap();
    if let Some(got) = held.read(0, usize::MAX, i64::MAX, false).unwrap() {
        assert_eq!(&got[..], &batches.concat()[..got.len()]);
    }
    // A truncation into a held sealed segment reopens it; appends and reads go on correctly.
    let held = log.sealed_segments();
    let before = held.read(63, usize::MAX, i64::MAX, false).unwrap().unwrap();
    log.truncate_to(66).unwrap();
    assert_eq!(log.log_end_offset(), 66);
    let _ = held.read(63, usize::MAX, i64::MAX, false).unwrap();
    let appended = fill(&mut log, 10, 3);
    let all = log.read(60, usize::MAX, i64::MAX, false).unwrap();
    assert_eq!(&all[..], &[batches[20..22].concat(), appended.concat()].concat()[..]);
    assert_eq!(&before[..batches[21].len()], &batches[21][..]);
    // The reopened segment takes the log's config and rolls as before.
    assert!(log.segment_base_offsets().len() > 2);
}

#[test]
fn sealed_reads_race_appends_rolls_and_retention() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Log::open(d.path(), small(), 0).unwrap()));
    fill(&mut log.lock().unwrap(), 10, 3);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                let mut log = log.lock().unwrap();
                fill(&mut log, 1, 3);
                if i % 50 == 49 {
                    let start = log.log_end_offset() - 60;
                    log.delete_records_before(start).unwrap();
                }
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let (start, end) = {
            let log = log.lock().unwrap();
            (log.log_start_offset(), log.log_end_offset())
        };
        for offset in (start..end).step_by(7) {
            let Some(got) = read(&log, offset, 700) else { continue };
            let hs = headers(&got);
            assert!(!hs.is_empty(), "offset {offset} below the log end reads a batch");
            assert!(hs[0].base_offset <= offset && offset <= hs[0].last_offset());
            for pair in hs.windows(2) {
                assert_eq!(pair[1].base_offset, pair[0].last_offset() + 1, "contiguous batches");
            }
            for item in crate::batch::BatchIter::new(&got) {
                assert!(crate::batch::crc_is_valid(item.unwrap().1), "an intact batch at {offset}");
            }
            reads += 1;
        }
    }
    writer.join().unwrap();
    assert!(reads > 100, "{reads} reads");
}
