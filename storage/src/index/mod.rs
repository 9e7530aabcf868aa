//! Sparse per-segment indexes.
//!
//! Both index kinds are flat files of fixed-size big-endian entries, appended in order and never
//! rewritten in place. They are not memory-mapped: entries are read with positioned reads and binary
//! searched, so an index costs no memory beyond its file handle. Index files are not preallocated;
//! their length is always a whole number of entries unless a crash cut a write short, which the
//! sanity check on open detects (the index is then rebuilt from the log).

pub(crate) mod offset;
pub(crate) mod time;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// A file of fixed-size entries (shared plumbing of the offset and time indexes).
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    entry_size: usize,
    entries: usize,
    max_entries: usize,
    /// The file length was not a multiple of the entry size when opened.
    ragged: bool,
    dirty: bool,
}

impl IndexFile {
    /// Opens (creating if missing) an index file; `max_bytes` bounds how many entries it may hold.
    pub(crate) fn open(path: &Path, entry_size: usize, max_bytes: u64) -> Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(|| format!("open index {}", path.display()))?;
        let len = file.metadata().ctx(|| format!("stat index {}", path.display()))?.len();
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entry_size,
            entries: (len / entry_size as u64) as usize,
            max_entries: (max_bytes / entry_size as u64) as usize,
            ragged: len % entry_size as u64 != 0,
            dirty: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_ragged(&self) -> bool {
        self.ragged
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.max_entries
    }

    pub(crate) fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_entries = (max_bytes / self.entry_size as u64) as usize;
    }

    /// Reads entry `i` into `buf` (which must be `entry_size` long).
    pub(crate) fn read_entry(&self, i: usize, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, (i * self.entry_size) as u64)
            .ctx(|| format!("read entry {i} of {}", self.path.display()))
    }

    /// Reads the whole file (for full sanity checks).
    pub(crate) fn read_all(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.entries * self.entry_size];
        self.file.read_exact_at(&mut buf, 0).ctx(|| format!("read {}", self.path.display()))?;
        Ok(buf)
    }

    /// Appends one encoded entry.
    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<()> {
        self.file
            .write_all_at(entry, (self.entries * self.entry_size) as u64)
            .ctx(|| format!("append to {}", self.path.display()))?;
        self.entries += 1;
        self.dirty = true;
        Ok(())
    }

    /// Keeps only the first `n` entries.
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        self.file.set_len((n * self.entry_size) as u64).ctx(|| format!("truncate {}", self.path.display()))?;
        self.entries = n;
        self.ragged = false;
        self.dirty = true;
        Ok(())
    }

    /// A duplicate of the file handle (sharing the open file), for an fsync made elsewhere.
    pub(crate) fn try_clone_handle(&self) -> Result<File> {
        self.file.try_clone().ctx(|| format!("duplicate handle of {}", self.path.display()))
    }

    /// Records that the file was fsynced through a duplicated handle.
    pub(crate) fn mark_synced(&mut self) {
        self.dirty = false;
    }

    /// fsyncs the file if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.dirty {
            // Index entries (and the file length) must be durable up to the recovery point, so that
            // a crash never leaves an index pointing at data the next open would not re-index.
            self.file.sync_data().ctx(|| format!("fsync {}", self.path.display()))?;
            self.dirty = false;
        }
        Ok(())
    }
}
