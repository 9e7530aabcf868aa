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
//! decompressing it. acks=0 gets no response; acks=1 and acks=-1 are answered
//! after the append (the ISR is this broker alone until replication lands,
//! so the high watermark moves with the append). Per-partition failures are
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
use crate::replica::now_ms;

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
    let acks = request.acks;
    let invalid_acks = !matches!(acks, -1..=1);
    let now = now_ms();
    let mut appended_any = false;
    let mut responses = Vec::with_capacity(request.topic_data.len());
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
            if ctx.version < 7 && is_zstd(&records) {
                let message = format!(
                    "Produce requests with version {} are not allowed to use ZStandard compression",
                    ctx.version
                );
                partitions.push(partition_error(data.index, ErrorCode::UnsupportedCompressionType, Some(message)));
                continue;
            }
            match partition.append(&records, acks, now) {
                Ok(outcome) => {
                    appended_any = true;
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
    if appended_any {
        broker.replicas.data_arrived.notify_waiters();
    }
    if acks == 0 {
        return None;
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
