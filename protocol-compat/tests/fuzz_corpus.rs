//! Fuzzing on stable, seeded with real clients' traffic
//! (`tests/corpus/`, recorded by `scripts/record-corpus.py`; see its README).
//!
//! - Every recorded request goes through the frame codec, the header parser
//!   and the body decoder of its API key and version, and must decode:
//!   it is valid traffic (bytes after the message are ignored, as Kafka
//!   does, and printed).
//! - Mutated requests (bit flips, interesting bytes, truncation, insertion,
//!   deletion, huge big-endian ints and varints at random positions) go the
//!   same way as the broker takes them (`broker/src/handlers/mod.rs`): no
//!   panic, and no more allocation than `decoders_bounded_memory.rs` allows.
//! - Mutated record batches, their CRC recomputed so the walk really runs,
//!   and batches whose decompressed records were mutated and recompressed
//!   with the batch's own codec: no panic, allocation within the walker's
//!   budget.
//!
//! `WEIR_FUZZ_CASES` sets the number of cases of each property and
//! `WEIR_FUZZ_SECONDS` a time limit per property (`make fuzz` sets both).

mod common;

use std::io::{Read, Write};
use std::sync::OnceLock;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::Index;
use weir_protocol::frame::{self, DEFAULT_MAX_REQUEST_BYTES};
use weir_protocol::records::{self, decompress};
use weir_protocol::{batch, header};

use common::{budget, cases, dispatch_body, load_corpus, peak_allocation, WALK_BUDGET};

fn requests() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| load_corpus("requests"))
}

fn batches() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| load_corpus("batches"))
}

fn framed(frame: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(frame.len() + 4);
    buf.extend_from_slice(&frame::frame_length_prefix(frame.len()));
    buf.extend_from_slice(frame);
    buf
}

#[test]
fn every_corpus_request_decodes() {
    let corpus = requests();
    assert!(corpus.len() >= 100, "only {} requests in the corpus", corpus.len());
    let mut failures = Vec::new();
    for (name, bytes) in corpus {
        let mut buf = framed(bytes);
        let frame = frame::parse_frame(&mut buf, DEFAULT_MAX_REQUEST_BYTES).unwrap().unwrap();
        assert!(buf.is_empty());
        let request = match header::parse_request(frame) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: header: {e}"));
                continue;
            }
        };
        let version = request.header.request_api_version;
        let expected_prefix = format!("{}-{}-", request.api_key as i16, version);
        assert!(name.starts_with(&expected_prefix), "{name} holds a {:?} v{version} request", request.api_key);
        match dispatch_body(request.api_key, version, request.body) {
            None => failures.push(format!("{name}: {:?} v{version} is not advertised", request.api_key)),
            Some(Err(e)) => failures.push(format!("{name}: {:?} v{version}: {e}", request.api_key)),
            Some(Ok(0)) => {}
            // Kafka ignores bytes after a request's message, and so does Weir:
            // librdkafka 2.x sends some Metadata v12 requests with 3 extra bytes.
            Some(Ok(left)) => eprintln!("{name}: {:?} v{version}: {left} bytes after the message", request.api_key),
        }
    }
    assert!(failures.is_empty(), "corpus requests that do not decode:\n{}", failures.join("\n"));
}

#[test]
fn every_corpus_batch_walks() {
    let corpus = batches();
    let mut per_codec = [0usize; 5];
    for (name, b) in corpus {
        let h = batch::parse_header(b).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h.total_size(), b.len(), "{name}");
        batch::verify_crc(b, &h).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut count = 0;
        let peak = peak_allocation(|| {
            records::walk_records(b, &h, |_| count += 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        });
        assert_eq!(count, h.records_count, "{name}");
        assert!(peak <= WALK_BUDGET, "{name}: {peak} bytes");
        per_codec[usize::from(h.compression())] += 1;
    }
    assert!(per_codec.iter().all(|&n| n > 0), "the batch corpus lacks a codec: {per_codec:?} (none..zstd)");
}

/// One change to an input.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// A big-endian i32 (an array count, bytes length, or fixed field).
    SetI32(Index, i32),
    /// A big-endian i16 (a string length).
    SetI16(Index, i16),
    /// An unsigned varint (a compact length, or a record's zigzag field).
    SetVarint(Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()];
    let int32 = prop_oneof![
        Just(i32::MAX),
        Just(i32::MIN),
        Just(-1),
        Just(-2),
        Just(0),
        Just(0x4000_0000),
        Just(0x0100_0000),
        Just(0x7fff_fff0),
        any::<i32>(),
    ];
    let int16 = prop_oneof![Just(i16::MAX), Just(i16::MIN), Just(-1), Just(-2), Just(0), any::<i16>()];
    let varint = prop_oneof![
        Just(u64::from(u32::MAX)),
        Just(0x7fff_ffff),
        Just(0x1000_0000),
        Just(u64::MAX),
        Just(0),
        Just(1),
        Just(3),
        any::<u64>(),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), byte).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<Index>(), 1usize..32).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<Index>(), int32).prop_map(|(at, v)| Mutation::SetI32(at, v)),
        (any::<Index>(), int16).prop_map(|(at, v)| Mutation::SetI16(at, v)),
        (any::<Index>(), varint).prop_map(|(at, v)| Mutation::SetVarint(at, v)),
    ]
}

