//! Sparse per-segment indexes.
//!
//! Both index kinds are flat files of fixed-size big-endian entries, appended in order and never
//! rewritten in place. As in Kafka (`AbstractIndex`), they are memory-mapped and their file handle is
//! closed once mapped, so an index holds no file descriptor: a segment keeps one (its `.log`), and
//! a broker with N partitions needs about N descriptors, not 3N.
//!
//! Life of an index file:
//! * **Open**: the file is opened (created if missing), its length read, and the last whole entry
//!   read with one positioned read; the handle is then closed. The map is made lazily, on the first
//!   lookup or append (Kafka's `LazyIndex`), so the indexes of old segments that are never read cost
//!   neither a descriptor nor a mapping (`vm.max_map_count` is 65530 by default).
//! * **Writing** (active segment): the first append grows the file to its maximum size,
//!   `segment.index.bytes` rounded down to a whole number of entries, and maps it read-write;
//!   entries are written into the map. The zero tail beyond the valid entries exists only while the
//!   segment is writable.
//! * **Sealing** (roll, clean close, after a rebuild): [`IndexFile::trim_to_valid_size`] truncates the
//!   file to its valid entries (Kafka's `trimToValidSize`) and drops the map, so a cleanly sealed
//!   index's length says how many entries it has.
//! * **Sync**: [`IndexFile::sync`] msyncs the map, or fsyncs the file (through a short-lived handle)
//!   when its length changed, so entries and length are durable up to the recovery point.
//!
//! Entry count on open: the length divided by the entry size. A file whose length is not a multiple
//! of it ("ragged", a write cut short) fails the sanity check. A file left preallocated by a crash
//! (the segment was active and never sealed) has a zero tail, so its last "entry" is all zeros,
//! which no valid index ends with (offset-index positions are never 0, time-index timestamps are
//! strictly increasing from >= 0): the sanity check rejects it and the log rebuilds the index from
//! the segment. (An unclean open rebuilds the active segment's indexes anyway, since the recovery
//! point is never above the active segment.)
//!
//! Safety of the maps: reading a map past the end of a file that another process truncated raises
//! SIGBUS. Index files are private to Weir's data directory, one process owns it, and Weir itself
//! drops a map before it shortens the file; before mapping, the file's real length is checked
//! against the expected one.

pub(crate) mod offset;
pub(crate) mod time;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use memmap2::MmapMut;

use crate::error::{IoContext, Result, StorageError};
use crate::file_system::{fs, read_write, read_write_create};

/// A memory-mapped file of fixed-size entries (shared plumbing of the offset and time indexes).
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    entry_size: usize,
    /// Valid entries.
    entries: usize,
    max_entries: usize,
    /// Current length of the file on disk (valid entries plus, while writable, a zero tail).
    file_len: u64,
    /// Map of the first `file_len` bytes, made on first use; never made for an empty file.
    map: OnceLock<MmapMut>,
    /// The last whole entry as found on open (read without mapping the file).
    last_on_open: Option<Vec<u8>>,
    /// The file length was not a multiple of the entry size when opened.
    ragged: bool,
    /// Entries were written since the last sync (atomic: a sealed segment's index is synced
    /// through a shared reference while readers hold the segment).
    dirty: AtomicBool,
    /// The file length changed (or a dirty map was dropped) since the last sync: fsync the file.
    needs_fsync: AtomicBool,
}

impl IndexFile {
    /// Opens (creating if missing) an index file; `max_bytes` bounds how many entries it may hold.
    /// The file handle is closed before returning.
    pub(crate) fn open(path: &Path, entry_size: usize, max_bytes: u64) -> Result<IndexFile> {
        let file = open_rw(path)?;
        let len = file.metadata().ctx(|| format!("stat index {}", path.display()))?.len();
        let entries = (len / entry_size as u64) as usize;
        let last_on_open = if entries > 0 {
            let mut b = vec![0u8; entry_size];
            fs().read_at(&file, path, &mut b, ((entries - 1) * entry_size) as u64)
                .ctx(|| format!("read last entry of {}", path.display()))?;
            Some(b)
        } else {
            None
        };
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_size,
            entries,
            max_entries: (max_bytes / entry_size as u64) as usize,
            file_len: len,
            map: OnceLock::new(),
            last_on_open,
            ragged: len % entry_size as u64 != 0,
            dirty: AtomicBool::new(false),
            needs_fsync: AtomicBool::new(false),
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

    pub(crate) fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub(crate) fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_entries = (max_bytes / self.entry_size as u64) as usize;
    }

    /// The last whole entry the file held when it was opened (read without mapping it).
    pub(crate) fn last_entry_on_open(&self) -> Option<&[u8]> {
        self.last_on_open.as_deref()
    }

