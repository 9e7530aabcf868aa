//! Opening a partition directory: segment discovery, crash recovery and state reconstruction.
//!
//! * A clean open (marker present) trusts all segments; their indexes get a cheap sanity check
//!   (a thorough one for the active segment) and any segment failing it is recovered.
//! * An unclean open recovers (rescans, validating CRCs, and re-indexes) every segment from the one
//!   holding the recovery point the caller passes (at least the active segment; every segment when
//!   it is unknown), as Kafka's LogLoader does; segments wholly below it were fsynced and are
//!   trusted like after a clean shutdown (cheap index check, rebuilt if broken). The first invalid
//!   byte ends the log: the segment is truncated there and every later segment is deleted. One
//!   `info` line per recovered partition says what was scanned.
//! * Stale `*.tmp` files and index files without a `.log` are deleted.
//! * A `leader-epoch-checkpoint` that cannot be parsed does not stop the log from opening: it is
//!   rebuilt from the batches' partition leader epochs and base offsets and rewritten (warn log).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::LogConfig;
use crate::epoch::LeaderEpochCache;
use crate::error::{IoContext, Result, StorageError};
use crate::file_system::fs;
use crate::fsutil::{fsync_dir, parse_offset_file_name, read_i64_file, remove_if_exists, TMP_SUFFIX};
use crate::log::{Log, RecoveryStats, CLEAN_SHUTDOWN_FILE, LEGACY_RECOVERY_POINT_FILE, LOG_START_OFFSET_FILE};
use crate::producer_state::ProducerStateManager;
use crate::segment::{Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};

/// Implementation of [`Log::open`].
pub(crate) fn open(dir: &Path, config: LogConfig, now_ms: i64, recovery_point: Option<i64>) -> Result<Log> {
    fs().create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    let log_start_file = read_i64_file(&dir.join(LOG_START_OFFSET_FILE))?;
    // Written by earlier versions; the caller's checkpoint replaces it (it is never trusted).
    remove_if_exists(&dir.join(LEGACY_RECOVERY_POINT_FILE))?;

    let (mut segments, mut stats, epoch_changes) = load_segments(dir, &config, clean, recovery_point, now_ms)?;
    if segments.is_empty() {
        let base = log_start_file.unwrap_or(0).max(0);
        segments.insert(base, Segment::create(dir, base, &config)?);
    }
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let mut leo = segments.values().next_back().map_or(first_base, Segment::next_offset);
    let mut log_start = log_start_file.unwrap_or(first_base).max(first_base);
    if log_start > leo {
        warn!(
            dir = %dir.display(),
            log_start, log_end = leo,
            "log start offset beyond the recovered log end; starting an empty log at the log start"
        );
        for (_, seg) in std::mem::take(&mut segments) {
            seg.delete()?;
        }
        segments.insert(log_start, Segment::create(dir, log_start, &config)?);
        leo = log_start;
    }
    if log_start < first_base {
        log_start = first_base;
    }

    let mut epochs = match LeaderEpochCache::load(dir) {
        Ok(epochs) => epochs,
        Err(StorageError::Corruption(reason)) => {
            warn!(dir = %dir.display(), %reason, "unreadable leader-epoch-checkpoint; rebuilding it from the log's batches");
            rebuild_epochs(dir, &segments)?
        }
        Err(e) => return Err(e),
    };
    epochs.truncate_from_end(leo)?;
    // As Kafka's segment recovery: the rescanned batches' epochs enter the cache, so a batch
    // written by an append whose checkpoint update failed (or did not happen before a crash)
    // is known by its epoch.
    for (epoch, start) in epoch_changes {
        if start < leo && epochs.latest_epoch().is_none_or(|latest| latest < epoch) {
            epochs.assign(epoch, start)?;
        }
    }
    epochs.truncate_from_start(log_start)?;

    let mut log = Log {
        dir: dir.to_path_buf(),
        config,
        segments: segments.into_iter().map(|(base, seg)| (base, Arc::new(seg))).collect(),
        segments_version: 0,
        log_start_offset: log_start,
        persisted_log_start: log_start_file,
        recovery_point: if clean { leo } else { 0 },
        roll_flush_pending: None,
        truncations: 0,
        recovery_stats: None,
        last_flush_ms: now_ms,
        now_hint_ms: now_ms,
        epochs,
        producers: ProducerStateManager::new(dir),
        flush_count: 0,
        dir_dirty: true,
        failure: std::sync::OnceLock::new(),
    };
    log.rebuild_producer_state()?;
    log.persist_log_start()?;
    if !clean {
        // Make the recovered state (truncations, rebuilt indexes) durable and move the recovery point.
        log.flush()?;
        log.flush_count = 0;
    }
    if let Some(stats) = stats.as_mut() {
        stats.segments_total = log.segments.len();
        info!(
            dir = %dir.display(),
            recovery_point = stats.recovery_point.unwrap_or(-1),
            segments_scanned = stats.segments_scanned,
            segments_total = stats.segments_total,
            bytes_scanned = stats.bytes_scanned,
            batches_validated = stats.batches_validated,
            bytes_truncated = stats.bytes_truncated,
            log_end_offset = log.log_end_offset(),
            "recovered log after an unclean shutdown"
        );
    }
    log.recovery_stats = stats;
    if remove_if_exists(&marker)? {
        // The marker's removal must be durable before any new write, or a crash could skip recovery.
        fsync_dir(dir)?;
    }
    Ok(log)
}

