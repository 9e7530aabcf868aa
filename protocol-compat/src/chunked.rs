//! A response encoded as a list of chunks, so that the record batches a
//! Fetch read from the log go to the socket as they are, never copied into
//! the response buffer: a response then costs its own size in memory, not
//! twice that.
//!
//! The message encoders write every field through [`BufMut`]; a slice of at
//! least [`ZERO_COPY_MIN`] bytes that lies inside one of the `Bytes` the
//! buffer was given (the records) is kept as a reference to it, and
//! everything else is copied into a small growing tail.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied: a reference costs more than the bytes.
pub const ZERO_COPY_MIN: usize = 4096;

/// An encoding buffer that references large slices of known `Bytes`.
#[derive(Debug, Default)]
pub struct ChunkedBuf {
    /// The `Bytes` whose slices may be referenced instead of copied.
    shared: Vec<Bytes>,
    /// Finished chunks, in order.
    chunks: Vec<Bytes>,
    /// Bytes written since the last referenced slice.
    tail: BytesMut,
    /// Total bytes written (chunks and tail).
    len: usize,
}

impl ChunkedBuf {
    /// A buffer that may reference slices of `shared` instead of copying them.
    pub fn new(shared: Vec<Bytes>) -> ChunkedBuf {
        ChunkedBuf { shared, ..ChunkedBuf::default() }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded bytes, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.seal_tail();
        self.chunks
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push(self.tail.split().freeze());
        }
    }

    /// The registered `Bytes` that `src` lies inside, if any.
    fn shared_holding(&self, src: &[u8]) -> Option<Bytes> {
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        self.shared
            .iter()
            .find(|b| {
                let base = b.as_ptr() as usize;
                base <= start && end <= base + b.len()
            })
            .map(|b| b.slice_ref(src))
    }

    /// Copies every chunk back into the tail: for the rare encoder that
    /// reaches back into what it wrote (none of the message encoders do).
    fn flatten(&mut self) {
        if self.chunks.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.len);
        for chunk in self.chunks.drain(..) {
            all.extend_from_slice(&chunk);
        }
        all.extend_from_slice(&self.tail);
        self.tail = all;
    }
}

// SAFETY: `chunk_mut` and `advance_mut` are the tail's own, so the bytes
// `advance_mut` declares initialised are the ones the tail handed out.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        usize::MAX - self.len
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged to the buffer `chunk_mut` came from.
        unsafe { self.tail.advance_mut(cnt) };
        self.len += cnt;
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= ZERO_COPY_MIN {
            if let Some(referenced) = self.shared_holding(src) {
                self.seal_tail();
                self.chunks.push(referenced);
                self.len += src.len();
                return;
            }
        }
        self.tail.extend_from_slice(src);
        self.len += src.len();
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.len
    }

    fn seek(&mut self, offset: usize) {
        self.flatten();
        self.tail.resize(offset, 0);
        self.len = offset;
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        self.flatten();
        &mut self.tail[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_slices_of_shared_bytes_are_referenced_and_the_rest_copied() {
        let records = Bytes::from(vec![7u8; 10_000]);
        let other = vec![9u8; 10_000];
        let mut buf = ChunkedBuf::new(vec![records.clone()]);
        buf.put_i32(5);
        buf.put_slice(&records[..]);
        buf.put_slice(&records[..100]);
        buf.put_slice(&other);
        buf.put_u8(1);
        assert_eq!(buf.len(), 4 + 10_000 + 100 + 10_000 + 1);
        let chunks = buf.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), records.as_ptr(), "the records are not copied");
        let flat: Vec<u8> = chunks.concat();
        let mut expected = 5i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&records);
        expected.extend_from_slice(&records[..100]);
        expected.extend_from_slice(&other);
        expected.push(1);
        assert_eq!(flat, expected);
    }

    #[test]
    fn reaching_back_flattens_first() {
        let records = Bytes::from(vec![1u8; 8192]);
        let mut buf = ChunkedBuf::new(vec![records.clone()]);
        buf.put_u8(0);
        buf.put_slice(&records);
        buf.range(0..1)[0] = 42;
        buf.seek(buf.offset() + 2);
        let flat: Vec<u8> = buf.into_chunks().concat();
        assert_eq!(flat.len(), 1 + 8192 + 2);
        assert_eq!(flat[0], 42);
    }
}
