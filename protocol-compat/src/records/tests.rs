//! The record walk over well-formed batches in every codec, and over each
//! kind of malformed record a hostile producer can send.

use bytes::BytesMut;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::*;
use crate::batch::{parse_header, HEADER_SIZE, LOG_OVERHEAD};

fn zigzag(v: i64) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if raw < 0x80 {
            out.push(raw as u8);
            return out;
        }
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
}

/// One record's bytes with a correct length prefix; `key`/`value` lengths
/// may be overridden to lie.
fn record(
    offset_delta: i64,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: &[u8],
    headers: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend(zigzag(timestamp_delta));
    body.extend(zigzag(offset_delta));
    match key {
        Some(k) => {
            body.extend(zigzag(k.len() as i64));
            body.extend_from_slice(k);
        }
        None => body.extend(zigzag(-1)),
    }
    body.extend(zigzag(value.len() as i64));
    body.extend_from_slice(value);
    body.extend(zigzag(headers.len() as i64));
    for (k, v) in headers {
        body.extend(zigzag(k.len() as i64));
        body.extend_from_slice(k);
        body.extend(zigzag(v.len() as i64));
        body.extend_from_slice(v);
    }
    framed(&body)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = zigzag(body.len() as i64);
    out.extend_from_slice(body);
    out
}

fn compress(codec: u8, raw: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let put = |b: &mut BytesMut| {
        b.extend_from_slice(raw);
        Ok(())
    };
    match codec {
        0 | 5..=7 => out.extend_from_slice(raw),
        1 => Gzip::compress(&mut out, put).unwrap(),
        2 => Snappy::compress(&mut out, put).unwrap(),
        3 => Lz4::compress(&mut out, put).unwrap(),
        4 => Zstd::compress(&mut out, put).unwrap(),
        _ => unreachable!(),
    }
    out.to_vec()
}

