//! Streaming decompression of a batch's records section, with memory
//! bounded by a constant (and, for snappy, by a fixed multiple of the
//! compressed bytes actually received), never by a length read off the wire.
//!
//! The codecs are the ones Kafka defines (attribute bits 0-2): gzip (one or
//! more gzip members, as Java's `GZIPInputStream` reads them), snappy (Java's
//! xerial block framing, or one raw snappy block as librdkafka writes it),
//! LZ4 frames and Zstandard.

use std::io::{self, BufRead, BufReader, Read};

use super::RecordsError;

/// Size of the buffer between a decompressor and the record walker.
const READ_BUFFER: usize = 16 * 1024;

/// Largest Zstandard window accepted (2^24 = 16 MiB). Producers compress a
/// batch of at most `max.message.bytes` at ordinary levels, which needs far
/// less; the decoder's own default limit (128 MiB) would let one request
/// pin that much memory.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The xerial framing header Java's snappy codec writes: magic, version 1,
/// compatible version 1.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_SIZE: usize = 16;

/// The most a snappy block can expand: a 3-byte copy element yields at most
/// 64 bytes. A block claiming more is corrupt, and is refused before its
/// output buffer is allocated.
const SNAPPY_MAX_EXPANSION: usize = 22;

/// Kafka's name of a codec id, for messages.
pub fn codec_name(codec: u8) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// A reader of the decompressed records section of a batch with codec `codec`.
pub fn reader(codec: u8, data: &[u8]) -> Result<Box<dyn BufRead + '_>, RecordsError> {
    let failed = |e: io::Error| RecordsError::Decompression { codec: codec_name(codec), reason: e.to_string() };
    Ok(match codec {
        0 => Box::new(data),
        1 => Box::new(BufReader::with_capacity(READ_BUFFER, flate2::bufread::MultiGzDecoder::new(data))),
        2 => Box::new(BufReader::with_capacity(READ_BUFFER, SnappyReader::new(data))),
        3 => Box::new(BufReader::with_capacity(READ_BUFFER, lz4::Decoder::new(data).map_err(failed)?)),
        4 => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(failed)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(failed)?;
            Box::new(BufReader::with_capacity(READ_BUFFER, decoder))
        }
        other => return Err(RecordsError::UnknownCompression(other)),
    })
}

/// Snappy as Kafka clients write it: xerial-framed blocks (Java, kafka-python)
/// or a single raw block (librdkafka). Holds one decompressed block at a time.
struct SnappyReader<'a> {
    /// Compressed input not yet decompressed.
    input: &'a [u8],
    /// Whether `input` is a sequence of xerial blocks (else one raw block).
    framed: bool,
    block: Vec<u8>,
    position: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8]) -> SnappyReader<'a> {
        let framed = data.len() >= XERIAL_HEADER_SIZE && data[..8] == XERIAL_MAGIC;
        let input = if framed { &data[XERIAL_HEADER_SIZE..] } else { data };
        SnappyReader { input, framed, block: Vec::new(), position: 0, decoder: snap::raw::Decoder::new() }
    }

    /// Decompresses the next block into `self.block`; false at the end of input.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            if self.input.len() < 4 {
                return Err(invalid("snappy block length truncated"));
            }
            let length = u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]]) as usize;
            let rest = &self.input[4..];
            if length > rest.len() {
                return Err(invalid(format!("snappy block of {length} bytes, {} present", rest.len())));
            }
            let (block, after) = rest.split_at(length);
            self.input = after;
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let length = snap::raw::decompress_len(compressed).map_err(|e| invalid(e.to_string()))?;
        if length > compressed.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(invalid(format!(
                "snappy block of {} bytes claims {length} decompressed bytes",
                compressed.len()
            )));
        }
        self.block.clear();
        self.block.resize(length, 0);
        let written = self.decoder.decompress(compressed, &mut self.block).map_err(|e| invalid(e.to_string()))?;
        self.block.truncate(written);
        self.position = 0;
        Ok(true)
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.position);
        out[..n].copy_from_slice(&self.block[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}
