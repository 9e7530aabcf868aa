//! One log segment: `<base>.log` plus its `<base>.index` and `<base>.timeindex`.
//!
//! Invariants:
//! * the `.log` file is a sequence of whole v2 batches (the recovery scan enforces this after a crash);
//! * every offset in the segment is >= `base_offset` and < the next segment's base offset, and
//!   `last offset - base_offset` fits in an `i32` (so relative offsets fit in index entries);
//! * index entries point at batch starts within the file (see [`crate::index`]).
//!
//! All reads are positioned reads (`read_at`) so `&self` methods never move a file cursor.
//! The segment keeps one file descriptor, its `.log`; the indexes are memory-mapped without one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

use crate::batch::{self, BatchHeader, HEADER_SIZE, NO_TIMESTAMP};
use crate::config::LogConfig;
use crate::error::{IoContext, Result, StorageError};
use crate::file_system::{fs, read_write_create};
use crate::fsutil::{offset_path, remove_if_exists};
use crate::index::offset::OffsetIndex;
use crate::index::time::TimeIndex;

/// Extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// What [`Segment::recover`] scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Batches validated and indexed.
    pub(crate) batches: u64,
    /// Bytes of valid batches (the segment's size after recovery).
    pub(crate) valid_bytes: u64,
    /// Bytes cut off at the first invalid byte.
    pub(crate) truncated_bytes: u64,
    /// `(partition leader epoch, base offset)` of every valid batch whose epoch differs from the
    /// previous one's, in offset order.
    pub(crate) epoch_changes: Vec<(i32, i64)>,
}

/// A segment of the partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: File,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_last_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Wall-clock time of the first append (or, after a reload, the first batch's max timestamp).
    rolling_base_ms: Option<i64>,
    next_offset: i64,
    /// Written since the last fsync (atomic: a sealed segment is flushed through a shared
    /// reference while lock-free readers hold it).
    dirty: AtomicBool,
    /// An index file did not exist when a non-empty segment was opened.
    index_missing: bool,
    /// Set when the log stops using the segment (deleted, replaced by a cleaned copy, truncated):
    /// a lock-free reader that fails on it retries against the log's current segments.
    retired: AtomicBool,
}

