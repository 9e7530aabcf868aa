//! Log compaction (`cleanup.policy=compact`), after the design in the header of Kafka's
//! `LogCleaner.scala`.
//!
//! A record with key K at offset O is obsolete when the log holds a record with key K at an offset
//! above O. The log splits into a *clean* prefix (already compacted, up to the offset in the
//! `cleaner-offset-checkpoint` file) and a *dirty* suffix. The active segment, segments at or above
//! the caller's upper bound (the high watermark / last stable offset) and segments whose largest
//! timestamp is within `min.compaction.lag.ms` of now are *uncleanable*; the cleanable part is the
//! whole segments below all of those. A log is cleaned when
//! `dirty bytes / (clean + dirty bytes) > min.cleanable.dirty.ratio`.
//!
//! Cleaning builds a map key -> latest offset over the dirty cleanable segments, then recopies every
//! cleanable segment (clean ones too) keeping a record only if no later record has its key:
//!
//! * records without a key are dropped (a compacted topic requires keys);
//! * a tombstone (null value) survives its first cleaning, which stamps its batch with a *delete
//!   horizon* (`now + delete.retention.ms`, KIP-534: attribute bit 6, stored in the base-timestamp
//!   field); a later cleaning after the horizon drops it;
//! * offsets never change, so gaps appear. A rewritten batch from an idempotent producer keeps its
//!   original base offset and last offset delta (so its base and last sequence survive, as Kafka's
//!   `overrideLastOffset`); other rewritten batches shrink to the first and last kept records;
//! * a batch left empty is dropped, except the last batch of each producer id, which is kept as an
//!   empty batch so the producer's sequence state survives a rebuild from the log (e.g. on a follower);
//! * control batches (transaction markers) and transactional batches are copied as they are and do
//!   not take part in the key map (no aborted-transaction removal yet);
//! * a batch whose records all survive is copied byte for byte (no recompression).
//!
//! Compressed batches are decompressed and recompressed with their own codec through a
//! [`RecordCodec`] supplied by the caller, since this crate has no compression libraries.
//!
//! # Crash safety
//!
//! A segment's cleaned copy is written to `<base>.log.cleaned` and fsynced; then the segment's index
//! files are deleted (directory fsynced), the copy is renamed over `<base>.log` (directory fsynced),
//! and the indexes are rebuilt from it. A crash leaves either the old or the new `.log`; a missing
//! index makes the next open rebuild it; [`remove_leftovers`] (called by `Log::open`) deletes stale
//! `.cleaned` and `.swap` files. The checkpoint moves only after every swap is done. A segment that
//! cleaning leaves empty is deleted (unless it is the first).
//!
//! Concurrency: a cleaning is planned under the log ([`Log::plan_clean`]: which segments, holding
//! them), run without it ([`CleanPlan::run`]: the key map and the cleaned copies, the long part), and
//! swapped in under it ([`Log::finish_clean`]), as Kafka's cleaner takes the log's lock only to
//! replace segments. Appends and reads go on meanwhile; a copy whose segment the log stopped using
//! (retention, DeleteRecords) is dropped, and a truncation in between drops the whole cleaning.

mod phases;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::warn;

use crate::batch::{BatchHeader, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2};
use crate::error::{IoContext, Result, StorageError};
use crate::file_system::fs;
use crate::fsutil::{fsync_dir, offset_path, read_i64_file, remove_if_exists};
use crate::log::Log;
use crate::segment::{Segment, LOG_EXT};

pub use phases::{CleanPlan, CleanRun};

/// Text file holding the first dirty offset: everything below it was compacted.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Suffix of a cleaned segment being written.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix Kafka uses for segments being swapped in; never written by Weir but removed on open.
pub const SWAP_SUFFIX: &str = ".swap";
/// Attribute bit 6: the batch's base timestamp is its delete horizon (KIP-534).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;
const COMPRESSION_MASK: i16 = 0x07;

/// Record-batch compression, supplied by the caller (codec ids are Kafka's attribute bits 0-2:
/// 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub trait RecordCodec {
    /// Decompresses the records section of a batch compressed with `codec`.
    fn decompress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// Compresses a records section with `codec`, as a Kafka producer would.
    fn compress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

/// A [`RecordCodec`] that only handles uncompressed batches (compressed ones fail cleaning).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCompression;

impl RecordCodec for NoCompression {
    fn decompress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
        match codec {
            0 => Ok(data.to_vec()),
            c => Err(format!("compression codec {c} is not available")),
        }
    }

    fn compress(&self, codec: u8, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
        self.decompress(codec, data)
    }
}

