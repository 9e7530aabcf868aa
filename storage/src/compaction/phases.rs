//! The three phases of a cleaning: planned under the log, run without it, swapped in under it (see
//! "Concurrency" in the module docs).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::CLEANER_CHECKPOINT_FILE;
use super::{cleaned_path, mtime, read_batch, CleanOptions, CleanStats, Cleaner, Outcome, RecordCodec};
use crate::error::{IoContext, Result, StorageError};
use crate::file_system::{create_truncate, fs, FileWriter};
use crate::fsutil::{fsync_dir, offset_path, remove_if_exists, write_atomic};
use crate::log::Log;
use crate::segment::{LogFileView, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};

/// A cleaning chosen under the log: the segments it covers, held so that it can run without the
/// log ([`CleanPlan::run`]).
#[derive(Debug)]
pub struct CleanPlan {
    dir: PathBuf,
    opts: CleanOptions,
    first_dirty: i64,
    ratio: f64,
    /// The cleanable segments `(base, next base, segment)`, oldest first.
    cleanable: Vec<(i64, i64, Arc<Segment>)>,
    /// Every sealed segment, for the producers' last batches.
    sealed: Vec<Arc<Segment>>,
    /// The active segment's bytes as of the plan.
    active: Option<LogFileView>,
    truncations: u64,
}

/// A cleaned copy waiting to replace its segment.
#[derive(Debug)]
struct CleanedCopy {
    base: i64,
    segment: Arc<Segment>,
    tmp: PathBuf,
    bytes_written: u64,
}

/// A cleaning that ran ([`CleanPlan::run`]), waiting for [`Log::finish_clean`] to swap its copies in.
#[derive(Debug)]
pub struct CleanRun {
    dir: PathBuf,
    first_dirty: i64,
    ratio: f64,
    end: i64,
    copies: Vec<CleanedCopy>,
    truncations: u64,
    stats: CleanStats,
    /// Why the run failed, if it did (its copies are gone then).
    failure: Option<StorageError>,
}

impl CleanRun {
    /// Removes the cleaned copies (a run that is not swapped in).
    pub(crate) fn discard_copies(&self) {
        for copy in &self.copies {
            let _ = remove_if_exists(&copy.tmp);
        }
    }
}

