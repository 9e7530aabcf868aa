//! Helpers shared by the decoder property tests: a counting global
//! allocator (each test binary that declares `mod common;` gets its own),
//! the memory budgets, the dispatch of a request body to its decoder, the
//! case count, and the seed corpus.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use weir_protocol::api_table::{advertised_range, ADVERTISED_APIS, PRODUCE_MIN_SERVED_VERSION};
use weir_protocol::legacy_produce;

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

/// Peak bytes allocated through Rust's allocator (above what was live
/// before) by this thread while `f` runs. C libraries (zstd, lz4) allocate
/// with their own malloc and are not counted.
pub fn peak_allocation<T>(f: impl FnOnce() -> T) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    drop(f());
    PEAK.with(Cell::get) - base
}

/// What decoding `input_len` bytes may cost: a decoded element can be a few
/// hundred bytes for one byte of input (a struct of defaults), plus a constant.
pub fn budget(input_len: usize) -> usize {
    (1 << 20) + 512 * input_len
}

/// The record walker's fixed cost: the 16 KiB read buffer and a codec's state
/// (zstd's window is capped at 16 MiB but never reached by inputs this small).
pub const WALK_BUDGET: usize = 4 << 20;

/// The number of cases of each property test: `$WEIR_FUZZ_CASES` when set
/// (`make fuzz` sets it high), else `default`, which keeps `cargo test` quick.
pub fn cases(default: u32) -> u32 {
    std::env::var("WEIR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

thread_local! {
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    static CASES_RUN: Cell<u64> = const { Cell::new(0) };
    static OUT_OF_TIME: Cell<bool> = const { Cell::new(false) };
}

/// Called at the start of every property case: false once this property
/// test (its thread) has run for `$WEIR_FUZZ_SECONDS` (unset: no limit), so
/// that the remaining cases of a long `make fuzz` run return at once and
/// each property still finishes and reports. Prints, once per test, how many
/// cases ran before the limit.
pub fn in_time() -> bool {
    static LIMIT: OnceLock<Option<Duration>> = OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        let seconds: u64 = std::env::var("WEIR_FUZZ_SECONDS").ok()?.parse().ok()?;
        Some(Duration::from_secs(seconds))
    });
    if OUT_OF_TIME.with(Cell::get) {
        return false;
    }
    if let Some(limit) = limit {
        let started = STARTED.with(|s| {
            let started = s.get().unwrap_or_else(Instant::now);
            s.set(Some(started));
            started
        });
        if started.elapsed() > *limit {
            OUT_OF_TIME.with(|o| o.set(true));
            let name = std::thread::current().name().unwrap_or("?").to_string();
            eprintln!("{name}: {} cases in {}s (WEIR_FUZZ_SECONDS)", CASES_RUN.with(Cell::get), limit.as_secs());
            return false;
        }
    }
    CASES_RUN.with(|c| c.set(c.get() + 1));
    true
}

/// Every (API, version) Weir decodes.
pub fn advertised() -> Vec<(ApiKey, i16)> {
    ADVERTISED_APIS
        .iter()
        .flat_map(|range| (range.min_version..=range.max_version).map(move |v| (range.api_key, v)))
        .collect()
}

/// Decodes a request body with the decoder of its API key and version (any
/// version, advertised or not); the error is the decoder's message.
pub fn decode_request(api_key: ApiKey, buf: &mut Bytes, version: i16) -> Result<(), String> {
    macro_rules! decoders {
        ($($key:ident => $request:ident),* $(,)?) => {
            match api_key {
                $(ApiKey::$key => $request::decode(buf, version).map(drop).map_err(|e| e.to_string()),)*
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
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        SaslHandshake => SaslHandshakeRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
    )
}

/// What the broker does with a parsed request's body (broker/src/handlers/mod.rs):
/// nothing outside the advertised range, the legacy reader for Produce v0-v2,
/// the generated decoder otherwise. `Ok(None)` = not decoded at all; else the
/// decode result and the bytes left over after the decoded message.
pub fn dispatch_body(api_key: ApiKey, version: i16, body: Bytes) -> Option<Result<usize, String>> {
    if !advertised_range(api_key)?.contains(version) {
        return None;
    }
    if api_key == ApiKey::Produce && version < PRODUCE_MIN_SERVED_VERSION {
        return Some(legacy_produce::unsupported_version_response(body, version).map(|_| 0).map_err(|e| e.to_string()));
    }
    let mut buf = body;
    Some(decode_request(api_key, &mut buf, version).map(|()| buf.len()))
}

/// The seed corpus directory `protocol-compat/tests/corpus/<kind>`.
pub fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus").join(kind)
}

/// Every `*.bin` file of a corpus directory, sorted by name: (name, bytes).
pub fn load_corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    files
}
