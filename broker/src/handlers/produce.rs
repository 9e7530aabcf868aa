//! Produce: v0-11 advertised; v3-11 served.
//!
//! Behaviour: per partition, a partition this broker does not host is
//! UNKNOWN_TOPIC_OR_PARTITION, one whose log failed to open KAFKA_STORAGE_ERROR;
//! writes to internal topics (`__consumer_offsets`,
//! `__transaction_state`) are refused with INVALID_TOPIC_EXCEPTION, as Kafka
//! refuses them to clients; the leader validates the single v2 batch
//! (CRC, size against `max.message.bytes`, counts, every record's framing
//! through its codec, keys on compacted topics, timestamp bounds: see
//! `replica::validate`), checks the idempotent producer's sequence
//! (a duplicate is answered with its original offset), rewrites the base
//! offset and leader epoch in place and appends the batch as sent, without
//! decompressing it. acks=0 gets no response; acks=1 is answered after the
//! append; acks=-1 once the high watermark passes the append (every ISR
//! member has it), or REQUEST_TIMED_OUT after the request's `timeout_ms`,
//! without holding a lock or a thread while it waits (see
//! `await_replication`). Per-partition failures are
//! Kafka's error codes; nothing is appended for a refused batch. From v10 a
//! partition refused with NOT_LEADER_OR_FOLLOWER carries the leader this
//! broker knows (KIP-951, see [`super::leader_hints`]).
//!
//! Zstandard batches need v7+ (UNSUPPORTED_COMPRESSION_TYPE before, as
//! Kafka answers). Deviations: v0-v2 are answered with UNSUPPORTED_VERSION (as Kafka 4);
//! transactional batches are refused with INVALID_TXN_STATE until the
//! transaction coordinator exists.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;
use weir_controller::topic_name::is_internal_topic;
use weir_protocol::{batch, ErrorCode};

use super::leader_hints::LeaderHints;
use super::RequestContext;
use crate::broker::Broker;
use crate::replica::{now_ms, on_blocking_pool, Partition};

fn partition_error(index: i32, code: ErrorCode, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

/// Zstandard needs Produce v7+ (KIP-110): older clients could not read it back.
fn is_zstd(records: &[u8]) -> bool {
    batch::parse_header(records).is_ok_and(|h| batch::Compression::of(&h) == batch::Compression::Zstd)
}

/// Serves Produce; `None` for acks=0.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: ProduceRequest) -> Option<ProduceResponse> {
    let (acks, timeout_ms) = (request.acks, request.timeout_ms);
    let Appended { mut responses, waiting } = {
        let (broker, version) = (broker.clone(), ctx.version);
        on_blocking_pool(move || append_all(&broker, version, request)).await
    };
    if acks == 0 {
        return None;
    }
    if !waiting.is_empty() {
        await_replication(&mut responses, waiting, timeout_ms).await;
    }
    let mut response = ProduceResponse::default();
    if ctx.version >= 10 {
        let mut hints = LeaderHints::new(broker.image());
        for topic in &mut responses {
            for partition in &mut topic.partition_responses {
                if LeaderHints::wanted(partition.error_code, false) {
                    let (leader, epoch) = hints.leader(topic.name.as_str(), partition.index);
                    partition.current_leader =
                        LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch);
                }
            }
        }
        response.node_endpoints = hints
            .into_endpoints()
            .map(|b| NodeEndpoint::default().with_node_id(b.id).with_host(b.host).with_port(b.port).with_rack(b.rack))
            .collect();
    }
    Some(response.with_responses(responses))
}

