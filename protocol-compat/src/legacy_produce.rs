//! Produce v0-v2: advertised (so librdkafka keeps compressing, KAFKA-18659)
//! but refused, as Kafka 4 refuses them. These versions predate the v2 record
//! batch; every partition is answered with UNSUPPORTED_VERSION.
//!
//! The message crate does not model these versions, so the few fields needed
//! are read and written here by hand:
//! request `acks:i16 timeout:i32 [topic:string [partition:i32 records:bytes]]`,
//! response `[topic:string [partition:i32 error:i16 base_offset:i64
//! (v2: log_append_time:i64)]] (v1+: throttle_time_ms:i32)`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ErrorCode;

/// A legacy Produce request body that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed Produce v0-v2 request")]
pub struct MalformedLegacyProduce;

fn take_i16(buf: &mut Bytes) -> Result<i16, MalformedLegacyProduce> {
    (buf.remaining() >= 2).then(|| buf.get_i16()).ok_or(MalformedLegacyProduce)
}

fn take_i32(buf: &mut Bytes) -> Result<i32, MalformedLegacyProduce> {
    (buf.remaining() >= 4).then(|| buf.get_i32()).ok_or(MalformedLegacyProduce)
}

fn skip(buf: &mut Bytes, len: i64) -> Result<(), MalformedLegacyProduce> {
    if len < 0 {
        return Ok(());
    }
    if buf.remaining() < len as usize {
        return Err(MalformedLegacyProduce);
    }
    buf.advance(len as usize);
    Ok(())
}

/// Builds the UNSUPPORTED_VERSION response body for a Produce v0-v2 request,
/// or `None` for acks=0 (which gets no response at all).
pub fn unsupported_version_response(mut body: Bytes, version: i16) -> Result<Option<BytesMut>, MalformedLegacyProduce> {
    let acks = take_i16(&mut body)?;
    let _timeout = take_i32(&mut body)?;
    let topic_count = take_i32(&mut body)?.max(0);
    let mut out = BytesMut::new();
    out.put_i32(topic_count);
    for _ in 0..topic_count {
        let name_len = take_i16(&mut body)?;
        if name_len < 0 || body.remaining() < name_len as usize {
            return Err(MalformedLegacyProduce);
        }
        let name = body.split_to(name_len as usize);
        out.put_i16(name_len);
        out.put_slice(&name);
        let partition_count = take_i32(&mut body)?.max(0);
        out.put_i32(partition_count);
        for _ in 0..partition_count {
            let index = take_i32(&mut body)?;
            let records_len = take_i32(&mut body)?;
            skip(&mut body, records_len as i64)?;
            out.put_i32(index);
            out.put_i16(ErrorCode::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    Ok((acks != 0).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(acks: i16) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(1);
        b.put_i32(3);
        b.put_i32(2);
        b.put_slice(&[0xaa, 0xbb]);
        b.freeze()
    }

    #[test]
    fn answers_each_partition_with_unsupported_version() {
        let out = unsupported_version_response(request(1), 2).unwrap().unwrap();
        let mut expect = BytesMut::new();
        expect.put_i32(1);
        expect.put_i16(1);
        expect.put_slice(b"t");
        expect.put_i32(1);
        expect.put_i32(3);
        expect.put_i16(35);
        expect.put_i64(-1);
        expect.put_i64(-1);
        expect.put_i32(0);
        assert_eq!(out, expect);
    }

    #[test]
    fn acks_zero_gets_no_response_and_garbage_is_an_error() {
        assert!(unsupported_version_response(request(0), 0).unwrap().is_none());
        assert!(unsupported_version_response(Bytes::from_static(&[0, 1, 0]), 0).is_err());
    }
}
