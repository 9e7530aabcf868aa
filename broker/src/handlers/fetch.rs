//! Fetch: v4-17.
//!
//! Behaviour: per partition, whole batches from the batch holding
//! `fetch_offset` up to the high watermark (which is also the last stable
//! offset while there are no transactions, so `read_committed` reads the
//! same and gets an empty aborted-transactions list). The first partition
//! that has data may exceed `partition_max_bytes`/`max_bytes` by one whole
//! batch, as Kafka does; after it the response stops at `max_bytes`, itself
//! capped by the broker's `fetch.max.bytes` (55 MiB by default). When
//! fewer than `min_bytes` are ready and no partition failed, the request
//! parks until an append to one of its partitions wakes it or `max_wait_ms`
//! passes. Reads run on the blocking pool. v13+ names topics
//! by id (UNKNOWN_TOPIC_ID when unknown). `current_leader_epoch` is checked
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Offsets outside the log get
//! OFFSET_OUT_OF_RANGE with the partition's offsets. v7+ incremental fetch
//! sessions (KIP-227) are served by [`crate::fetch_session`]. A partition
//! whose log this broker could not open (offline) gets KAFKA_STORAGE_ERROR.
//! From v16 a partition refused with NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH carries the leader this broker knows (KIP-951, see
//! [`super::leader_hints`]).
//!
//! A follower's fetch (replica id >= 0) reads up to the log end instead of
//! the high watermark, records the follower's progress once per request
//! (which moves the high watermark and may add it to the ISR, see
//! `replica::leader`), and answers a follower whose last fetched epoch
//! diverges from the leader's log with `diverging_epoch` (v12+) and no
//! records.
//!
//! Fetching from followers (KIP-392): a consumer's fetch from v11 (which
//! carries the client's metadata) may go to a follower, which serves it up
//! to its own high watermark (an offset above it reads nothing, one past its
//! log end is OFFSET_OUT_OF_RANGE, as on a leader). With
//! `replica.selector.class` set to Kafka's `RackAwareReplicaSelector`, the
//! leader answers a consumer that gives a `rack_id` other than its own rack
//! with no records and `preferred_read_replica`: the in-sync follower in the
//! consumer's rack that holds the fetch offset and has the most records.
//! Errors, divergences and preferred read replicas are answered at once.
//!
//! Since a follower's progress commits acks=all writes, the broker
//! it claims to be is checked first: `replica_state` (v15+) must name a
//! broker registered at the epoch it carries (KIP-903), else the whole fetch
//! gets STALE_BROKER_EPOCH; a replica fetch below v15 (the top-level
//! `replica_id`, which no broker of a Weir cluster sends and which carries
//! no epoch) gets UNSUPPORTED_VERSION. A fenced follower still fetches but
//! does not join the ISR.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::sync::Notify;
use weir_controller::MetadataImage;
use weir_protocol::ErrorCode;

use super::leader_hints::LeaderHints;
use super::RequestContext;
use crate::broker::Broker;
use crate::fetch_session::{FetchTarget, ForgottenPartition, PartitionRead, SentOffsets, SessionContext};
use crate::replica::leader::{FollowerFetch, FollowerRead, IsrProposal};
use crate::replica::{isr, now_ms, on_blocking_pool, Partition};

fn partition_error(index: i32, code: ErrorCode, offsets: Option<(i64, i64)>) -> PartitionData {
    let (log_start, high_watermark) = offsets.unwrap_or((-1, -1));
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code.code())
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log_start)
}

/// The partitions a request names, with topic names resolved from ids (v13+).
fn requested_targets(broker: &Broker, ctx: &RequestContext, request: &FetchRequest) -> Vec<FetchTarget> {
    let image = broker.image();
    let mut targets = Vec::new();
    for topic in &request.topics {
        let (topic_id, name) = if ctx.version >= 13 {
            (topic.topic_id, image.topic_by_id(topic.topic_id).map(|t| t.name.clone()).unwrap_or_default())
        } else {
            let name = topic.topic.0.to_string();
            (image.topic(&name).map(|t| t.id).unwrap_or_default(), name)
        };
        for p in &topic.partitions {
            targets.push(FetchTarget {
                topic_id,
                topic: name.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: if ctx.version >= 12 { p.last_fetched_epoch } else { -1 },
                log_start_offset: if ctx.version >= 5 { p.log_start_offset } else { -1 },
            });
        }
    }
    targets
}

/// Registers `waker` with every hosted partition the request reads.
fn watch_all(broker: &Broker, targets: &[FetchTarget], waker: &Arc<Notify>) {
    for target in targets {
        if let Some(partition) = broker.replicas.get(&target.topic, target.partition) {
            partition.watch(waker);
        }
    }
}

