//! Every advertised request's decoder and the record walk, on hostile
//! input: no panic, and no allocation beyond a budget proportional to the
//! bytes actually received, whatever lengths and counts those bytes announce.
//!
//! A counting global allocator measures the peak bytes allocated by the
//! thread under test while it decodes one input.

mod common;

use bytes::Bytes;
use kafka_protocol::messages::*;
use proptest::prelude::*;
use weir_protocol::{batch, records};

use common::{advertised, budget, cases, decode_request, peak_allocation, WALK_BUDGET};

fn decode_within_budget(body: &[u8], api_key: ApiKey, version: i16) -> usize {
    let input = Bytes::copy_from_slice(body);
    peak_allocation(move || {
        let mut buf = input;
        decode_request(api_key, &mut buf, version).is_ok()
    })
}

/// Lengths and counts a hostile client announces: the largest i32, the
/// largest unsigned varint, and values just past typical buffers.
const HOSTILE_PREFIXES: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x40, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x7f, 0xff, 0x7f, 0xff, 0xff, 0xff],
    &[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f],
];

#[test]
fn huge_announced_lengths_cost_nothing_in_any_advertised_request() {
    for (api_key, version) in advertised() {
        for prefix in HOSTILE_PREFIXES {
            // The hostile length at every field position of the first 24 bytes.
            for shift in 0..24 {
                let mut body = vec![0u8; shift];
                for _ in 0..4 {
                    body.extend_from_slice(prefix);
                }
                let peak = decode_within_budget(&body, api_key, version);
                assert!(
                    peak <= budget(body.len()),
                    "{api_key:?} v{version}: {peak} bytes allocated decoding {} bytes {body:02x?}",
                    body.len()
                );
            }
        }
    }
}

fn valid_batch(codec: u8, count: i32, section: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; batch::HEADER_SIZE];
    b[8..12].copy_from_slice(&((batch::HEADER_SIZE - batch::LOG_OVERHEAD + section.len()) as i32).to_be_bytes());
    b[16] = 2;
    b[22] = codec;
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    b.extend_from_slice(section);
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn walk_within_budget(b: &[u8]) -> usize {
    let Ok(header) = batch::parse_header(b) else { return 0 };
    peak_allocation(|| records::walk_records(b, &header, |_| {}).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_to_any_advertised_request(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        pick in any::<prop::sample::Index>(),
    ) {
        if !common::in_time() {
            return Ok(());
        }
        let all = advertised();
        let (api_key, version) = all[pick.index(all.len())];
        let peak = decode_within_budget(&data, api_key, version);
        prop_assert!(peak <= budget(data.len()), "{:?} v{}: {} bytes", api_key, version, peak);
    }

    #[test]
    fn any_records_section_in_any_codec(
        section in proptest::collection::vec(any::<u8>(), 0..512),
        codec in 0u8..8,
        count in -2i32..2000,
    ) {
        if !common::in_time() {
            return Ok(());
        }
        let b = valid_batch(codec, count.max(1), &section);
        let peak = walk_within_budget(&b);
        prop_assert!(peak <= WALK_BUDGET, "codec {}: {} bytes", codec, peak);
    }
}
