//! Every file-system call of the segment store goes through one [`FileSystem`], so that tests can
//! make any open, read, write, fsync, resize, rename or removal fail, or tear a write at any byte
//! ([`faults::FaultInjector`]), in the spirit of raft-engine's failpoints.
//!
//! The process uses [`OsFileSystem`] unless a test installs another one with [`install`] before
//! the store's first file operation (the crate's own unit tests always run on the
//! [`faults::FaultInjector`], which passes every operation through unless a fault is armed). Only calls that can change what is on disk, or that open a
//! descriptor (and so can fail with EMFILE), go through the trait; `stat`s do not.

pub mod faults;

use std::fs::{self, File, OpenOptions, ReadDir};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use memmap2::{MmapMut, MmapOptions};

/// The kinds of operation a [`FileSystem`] performs (what a fault is armed on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOp {
    /// Opening or creating a file, listing a directory, creating a directory.
    Open,
    /// Reading a file.
    Read,
    /// Writing to a file.
    Write,
    /// fsync of a file or a directory, msync of a mapped index.
    Sync,
    /// Changing a file's length.
    SetLen,
    /// Mapping an index file.
    Map,
    /// Renaming a file.
    Rename,
    /// Removing a file or a directory tree.
    Remove,
}

/// The file operations of the segment store. `path` always names the file a handle refers to, so
/// that an implementation can decide by path (faults are scoped to a directory).
pub trait FileSystem: Send + Sync + 'static {
    /// Opens `path` with `options`.
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<File>;
    /// Lists a directory.
    fn read_dir(&self, path: &Path) -> io::Result<ReadDir>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Fills `buf` from `offset` of `file`.
    fn read_at(&self, file: &File, path: &Path, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` of `file`.
    fn write_at(&self, file: &File, path: &Path, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fsyncs a file's data and the metadata needed to read it back (its length).
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Sets the length of `file`.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()>;
    /// Maps the first `len` bytes of `file` read-write.
    fn map(&self, file: &File, path: &Path, len: usize) -> io::Result<MmapMut>;
    /// msyncs a map made by [`FileSystem::map`].
    fn sync_map(&self, map: &MmapMut, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's file system: the calls, unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFileSystem;

impl FileSystem for OsFileSystem {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        options.open(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<ReadDir> {
        fs::read_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, file: &File, _path: &Path, buf: &mut [u8], offset: u64) -> io::Result<()> {
        file.read_exact_at(buf, offset)
    }

    fn write_at(&self, file: &File, _path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    fn sync_data(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn set_len(&self, file: &File, _path: &Path, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn map(&self, file: &File, _path: &Path, len: usize) -> io::Result<MmapMut> {
        // SAFETY: index files live in Weir's private data directory and only their `IndexFile`
        // changes their length, after dropping its map (see `crate::index`).
        unsafe { MmapOptions::new().len(len).map_mut(file) }
    }

    fn sync_map(&self, map: &MmapMut, _path: &Path) -> io::Result<()> {
        map.flush()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}

#[cfg(not(test))]
static OS: OsFileSystem = OsFileSystem;
static INSTALLED: OnceLock<&'static dyn FileSystem> = OnceLock::new();

/// The file system the store uses: the installed one, or [`OsFileSystem`].
pub fn fs() -> &'static dyn FileSystem {
    *INSTALLED.get_or_init(default_file_system)
}

#[cfg(not(test))]
fn default_file_system() -> &'static dyn FileSystem {
    &OS
}

#[cfg(test)]
fn default_file_system() -> &'static dyn FileSystem {
    faults::injector()
}

/// Makes `file_system` the one the store uses for the rest of the process. Fails (returning
/// `false`) if the store already performed a file operation or another one was installed.
pub fn install(file_system: &'static dyn FileSystem) -> bool {
    INSTALLED.set(file_system).is_ok()
}

/// Options to open an existing file for reading and writing.
pub(crate) fn read_write() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    o
}

/// Options to open a file for reading and writing, creating it if missing (never truncating).
pub(crate) fn read_write_create() -> OpenOptions {
    let mut o = read_write();
    o.create(true).truncate(false);
    o
}

/// Options to create a file, or truncate an existing one, for writing.
pub(crate) fn create_truncate() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    o
}

/// An [`io::Write`] that appends to a file through [`fs`] (for files written front to back).
pub(crate) struct FileWriter<'a> {
    file: &'a File,
    path: &'a Path,
    position: u64,
}

impl<'a> FileWriter<'a> {
    /// A writer at the start of `file`.
    pub(crate) fn new(file: &'a File, path: &'a Path) -> Self {
        FileWriter { file, path, position: 0 }
    }
}

impl io::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        fs().write_at(self.file, self.path, buf, self.position)?;
        self.position += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
