//! Every advertised request's decoder and the record walk, on hostile
//! input: no panic, and no allocation beyond a budget proportional to the
//! bytes actually received, whatever lengths and counts those bytes announce.
//!
//! A counting global allocator measures the peak bytes allocated by the
//! thread under test while it decodes one input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use weir_protocol::api_table::ADVERTISED_APIS;
use weir_protocol::{batch, records};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn sub(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated (above what was live before) while `f` runs.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    drop(f());
    PEAK.with(Cell::get) - base
}

/// What decoding `input_len` bytes may cost: a decoded element can be a few
/// hundred bytes for one byte of input (a struct of defaults), plus a constant.
fn budget(input_len: usize) -> usize {
    (1 << 20) + 512 * input_len
}

/// Every (API, version) Weir decodes.
fn advertised() -> Vec<(ApiKey, i16)> {
    ADVERTISED_APIS
        .iter()
        .flat_map(|range| (range.min_version..=range.max_version).map(move |v| (range.api_key, v)))
        .collect()
}

/// Decodes a request body as the broker's dispatch table does.
fn decode_request(api_key: ApiKey, buf: &mut Bytes, version: i16) -> bool {
    macro_rules! decoders {
        ($($key:ident => $request:ident),* $(,)?) => {
            match api_key {
                $(ApiKey::$key => $request::decode(buf, version).is_ok(),)*
                other => panic!("{other:?} is advertised: add its request type here"),
            }
        };
    }
    decoders!(
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteGroups => DeleteGroupsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeCluster => DescribeClusterRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        DescribeQuorum => DescribeQuorumRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        ElectLeaders => ElectLeadersRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        SaslHandshake => SaslHandshakeRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
    )
}

fn decode_within_budget(body: &[u8], api_key: ApiKey, version: i16) -> usize {
    let input = Bytes::copy_from_slice(body);
    peak_allocation(move || {
        let mut buf = input;
        decode_request(api_key, &mut buf, version)
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

/// The walker's fixed cost: the 16 KiB read buffer and a codec's state
/// (zstd's window is capped at 16 MiB but never reached by inputs this small).
const WALK_BUDGET: usize = 4 << 20;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_to_any_advertised_request(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        pick in any::<prop::sample::Index>(),
    ) {
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
        let b = valid_batch(codec, count.max(1), &section);
        let peak = walk_within_budget(&b);
        prop_assert!(peak <= WALK_BUDGET, "codec {}: {} bytes", codec, peak);
    }
}
