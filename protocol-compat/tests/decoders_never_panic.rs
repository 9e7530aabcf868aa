//! Property tests ("fuzzing") of every decoder that sees client bytes: the
//! frame codec, request header parsing, the record batch view and the legacy
//! Produce reader must return errors, never panic, on any input.

mod common;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weir_protocol::{batch, frame, header, legacy_produce};

fn valid_batch(records: &[u8], count: i32) -> Vec<u8> {
    let mut b = vec![0u8; batch::HEADER_SIZE];
    b[8..12].copy_from_slice(&((batch::HEADER_SIZE - batch::LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b[16] = 2;
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(4096), ..ProptestConfig::default() })]

    #[test]
    fn frames(data in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        if !common::in_time() {
            return Ok(());
        }
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = frame::parse_frame(&mut buf, max) {
            prop_assert!(f.len() <= max);
        }
    }

    #[test]
    fn request_headers(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if !common::in_time() {
            return Ok(());
        }
        let _ = header::parse_request(BytesMut::from(&data[..]));
        let _ = header::peek_correlation_id(&data);
    }

    #[test]
    fn record_batches(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if !common::in_time() {
            return Ok(());
        }
        for (h, range) in batch::batches(&data).flatten() {
            prop_assert!(range.end <= data.len());
            let _ = batch::verify_crc(&data[range], &h);
            let _ = (h.last_offset(), h.last_sequence(), batch::Compression::of(&h));
        }
    }

    #[test]
    fn mutated_valid_batches(records in proptest::collection::vec(any::<u8>(), 0..64), flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
        if !common::in_time() {
            return Ok(());
        }
        let mut b = valid_batch(&records, 1);
        for (at, value) in flips {
            let len = b.len();
            b[at % len] ^= value;
        }
        if let Ok(h) = batch::parse_header(&b) {
            let _ = batch::verify_crc(&b, &h);
        }
    }

    #[test]
    fn legacy_produce_bodies(data in proptest::collection::vec(any::<u8>(), 0..256), version in 0i16..3) {
        if !common::in_time() {
            return Ok(());
        }
        let _ = legacy_produce::unsupported_version_response(Bytes::from(data), version);
    }
}