/// Reads every target once: per target its response entry, the offsets it
/// reports, and whether it must be answered (an error, a divergence, a
/// preferred read replica) even if nothing else changed. A follower's fetch
/// may record its progress; the ISR changes that made due are returned for
/// the caller to send.
fn read_once(
    broker: &Broker,
    targets: &[FetchTarget],
    max_bytes: i32,
    follower: Option<FollowerFetch>,
    consumer: &ConsumerFetch,
) -> ReadOnce {
    let mut remaining = max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut out = Vec::with_capacity(targets.len());
    let mut proposals = Vec::new();
    let mut respond_now = false;
    // One metadata image per pass, for the replica selector's rack lookups.
    let image = (follower.is_none() && broker.config.replication.rack_aware_replica_selector).then(|| broker.image());
    for target in targets {
        let data = if let Some(follower) = follower {
            let follower = FollowerFetch { log_start_offset: target.log_start_offset, ..follower };
            let (data, proposal) = read_for_follower(broker, target, follower, remaining, total == 0);
            proposals.extend(proposal);
            data
        } else {
            read_partition(broker, target, remaining, total == 0, consumer, image.as_deref())
        };
        let bytes = data.records.as_ref().map_or(0, |r| r.len());
        total += bytes;
        remaining = remaining.saturating_sub(bytes);
        let sent = SentOffsets {
            high_watermark: data.high_watermark,
            last_stable_offset: data.last_stable_offset,
            log_start_offset: data.log_start_offset,
        };
        // As Kafka: an error, a divergence or a preferred read replica is answered at once.
        let answer_now = data.error_code != 0 || data.diverging_epoch.epoch >= 0 || data.preferred_read_replica.0 >= 0;
        respond_now |= answer_now;
        out.push((data, sent, answer_now));
    }
    ReadOnce { results: out, bytes: total, proposals, respond_now }
}

/// What one pass over a fetch's partitions read.
struct ReadOnce {
    results: Vec<(PartitionData, SentOffsets, bool)>,
    bytes: usize,
    proposals: Vec<(Arc<Partition>, IsrProposal)>,
    /// A partition's answer cannot wait for more data.
    respond_now: bool,
}

/// What a consumer's fetch (replica id < 0) allows: from v11 (which carries
/// the client's metadata, KIP-392) a follower serves it too, up to its own
/// high watermark; with `replica.selector.class` set, a leader sends a
/// consumer in another rack to an in-sync follower in its own.
struct ConsumerFetch {
    from_followers: bool,
    rack: String,
}

/// A follower's fetch of one partition this broker leads: up to the log end,
/// or the divergence it must truncate first.
fn read_for_follower(
    broker: &Broker,
    target: &FetchTarget,
    follower: FollowerFetch,
    remaining: usize,
    first: bool,
) -> (PartitionData, Option<(Arc<Partition>, IsrProposal)>) {
    if target.topic.is_empty() {
        return (partition_error(target.partition, ErrorCode::UnknownTopicId, None), None);
    }
    let partition = match broker.replicas.lookup(&target.topic, target.partition) {
        Ok(partition) => partition,
        Err(code) => return (partition_error(target.partition, code, None), None),
    };
    if let Err(code) = partition.check_leader_epoch(target.current_leader_epoch) {
        return (partition_error(target.partition, code, None), None);
    }
    let max_bytes = (target.max_bytes.max(0) as usize).min(remaining);
    let read = partition.read_for_follower(
        follower,
        target.fetch_offset,
        target.last_fetched_epoch,
        max_bytes,
        first,
        now_ms(),
    );
    let base = PartitionData::default().with_partition_index(target.partition).with_preferred_read_replica((-1).into());
    match read {
        Ok(FollowerRead::Records { records, high_watermark, log_start_offset, proposal }) => {
            let data = base
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(log_start_offset)
                .with_records(Some(records));
            (data, proposal.map(|p| (partition, p)))
        }
        Ok(FollowerRead::Diverging { epoch, end_offset, high_watermark, log_start_offset }) => {
            let data = base
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(log_start_offset)
                .with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset))
                .with_records(Some(Bytes::new()));
            (data, None)
        }
        Err(code) => {
            let (log_start, _) = partition.offsets();
            (partition_error(target.partition, code, Some((log_start, partition.high_watermark()))), None)
        }
    }
}