/// Parameters of one [`Log::clean`] call (topic configs plus the caller's bounds).
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Wall-clock time.
    pub now_ms: i64,
    /// `delete.retention.ms`: how long a tombstone survives after its first cleaning.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean only when the dirty share of the cleanable bytes is above it.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: segments with records newer than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// Never clean a segment holding offsets at or above this (the high watermark or the LSO).
    pub upper_bound: i64,
    /// Soft bound on distinct keys per cleaning (Kafka's dedupe buffer): the dirty range stops at
    /// the first segment boundary where the map has this many keys.
    pub max_map_entries: usize,
}

impl CleanOptions {
    /// Kafka's defaults at `now_ms`, without an upper bound.
    pub fn new(now_ms: i64) -> Self {
        CleanOptions {
            now_ms,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            upper_bound: i64::MAX,
            max_map_entries: 1_000_000,
        }
    }
}

/// What one cleaning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// The checkpoint before cleaning (start of the dirty section).
    pub first_dirty_offset: i64,
    /// The new checkpoint: everything below was compacted.
    pub end_offset: i64,
    /// Segments recopied.
    pub segments_cleaned: usize,
    /// Segments rewritten (their content changed).
    pub segments_rewritten: usize,
    /// Segments deleted because nothing in them survived.
    pub segments_deleted: usize,
    /// Bytes of the segments recopied.
    pub bytes_read: u64,
    /// Bytes of their cleaned copies.
    pub bytes_written: u64,
    /// Records examined.
    pub records_read: u64,
    /// Records kept.
    pub records_retained: u64,
    /// Tombstones dropped after their delete horizon.
    pub tombstones_removed: u64,
    /// Batches dropped entirely.
    pub batches_removed: u64,
    /// Emptied batches kept for their producer's sequence state.
    pub empty_batches_retained: u64,
}

/// One record of a batch, as the cleaner needs it to re-encode the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerRecord {
    /// Record attributes byte (unused by Kafka today, kept as found).
    pub attributes: i8,
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (base timestamp + delta).
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// The record's headers section as found (count varint and headers), copied verbatim.
    pub headers: Bytes,
}

/// Deletes files a cleaning interrupted by a crash left behind in a partition directory.
pub fn remove_leftovers(dir: &Path) -> Result<()> {
    let entries = match fs().read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("list {}", dir.display())),
    };
    let mut removed = false;
    for ent in entries {
        let ent = ent.ctx(|| format!("list {}", dir.display()))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX) {
            warn!(file = %ent.path().display(), "deleting a leftover of an interrupted log cleaning");
            removed |= remove_if_exists(&ent.path())?;
        }
    }
    if removed {
        fsync_dir(dir)?;
    }
    Ok(())
}

// ---- record framing (Kafka v2 records: zigzag varints) ----

fn read_varlong(buf: &[u8], pos: &mut usize) -> std::result::Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err("record truncated inside a varint".into());
        };
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn read_varint(buf: &[u8], pos: &mut usize) -> std::result::Result<i32, String> {
    let v = read_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| format!("varint {v} out of the i32 range"))
}

fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn read_bytes(buf: &[u8], pos: &mut usize, what: &str) -> std::result::Result<Option<Bytes>, String> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos.checked_add(len as usize).filter(|e| *e <= buf.len()).ok_or_else(|| format!("{what} truncated"))?;
    let b = Bytes::copy_from_slice(&buf[*pos..end]);
    *pos = end;
    Ok(Some(b))
}

/// Parses `count` records from an uncompressed records section of the batch described by `h`.
pub fn decode_records(h: &BatchHeader, section: &[u8]) -> std::result::Result<Vec<CleanerRecord>, String> {
    let mut pos = 0;
    // A record takes at least 7 bytes: the count never sizes more than the bytes can hold.
    let mut out = Vec::with_capacity((h.records_count.max(0) as usize).min(section.len() / 7));
    for _ in 0..h.records_count.max(0) {
        let len = read_varint(section, &mut pos)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|e| *e <= section.len())
            .ok_or_else(|| format!("record of {len} bytes runs past the batch"))?;
        let rec = &section[pos..end];
        pos = end;
        let mut p = 0;
        let attributes = *rec.first().ok_or("empty record")? as i8;
        p += 1;
        let ts_delta = read_varlong(rec, &mut p)?;
        let offset_delta = read_varint(rec, &mut p)?;
        let key = read_bytes(rec, &mut p, "record key")?;
        let value = read_bytes(rec, &mut p, "record value")?;
        out.push(CleanerRecord {
            attributes,
            offset: h.base_offset + i64::from(offset_delta),
            timestamp: h.base_timestamp.wrapping_add(ts_delta),
            key,
            value,
            headers: Bytes::copy_from_slice(&rec[p..]),
        });
    }
    if pos != section.len() {
        return Err(format!("{} bytes after the last record", section.len() - pos));
    }
    Ok(out)
}

