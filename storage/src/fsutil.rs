//! Small file-system helpers: file naming, atomic small-file writes, directory fsync.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::file_system::{create_truncate, fs};

/// Suffix of temporary files written by [`write_atomic`]; stale ones are deleted on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `<20-digit zero-padded offset>.<ext>`.
pub(crate) fn offset_file_name(offset: i64, ext: &str) -> String {
    format!("{offset:020}.{ext}")
}

/// Path of `<dir>/<20-digit offset>.<ext>`.
pub(crate) fn offset_path(dir: &Path, offset: i64, ext: &str) -> PathBuf {
    dir.join(offset_file_name(offset, ext))
}

/// Parses a file name of the form `<20 digits>.<ext>`.
pub(crate) fn parse_offset_file_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs().sync_dir(dir).ctx(|| format!("fsync directory {}", dir.display()))
}

/// Replaces `dir/name` with `contents` atomically: write a temp file, fsync it, rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dst = dir.join(name);
    {
        let f = fs().open(&tmp, &create_truncate()).ctx(|| format!("create {}", tmp.display()))?;
        fs().write_at(&f, &tmp, contents, 0).ctx(|| format!("write {}", tmp.display()))?;
        // The new contents must be on disk before the rename makes them visible under the real name.
        fs().sync_data(&f, &tmp).ctx(|| format!("fsync {}", tmp.display()))?;
    }
    fs().rename(&tmp, &dst).ctx(|| format!("rename {} to {}", tmp.display(), dst.display()))?;
    // The rename itself (the directory entry) must be durable.
    fsync_dir(dir)
}

/// Removes a file, ignoring "not found".
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs().remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("remove {}", path.display())),
    }
}

/// Reads a small text file holding one integer; `Ok(None)` if the file does not exist.
pub(crate) fn read_i64_file(path: &Path) -> Result<Option<i64>> {
    match fs().read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().parse::<i64>().map(Some).map_err(|_| {
            crate::error::StorageError::Corruption(format!(
                "{} does not hold an integer: {:?}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(offset_file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_offset_file_name("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_offset_file_name("42.log", "log"), None);
        assert_eq!(parse_offset_file_name("00000000000000000042.index", "log"), None);
    }
}