fn read_partition(
    broker: &Broker,
    target: &FetchTarget,
    remaining: usize,
    first: bool,
    consumer: &ConsumerFetch,
    selector_image: Option<&MetadataImage>,
) -> PartitionData {
    if target.topic.is_empty() {
        return partition_error(target.partition, ErrorCode::UnknownTopicId, None);
    }
    let hosted = if consumer.from_followers {
        broker
            .replicas
            .get(&target.topic, target.partition)
            .ok_or_else(|| broker.replicas.absent_error(&target.topic, target.partition))
    } else {
        broker.replicas.lookup(&target.topic, target.partition)
    };
    let partition = match hosted {
        Ok(partition) => partition,
        Err(code) => return partition_error(target.partition, code, None),
    };
    if let Err(code) = partition.check_leader_epoch(target.current_leader_epoch) {
        return partition_error(target.partition, code, None);
    }
    if let Some(image) = selector_image {
        let rack_of = |id: i32| image.broker(id).filter(|b| !b.fenced).and_then(|b| b.rack.clone());
        if let Some(replica) = partition.preferred_read_replica(target.fetch_offset, &consumer.rack, rack_of, now_ms())
        {
            // As Kafka: no read; the consumer moves to the replica and fetches there.
            let (log_start, _) = partition.offsets();
            let high_watermark = partition.high_watermark();
            return PartitionData::default()
                .with_partition_index(target.partition)
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(log_start)
                .with_preferred_read_replica(BrokerId(replica))
                .with_records(Some(Bytes::new()));
        }
    }
    let max_bytes = (target.max_bytes.max(0) as usize).min(remaining);
    match partition.read(target.fetch_offset, max_bytes, first) {
        Ok(read) => PartitionData::default()
            .with_partition_index(target.partition)
            .with_high_watermark(read.high_watermark)
            .with_last_stable_offset(read.last_stable_offset)
            .with_log_start_offset(read.log_start_offset)
            .with_preferred_read_replica((-1).into())
            .with_records(Some(read.records)),
        Err(code) => {
            let (log_start, _) = partition.offsets();
            partition_error(target.partition, code, Some((log_start, partition.high_watermark())))
        }
    }
}

/// Groups partition entries under their topics, in first-seen order.
fn group_by_topic(
    ctx: &RequestContext,
    entries: impl IntoIterator<Item = (FetchTarget, PartitionData)>,
) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (target, data) in entries {
        let same_topic = topics.last().is_some_and(|t| {
            if ctx.version >= 13 {
                t.topic_id == target.topic_id
            } else {
                t.topic.0.as_str() == target.topic
            }
        });
        if !same_topic {
            let name =
                if ctx.version >= 13 { TopicName::default() } else { super::metadata::topic_name(&target.topic) };
            let id = if ctx.version >= 13 { target.topic_id } else { uuid::Uuid::nil() };
            topics.push(FetchableTopicResponse::default().with_topic(name).with_topic_id(id));
        }
        if let Some(t) = topics.last_mut() {
            t.partitions.push(data);
        }
    }
    topics
}

/// The follower a fetch comes from, checked against the metadata: `None`
/// for a consumer's fetch, an error for a claim that does not hold.
fn verify_follower(
    broker: &Broker,
    ctx: &RequestContext,
    request: &FetchRequest,
) -> Result<Option<FollowerFetch>, ErrorCode> {
    if ctx.version < 15 {
        return if request.replica_id.0 >= 0 { Err(ErrorCode::UnsupportedVersion) } else { Ok(None) };
    }
    let state = &request.replica_state;
    if state.replica_id.0 < 0 {
        return Ok(None);
    }
    let image = broker.image();
    let registration = image
        .broker(state.replica_id.0)
        .filter(|b| b.epoch == state.replica_epoch)
        .ok_or(ErrorCode::StaleBrokerEpoch)?;
    Ok(Some(FollowerFetch {
        replica_id: registration.id,
        broker_epoch: registration.epoch,
        // Per partition: set from each partition's entry as it is read.
        log_start_offset: -1,
        isr_eligible: !registration.fenced,
        record_progress: true,
    }))
}

/// The answer to a fetch refused as a whole: the top-level error from v7,
/// each partition's before.
fn refused(ctx: &RequestContext, targets: Vec<FetchTarget>, code: ErrorCode) -> FetchResponse {
    let response = FetchResponse::default().with_error_code(code.code()).with_session_id(0);
    if ctx.version >= 7 {
        return response;
    }
    let entries = targets.into_iter().map(|t| {
        let data = partition_error(t.partition, code, None);
        (t, data)
    });
    response.with_responses(group_by_topic(ctx, entries))
}