/// The leader epoch cache rebuilt from every batch's partition leader epoch and base offset,
/// and written out.
fn rebuild_epochs(dir: &Path, segments: &BTreeMap<i64, Segment>) -> Result<LeaderEpochCache> {
    let mut changes: Vec<(i32, i64)> = Vec::new();
    for seg in segments.values() {
        let mut pos = 0;
        while let Some(h) = seg.header_at(pos)? {
            if changes.last().is_none_or(|&(e, _)| e != h.partition_leader_epoch) {
                changes.push((h.partition_leader_epoch, h.base_offset));
            }
            pos += h.total_size() as u64;
        }
    }
    LeaderEpochCache::rebuilt(dir, changes)
}

/// The segments of a directory, the statistics of the recovery scan (after an unclean shutdown),
/// and the leader epoch changes among the rescanned batches.
type LoadedSegments = (BTreeMap<i64, Segment>, Option<RecoveryStats>, Vec<(i32, i64)>);

/// Discovers, opens and (if needed) recovers the segments of `dir`; with the statistics of the
/// recovery scan after an unclean shutdown of a log that has segments.
fn load_segments(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    recovery_point: Option<i64>,
    now_ms: i64,
) -> Result<LoadedSegments> {
    let mut log_bases = Vec::new();
    let mut index_files = Vec::new();
    for ent in fs().read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let ent = ent.ctx(|| format!("list {}", dir.display()))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            remove_if_exists(&ent.path())?;
        } else if let Some(o) = parse_offset_file_name(name, LOG_EXT) {
            log_bases.push(o);
        } else if let Some(o) =
            parse_offset_file_name(name, INDEX_EXT).or_else(|| parse_offset_file_name(name, TIME_INDEX_EXT))
        {
            index_files.push((o, ent.path()));
        }
    }
    log_bases.sort_unstable();
    for (o, path) in index_files {
        if log_bases.binary_search(&o).is_err() {
            warn!(file = %path.display(), "deleting index file without a log segment");
            remove_if_exists(&path)?;
        }
    }

    // Recovery starts at the segment holding the recovery point (the last one whose base is not
    // above it), and always covers the active segment.
    let recover_from = match (clean, recovery_point) {
        (true, _) => i64::MAX,
        (false, None) => i64::MIN,
        (false, Some(rp)) => {
            let last_base = log_bases.last().copied().unwrap_or(0);
            log_bases.iter().copied().take_while(|&b| b <= rp).last().unwrap_or(i64::MIN).min(last_base)
        }
    };
    let mut stats =
        (!clean && !log_bases.is_empty()).then(|| RecoveryStats { recovery_point, ..RecoveryStats::default() });

    let mut segments = BTreeMap::new();
    let mut epoch_changes = Vec::new();
    let mut iter = log_bases.iter().enumerate();
    while let Some((i, &base)) = iter.next() {
        let is_last = i + 1 == log_bases.len();
        let mut seg = Segment::open(dir, base, config)?;
        let mut recover = base >= recover_from;
        if !recover {
            let check = seg
                .sanity_check(is_last)
                .map_err(|e| e.to_string())
                .and_then(|()| seg.load_state(now_ms).map_err(|e| e.to_string()));
            if let Err(reason) = check {
                warn!(segment = base, "rebuilding indexes: {reason}");
                recover = true;
            }
        }
        let mut truncated = false;
        if recover {
            let scanned = seg.recover(config, true, now_ms)?;
            truncated = scanned.truncated_bytes > 0;
            epoch_changes.extend(scanned.epoch_changes);
            if let Some(stats) = stats.as_mut() {
                stats.segments_scanned += 1;
                stats.bytes_scanned += scanned.valid_bytes + scanned.truncated_bytes;
                stats.batches_validated += scanned.batches;
                stats.bytes_truncated += scanned.truncated_bytes;
            }
        }
        segments.insert(base, seg);
        if truncated {
            for (_, &later) in iter.by_ref() {
                warn!(segment = later, "deleting segment after the truncation point");
                Segment::open(dir, later, config)?.delete()?;
            }
        }
    }
    Ok((segments, stats, epoch_changes))
}
