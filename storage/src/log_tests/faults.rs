//! Storage fault injection: every file operation a workload makes is failed in turn (EIO, ENOSPC
//! or EMFILE; writes also torn at several bytes; a dead disk failing everything after), and after
//! each failure:
//! * the failed log takes no more operations and changes nothing on disk;
//! * a fresh open of the directory succeeds and serves every acknowledged batch, byte for byte,
//!   in a log without holes, with the acknowledged log start offset, a leader-epoch cache and a
//!   producer state that match the batches on disk;
//! * a sibling partition directory is untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::test_util::{batch, header_template, B};
use crate::batch::BatchIter;
use crate::compaction::{build_batch, decode_records, encode_records, CleanerRecord};
use crate::file_system::faults::{injector, Fault, EIO, EMFILE, ENOSPC};
use crate::file_system::FileOp;
use crate::{CleanOptions, Log, LogConfig, NoCompression, SequenceCheck, StorageError};

const OPS: [FileOp; 8] = [
    FileOp::Open,
    FileOp::Read,
    FileOp::Write,
    FileOp::Sync,
    FileOp::SetLen,
    FileOp::Map,
    FileOp::Rename,
    FileOp::Remove,
];
const ERRNOS: [i32; 3] = [EIO, ENOSPC, EMFILE];
const PRODUCER: i64 = 7;

/// What the workload was told succeeded.
#[derive(Default)]
struct Acknowledged {
    /// Batches whose append returned Ok, as appended.
    batches: Vec<Vec<u8>>,
    /// The highest log start offset a DeleteRecords or retention call returned.
    log_start: i64,
    /// The latest recovery point read from the log (what the broker checkpoints).
    recovery_point: Option<i64>,
    /// Compacted workload: the last acknowledged value of every key.
    latest: BTreeMap<Bytes, (i64, Option<Bytes>)>,
}

/// How a workload stopped early.
struct Failed {
    error: StorageError,
    /// The log the failing call was made on (`None` when an open or a close failed).
    log: Option<Box<Log>>,
}

type Outcome = std::result::Result<(), Failed>;

/// Unwraps a log call, or stops the workload handing back the log.
macro_rules! attempt {
    ($log:ident, $call:expr) => {
        match $call {
            Ok(v) => v,
            Err(error) => return Err(Failed { error, log: Some(Box::new($log)) }),
        }
    };
}

fn open(dir: &Path, config: &LogConfig, recovery_point: Option<i64>) -> std::result::Result<Log, Failed> {
    Log::open_with_recovery_point(dir, config.clone(), 0, recovery_point).map_err(|error| Failed { error, log: None })
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 700, index_interval_bytes: 150, flush_messages: 9, ..LogConfig::default() }
}

/// Appends the next batch of the idempotent producer, in `leader_epoch`.
fn append_next(log: &mut Log, acked: &mut Acknowledged, leader_epoch: i32) -> crate::Result<()> {
    let base = log.log_end_offset();
    let seq = acked.batches.len() as i32 * 2;
    let b = batch(B {
        base_offset: base,
        count: 2,
        ts: 1000 + base,
        producer_id: PRODUCER,
        producer_epoch: 0,
        base_seq: seq,
        leader_epoch,
        payload: 40,
    });
    log.append(&b, 0)?;
    acked.batches.push(b);
    acked.recovery_point = Some(log.recovery_point());
    Ok(())
}

/// Fsyncs rolled segments as the broker does, outside the log.
fn flush_rolled(log: &mut Log, acked: &mut Acknowledged) -> crate::Result<()> {
    if let Some(pending) = log.take_pending_flush()? {
        if let Err(e) = pending.sync() {
            log.mark_failed(&e);
            return Err(e);
        }
        log.complete_flush(pending);
        acked.recovery_point = Some(log.recovery_point());
    }
    Ok(())
}