/// Serves Fetch, parking until `min_bytes` are ready or `max_wait_ms` passes.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    let requested = requested_targets(broker, ctx, &request);
    let mut follower = match verify_follower(broker, ctx, &request) {
        Ok(follower) => follower,
        Err(code) => {
            tracing::debug!(
                replica_id = request.replica_state.replica_id.0,
                replica_epoch = request.replica_state.replica_epoch,
                version = ctx.version,
                ?code,
                "refused a replica fetch"
            );
            return refused(ctx, requested, code);
        }
    };
    let (session, targets) = if ctx.version >= 7 {
        let image = broker.image();
        let forgotten: Vec<ForgottenPartition> = request
            .forgotten_topics_data
            .iter()
            .flat_map(|f| {
                let (topic_id, topic) = if ctx.version >= 13 {
                    (f.topic_id, image.topic_by_id(f.topic_id).map(|t| t.name.clone()).unwrap_or_default())
                } else {
                    let name = f.topic.0.to_string();
                    (image.topic(&name).map(|t| t.id).unwrap_or_default(), name)
                };
                f.partitions.iter().map(move |&partition| ForgottenPartition {
                    topic_id,
                    topic: topic.clone(),
                    partition,
                })
            })
            .collect();
        let privileged = follower.is_some();
        match broker.fetch_sessions.begin(request.session_id, request.session_epoch, requested, &forgotten, privileged)
        {
            Ok(resolved) => resolved,
            Err(code) => return FetchResponse::default().with_error_code(code.code()).with_session_id(0),
        }
    } else {
        (SessionContext::Sessionless, requested)
    };
    let read_committed = request.isolation_level == 1;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    // As Kafka: the broker's `fetch.max.bytes` caps what any client asks for.
    let max_bytes = request.max_bytes.min(broker.config.fetch_max_bytes);
    let targets = Arc::new(targets);
    let consumer = Arc::new(ConsumerFetch {
        from_followers: ctx.version >= 11,
        rack: if ctx.version >= 11 { request.rack_id.to_string() } else { String::new() },
    });
    // Woken by a change to any partition of the request (and only those).
    let waker = Arc::new(Notify::new());
    let results = loop {
        let ReadOnce { results, bytes, proposals, respond_now } = {
            let (broker, targets, waker, consumer) = (broker.clone(), targets.clone(), waker.clone(), consumer.clone());
            on_blocking_pool(move || {
                // Watch before reading, so a change between the read and the wait is not missed.
                watch_all(&broker, &targets, &waker);
                read_once(&broker, &targets, max_bytes, follower, &consumer)
            })
            .await
        };
        // The follower's progress is recorded by the first read only.
        if let Some(follower) = follower.as_mut() {
            follower.record_progress = false;
        }
        for (partition, proposal) in proposals {
            isr::propose(broker, partition, proposal);
        }
        let now = Instant::now();
        if bytes >= min_bytes || respond_now || now >= deadline || targets.is_empty() {
            break results;
        }
        let _ = tokio::time::timeout(deadline - now, waker.notified()).await;
    };
    let targets = Arc::unwrap_or_clone(targets);
    let summary: Vec<(FetchTarget, PartitionRead)> = targets
        .iter()
        .zip(&results)
        .map(|(t, (data, sent, must_answer))| {
            let records = data.records.as_ref().is_some_and(|r| !r.is_empty());
            (t.clone(), PartitionRead { sent: *sent, records, must_answer: *must_answer })
        })
        .collect();
    let include = broker.fetch_sessions.complete(&session, &summary);
    let mut hints = (ctx.version >= 16).then(|| LeaderHints::new(broker.image()));
    let entries: Vec<(FetchTarget, PartitionData)> = targets
        .into_iter()
        .zip(results)
        .zip(include)
        .filter(|(_, keep)| *keep)
        .map(|((target, (data, _, _)), _)| {
            let mut data =
                if data.error_code == 0 { data.with_aborted_transactions(read_committed.then(Vec::new)) } else { data };
            if let Some(hints) = hints.as_mut().filter(|_| LeaderHints::wanted(data.error_code, true)) {
                let (leader, epoch) = hints.leader(&target.topic, target.partition);
                data.current_leader =
                    LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
            }
            (target, data)
        })
        .collect();
    let session_id = match session {
        SessionContext::Sessionless => 0,
        SessionContext::Created { session_id } | SessionContext::Incremental { session_id } => session_id,
    };
    let node_endpoints = hints
        .into_iter()
        .flat_map(LeaderHints::into_endpoints)
        .map(|b| NodeEndpoint::default().with_node_id(b.id).with_host(b.host).with_port(b.port).with_rack(b.rack))
        .collect();
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(group_by_topic(ctx, entries))
        .with_node_endpoints(node_endpoints)
}