/// Validates and appends every partition's batch (on the blocking pool: the
/// appends write to disk).
fn append_all(broker: &Broker, version: i16, request: ProduceRequest) -> Appended {
    let acks = request.acks;
    let invalid_acks = !matches!(acks, -1..=1);
    let now = now_ms();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let mut waiting = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            if invalid_acks {
                partitions.push(partition_error(data.index, ErrorCode::InvalidRequiredAcks, None));
                continue;
            }
            if is_internal_topic(&name) {
                // Only the coordinators write there, with records they replay at startup.
                let message = format!("Cannot append to internal topic {name}");
                partitions.push(partition_error(data.index, ErrorCode::InvalidTopicException, Some(message)));
                continue;
            }
            let Some(partition) = broker.replicas.get(&name, data.index) else {
                partitions.push(partition_error(data.index, broker.replicas.absent_error(&name, data.index), None));
                continue;
            };
            let Some(records) = data.records else {
                partitions.push(partition_error(data.index, ErrorCode::InvalidRecord, Some("no records".into())));
                continue;
            };
            if version < 7 && is_zstd(&records) {
                let message =
                    format!("Produce requests with version {} are not allowed to use ZStandard compression", version);
                partitions.push(partition_error(data.index, ErrorCode::UnsupportedCompressionType, Some(message)));
                continue;
            }
            match partition.append(&records, acks, now) {
                Ok(outcome) => {
                    if acks == -1 {
                        waiting.push(AwaitingReplication {
                            topic: responses.len(),
                            index: partitions.len(),
                            partition: partition.clone(),
                            required_offset: outcome.last_offset + 1,
                        });
                    }
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(data.index)
                            .with_base_offset(outcome.base_offset)
                            .with_log_append_time_ms(outcome.log_append_time)
                            .with_log_start_offset(outcome.log_start_offset),
                    );
                }
                Err(rejected) => {
                    debug!(partition = %partition.name(), code = ?rejected.code, message = %rejected.message, "produce refused");
                    let record_errors = rejected
                        .record_errors
                        .into_iter()
                        .map(|(index, message)| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(index)
                                .with_batch_index_error_message(Some(StrBytes::from_string(message)))
                        })
                        .collect();
                    partitions.push(
                        partition_error(data.index, rejected.code, Some(rejected.message))
                            .with_record_errors(record_errors),
                    );
                }
            }
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    Appended { responses, waiting }
}

/// What a produce request appended.
struct Appended {
    responses: Vec<TopicProduceResponse>,
    /// acks=all appends waiting for the ISR.
    waiting: Vec<AwaitingReplication>,
}

/// An acks=all append waiting for the high watermark to pass it.
struct AwaitingReplication {
    /// Its place in the response: topic, then partition.
    topic: usize,
    index: usize,
    partition: Arc<Partition>,
    /// The high watermark that commits it.
    required_offset: i64,
}

/// Waits until the ISR has every acks=all append of the request (Kafka's
/// delayed produce), parked on the partitions' watchers, no longer than the
/// request's `timeout_ms`: REQUEST_TIMED_OUT after it. An append committed
/// while the ISR is below `min.insync.replicas` gets
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND; a partition whose leadership moved
/// meanwhile NOT_LEADER_OR_FOLLOWER.
async fn await_replication(responses: &mut [TopicProduceResponse], waiting: Vec<AwaitingReplication>, timeout_ms: i32) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    // The appends are all made: waiting for each in turn takes as long as the slowest.
    for w in waiting {
        let code = match w.partition.wait_for_high_watermark(w.required_offset, deadline).await {
            Ok(()) => {
                let isr = w.partition.isr_size() as i32;
                (isr < w.partition.min_insync_replicas()).then_some(ErrorCode::NotEnoughReplicasAfterAppend)
            }
            Err(code) => Some(code),
        };
        if let Some(code) = code {
            set_error(responses, &w, code);
        }
    }
}

fn set_error(responses: &mut [TopicProduceResponse], w: &AwaitingReplication, code: ErrorCode) {
    if let Some(p) = responses.get_mut(w.topic).and_then(|t| t.partition_responses.get_mut(w.index)) {
        let index = p.index;
        *p = partition_error(index, code, None);
    }
}