impl Log {
    pub(crate) fn plan_clean_unguarded(&self, opts: &CleanOptions) -> Result<Option<CleanPlan>> {
        let first_dirty = self.first_dirty_offset()?;
        let cleanable = self.cleanable_segments(first_dirty, opts);
        let ratio = self.ratio(&cleanable, first_dirty);
        if ratio <= opts.min_cleanable_dirty_ratio || ratio == 0.0 {
            return Ok(None);
        }
        let cleanable = cleanable
            .into_iter()
            .filter_map(|(base, next)| self.segments.get(&base).map(|s| (base, next, s.clone())))
            .collect();
        let sealed_count = self.segments.len().saturating_sub(1);
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            opts: opts.clone(),
            first_dirty,
            ratio,
            cleanable,
            sealed: self.segments.values().take(sealed_count).cloned().collect(),
            active: self.active().map(Segment::file_view).transpose()?,
            truncations: self.truncations,
        }))
    }

    pub(crate) fn finish_clean_unguarded(&mut self, mut run: CleanRun) -> Result<Option<CleanStats>> {
        if run.truncations != self.truncations {
            // The log was truncated under the cleaning: its copies may hold what is gone, and a
            // read error may be the truncation's doing.
            run.discard_copies();
            return Ok(None);
        }
        if let Some(e) = run.failure.take() {
            return Err(e);
        }
        let mut stats = run.stats.clone();
        for (i, copy) in run.copies.iter().enumerate() {
            let current = self.segments.get(&copy.base).is_some_and(|s| Arc::ptr_eq(s, &copy.segment));
            let swapped = if !current {
                // Retention or DeleteRecords removed the segment meanwhile.
                remove_if_exists(&copy.tmp).map(|_| ())
            } else {
                stats.segments_rewritten += 1;
                let is_first = self.segments.keys().next() == Some(&copy.base);
                if copy.bytes_written == 0 && !is_first {
                    stats.segments_deleted += 1;
                    self.delete_emptied_segment(copy.base, &copy.tmp)
                } else {
                    self.swap_in(copy.base, &copy.tmp)
                }
            };
            if let Err(e) = swapped {
                for later in &run.copies[i + 1..] {
                    let _ = remove_if_exists(&later.tmp);
                }
                return Err(e);
            }
        }
        self.dir_dirty = true;
        stats.end_offset = run.end;
        // Every swap above is durable before the checkpoint says so.
        write_atomic(&self.dir, CLEANER_CHECKPOINT_FILE, format!("{}\n", run.end).as_bytes())?;
        let s = &stats;
        info!(
            dir = %run.dir.display(),
            first_dirty = run.first_dirty, end = run.end, ratio = run.ratio,
            bytes_read = s.bytes_read, bytes_written = s.bytes_written,
            records_read = s.records_read, records_retained = s.records_retained,
            "cleaned log"
        );
        Ok(Some(stats))
    }

    /// Replaces segment `base` with its cleaned copy at `tmp` (see "Crash safety" in the module
    /// docs). A lock-free reader still holding the old segment keeps reading its unlinked files.
    fn swap_in(&mut self, base: i64, tmp: &Path) -> Result<()> {
        let config = self.config.clone();
        let now = self.now_hint_ms;
        self.segments_version += 1;
        if let Some(old) = self.segments.remove(&base) {
            old.retire();
        }
        let dir = self.dir.clone();
        let swap = || -> Result<Segment> {
            for ext in [INDEX_EXT, TIME_INDEX_EXT] {
                remove_if_exists(&offset_path(&dir, base, ext))?;
            }
            // The old indexes must be gone for good before the log they describe changes.
            fsync_dir(&dir)?;
            let log_path = offset_path(&dir, base, LOG_EXT);
            fs().rename(tmp, &log_path).ctx(|| format!("rename {} to {}", tmp.display(), log_path.display()))?;
            // The new segment content must be the one found after a crash from now on.
            fsync_dir(&dir)?;
            let mut seg = Segment::open(&dir, base, &config)?;
            seg.recover(&config, false, now)?;
            seg.on_become_inactive()?;
            seg.flush()?;
            Ok(seg)
        };
        match swap() {
            Ok(seg) => {
                self.segments.insert(base, Arc::new(seg));
                self.dir_dirty = true;
                Ok(())
            }
            Err(e) => {
                warn!(dir = %self.dir.display(), segment = base, error = %e, "swapping in a cleaned segment failed");
                let _ = remove_if_exists(tmp);
                // Whichever log file is in place is whole; reopen it with rebuilt indexes.
                let mut seg = Segment::open(&self.dir, base, &config)?;
                seg.recover(&config, false, now)?;
                self.segments.insert(base, Arc::new(seg));
                Err(e)
            }
        }
    }

    /// Deletes a non-first segment that cleaning left empty (its offsets become a gap).
    fn delete_emptied_segment(&mut self, base: i64, tmp: &Path) -> Result<()> {
        remove_if_exists(tmp)?;
        self.segments_version += 1;
        if let Some(seg) = self.segments.remove(&base) {
            seg.remove_files()?;
        }
        self.dir_dirty = true;
        // Not strictly needed for correctness (an empty segment and no segment read the same), but
        // keeps the directory in step with the in-memory segment list.
        fsync_dir(&self.dir)
    }
}

impl CleanPlan {
    /// Builds the key map over the dirty segments and writes a cleaned copy of every segment it
    /// covers (`<base>.log.cleaned`, fsynced), without the log. A run that fails leaves no copy
    /// behind and carries its error to [`Log::finish_clean`].
    pub fn run(self, codec: &dyn RecordCodec) -> CleanRun {
        let mut cleaner = Cleaner {
            codec,
            opts: &self.opts,
            map: HashMap::new(),
            last_batch_of_producer: HashMap::new(),
            stats: CleanStats { first_dirty_offset: self.first_dirty, ..CleanStats::default() },
        };
        let mut copies = Vec::new();
        let result = self.run_into(&mut cleaner, &mut copies);
        let mut run = CleanRun {
            dir: self.dir.clone(),
            first_dirty: self.first_dirty,
            ratio: self.ratio,
            end: self.first_dirty,
            copies,
            truncations: self.truncations,
            stats: cleaner.stats,
            failure: None,
        };
        match result {
            Ok(end) => run.end = end,
            Err(e) => {
                run.discard_copies();
                run.copies.clear();
                run.failure = Some(e);
            }
        }
        run
    }

    fn run_into(&self, cleaner: &mut Cleaner<'_>, copies: &mut Vec<CleanedCopy>) -> Result<i64> {
        let end = self.build_offset_map(cleaner)?;
        self.scan_producers(cleaner)?;
        for (base, _, segment) in self.cleanable.iter().take_while(|(_, next, _)| *next <= end) {
            cleaner.stats.segments_cleaned += 1;
            if let Some(copy) = self.clean_segment(cleaner, *base, segment)? {
                copies.push(copy);
            }
        }
        Ok(end)
    }