/// Appends, rolls, flushes, DeleteRecords, retention, a clean close, a crash, and the recovery
/// after it.
fn plain_workload(dir: &Path, acked: &mut Acknowledged) -> Outcome {
    let config = config();
    let mut log = open(dir, &config, None)?;
    for i in 0..30 {
        attempt!(log, append_next(&mut log, acked, i / 10));
        if i % 4 == 3 {
            attempt!(log, flush_rolled(&mut log, acked));
        }
        if i == 15 {
            let target = log.log_end_offset() - 5;
            acked.log_start = attempt!(log, log.delete_records_before(target));
        }
        if i == 22 {
            log.set_config(LogConfig { retention_bytes: 1500, ..config.clone() });
            attempt!(log, log.enforce_retention(0));
            acked.log_start = acked.log_start.max(log.log_start_offset());
            log.set_config(config.clone());
        }
    }
    attempt!(log, log.flush());
    acked.recovery_point = Some(log.recovery_point());
    log.close().map_err(|error| Failed { error, log: None })?;

    let mut log = open(dir, &config, acked.recovery_point)?;
    for _ in 0..3 {
        attempt!(log, append_next(&mut log, acked, 3));
    }
    drop(log); // a crash: no clean-shutdown marker

    let mut log = open(dir, &config, acked.recovery_point)?;
    for _ in 0..2 {
        attempt!(log, append_next(&mut log, acked, 4));
    }
    attempt!(log, log.flush());
    Ok(())
}

