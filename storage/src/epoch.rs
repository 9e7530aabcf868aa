//! Leader epoch cache, persisted as `leader-epoch-checkpoint`.
//!
//! File format (Kafka's checkpoint text format): a version line `0`, a line with the entry count,
//! then one `epoch startOffset` line per entry, in increasing epoch and start-offset order.
//! The file is replaced atomically (temp file + fsync + rename + directory fsync) on every change.
//!
//! A file that cannot be parsed (garbled, truncated, another version, non-numeric, out of order)
//! is reported as [`StorageError::Corruption`]; the log then rebuilds the cache from its batches
//! ([`LeaderEpochCache::rebuilt`]) instead of refusing to open.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StorageError};
use crate::file_system::fs;
use crate::fsutil::write_atomic;

/// Name of the checkpoint file inside the partition directory.
pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";

/// Epoch -> start offset entries, both strictly increasing.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<(i32, i64)>,
}

/// Kafka's `LeaderEpochFileCache.endOffsetFor` over a cache's entries (epoch, start offset),
/// oldest first: the largest epoch <= `requested` and the start offset of the next epoch (the log
/// end offset if it is the latest); `(-1, -1)` when `requested` is negative or above every epoch.
pub fn end_offset_for_epoch(entries: &[(i32, i64)], requested: i32, log_end_offset: i64) -> (i32, i64) {
    if requested < 0 {
        return (-1, -1);
    }
    if entries.last().map(|e| e.0) == Some(requested) {
        return (requested, log_end_offset);
    }
    let higher = entries.iter().find(|&&(e, _)| e > requested);
    let Some(&(_, higher_start)) = higher else {
        return (-1, -1);
    };
    match entries.iter().rev().find(|&&(e, _)| e <= requested) {
        Some(&(floor_epoch, _)) => (floor_epoch, higher_start),
        None => (requested, higher_start),
    }
}

impl LeaderEpochCache {
    /// Loads the checkpoint from `dir` (empty if the file does not exist).
    pub(crate) fn load(dir: &Path) -> Result<LeaderEpochCache> {
        let path = dir.join(FILE_NAME);
        let mut cache = LeaderEpochCache { dir: dir.to_path_buf(), entries: Vec::new() };
        let bytes = match fs().read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        let bad = |what: &str| StorageError::Corruption(format!("{}: {what}", path.display()));
        let text = String::from_utf8(bytes).map_err(|_| bad("not text"))?;
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some("0") {
            return Err(bad("unsupported version"));
        }
        let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("bad entry count"))?;
        for _ in 0..count {
            let line = lines.next().ok_or_else(|| bad("missing entries"))?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad epoch"))?;
            let start: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad start offset"))?;
            if let Some(&(pe, ps)) = cache.entries.last() {
                if epoch <= pe || start < ps {
                    return Err(bad("entries out of order"));
                }
            }
            cache.entries.push((epoch, start));
        }
        Ok(cache)
    }

    /// A cache rebuilt from the log's batches, `(partition leader epoch, base offset)` in offset
    /// order, written to the checkpoint file at once. As on append, a batch starts an entry only
    /// when its epoch is above the latest one (batches without an epoch, -1, start none).
    pub(crate) fn rebuilt(dir: &Path, batches: impl IntoIterator<Item = (i32, i64)>) -> Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache { dir: dir.to_path_buf(), entries: Vec::new() };
        for (epoch, start) in batches {
            let after_latest = cache.entries.last().is_none_or(|&(e, s)| epoch > e && start > s);
            if epoch >= 0 && start >= 0 && after_latest {
                cache.entries.push((epoch, start));
            }
        }
        cache.persist()?;
        Ok(cache)
    }

    fn persist(&self) -> Result<()> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        write_atomic(&self.dir, FILE_NAME, s.as_bytes())
    }

    /// All entries, oldest first.
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`): entries with an epoch >= `epoch`
    /// or a start offset >= `start_offset` are removed first. No-op if nothing would change.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || start_offset < 0 {
            return Ok(());
        }
        if let Some(&(le, ls)) = self.entries.last() {
            if le == epoch && start_offset >= ls {
                return Ok(());
            }
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start_offset);
        self.entries.push((epoch, start_offset));
        self.persist()
    }

    /// Kafka's `endOffsetFor`: `(largest epoch <= requested, start offset of the next epoch or
    /// log_end_offset)`, or `(-1, -1)` when unknown.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        end_offset_for_epoch(&self.entries, requested, log_end_offset)
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries.clear();
        self.persist()
    }

    /// Removes entries starting at or after `end_offset` (log truncation).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Log start moved to `start_offset`: drops entries wholly below it and moves the start of the
    /// epoch containing it up to `start_offset` (Kafka's `truncateFromStart`).
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let covered = self.entries.iter().filter(|&&(_, s)| s <= start_offset).count();
        if covered == 0 {
            return Ok(());
        }
        let (epoch, start) = self.entries[covered - 1];
        if covered == 1 && start == start_offset {
            return Ok(());
        }
        self.entries.drain(..covered - 1);
        self.entries[0] = (epoch, start_offset);
        self.persist()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn end_offsets_like_kafka() {
        let d = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(d.path()).unwrap();
        assert_eq!(c.end_offset_for(0, 10), (-1, -1));
        c.assign(2, 5).unwrap();
        c.assign(4, 20).unwrap();
        c.assign(4, 25).unwrap(); // same epoch, later offset: ignored
        assert_eq!(c.end_offset_for(4, 30), (4, 30));
        assert_eq!(c.end_offset_for(3, 30), (2, 20));
        assert_eq!(c.end_offset_for(2, 30), (2, 20));
        assert_eq!(c.end_offset_for(1, 30), (1, 5));
        assert_eq!(c.end_offset_for(5, 30), (-1, -1));
        assert_eq!(c.end_offset_for(-1, 30), (-1, -1));
        let c2 = LeaderEpochCache::load(d.path()).unwrap();
        assert_eq!(c2.entries(), &[(2, 5), (4, 20)]);
        let text = fs::read_to_string(d.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "0\n2\n2 5\n4 20\n");
    }

    #[test]
    fn truncation() {
        let d = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(d.path()).unwrap();
        c.assign(1, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(3, 20).unwrap();
        c.truncate_from_end(20).unwrap();
        assert_eq!(c.entries(), &[(1, 0), (2, 10)]);
        c.truncate_from_start(15).unwrap();
        assert_eq!(c.entries(), &[(2, 15)]);
        // an unexpected lower start offset for a new epoch evicts later entries
        c.assign(5, 30).unwrap();
        c.assign(6, 12).unwrap();
        assert_eq!(c.entries(), &[(6, 12)]);
    }
}