    /// Fills the key map from the dirty cleanable segments; returns the end of the dirty range
    /// covered (a segment boundary).
    fn build_offset_map(&self, cleaner: &mut Cleaner<'_>) -> Result<i64> {
        let first_dirty = self.first_dirty;
        let mut end = first_dirty;
        let mut buf = Vec::new();
        for (_, next, seg) in self.cleanable.iter().filter(|(_, next, _)| *next > first_dirty) {
            let mut pos = 0;
            while let Some(h) = seg.header_at(pos)? {
                if h.last_offset() >= first_dirty && !h.is_control() && !h.is_transactional() {
                    read_batch(seg, pos, &h, &mut buf)?;
                    for r in cleaner.records_of(&h, &buf)? {
                        if let (Some(key), true) = (r.key, r.offset >= first_dirty) {
                            cleaner.map.insert(key, r.offset);
                        }
                    }
                }
                pos += h.total_size() as u64;
            }
            end = *next;
            if cleaner.map.len() >= cleaner.opts.max_map_entries {
                break;
            }
        }
        Ok(end)
    }

    /// Records the last data batch of every producer id in the log (Kafka keeps those batches).
    fn scan_producers(&self, cleaner: &mut Cleaner<'_>) -> Result<()> {
        let mut note = |h: &crate::batch::BatchHeader| {
            if h.producer_id >= 0 && !h.is_control() {
                cleaner.last_batch_of_producer.insert(h.producer_id, h.last_offset());
            }
        };
        for seg in &self.sealed {
            let mut pos = 0;
            while let Some(h) = seg.header_at(pos)? {
                note(&h);
                pos += h.total_size() as u64;
            }
        }
        if let Some(active) = &self.active {
            let mut pos = 0;
            while let Some(h) = active.header_at(pos)? {
                note(&h);
                pos += h.total_size() as u64;
            }
        }
        Ok(())
    }

    /// Writes the cleaned copy of one segment; `None` when cleaning changes nothing in it.
    fn clean_segment(&self, cleaner: &mut Cleaner<'_>, base: i64, seg: &Arc<Segment>) -> Result<Option<CleanedCopy>> {
        let tmp = cleaned_path(&self.dir, base);
        let log_path = offset_path(&self.dir, base, LOG_EXT);
        cleaner.stats.bytes_read += seg.size();
        let file = fs().open(&tmp, &create_truncate()).ctx(|| format!("create {}", tmp.display()))?;
        let written = (|| -> Result<Option<u64>> {
            let mut out = BufWriter::new(FileWriter::new(&file, &tmp));
            let (mut changed, mut written) = (false, 0u64);
            let mut buf = Vec::new();
            let mut pos = 0;
            while let Some(h) = seg.header_at(pos)? {
                read_batch(seg, pos, &h, &mut buf)?;
                let outcome = cleaner.clean_batch(&h, &buf)?;
                let bytes: &[u8] = match &outcome {
                    Outcome::Keep => &buf,
                    Outcome::Replace(b) => {
                        changed = true;
                        b
                    }
                    Outcome::Drop => {
                        changed = true;
                        cleaner.stats.batches_removed += 1;
                        &[]
                    }
                };
                out.write_all(bytes).ctx(|| format!("write {}", tmp.display()))?;
                written += bytes.len() as u64;
                pos += h.total_size() as u64;
            }
            out.into_inner().map_err(|e| e.into_error()).ctx(|| format!("write {}", tmp.display()))?;
            cleaner.stats.bytes_written += written;
            if !changed {
                return Ok(None);
            }
            // Kafka keeps the segment's modification time (time-based retention uses it when
            // batches carry no timestamps).
            if let Some(t) = mtime(&log_path) {
                let _ = file.set_modified(t);
            }
            // The cleaned copy must be entirely on disk before it can replace the original.
            fs().sync_data(&file, &tmp).ctx(|| format!("fsync {}", tmp.display()))?;
            Ok(Some(written))
        })();
        match written {
            Ok(Some(bytes_written)) => Ok(Some(CleanedCopy { base, segment: seg.clone(), tmp, bytes_written })),
            Ok(None) => {
                remove_if_exists(&tmp)?;
                Ok(None)
            }
            Err(e) => {
                let _ = remove_if_exists(&tmp);
                Err(e)
            }
        }
    }
}