impl Segment {
    /// Creates a new, empty segment (replacing any files of the same name).
    pub(crate) fn create(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
            remove_if_exists(&offset_path(dir, base_offset, ext))?;
        }
        Self::open(dir, base_offset, config)
    }

    /// Opens (creating missing files) the segment at `base_offset`. Call [`Segment::load_state`]
    /// or [`Segment::recover`] before using it.
    pub(crate) fn open(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        let log_path = offset_path(dir, base_offset, LOG_EXT);
        let log = fs().open(&log_path, &read_write_create()).ctx(|| format!("open {}", log_path.display()))?;
        let size = log.metadata().ctx(|| format!("stat {}", log_path.display()))?.len();
        let index_missing =
            size > 0 && [INDEX_EXT, TIME_INDEX_EXT].iter().any(|ext| !offset_path(dir, base_offset, ext).exists());
        let offset_index =
            OffsetIndex::open(&offset_path(dir, base_offset, INDEX_EXT), base_offset, config.segment_index_bytes)?;
        let time_index =
            TimeIndex::open(&offset_path(dir, base_offset, TIME_INDEX_EXT), base_offset, config.segment_index_bytes)?;
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size,
            offset_index,
            time_index,
            bytes_since_last_index_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            rolling_base_ms: None,
            next_offset: base_offset,
            dirty: AtomicBool::new(false),
            index_missing,
            retired: AtomicBool::new(false),
        })
    }

    /// First offset this segment may hold.
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch (the base offset when empty).
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Size of the `.log` file in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Largest batch max-timestamp in the segment, or -1.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Kafka's `LogSegment.largestTimestamp`: the max timestamp, or the file's mtime without one.
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// True when either index cannot take another entry.
    pub(crate) fn index_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// Milliseconds since the segment's first append (0 if empty).
    pub(crate) fn time_waited_for_roll(&self, now_ms: i64) -> i64 {
        self.rolling_base_ms.map_or(0, |b| now_ms.saturating_sub(b))
    }

    /// Applies a new `segment.index.bytes`.
    pub(crate) fn set_config(&mut self, config: &LogConfig) {
        self.offset_index.file().set_max_bytes(config.segment_index_bytes);
        self.time_index.file().set_max_bytes(config.segment_index_bytes);
    }

    /// Cheap (or, with `full`, thorough) validation of the index files against the log.
    pub(crate) fn sanity_check(&self, full: bool) -> std::result::Result<(), String> {
        if self.index_missing {
            return Err(format!("{}: index file missing", self.log_path.display()));
        }
        self.offset_index.sanity_check(self.size, full)?;
        self.time_index.sanity_check(full)
    }

    /// Loads in-memory state of a segment whose indexes are trusted: the next offset (scanning from
    /// the last offset-index entry), the max timestamp (last time-index entry) and the roll base.
    pub(crate) fn load_state(&mut self, now_ms: i64) -> Result<()> {
        let mut pos = self.offset_index.last_entry().map_or(0, |(_, p)| p as u64);
        let indexed_pos = pos;
        self.next_offset = self.base_offset;
        while let Some(h) = self.header_at(pos)? {
            if h.base_offset < self.next_offset {
                return Err(StorageError::Corruption(format!(
                    "{}: offsets go backwards at position {pos}",
                    self.log_path.display()
                )));
            }
            self.next_offset = h.last_offset() + 1;
            pos += h.total_size() as u64;
        }
        if pos != self.size {
            return Err(StorageError::Corruption(format!(
                "{}: last batch ends at {pos}, file size {}",
                self.log_path.display(),
                self.size
            )));
        }
        if let Some((o, _)) = self.offset_index.last_entry() {
            if o >= self.next_offset {
                return Err(StorageError::Corruption(format!(
                    "{}: index entry {o} beyond the log",
                    self.log_path.display()
                )));
            }
        }
        self.bytes_since_last_index_entry = self.size - indexed_pos;
        match self.time_index.last_entry() {
            Some((t, o)) => {
                self.max_timestamp = t;
                self.offset_of_max_timestamp = o;
            }
            None => {
                self.max_timestamp = NO_TIMESTAMP;
                self.offset_of_max_timestamp = self.base_offset;
            }
        }
        self.rolling_base_ms = self.initial_rolling_base(now_ms)?;
        Ok(())
    }

    fn initial_rolling_base(&self, now_ms: i64) -> Result<Option<i64>> {
        Ok(match self.header_at(0)? {
            Some(h) if h.max_timestamp >= 0 => Some(h.max_timestamp),
            Some(_) => Some(now_ms),
            None => None,
        })
    }

    /// Rebuilds both indexes by scanning the log from the start, validating every batch (size
    /// bounds, magic, increasing offsets and, with `validate_crc`, the CRC32C). The file is truncated
    /// at the first invalid byte. Returns what the scan saw and truncated.
    pub(crate) fn recover(&mut self, config: &LogConfig, validate_crc: bool, now_ms: i64) -> Result<Recovered> {
        self.offset_index.reset()?;
        self.time_index.reset()?;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        self.next_offset = self.base_offset;
        self.rolling_base_ms = None;
        self.index_missing = false;
        let mut pos = 0u64;
        let mut buf = Vec::new();
        let mut problem = None;
        let mut batches = 0u64;
        let mut epoch_changes = Vec::new();
        while pos < self.size {
            match self.check_batch_at(pos, validate_crc, &mut buf)? {
                Ok(h) => {
                    self.index_batch(&h, pos, config)?;
                    if epoch_changes.last().is_none_or(|&(e, _)| e != h.partition_leader_epoch) {
                        epoch_changes.push((h.partition_leader_epoch, h.base_offset));
                    }
                    pos += h.total_size() as u64;
                    batches += 1;
                }
                Err(reason) => {
                    problem = Some(reason);
                    break;
                }
            }
        }
        let truncated = self.size - pos;
        if let Some(reason) = problem {
            warn!(
                segment = %self.log_path.display(),
                position = pos,
                truncated_bytes = truncated,
                "invalid data in log segment ({reason}); truncating"
            );
            self.truncate_file(pos)?;
        }
        self.rolling_base_ms = self.initial_rolling_base(now_ms)?;
        // As Kafka's LogSegment.recover: rebuilt indexes are trimmed; the next append regrows them.
        self.offset_index.trim_to_valid_size()?;
        self.time_index.trim_to_valid_size()?;
        Ok(Recovered { batches, valid_bytes: pos, truncated_bytes: truncated, epoch_changes })
    }

    /// Validates the batch at `pos`. The outer `Result` is an I/O failure, the inner one a reason
    /// why the bytes are not a valid batch.
    fn check_batch_at(
        &self,
        pos: u64,
        validate_crc: bool,
        buf: &mut Vec<u8>,
    ) -> Result<std::result::Result<BatchHeader, String>> {
        let remaining = self.size - pos;
        if remaining < HEADER_SIZE as u64 {
            return Ok(Err(format!("{remaining} trailing bytes, less than a batch header")));
        }
        let mut hb = [0u8; HEADER_SIZE];
        fs().read_at(&self.log, &self.log_path, &mut hb, pos).ctx(|| format!("read {}", self.log_path.display()))?;
        let h = match BatchHeader::parse(&hb) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let size = h.total_size() as u64;
        if size > remaining {
            return Ok(Err(format!("batch of {size} bytes but only {remaining} remain")));
        }
        if h.magic != batch::MAGIC_V2 {
            return Ok(Err(format!("magic {} is not 2", h.magic)));
        }
        if h.base_offset < self.next_offset || h.last_offset_delta < 0 {
            return Ok(Err(format!(
                "offsets {}..{} do not follow {}",
                h.base_offset,
                h.last_offset(),
                self.next_offset - 1
            )));
        }
        if h.last_offset() - self.base_offset > i32::MAX as i64 {
            return Ok(Err("offset too far from the segment base".into()));
        }
        if validate_crc {
            buf.resize(size as usize, 0);
            fs().read_at(&self.log, &self.log_path, buf, pos).ctx(|| format!("read {}", self.log_path.display()))?;
            if !batch::crc_is_valid(buf) {
                return Ok(Err(format!("CRC mismatch in batch at offset {}", h.base_offset)));
            }
        }
        Ok(Ok(h))
    }

    /// Updates index and timestamp state for a batch written at `pos` (Kafka's LogSegment.append).
    fn index_batch(&mut self, h: &BatchHeader, pos: u64, config: &LogConfig) -> Result<()> {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.bytes_since_last_index_entry > config.index_interval_bytes {
            self.offset_index.append(h.last_offset(), pos as u32)?;
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp, false)?;
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_size() as u64;
        self.next_offset = h.last_offset() + 1;
        Ok(())
    }

    /// Appends already validated, contiguous batches (`records`, described by `headers`).
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
        config: &LogConfig,
    ) -> Result<()> {
        let start = self.size;
        if let Err(e) = fs().write_at(&self.log, &self.log_path, records, start) {
            // Best effort: do not leave a partial batch behind (the log takes no more writes after
            // a failure, and the next open's recovery cuts whatever part of it remains).
            let _ = fs().set_len(&self.log, &self.log_path, start);
            return Err(e).ctx(|| format!("append to {}", self.log_path.display()));
        }
        self.size += records.len() as u64;
        *self.dirty.get_mut() = true;
        if self.rolling_base_ms.is_none() {
            self.rolling_base_ms = Some(now_ms);
        }
        let mut pos = start;
        for h in headers {
            self.index_batch(h, pos, config)?;
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// Reads the header of the batch at `pos`; `None` at the end of the file.
    pub(crate) fn header_at(&self, pos: u64) -> Result<Option<BatchHeader>> {
        header_at(&self.log, &self.log_path, self.size, pos)
    }

    /// Position and header of the first batch whose last offset is >= `offset`, if any.
    pub(crate) fn translate_offset(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (_, start) = self.offset_index.lookup(offset)?;
        let mut pos = start as u64;
        while let Some(h) = self.header_at(pos)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `pos`.
    pub(crate) fn read_range(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        read_range(&self.log, &self.log_path, pos, len, out)
    }

    /// The first batch (as bytes) with max timestamp >= `ts` and last offset >= `start_offset`.
    pub(crate) fn find_by_timestamp(&self, ts: i64, start_offset: i64) -> Result<Option<Vec<u8>>> {
        let (_, off) = self.time_index.lookup(ts)?;
        let (_, start) = self.offset_index.lookup(off.max(start_offset))?;
        let mut pos = start as u64;
        while let Some(h) = self.header_at(pos)? {
            if h.max_timestamp >= ts && h.last_offset() >= start_offset {
                let mut out = Vec::with_capacity(h.total_size());
                self.read_range(pos, h.total_size(), &mut out)?;
                return Ok(Some(out));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Removes every batch whose last offset is >= `offset` and rebuilds the indexes.
    pub(crate) fn truncate_to(&mut self, offset: i64, config: &LogConfig, now_ms: i64) -> Result<()> {
        if let Some((pos, _)) = self.translate_offset(offset)? {
            self.truncate_file(pos)?;
        }
        self.recover(config, false, now_ms)?;
        Ok(())
    }

    fn truncate_file(&mut self, len: u64) -> Result<()> {
        fs().set_len(&self.log, &self.log_path, len).ctx(|| format!("truncate {}", self.log_path.display()))?;
        self.size = len;
        *self.dirty.get_mut() = true;
        Ok(())
    }

    /// Called when the segment stops being the active one (roll or close): writes the final
    /// time-index entry so the last entry holds the segment's max timestamp, and trims both
    /// indexes to their valid entries (their length then gives their entry count on open).
    pub(crate) fn on_become_inactive(&mut self) -> Result<()> {
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp, true)?;
        self.offset_index.trim_to_valid_size()?;
        self.time_index.trim_to_valid_size()
    }

    /// fsyncs the log file and both indexes if they changed.
    pub(crate) fn flush(&self) -> Result<()> {
        if self.dirty.load(Ordering::Acquire) {
            // All appended batches (and the file length) must be durable before the recovery point
            // moves past them; `sync_data` includes the size metadata needed to read them back.
            fs().sync_data(&self.log, &self.log_path).ctx(|| format!("fsync {}", self.log_path.display()))?;
            self.dirty.store(false, Ordering::Release);
        }
        self.offset_index.file_ref().sync()?;
        self.time_index.file_ref().sync()
    }

    /// Duplicated handles of the log and index files, so they can be fsynced without holding the
    /// log (see [`crate::Log::take_pending_flush`]).
    pub(crate) fn file_handles(&self) -> Result<Vec<(File, PathBuf)>> {
        let log = self.log.try_clone().ctx(|| format!("duplicate handle of {}", self.log_path.display()))?;
        let mut out = vec![(log, self.log_path.clone())];
        for index in [self.offset_index.file_ref(), self.time_index.file_ref()] {
            out.push((index.try_clone_handle()?, index.path().to_path_buf()));
        }
        Ok(out)
    }

    /// Records that the handles from [`Segment::file_handles`] were fsynced (nothing was written
    /// to the segment since).
    pub(crate) fn mark_flushed(&self) {
        self.dirty.store(false, Ordering::Release);
        self.offset_index.file_ref().mark_synced();
        self.time_index.file_ref().mark_synced();
    }

    /// Deletes the segment's files.
    pub(crate) fn delete(self) -> Result<()> {
        self.remove_files()
    }

    /// Retires the segment and unlinks its files. Lock-free readers that still hold it keep
    /// reading through their open descriptor and mapped indexes (an unlinked file lives on until
    /// its last user lets go), so its files are never shortened under them.
    pub(crate) fn remove_files(&self) -> Result<()> {
        self.retire();
        for p in [self.log_path.clone(), self.offset_index_path(), self.time_index_path()] {
            remove_if_exists(&p)?;
        }
        Ok(())
    }

    /// Marks the segment as no longer the log's (see [`Segment::is_retired`]).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether the log stopped using this segment after a lock-free reader took it.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Unlinks the index files so that a rebuild creates new ones: a lock-free reader may still
    /// have the old ones mapped, and shortening a mapped file would turn its reads into SIGBUS.
    pub(crate) fn unlink_indexes(&self) -> Result<()> {
        for p in [self.offset_index_path(), self.time_index_path()] {
            remove_if_exists(&p)?;
        }
        Ok(())
    }

    /// A read-only view of the first `size` bytes of the `.log` file through a descriptor of its
    /// own, for scans made without holding the log (the active segment's written bytes do not
    /// change until a truncation, which a scan's caller detects).
    pub(crate) fn file_view(&self) -> Result<LogFileView> {
        let file = self.log.try_clone().ctx(|| format!("duplicate handle of {}", self.log_path.display()))?;
        Ok(LogFileView { file, path: self.log_path.clone(), size: self.size })
    }

    fn offset_index_path(&self) -> PathBuf {
        self.log_path.with_extension(INDEX_EXT)
    }

    fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension(TIME_INDEX_EXT)
    }
}

/// The first `size` bytes of a segment's `.log`, read through a descriptor of its own (see
/// [`Segment::file_view`]).
#[derive(Debug)]
pub(crate) struct LogFileView {
    file: File,
    path: PathBuf,
    size: u64,
}

impl LogFileView {
    /// Reads the header of the batch at `pos`; `None` at the end of the view.
    pub(crate) fn header_at(&self, pos: u64) -> Result<Option<BatchHeader>> {
        header_at(&self.file, &self.path, self.size, pos)
    }
}

/// The header of the batch at `pos` in a `.log` file of `size` bytes; `None` at its end.
fn header_at(file: &File, path: &Path, size: u64, pos: u64) -> Result<Option<BatchHeader>> {
    if pos >= size {
        return Ok(None);
    }
    if size - pos < HEADER_SIZE as u64 {
        return Err(StorageError::Corruption(format!("{}: partial batch header at {pos}", path.display())));
    }
    let mut hb = [0u8; HEADER_SIZE];
    fs().read_at(file, path, &mut hb, pos).ctx(|| format!("read {}", path.display()))?;
    let h =
        BatchHeader::parse(&hb).map_err(|e| StorageError::Corruption(format!("{} at {pos}: {e}", path.display())))?;
    if pos + h.total_size() as u64 > size {
        return Err(StorageError::Corruption(format!(
            "{}: batch at {pos} runs past the end of the file",
            path.display()
        )));
    }
    Ok(Some(h))
}

/// Appends `len` bytes read at `pos` of a `.log` file to `out`.
fn read_range(file: &File, path: &Path, pos: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.resize(start + len, 0);
    fs().read_at(file, path, &mut out[start..], pos).ctx(|| format!("read {}", path.display()))
}
