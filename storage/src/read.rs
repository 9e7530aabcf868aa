//! Reading whole batches, under the log or, for sealed segments, without it.
//!
//! As in Kafka, where a fetch reads a segment without the log's lock, a read of sealed segments
//! does not wait for the writer or a cleaning. The caller keeps a [`SealedSegments`] view, taken
//! with [`Log::sealed_segments`] under its lock whenever [`Log::segments_version`] moved (a roll,
//! retention, a cleaning's swap, a truncation), and reads it without any lock. This is safe because
//! a sealed segment's bytes and indexes never change while the log holds it: retention and cleaning
//! unlink its files (an open descriptor and a mapped index live on until the last reader drops
//! them), and a truncation reopens it before writing to it. A read that fails on a segment the log
//! stopped using meanwhile ([`Segment::is_retired`]) is not an error: the caller reads again under
//! the log. A read of the active segment runs under the log, since appends change that segment's
//! size and indexes.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::segment::Segment;

/// The sealed segments of a log at one moment, to read without holding the log.
#[derive(Debug, Clone, Default)]
pub struct SealedSegments {
    /// Oldest first.
    segments: Vec<Arc<Segment>>,
    /// The active segment's base offset when the view was taken: every offset below it that the
    /// log still holds is in these segments.
    end: i64,
}

impl SealedSegments {
    /// The first offset not in these segments (the active segment's base when taken).
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Whole batches from the batch holding `offset`, as [`Log::read`] returns them, from these
    /// sealed segments only; the caller checked `offset` against the log's range. `Ok(None)` when
    /// `offset` is not below [`SealedSegments::end`], when they hold nothing at or after it below
    /// `max_offset`, or when a segment was retired under the read: read under the log instead.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one_batch: bool) -> Result<Option<Bytes>> {
        if offset >= self.end || self.segments.first().is_none_or(|s| offset < s.base_offset()) {
            return Ok(None);
        }
        // The last segment whose base is at or below the offset holds it.
        let first = self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1);
        let Some(segments) = self.segments.get(first..) else { return Ok(None) };
        match read_segments(segments.iter().map(|s| &**s), offset, max_bytes, max_offset, min_one_batch) {
            Ok(out) if out.is_empty() => Ok(None),
            Ok(out) => Ok(Some(Bytes::from(out))),
            Err(_) if segments.iter().any(|s| s.is_retired()) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Log {
    /// The sealed segments as they are now (see the module docs).
    pub fn sealed_segments(&self) -> SealedSegments {
        let sealed = self.segments.len().saturating_sub(1);
        SealedSegments {
            segments: self.segments.values().take(sealed).cloned().collect(),
            end: self.segments.keys().next_back().copied().unwrap_or(i64::MIN),
        }
    }

    /// Moves whenever the set of segments changes; a [`SealedSegments`] view taken at the same
    /// version is current.
    pub fn segments_version(&self) -> u64 {
        self.segments_version
    }

    pub(crate) fn read_unguarded(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes> {
        self.check_read_offset(offset)?;
        let Some((&first_base, _)) = self.segments.range(..=offset).next_back() else {
            return Ok(Bytes::new());
        };
        let segments = self.segments.range(first_base..).map(|(_, s)| &**s);
        Ok(Bytes::from(read_segments(segments, offset, max_bytes, max_offset, min_one_batch)?))
    }

    fn check_read_offset(&self, offset: i64) -> Result<()> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: leo,
            });
        }
        Ok(())
    }
}

/// Whole batches from the batch holding `offset` (the first segment is the one that should hold
/// it), stopping before a batch at or above `max_offset` or one that would pass `max_bytes`
/// (unless it is the first and `min_one_batch`).
fn read_segments<'a>(
    segments: impl Iterator<Item = &'a Segment>,
    offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut first = true;
    for seg in segments {
        let start = if first {
            first = false;
            match seg.translate_offset(offset)? {
                Some((pos, _)) => pos,
                None => continue,
            }
        } else {
            0
        };
        let mut pos = start;
        let mut stop = false;
        while let Some(h) = seg.header_at(pos)? {
            if h.base_offset >= max_offset {
                stop = true;
                break;
            }
            let taken = out.len() + (pos - start) as usize;
            if taken + h.total_size() > max_bytes && !(min_one_batch && taken == 0) {
                stop = true;
                break;
            }
            pos += h.total_size() as u64;
        }
        if pos > start {
            seg.read_range(start, (pos - start) as usize, &mut out)?;
        }
        if stop {
            break;
        }
    }
    Ok(out)
}
