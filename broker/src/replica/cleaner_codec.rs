//! The log cleaner's compression codecs: the storage crate has none, so the
//! broker lends it `kafka-protocol`'s (gzip; snappy with Java's xerial
//! framing, raw snappy accepted on read; lz4 frames; zstd).
//!
//! The storage crate frames records itself (it must keep a rewritten
//! batch's original base offset and last offset delta, as Kafka does, which
//! `RecordBatchEncoder` cannot express); only the records section passes
//! through here.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use weir_storage::RecordCodec;

/// [`RecordCodec`] over `kafka-protocol`'s compression codecs.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaCodecs;

fn take_all(buf: &mut Bytes) -> anyhow::Result<Bytes> {
    Ok(buf.copy_to_bytes(buf.remaining()))
}

fn put_all(data: &[u8]) -> impl FnOnce(&mut BytesMut) -> anyhow::Result<()> + '_ {
    move |out: &mut BytesMut| {
        out.extend_from_slice(data);
        Ok(())
    }
}

impl RecordCodec for KafkaCodecs {
    fn decompress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = Bytes::copy_from_slice(data);
        let out = match codec {
            0 => Ok(input),
            1 => Gzip::decompress(&mut input, take_all),
            2 => Snappy::decompress(&mut input, take_all),
            3 => Lz4::decompress(&mut input, take_all),
            4 => Zstd::decompress(&mut input, take_all),
            c => return Err(format!("unknown compression codec {c}")),
        };
        out.map(|b| b.to_vec()).map_err(|e| format!("decompressing (codec {codec}): {e:#}"))
    }

    fn compress(&self, codec: u8, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = BytesMut::new();
        let done = match codec {
            0 => {
                out.extend_from_slice(data);
                Ok(())
            }
            1 => Gzip::compress(&mut out, put_all(data)),
            2 => Snappy::compress(&mut out, put_all(data)),
            3 => Lz4::compress(&mut out, put_all(data)),
            4 => Zstd::compress(&mut out, put_all(data)),
            c => return Err(format!("unknown compression codec {c}")),
        };
        done.map(|()| out.to_vec()).map_err(|e| format!("compressing (codec {codec}): {e:#}"))
    }
}

#[cfg(test)]
#[path = "cleaner_codec_tests.rs"]
mod tests;
