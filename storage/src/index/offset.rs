//! Offset index (`<base>.index`): maps offsets to byte positions in the segment's `.log`.
//!
//! Entry (8 bytes, big-endian): `relative offset: u32` (an offset minus the segment base offset) and
//! `position: u32` (byte position in the log file). As in Kafka, the offset is the *last* offset of
//! the batch starting at `position`. Entries are strictly increasing in both fields; one is written
//! for a batch when more than `index.interval.bytes` of log were written since the previous entry.
//! Lookup finds the greatest entry whose offset is <= the target; the reader then scans forward.

use std::path::Path;

use super::IndexFile;
use crate::error::Result;

/// Size of one offset-index entry.
pub(crate) const ENTRY_SIZE: usize = 8;

/// Sparse offset -> position index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
    last: Option<(i64, u32)>,
}

impl OffsetIndex {
    /// Opens or creates the index of the segment starting at `base_offset`.
    pub(crate) fn open(path: &Path, base_offset: i64, max_bytes: u64) -> Result<OffsetIndex> {
        let file = IndexFile::open(path, ENTRY_SIZE, max_bytes)?;
        let last = file.last_entry_on_open().filter(|b| b.len() == ENTRY_SIZE).map(|b| decode(base_offset, b));
        Ok(OffsetIndex { file, base_offset, last })
    }

    fn entry(&self, i: usize) -> Result<(i64, u32)> {
        let mut b = [0u8; ENTRY_SIZE];
        self.file.read_entry(i, &mut b)?;
        Ok(decode(self.base_offset, &b))
    }

    /// The underlying file.
    pub(crate) fn file(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    /// The underlying file, read-only.
    pub(crate) fn file_ref(&self) -> &IndexFile {
        &self.file
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    /// True when no more entries fit under `segment.index.bytes`.
    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Last entry, if any.
    pub(crate) fn last_entry(&self) -> Option<(i64, u32)> {
        self.last
    }

    /// Appends `(offset, position)` unless the index is full or the entry would not increase.
    pub(crate) fn append(&mut self, offset: i64, position: u32) -> Result<()> {
        if self.file.is_full() {
            return Ok(());
        }
        if let Some((lo, lp)) = self.last {
            if offset <= lo || position <= lp {
                return Ok(());
            }
        }
        let rel = (offset - self.base_offset) as u32;
        let mut b = [0u8; ENTRY_SIZE];
        b[..4].copy_from_slice(&rel.to_be_bytes());
        b[4..].copy_from_slice(&position.to_be_bytes());
        self.file.append(&b)?;
        self.last = Some((offset, position));
        Ok(())
    }

    /// Greatest entry with offset <= `target`, or `(base_offset, 0)` if there is none.
    pub(crate) fn lookup(&self, target: i64) -> Result<(i64, u32)> {
        // Find the number of entries with offset <= target (entries are sorted).
        let (mut lo, mut hi) = (0usize, self.file.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok((self.base_offset, 0))
        } else {
            self.entry(lo - 1)
        }
    }

    /// Cuts the file to its valid entries (the segment is no longer written).
    pub(crate) fn trim_to_valid_size(&mut self) -> Result<()> {
        self.file.trim_to_valid_size()
    }

    /// Removes all entries.
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.file.truncate_entries(0)?;
        self.last = None;
        Ok(())
    }

    /// Checks the file is well formed: whole entries, strictly increasing, positions below `log_size`.
    /// With `full == false` only the length and last entry are checked (cheap, like Kafka).
    pub(crate) fn sanity_check(&self, log_size: u64, full: bool) -> std::result::Result<(), String> {
        let name = self.file.path().display();
        if self.file.is_ragged() {
            return Err(format!("{name}: length is not a multiple of {ENTRY_SIZE}"));
        }
        if let Some((o, p)) = self.last {
            if p == 0 {
                // No batch at position 0 is ever indexed: this is the zero tail of an index left
                // preallocated by a crash (see the module docs of `index`).
                return Err(format!("{name}: ends with an empty entry (preallocated, not closed cleanly)"));
            }
            if o < self.base_offset || p as u64 >= log_size {
                return Err(format!("{name}: last entry ({o}, {p}) is out of bounds"));
            }
        }
        if full {
            let all = self.file.read_all().map_err(|e| e.to_string())?;
            let mut prev: Option<(i64, u32)> = None;
            for chunk in all.chunks_exact(ENTRY_SIZE) {
                let (o, p) = decode(self.base_offset, chunk);
                if let Some((po, pp)) = prev {
                    if o <= po || p <= pp {
                        return Err(format!("{name}: entries not increasing at ({o}, {p})"));
                    }
                }
                if p as u64 >= log_size {
                    return Err(format!("{name}: position {p} beyond log size {log_size}"));
                }
                prev = Some((o, p));
            }
        }
        Ok(())
    }
}

fn decode(base: i64, b: &[u8]) -> (i64, u32) {
    let rel = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let pos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    (base + rel as i64, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.index");
        let mut idx = OffsetIndex::open(&p, 100, 1024).unwrap();
        assert_eq!(idx.lookup(150).unwrap(), (100, 0));
        idx.append(110, 500).unwrap();
        idx.append(120, 900).unwrap();
        idx.append(120, 950).unwrap(); // ignored: not increasing
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(105).unwrap(), (100, 0));
        assert_eq!(idx.lookup(110).unwrap(), (110, 500));
        assert_eq!(idx.lookup(119).unwrap(), (110, 500));
        assert_eq!(idx.lookup(1000).unwrap(), (120, 900));
        idx.trim_to_valid_size().unwrap(); // sealed, as on roll or close
        drop(idx);
        let idx = OffsetIndex::open(&p, 100, 1024).unwrap();
        assert_eq!(idx.last_entry(), Some((120, 900)));
        assert!(idx.sanity_check(1000, true).is_ok());
        assert!(idx.sanity_check(900, false).is_err());
    }

    #[test]
    fn full_index_skips() {
        let d = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::open(&d.path().join("x.index"), 0, 16).unwrap();
        for i in 1..5 {
            idx.append(i, i as u32 * 10).unwrap();
        }
        assert_eq!(idx.len(), 2);
        assert!(idx.is_full());
    }
}