/// A batch with codec attribute `codec` around an already encoded section.
fn batch_with_section(codec: u8, section: &[u8], count: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + section.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&i16::from(codec).to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&1_000i64.to_be_bytes());
    b.extend_from_slice(&1_002i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn batch(codec: u8, records: &[Vec<u8>]) -> Vec<u8> {
    let raw: Vec<u8> = records.concat();
    batch_with_section(codec, &compress(codec, &raw), records.len() as i32)
}

fn walk(b: &[u8]) -> Result<Vec<RecordInfo>, RecordsError> {
    let header = parse_header(b).unwrap();
    let mut seen = Vec::new();
    walk_records(b, &header, |r| seen.push(*r)).map(|()| seen)
}

fn three_records() -> Vec<Vec<u8>> {
    vec![
        record(0, 0, Some(b"k0"), b"v0", &[]),
        record(1, 2, None, b"v1", &[(b"h", b"x")]),
        record(2, 1, Some(b""), &[7; 3000], &[(b"a", b""), (b"b", b"yy")]),
    ]
}

#[test]
fn every_codec_walks_the_same_records() {
    for codec in 0..=4u8 {
        let seen = walk(&batch(codec, &three_records())).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        let summary: Vec<(i32, i64, bool)> = seen.iter().map(|r| (r.offset_delta, r.timestamp, r.has_key)).collect();
        assert_eq!(summary, vec![(0, 1_000, true), (1, 1_002, false), (2, 1_001, true)], "codec {codec}");
    }
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_walks() {
    let raw: Vec<u8> = three_records().concat();
    let section = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert_eq!(walk(&batch_with_section(2, &section, 3)).unwrap().len(), 3);
}

#[test]
fn unknown_codecs_are_refused() {
    for codec in 5..=7u8 {
        assert_eq!(walk(&batch(codec, &three_records())), Err(RecordsError::UnknownCompression(codec)));
    }
}

#[test]
fn a_codec_flag_on_uncompressed_records_is_refused() {
    let raw: Vec<u8> = three_records().concat();
    for codec in 1..=4u8 {
        let result = walk(&batch_with_section(codec, &raw, 3));
        assert!(matches!(result, Err(RecordsError::Decompression { .. })), "codec {codec}: {result:?}");
    }
}

fn assert_invalid_record(codec: u8, records: &[Vec<u8>], index: i32) {
    match walk(&batch(codec, records)) {
        Err(RecordsError::InvalidRecord { index: i, .. }) if i == index => {}
        other => panic!("codec {codec}: expected record {index} to be invalid, got {other:?}"),
    }
}

#[test]
fn lying_lengths_and_counts_are_refused_in_every_codec() {
    for codec in 0..=4u8 {
        let good = record(0, 0, Some(b"k"), b"v", &[]);
        // A record length of 2^40 does not fit a varint.
        let mut huge = zigzag(1 << 40);
        huge.extend_from_slice(&good[1..]);
        assert_invalid_record(codec, &[huge], 0);
        // A record length past the data.
        let mut long = zigzag(1_000_000);
        long.extend_from_slice(&good[1..]);
        assert_invalid_record(codec, &[good.clone(), long], 1);
        // Negative key length other than -1.
        let mut body = vec![0u8, 0, 0];
        body.extend(zigzag(-5));
        body.extend(zigzag(1));
        body.push(b'v');
        body.push(0);
        assert_invalid_record(codec, &[framed(&body)], 0);
        // A header count of 10^6 and of 2^31-1 in a small record.
        for count in [1_000_000i64, i32::MAX as i64] {
            let mut body = vec![0u8, 0, 0, 0, 0];
            body.extend(zigzag(count));
            body.extend_from_slice(&[2, b'h', 0]);
            assert_invalid_record(codec, &[framed(&body)], 0);
        }
        // A negative header count and a negative header key length.
        let mut body = vec![0u8, 0, 0, 0, 0];
        body.extend(zigzag(-1));
        assert_invalid_record(codec, &[framed(&body)], 0);
        let mut body = vec![0u8, 0, 0, 0, 0, 2];
        body.extend(zigzag(-1));
        body.push(0);
        assert_invalid_record(codec, &[framed(&body)], 0);
        // A record whose fields end before its declared length.
        let mut padded = good[1..].to_vec();
        padded.push(0);
        assert_invalid_record(codec, &[framed(&padded)], 0);
        // Offset deltas that are not 0, 1, 2, ...
        assert_invalid_record(codec, &[good.clone(), record(5, 0, Some(b"k"), b"v", &[])], 1);
    }
}

#[test]
fn records_must_fill_the_batch_exactly() {
    for codec in 0..=4u8 {
        let records = three_records();
        let raw: Vec<u8> = records.concat();
        // Trailing bytes after the last record.
        let mut trailing = raw.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        let result = walk(&batch_with_section(codec, &compress(codec, &trailing), 3));
        assert!(matches!(result, Err(RecordsError::InvalidBatch(_))), "codec {codec}: {result:?}");
        // A header counting more records than there are.
        let result = walk(&batch_with_section(codec, &compress(codec, &raw), 4));
        assert!(matches!(result, Err(RecordsError::InvalidBatch(_))), "codec {codec}: {result:?}");
    }
}

#[test]
fn a_snappy_block_claiming_gigabytes_is_refused_before_allocating() {
    // Raw snappy: a varint length of 2^32-1 and a few literal bytes.
    let section = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, b'x'];
    let result = walk(&batch_with_section(2, &section, 1));
    assert!(matches!(result, Err(RecordsError::Decompression { .. })), "{result:?}");
}

#[test]
fn log_append_time_batches_give_every_record_the_max_timestamp() {
    let mut b = batch(0, &three_records());
    crate::batch::set_log_append_time(&mut b, 77);
    assert!(walk(&b).unwrap().iter().all(|r| r.timestamp == 77));
}