fn overwrite(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if data.len() < at + bytes.len() {
        data.resize(at + bytes.len(), 0);
    }
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Applies `m` to `data[from..]` (a position past the end appends).
fn apply(data: &mut Vec<u8>, from: usize, m: &Mutation) {
    let from = from.min(data.len());
    let span = data.len() - from;
    let pos = |at: &Index| if span == 0 { from } else { from + at.index(span) };
    match m {
        Mutation::FlipBit(at, bit) if span > 0 => {
            let p = pos(at);
            data[p] ^= 1 << bit;
        }
        Mutation::SetByte(at, b) => overwrite(data, pos(at), &[*b]),
        Mutation::Truncate(at) => data.truncate(pos(at)),
        Mutation::Insert(at, bytes) => {
            let p = pos(at);
            data.splice(p..p, bytes.iter().copied());
        }
        Mutation::Delete(at, n) if span > 0 => {
            let p = pos(at);
            data.drain(p..(p + n).min(data.len()));
        }
        Mutation::SetI32(at, v) => overwrite(data, pos(at), &v.to_be_bytes()),
        Mutation::SetI16(at, v) => overwrite(data, pos(at), &v.to_be_bytes()),
        Mutation::SetVarint(at, v) => {
            let (mut v, mut encoded) = (*v, Vec::new());
            while v >= 0x80 {
                encoded.push((v as u8) | 0x80);
                v >>= 7;
            }
            encoded.push(v as u8);
            overwrite(data, pos(at), &encoded);
        }
        _ => {}
    }
}

/// A mutated request through the frame codec, the header parser and the body
/// decoder, as the broker takes it; the header and body decode is measured.
fn request_round(frame: &[u8], length: Option<i32>) -> Result<(), TestCaseError> {
    let mut buf = framed(frame);
    if let Some(length) = length {
        buf[..4].copy_from_slice(&length.to_be_bytes());
    }
    let Ok(Some(frame)) = frame::parse_frame(&mut buf, DEFAULT_MAX_REQUEST_BYTES) else { return Ok(()) };
    let len = frame.len();
    let mut outcome = None;
    let peak = peak_allocation(|| {
        if let Ok(request) = header::parse_request(frame) {
            outcome = Some((request.api_key, request.header.request_api_version));
            let _ = dispatch_body(request.api_key, request.header.request_api_version, request.body);
        }
    });
    prop_assert!(peak <= budget(len), "{:?}: {} bytes allocated for a {}-byte frame", outcome, peak, len);
    Ok(())
}

/// Fixes a mutated batch's length field (when asked) and CRC, then parses,
/// checks and walks it; the walk is measured.
fn batch_round(mut b: Vec<u8>, fix_length: bool) -> Result<(), TestCaseError> {
    if b.len() >= batch::HEADER_SIZE {
        if fix_length {
            let length = (b.len() - batch::LOG_OVERHEAD) as i32;
            b[8..12].copy_from_slice(&length.to_be_bytes());
        }
        let crc = batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let Ok(h) = batch::parse_header(&b) else { return Ok(()) };
    if batch::verify_crc(&b, &h).is_err() {
        return Ok(());
    }
    let peak = peak_allocation(|| records::walk_records(&b, &h, |_| {}).is_ok());
    prop_assert!(peak <= WALK_BUDGET, "codec {}: {} bytes allocated walking {} bytes", h.compression(), peak, b.len());
    Ok(())
}

/// The records of a batch, decompressed.
fn decompressed(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decompress::reader(b[22] & 7, &b[batch::HEADER_SIZE..]).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// Records compressed with codec `codec` as the producers do (snappy as one raw block, like librdkafka).
fn compressed(codec: u8, data: &[u8]) -> Vec<u8> {
    match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        }
        4 => zstd::encode_all(data, 1).unwrap(),
        _ => data.to_vec(),
    }
}

/// The batches' decompressed records, computed once.
fn decompressed_batches() -> &'static [(Vec<u8>, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| batches().iter().map(|(_, b)| (b[..batch::HEADER_SIZE].to_vec(), decompressed(b))).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(5000), ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_requests(
        pick in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        length in proptest::option::weighted(0.05, prop_oneof![Just(-1i32), Just(i32::MAX), Just(0), Just(7)]),
    ) {
        if !common::in_time() {
            return Ok(());
        }
        let corpus = requests();
        let mut frame = corpus[pick.index(corpus.len())].1.clone();
        for m in &mutations {
            apply(&mut frame, 0, m);
        }
        request_round(&frame, length)?;
    }

    #[test]
    fn mutated_corpus_batches(
        pick in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        fix_length in proptest::bool::weighted(0.9),
    ) {
        if !common::in_time() {
            return Ok(());
        }
        let corpus = batches();
        let mut b = corpus[pick.index(corpus.len())].1.clone();
        // Past the CRC (fixed afterwards): attributes, counts, timestamps, producer fields and records.
        for m in &mutations {
            apply(&mut b, 21, m);
        }
        batch_round(b, fix_length)?;
    }

    #[test]
    fn mutated_records_recompressed(
        pick in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        if !common::in_time() {
            return Ok(());
        }
        let corpus = decompressed_batches();
        let (head, records) = &corpus[pick.index(corpus.len())];
        let mut records = records.clone();
        for m in &mutations {
            apply(&mut records, 0, m);
        }
        let mut b = head.clone();
        b.extend_from_slice(&compressed(head[22] & 7, &records));
        batch_round(b, true)?;
    }
}