/// Encodes records as an uncompressed records section, deltas relative to `base_offset` and
/// `base_timestamp`.
pub fn encode_records(base_offset: i64, base_timestamp: i64, records: &[CleanerRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    for r in records {
        body.clear();
        body.push(r.attributes as u8);
        write_varlong(&mut body, r.timestamp.wrapping_sub(base_timestamp));
        write_varlong(&mut body, r.offset - base_offset);
        for field in [&r.key, &r.value] {
            match field {
                Some(b) => {
                    write_varlong(&mut body, b.len() as i64);
                    body.extend_from_slice(b);
                }
                None => write_varlong(&mut body, -1),
            }
        }
        body.extend_from_slice(&r.headers);
        write_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    out
}

/// A whole v2 batch: `template`'s header fields (batch length, record count and CRC computed)
/// followed by `records_section` (already compressed per the template's attributes).
pub fn build_batch(template: &BatchHeader, records_count: i32, records_section: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_SIZE + records_section.len());
    v.extend_from_slice(&template.base_offset.to_be_bytes());
    v.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records_section.len()) as i32).to_be_bytes());
    v.extend_from_slice(&template.partition_leader_epoch.to_be_bytes());
    v.push(MAGIC_V2 as u8);
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&template.attributes.to_be_bytes());
    v.extend_from_slice(&template.last_offset_delta.to_be_bytes());
    v.extend_from_slice(&template.base_timestamp.to_be_bytes());
    v.extend_from_slice(&template.max_timestamp.to_be_bytes());
    v.extend_from_slice(&template.producer_id.to_be_bytes());
    v.extend_from_slice(&template.producer_epoch.to_be_bytes());
    v.extend_from_slice(&template.base_sequence.to_be_bytes());
    v.extend_from_slice(&records_count.to_be_bytes());
    v.extend_from_slice(records_section);
    let crc = crc32c::crc32c(&v[crate::batch::CRC_START..]);
    v[17..21].copy_from_slice(&crc.to_be_bytes());
    v
}

/// The delete horizon of a batch, if a previous cleaning set one.
fn delete_horizon(h: &BatchHeader) -> Option<i64> {
    (h.attributes & DELETE_HORIZON_FLAG != 0).then_some(h.base_timestamp)
}

/// What becomes of one batch.
enum Outcome {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

struct Cleaner<'a> {
    codec: &'a dyn RecordCodec,
    opts: &'a CleanOptions,
    map: HashMap<Bytes, i64>,
    /// Producer id -> last offset of its last data batch in the whole log.
    last_batch_of_producer: HashMap<i64, i64>,
    stats: CleanStats,
}

