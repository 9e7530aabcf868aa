//! Time index (`<base>.timeindex`): maps timestamps to offsets.
//!
//! Entry (12 bytes, big-endian): `timestamp: i64` and `relative offset: u32`. The offset is the
//! offset at which the segment's running maximum timestamp first reached `timestamp`, so every
//! batch before it has a smaller max timestamp. Timestamps are strictly increasing. As in Kafka, an
//! entry is added together with each offset-index entry when the running max timestamp has grown,
//! and a final entry with the segment's max timestamp is written when the segment stops being active
//! (roll or clean close), so the last entry always holds the segment's largest timestamp.

use std::path::Path;

use super::IndexFile;
use crate::batch::NO_TIMESTAMP;
use crate::error::Result;

/// Size of one time-index entry.
pub(crate) const ENTRY_SIZE: usize = 12;

/// Sparse timestamp -> offset index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
    last: Option<(i64, i64)>,
}

impl TimeIndex {
    /// Opens or creates the time index of the segment starting at `base_offset`.
    pub(crate) fn open(path: &Path, base_offset: i64, max_bytes: u64) -> Result<TimeIndex> {
        let file = IndexFile::open(path, ENTRY_SIZE, max_bytes)?;
        let last = file.last_entry_on_open().filter(|b| b.len() == ENTRY_SIZE).map(|b| decode(base_offset, b));
        Ok(TimeIndex { file, base_offset, last })
    }

    fn entry(&self, i: usize) -> Result<(i64, i64)> {
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

    /// True when no more entries fit under `segment.index.bytes`. As in Kafka, the last slot is kept
    /// for the final entry written when the segment stops being active, so that one always fits in
    /// the preallocated file.
    pub(crate) fn is_full(&self) -> bool {
        self.file.len() + 1 >= self.file.max_entries()
    }

    /// Last entry `(timestamp, offset)`, if any.
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.last
    }

    /// Appends `(timestamp, offset)` if `timestamp` is larger than the last entry's (and, unless
    /// `skip_full_check`, the index is not full).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64, skip_full_check: bool) -> Result<()> {
        if !skip_full_check && self.is_full() {
            return Ok(());
        }
        let last_ts = self.last.map_or(NO_TIMESTAMP, |(t, _)| t);
        let last_off = self.last.map_or(self.base_offset, |(_, o)| o);
        if timestamp <= last_ts || offset < last_off {
            return Ok(());
        }
        let mut b = [0u8; ENTRY_SIZE];
        b[..8].copy_from_slice(&timestamp.to_be_bytes());
        b[8..].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        self.file.append(&b)?;
        self.last = Some((timestamp, offset));
        Ok(())
    }

    /// Greatest entry with timestamp <= `target`, or `(NO_TIMESTAMP, base_offset)` if none.
    pub(crate) fn lookup(&self, target: i64) -> Result<(i64, i64)> {
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
            Ok((NO_TIMESTAMP, self.base_offset))
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

    /// Checks whole entries, increasing timestamps and offsets, offsets below `next_offset` bound.
    /// With `full == false` only the length and last entry are checked.
    pub(crate) fn sanity_check(&self, full: bool) -> std::result::Result<(), String> {
        let name = self.file.path().display();
        if self.file.is_ragged() {
            return Err(format!("{name}: length is not a multiple of {ENTRY_SIZE}"));
        }
        if let Some((t, o)) = self.last {
            if self.file.len() >= 2 && t == 0 && o == self.base_offset {
                // Timestamps strictly increase from >= 0, so only a first entry can be all zeros:
                // this is the zero tail of an index left preallocated by a crash.
                return Err(format!("{name}: ends with an empty entry (preallocated, not closed cleanly)"));
            }
            if o < self.base_offset {
                return Err(format!("{name}: last entry offset {o} below base"));
            }
        }
        if full {
            let all = self.file.read_all().map_err(|e| e.to_string())?;
            let mut prev: Option<(i64, i64)> = None;
            for chunk in all.chunks_exact(ENTRY_SIZE) {
                let (t, o) = decode(self.base_offset, chunk);
                if let Some((pt, po)) = prev {
                    if t <= pt || o < po {
                        return Err(format!("{name}: entries not increasing at ({t}, {o})"));
                    }
                }
                prev = Some((t, o));
            }
        }
        Ok(())
    }
}

fn decode(base: i64, b: &[u8]) -> (i64, i64) {
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[..8]);
    let rel = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    (i64::from_be_bytes(t), base + rel as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.timeindex");
        let mut idx = TimeIndex::open(&p, 10, 1200).unwrap();
        assert_eq!(idx.lookup(5).unwrap(), (NO_TIMESTAMP, 10));
        idx.maybe_append(100, 12, false).unwrap();
        idx.maybe_append(100, 13, false).unwrap(); // not larger: ignored
        idx.maybe_append(200, 15, false).unwrap();
        assert_eq!(idx.lookup(99).unwrap(), (NO_TIMESTAMP, 10));
        assert_eq!(idx.lookup(150).unwrap(), (100, 12));
        assert_eq!(idx.lookup(500).unwrap(), (200, 15));
        idx.trim_to_valid_size().unwrap(); // sealed, as on roll or close
        drop(idx);
        let idx = TimeIndex::open(&p, 10, 1200).unwrap();
        assert_eq!(idx.last_entry(), Some((200, 15)));
        assert!(idx.sanity_check(true).is_ok());
    }
}