    /// Length of the file on disk (test hook).
    #[cfg(test)]
    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// True while the file is mapped (test hook).
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.get().is_some()
    }

    /// Maps the file's first `file_len` bytes (the handle is closed on return).
    fn map_file(&self) -> Result<MmapMut> {
        let file = open_existing(&self.path)?;
        let actual = file.metadata().ctx(|| format!("stat index {}", self.path.display()))?.len();
        if actual < self.file_len {
            // Mapping beyond the end of the file would turn reads into SIGBUS.
            return Err(StorageError::Corruption(format!(
                "{}: file is {actual} bytes, expected {}",
                self.path.display(),
                self.file_len
            )));
        }
        let len = usize::try_from(self.file_len)
            .map_err(|_| StorageError::Corruption(format!("{}: too large to map", self.path.display())))?;
        fs().map(&file, &self.path, len).ctx(|| format!("mmap {}", self.path.display()))
    }

    /// The mapped bytes (mapping the file on first use); empty for an empty file.
    fn bytes(&self) -> Result<&[u8]> {
        if self.file_len == 0 {
            return Ok(&[]);
        }
        if self.map.get().is_none() {
            let m = self.map_file()?;
            // Another reader may have mapped it meanwhile: either map serves.
            let _ = self.map.set(m);
        }
        match self.map.get() {
            Some(m) => Ok(&m[..]),
            None => Err(StorageError::Corruption(format!("{}: map vanished", self.path.display()))),
        }
    }

    fn bytes_mut(&mut self) -> Result<&mut MmapMut> {
        if self.map.get().is_none() {
            let m = self.map_file()?;
            let _ = self.map.set(m);
        }
        let path = &self.path;
        self.map.get_mut().ok_or_else(|| StorageError::Corruption(format!("{}: not mapped", path.display())))
    }

    /// Drops the map (before the file length changes).
    fn unmap(&mut self) {
        if self.map.take().is_some() && *self.dirty.get_mut() {
            // Its dirty pages stay in the page cache; a later sync must fsync the file to reach them.
            *self.needs_fsync.get_mut() = true;
        }
    }

    /// Sets the file length to `len` (dropping the map first).
    fn set_file_len(&mut self, len: u64) -> Result<()> {
        self.unmap();
        let file = open_existing(&self.path)?;
        fs().set_len(&file, &self.path, len).ctx(|| format!("resize {} to {len} bytes", self.path.display()))?;
        self.file_len = len;
        *self.needs_fsync.get_mut() = true;
        Ok(())
    }

    /// Reads entry `i` into `buf` (which must be `entry_size` long).
    pub(crate) fn read_entry(&self, i: usize, buf: &mut [u8]) -> Result<()> {
        let start = i * self.entry_size;
        let src = if i < self.entries && buf.len() == self.entry_size {
            self.bytes()?.get(start..start + self.entry_size)
        } else {
            None
        };
        match src {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(StorageError::Corruption(format!(
                "{}: no entry {i} (of {}, file {} bytes)",
                self.path.display(),
                self.entries,
                self.file_len
            ))),
        }
    }

    /// The valid entries' bytes (for full sanity checks).
    pub(crate) fn read_all(&self) -> Result<&[u8]> {
        let n = self.entries * self.entry_size;
        self.bytes()?
            .get(..n)
            .ok_or_else(|| StorageError::Corruption(format!("{}: shorter than {n} bytes", self.path.display())))
    }

    /// Appends one encoded entry. The first append to a file without room grows it to the maximum
    /// size (or just enough, for an entry allowed past the maximum) and maps it.
    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<()> {
        let start = self.entries * self.entry_size;
        let end = start + entry.len();
        if self.file_len < end as u64 {
            let max = (self.max_entries * self.entry_size) as u64;
            self.set_file_len(max.max(end as u64))?;
        }
        let written = match self.bytes_mut()?.get_mut(start..end) {
            Some(dst) => {
                dst.copy_from_slice(entry);
                true
            }
            None => false,
        };
        if !written {
            return Err(StorageError::Corruption(format!("{}: map shorter than {end}", self.path.display())));
        }
        self.entries += 1;
        *self.dirty.get_mut() = true;
        Ok(())
    }

    /// Keeps only the first `n` entries; the file is cut to exactly those (the tail is zeros again
    /// when a later append regrows it).
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        let n = n.min(self.entries);
        let len = (n * self.entry_size) as u64;
        if self.file_len != len {
            self.set_file_len(len)?;
        }
        self.entries = n;
        self.ragged = false;
        self.last_on_open = None;
        Ok(())
    }

    /// A handle of its own on the file, for an fsync made elsewhere (outside the log's lock):
    /// fsync reaches every dirty page of the file, written through a map or not.
    pub(crate) fn try_clone_handle(&self) -> Result<File> {
        open_existing(&self.path)
    }

    /// Records that the file was fsynced through a handle from [`IndexFile::try_clone_handle`].
    pub(crate) fn mark_synced(&self) {
        self.dirty.store(false, Ordering::Release);
        self.needs_fsync.store(false, Ordering::Release);
    }

    /// Cuts the file to its valid entries and drops the map (Kafka's `trimToValidSize`), so the
    /// length of a sealed index gives its entry count. Called when the segment stops being written.
    pub(crate) fn trim_to_valid_size(&mut self) -> Result<()> {
        let valid = (self.entries * self.entry_size) as u64;
        if self.file_len != valid {
            self.set_file_len(valid)?;
            self.ragged = false;
        }
        Ok(())
    }

    /// Makes entries and file length durable if anything changed since the last sync: msync of
    /// the map, or fsync of the file when its length changed.
    pub(crate) fn sync(&self) -> Result<()> {
        // Index entries (and the file length) must be durable up to the recovery point, so that
        // a crash never leaves an index pointing at data the next open would not re-index.
        if self.needs_fsync.load(Ordering::Acquire) {
            // fsync reaches every dirty page of the file, written through a map or not.
            let file = open_existing(&self.path)?;
            fs().sync_data(&file, &self.path).ctx(|| format!("fsync {}", self.path.display()))?;
        } else if self.dirty.load(Ordering::Acquire) {
            if let Some(m) = self.map.get() {
                fs().sync_map(m, &self.path).ctx(|| format!("msync {}", self.path.display()))?;
            }
        }
        self.mark_synced();
        Ok(())
    }
}

/// Opens the index file read-write, creating it if missing (only [`IndexFile::open`] does).
fn open_rw(path: &Path) -> Result<File> {
    fs().open(path, &read_write_create()).ctx(|| format!("open index {}", path.display()))
}

/// Opens the existing index file read-write (a vanished file is an error, never recreated empty).
fn open_existing(path: &Path) -> Result<File> {
    fs().open(path, &read_write()).ctx(|| format!("open index {}", path.display()))
}