impl Cleaner<'_> {
    fn records_of(&self, h: &BatchHeader, batch: &[u8]) -> Result<Vec<CleanerRecord>> {
        let section = &batch[HEADER_SIZE..];
        let corrupt = |e: String| StorageError::Corruption(format!("cleaning batch at offset {}: {e}", h.base_offset));
        let plain;
        let section = match h.compression() {
            0 => section,
            c => {
                plain = self.codec.decompress(c, section).map_err(corrupt)?;
                &plain[..]
            }
        };
        decode_records(h, section).map_err(corrupt)
    }

    fn is_last_of_producer(&self, h: &BatchHeader) -> bool {
        h.producer_id >= 0 && self.last_batch_of_producer.get(&h.producer_id) == Some(&h.last_offset())
    }

    /// Kafka's `shouldRetainRecord`, for a record below the end of the cleaned range.
    fn retain(&mut self, r: &CleanerRecord, horizon: Option<i64>) -> bool {
        let Some(key) = &r.key else { return false };
        if self.map.get(key).is_some_and(|&latest| r.offset < latest) {
            return false;
        }
        if r.value.is_none() && horizon.is_some_and(|h| self.opts.now_ms >= h) {
            self.stats.tombstones_removed += 1;
            return false;
        }
        true
    }

    fn clean_batch(&mut self, h: &BatchHeader, batch: &[u8]) -> Result<Outcome> {
        if h.is_control() || h.is_transactional() {
            return Ok(Outcome::Keep);
        }
        let records = self.records_of(h, batch)?;
        self.stats.records_read += records.len() as u64;
        let horizon = delete_horizon(h);
        let kept: Vec<CleanerRecord> = records.iter().filter(|r| self.retain(r, horizon)).cloned().collect();
        self.stats.records_retained += kept.len() as u64;
        let has_tombstone = kept.iter().any(|r| r.value.is_none());
        let set_horizon = has_tombstone && horizon.is_none();
        if kept.len() == records.len() && !set_horizon && !records.is_empty() {
            return Ok(Outcome::Keep);
        }
        if kept.is_empty() {
            if !self.is_last_of_producer(h) {
                return Ok(Outcome::Drop);
            }
            if records.is_empty() {
                return Ok(Outcome::Keep);
            }
            // Kafka's RETAIN_EMPTY: the header alone keeps the producer's last sequence.
            self.stats.empty_batches_retained += 1;
            let mut t = *h;
            t.attributes &= !(COMPRESSION_MASK | DELETE_HORIZON_FLAG);
            t.base_timestamp = h.max_timestamp;
            return Ok(Outcome::Replace(build_batch(&t, 0, &[])));
        }
        let mut t = *h;
        if h.producer_id < 0 {
            // No sequence to preserve: the batch shrinks to the records it keeps.
            t.base_offset = kept[0].offset;
            t.last_offset_delta = (kept[kept.len() - 1].offset - t.base_offset) as i32;
        }
        t.base_timestamp = match (horizon, set_horizon) {
            (Some(h), _) => h,
            (None, true) => {
                t.attributes |= DELETE_HORIZON_FLAG;
                self.opts.now_ms.saturating_add(self.opts.delete_retention_ms)
            }
            (None, false) => kept[0].timestamp,
        };
        if !h.is_log_append_time() {
            t.max_timestamp = kept.iter().map(|r| r.timestamp).max().unwrap_or(h.max_timestamp);
        }
        let section = encode_records(t.base_offset, t.base_timestamp, &kept);
        let section = match h.compression() {
            0 => section,
            c => self.codec.compress(c, &section).map_err(|e| {
                StorageError::Corruption(format!("recompressing batch at offset {}: {e}", h.base_offset))
            })?,
        };
        Ok(Outcome::Replace(build_batch(&t, kept.len() as i32, &section)))
    }
}

fn read_batch(seg: &Segment, pos: u64, h: &BatchHeader, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    seg.read_range(pos, h.total_size(), buf)
}

fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    let mut name = offset_path(dir, base, LOG_EXT).into_os_string();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Log {
    pub(crate) fn cleaner_checkpoint_unguarded(&self) -> Result<Option<i64>> {
        read_i64_file(&self.dir.join(CLEANER_CHECKPOINT_FILE))
    }

    /// First dirty offset: the checkpoint, unless it lies outside `[log start, log end]`.
    fn first_dirty_offset(&self) -> Result<i64> {
        let start = self.log_start_offset;
        Ok(match self.cleaner_checkpoint()? {
            Some(c) if c >= start && c <= self.log_end_offset() => c,
            _ => start,
        })
    }

    /// Bases of the cleanable segments (whole segments below every uncleanable bound), oldest first.
    fn cleanable_segments(&self, first_dirty: i64, opts: &CleanOptions) -> Vec<(i64, i64)> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut bound = opts.upper_bound.min(bases.last().copied().unwrap_or(i64::MIN));
        if opts.min_compaction_lag_ms > 0 {
            // Kafka: the first dirty, non-active segment holding a record newer than the lag.
            let cutoff = opts.now_ms.saturating_sub(opts.min_compaction_lag_ms);
            let too_new =
                bases.windows(2).filter(|w| w[1] > first_dirty).map(|w| w[0]).find(|base| {
                    self.segments.get(base).is_some_and(|s| s.size() > 0 && s.largest_timestamp() > cutoff)
                });
            if let Some(base) = too_new {
                bound = bound.min(base);
            }
        }
        bases.windows(2).map(|w| (w[0], w[1])).take_while(|&(_, next)| next <= bound).collect()
    }

    pub(crate) fn cleanable_dirty_ratio_unguarded(&self, opts: &CleanOptions) -> Result<f64> {
        let first_dirty = self.first_dirty_offset()?;
        Ok(self.ratio(&self.cleanable_segments(first_dirty, opts), first_dirty))
    }

    fn ratio(&self, cleanable: &[(i64, i64)], first_dirty: i64) -> f64 {
        let (mut clean, mut dirty) = (0u64, 0u64);
        for &(base, next) in cleanable {
            let size = self.segments.get(&base).map_or(0, |s| s.size());
            if next > first_dirty {
                dirty += size;
            } else {
                clean += size;
            }
        }
        if dirty == 0 {
            0.0
        } else {
            dirty as f64 / (clean + dirty) as f64
        }
    }
}

#[cfg(test)]
mod tests;