/// Keyed batches on a compacted log, cleaned twice.
fn compacted_workload(dir: &Path, acked: &mut Acknowledged) -> Outcome {
    let config = LogConfig { segment_bytes: 500, index_interval_bytes: 150, ..LogConfig::default() };
    let mut log = open(dir, &config, None)?;
    let append_keyed = |log: &mut Log, acked: &mut Acknowledged, i: usize| -> crate::Result<()> {
        let base = log.log_end_offset();
        let records: Vec<CleanerRecord> = (0..3)
            .map(|r| {
                let key = Bytes::from(format!("k{}", (i * 3 + r) % 5));
                // Every seventh record is a tombstone.
                let value = ((i * 3 + r) % 7 != 6).then(|| Bytes::from(format!("v{i}-{r}")));
                CleanerRecord {
                    attributes: 0,
                    offset: base + r as i64,
                    timestamp: 1000 + base + r as i64,
                    key: Some(key),
                    value,
                    headers: Bytes::from_static(&[0]),
                }
            })
            .collect();
        let template = header_template(base, 3, 1000 + base, -1, -1);
        let b = build_batch(&template, 3, &encode_records(base, 1000 + base, &records));
        log.append(&b, 0)?;
        for r in records {
            if let Some(key) = r.key {
                acked.latest.insert(key, (r.offset, r.value));
            }
        }
        acked.batches.push(b);
        Ok(())
    };
    let clean_options = |log: &Log| CleanOptions {
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: i64::MAX,
        upper_bound: log.log_end_offset(),
        ..CleanOptions::new(0)
    };
    for i in 0..24 {
        attempt!(log, append_keyed(&mut log, acked, i));
        if i == 12 || i == 23 {
            let options = clean_options(&log);
            attempt!(log, log.clean(&NoCompression, &options));
        }
    }
    attempt!(log, flush_rolled(&mut log, acked));
    log.close().map_err(|error| Failed { error, log: None })?;
    let mut log = open(dir, &config, acked.recovery_point)?;
    let options = clean_options(&log);
    attempt!(log, log.clean(&NoCompression, &options));
    Ok(())
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// A failed log refuses everything and writes nothing more.
fn assert_inert(dir: &Path, mut log: Log, what: &str) {
    assert!(log.failure().is_some(), "{what}: the log did not fail");
    let before = snapshot(dir);
    let next = batch(B { base_offset: log.log_end_offset(), producer_id: -1, ..B::default() });
    let refused = |r: crate::Result<()>| matches!(r, Err(StorageError::LogFailed(_)));
    assert!(refused(log.append(&next, 0).map(drop)), "{what}: append after failure");
    assert!(refused(log.flush()), "{what}: flush after failure");
    assert!(refused(log.read(log.log_start_offset(), 1 << 20, i64::MAX, true).map(drop)), "{what}: read after failure");
    assert!(refused(log.take_pending_flush().map(drop)), "{what}: pending flush after failure");
    assert!(refused(log.enforce_retention(0).map(drop)), "{what}: retention after failure");
    assert!(refused(log.close()), "{what}: close after failure");
    assert_eq!(before, snapshot(dir), "{what}: the failed log changed files");
}

/// Whole batches of `log`, checked to follow each other without a hole.
fn read_all(log: &Log, what: &str, compacted: bool) -> Vec<Vec<u8>> {
    let bytes = log.read(log.log_start_offset(), usize::MAX, i64::MAX, true).expect("read after reopen");
    let mut out = Vec::new();
    let mut expected = None;
    for item in BatchIter::new(&bytes) {
        let (h, b) = item.expect("whole batches");
        if let Some(expected) = expected {
            if compacted {
                assert!(h.base_offset >= expected, "{what}: offsets go back at {}", h.base_offset);
            } else {
                assert_eq!(h.base_offset, expected, "{what}: hole or overlap in the log");
            }
        } else if !compacted {
            assert!(h.base_offset <= log.log_start_offset(), "{what}: the log does not start at its log start");
        }
        expected = Some(h.last_offset() + 1);
        out.push(b.to_vec());
    }
    assert_eq!(expected.unwrap_or(log.log_end_offset()), log.log_end_offset(), "{what}: log end offset");
    out
}

/// A fresh open serves everything acknowledged, consistently.
fn assert_recovered(dir: &Path, acked: &Acknowledged, what: &str, compacted: bool) {
    let config = if compacted { LogConfig { segment_bytes: 500, ..config() } } else { config() };
    let mut log = Log::open_with_recovery_point(dir, config, 0, acked.recovery_point)
        .unwrap_or_else(|e| panic!("{what}: reopening failed: {e}"));
    assert!(log.log_start_offset() >= acked.log_start, "{what}: acknowledged DeleteRecords undone");
    let batches = read_all(&log, what, compacted);
    let by_base: BTreeMap<i64, &Vec<u8>> =
        batches.iter().map(|b| (i64::from_be_bytes(b[..8].try_into().unwrap()), b)).collect();
    let last_acked = acked.batches.last().map(|b| crate::batch::BatchHeader::parse(b).unwrap().last_offset());
    if let Some(last) = last_acked {
        assert!(log.log_end_offset() > last, "{what}: acknowledged batches lost at the end");
    }
    if compacted {
        let mut latest: BTreeMap<Bytes, (i64, Option<Bytes>)> = BTreeMap::new();
        for b in &batches {
            let h = crate::batch::BatchHeader::parse(b).unwrap();
            for r in decode_records(&h, &b[61..]).expect("records decode") {
                latest.insert(r.key.clone().expect("keyed"), (r.offset, r.value));
            }
        }
        for (key, (offset, value)) in &acked.latest {
            match latest.get(key) {
                Some((o, v)) if o == offset => assert_eq!(v, value, "{what}: value of {key:?}"),
                Some((o, _)) => assert!(o > offset, "{what}: {key:?} went back to offset {o}"),
                // Only a tombstone may be cleaned away (delete.retention.ms is infinite here, but
                // a record superseded by one is gone with it).
                None => assert!(value.is_none(), "{what}: key {key:?} lost"),
            }
        }
    } else {
        for b in &acked.batches {
            let h = crate::batch::BatchHeader::parse(b).unwrap();
            if h.last_offset() < log.log_start_offset() {
                continue;
            }
            assert_eq!(by_base.get(&h.base_offset), Some(&b), "{what}: acknowledged batch at {} lost", h.base_offset);
        }
        // The leader-epoch cache and the producer state match the batches on disk.
        let mut epochs: Vec<(i32, i64)> = Vec::new();
        for b in &batches {
            let h = crate::batch::BatchHeader::parse(b).unwrap();
            if epochs.last().is_none_or(|&(e, _)| h.partition_leader_epoch > e) {
                epochs.push((h.partition_leader_epoch, h.base_offset.max(log.log_start_offset())));
            }
        }
        assert_eq!(log.epoch_entries(), epochs, "{what}: leader-epoch cache");
        if let Some(b) = batches.last() {
            let h = crate::batch::BatchHeader::parse(b).unwrap();
            let check = log.check_sequence(PRODUCER, 0, h.base_sequence, h.last_sequence());
            assert!(
                matches!(check, SequenceCheck::Duplicate { first_offset, .. } if first_offset == h.base_offset),
                "{what}: producer state does not know the last batch: {check:?}"
            );
        }
    }
    // The reopened log works.
    let next = batch(B { base_offset: log.log_end_offset(), producer_id: -1, leader_epoch: 9, ..B::default() });
    log.append(&next, 0).unwrap_or_else(|e| panic!("{what}: append after reopening: {e}"));
    log.close().unwrap_or_else(|e| panic!("{what}: close after reopening: {e}"));
}

/// The three directories of one run: the partition under test and an untouched sibling.
struct Dirs {
    _root: tempfile::TempDir,
    partition: PathBuf,
    sibling: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let partition = root.path().join("topic-0");
    let sibling = root.path().join("topic-1");
    injector().skip_fsync_under(root.path());
    let mut log = Log::open(&sibling, config(), 0).unwrap();
    let mut acked = Acknowledged::default();
    for _ in 0..10 {
        append_next(&mut log, &mut acked, 0).unwrap();
    }
    log.close().unwrap();
    Dirs { _root: root, partition, sibling }
}

type Workload = fn(&Path, &mut Acknowledged) -> Outcome;

/// Runs `workload` with `fault` armed, then checks the failure and the recovery.
fn run_with_fault(workload: Workload, compacted: bool, fault: impl FnOnce(&Path) -> Fault, what: &str) -> bool {
    let d = dirs();
    let sibling_before = snapshot(&d.sibling);
    let id = injector().arm(fault(&d.partition));
    let mut acked = Acknowledged::default();
    let outcome = workload(&d.partition, &mut acked);
    let fired = injector().fired(id) > 0;
    injector().disarm(id);
    match outcome {
        Ok(()) => {}
        Err(Failed { error, log }) => {
            assert!(fired, "{what}: failed without the fault firing: {error}");
            if let Some(log) = log {
                assert_inert(&d.partition, *log, what);
            }
        }
    }
    assert_recovered(&d.partition, &acked, what, compacted);
    assert_eq!(sibling_before, snapshot(&d.sibling), "{what}: the sibling partition changed");
    fired
}

/// How many operations of each kind the workload makes.
fn count_operations(workload: Workload) -> BTreeMap<String, (FileOp, u64)> {
    let d = dirs();
    let ids: Vec<_> = OPS.iter().map(|&op| (op, injector().arm(Fault::counter(op, &d.partition)))).collect();
    workload(&d.partition, &mut Acknowledged::default()).unwrap_or_else(|f| panic!("workload failed: {}", f.error));

    ids.into_iter()
        .map(|(op, id)| {
            let n = injector().seen(id);
            injector().disarm(id);
            (format!("{op:?}"), (op, n))
        })
        .collect()
}

/// Fails each operation of the kinds in `ops` in turn, once, cycling through the errnos.
fn sweep(workload: Workload, compacted: bool, ops: &[FileOp]) {
    let counts = count_operations(workload);
    for (name, (op, n)) in counts.into_iter().filter(|(_, (op, _))| ops.contains(op)) {
        assert!(n > 0 || matches!(op, FileOp::Map | FileOp::Rename), "the workload makes no {name} operation");
        for k in 0..n {
            let errno = ERRNOS[k as usize % ERRNOS.len()];
            let what = format!("{name} #{k} failing with errno {errno}");
            let fired = run_with_fault(workload, compacted, |dir| Fault::new(op, dir, k, errno), &what);
            assert!(fired, "{what}: the fault never fired (the workload is not deterministic)");
        }
    }
}

#[test]
fn failed_opens_reads_and_maps_lose_nothing() {
    sweep(plain_workload, false, &[FileOp::Open, FileOp::Read, FileOp::Map]);
}

#[test]
fn failed_writes_and_resizes_lose_nothing() {
    sweep(plain_workload, false, &[FileOp::Write, FileOp::SetLen]);
}

#[test]
fn failed_fsyncs_renames_and_removals_lose_nothing() {
    sweep(plain_workload, false, &[FileOp::Sync, FileOp::Rename, FileOp::Remove]);
}

#[test]
fn failed_operations_while_compacting_lose_nothing() {
    sweep(compacted_workload, true, &OPS);
}

#[test]
fn torn_writes_lose_nothing() {
    let writes = count_operations(plain_workload)["Write"].1;
    for k in 0..writes {
        for torn_at in [0, 1, 12, 60, 61, 100] {
            let what = format!("write #{k} torn after {torn_at} bytes");
            run_with_fault(
                plain_workload,
                false,
                |dir| Fault { torn_at: Some(torn_at), ..Fault::new(FileOp::Write, dir, k, ENOSPC) },
                &what,
            );
        }
    }
}

#[test]
fn a_dead_disk_loses_nothing() {
    // From some operation on, every write, fsync and open fails (the disk went away).
    for op in [FileOp::Write, FileOp::Sync, FileOp::Open] {
        let n = count_operations(plain_workload)[&format!("{op:?}")].1;
        for k in (0..n).step_by(3) {
            let what = format!("{op:?} failing for good from #{k}");
            run_with_fault(
                plain_workload,
                false,
                |dir| Fault { persistent: true, ..Fault::new(op, dir, k, EIO) },
                &what,
            );
        }
    }
}
