//! The local metadata log: an append-only file `metadata.log` in the
//! controller's metadata directory.
//!
//! Format: a sequence of entries, each
//! `[u32 length, big-endian][u32 crc32c of payload, big-endian][payload]`,
//! where the payload is the JSON array of the entry's [`MetadataRecord`]s (a
//! batch that is applied atomically) and `length` is the payload length.
//! An entry's offset is its position in the sequence (0, 1, 2, ...).
//!
//! Invariants:
//! - an append returns only after the entry is written and fsynced;
//! - on open every entry is read back and checked; the first torn or corrupt
//!   entry (short header or payload, CRC mismatch, undecodable JSON, absurd
//!   length) and everything after it is truncated away with a warning, so the
//!   file always holds only whole, valid entries;
//! - a failed append truncates the file back to its previous length; if even
//!   that fails the log refuses further appends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::ControllerError;
use crate::records::MetadataRecord;

/// File name of the metadata log inside the metadata directory.
pub const METADATA_LOG_FILE: &str = "metadata.log";

/// Largest accepted entry payload (64 MiB); anything larger is corruption.
pub const MAX_ENTRY_BYTES: u32 = 64 * 1024 * 1024;

const HEADER_BYTES: usize = 8;

/// The append-only metadata log file.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    len: u64,
    next_offset: i64,
    poisoned: bool,
}

/// The result of opening a log: the log, ready for appends, and every entry
/// it holds, in offset order.
#[derive(Debug)]
pub struct OpenedLog {
    /// The log, positioned at its end.
    pub log: MetadataLog,
    /// All valid entries; entry `i` has offset `i`.
    pub entries: Vec<Vec<MetadataRecord>>,
}

impl MetadataLog {
    /// Opens (creating if needed) `dir/metadata.log`, reads all entries and
    /// truncates a torn or corrupt tail.
    pub fn open(dir: &Path) -> Result<OpenedLog, ControllerError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(METADATA_LOG_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        if !existed {
            sync_dir(dir);
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (entries, valid_len) = parse_entries(&path, &data);
        if (valid_len as usize) < data.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid_len,
                file_bytes = data.len(),
                "truncating torn or corrupt tail of the metadata log"
            );
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        let log = MetadataLog { path, file, len: valid_len, next_offset: entries.len() as i64, poisoned: false };
        Ok(OpenedLog { log, entries })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offset the next appended entry will get.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Appends one entry and fsyncs; returns its offset.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<i64, ControllerError> {
        if self.poisoned {
            return Err(ControllerError::Storage(format!(
                "{} is unusable after an earlier failed append",
                self.path.display()
            )));
        }
        let payload = serde_json::to_vec(records)
            .map_err(|e| ControllerError::Internal(format!("cannot encode metadata records: {e}")))?;
        let len = u32::try_from(payload.len()).ok().filter(|l| *l <= MAX_ENTRY_BYTES).ok_or_else(|| {
            ControllerError::Internal(format!("metadata entry of {} bytes is too large", payload.len()))
        })?;
        let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        buf.extend_from_slice(&payload);
        let result = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            if self.file.set_len(self.len).and_then(|()| self.file.sync_all()).is_err() {
                self.poisoned = true;
            }
            return Err(ControllerError::Storage(format!("appending to {}: {e}", self.path.display())));
        }
        self.len += buf.len() as u64;
        let offset = self.next_offset;
        self.next_offset += 1;
        Ok(offset)
    }
}

/// Parses whole valid entries from the start of `data`; returns them and the
/// byte length they cover.
fn parse_entries(path: &Path, data: &[u8]) -> (Vec<Vec<MetadataRecord>>, u64) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + HEADER_BYTES) else {
            tracing::warn!(path = %path.display(), pos, "metadata log entry header is torn");
            break;
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_ENTRY_BYTES {
            tracing::warn!(path = %path.display(), pos, len, "metadata log entry length is corrupt");
            break;
        }
        let start = pos + HEADER_BYTES;
        let Some(payload) = data.get(start..start + len as usize) else {
            tracing::warn!(path = %path.display(), pos, len, "metadata log entry payload is torn");
            break;
        };
        if crc32c::crc32c(payload) != crc {
            tracing::warn!(path = %path.display(), pos, "metadata log entry CRC mismatch");
            break;
        }
        match serde_json::from_slice::<Vec<MetadataRecord>>(payload) {
            Ok(records) => entries.push(records),
            Err(e) => {
                tracing::warn!(path = %path.display(), pos, error = %e, "metadata log entry does not decode");
                break;
            }
        }
        pos = start + len as usize;
    }
    (entries, pos as u64)
}

fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync metadata directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: i32) -> Vec<MetadataRecord> {
        vec![MetadataRecord::ClusterId { cluster_id: format!("c{i}") }]
    }

    #[test]
    fn append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = MetadataLog::open(dir.path()).unwrap();
        assert!(opened.entries.is_empty());
        assert_eq!(opened.log.append(&rec(0)).unwrap(), 0);
        assert_eq!(opened.log.append(&rec(1)).unwrap(), 1);
        drop(opened);
        let opened = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(opened.entries, vec![rec(0), rec(1)]);
        assert_eq!(opened.log.next_offset(), 2);
    }

    #[test]
    fn torn_and_corrupt_tails_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_LOG_FILE);
        let mut opened = MetadataLog::open(dir.path()).unwrap();
        opened.log.append(&rec(0)).unwrap();
        opened.log.append(&rec(1)).unwrap();
        drop(opened);
        let good = std::fs::read(&path).unwrap();
        let first_len = HEADER_BYTES + u32::from_be_bytes(good[0..4].try_into().unwrap()) as usize;

        // Torn: cut the second entry in the middle, at every possible point.
        for cut in first_len..good.len() {
            std::fs::write(&path, &good[..cut]).unwrap();
            let mut opened = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(opened.entries, vec![rec(0)], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first_len as u64);
            assert_eq!(opened.log.append(&rec(2)).unwrap(), 1);
            drop(opened);
            assert_eq!(MetadataLog::open(dir.path()).unwrap().entries, vec![rec(0), rec(2)]);
        }

        // Corrupt: flip a payload byte of the second entry.
        let mut bad = good.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        let opened = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(opened.entries, vec![rec(0)]);

        // Garbage length.
        let mut garbage = good[..first_len].to_vec();
        garbage.extend_from_slice(&[0xff; 12]);
        std::fs::write(&path, &garbage).unwrap();
        assert_eq!(MetadataLog::open(dir.path()).unwrap().entries, vec![rec(0)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), first_len as u64);
    }
}
