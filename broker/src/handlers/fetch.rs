//! Fetch: v4-17.
//!
//! Behaviour: per partition, whole batches from the batch holding
//! `fetch_offset` up to the high watermark (which is also the last stable
//! offset while there are no transactions, so `read_committed` reads the
//! same and gets an empty aborted-transactions list). The first partition
//! that has data may exceed `partition_max_bytes`/`max_bytes` by one whole
//! batch, as Kafka does; after it the response stops at `max_bytes`. When
//! fewer than `min_bytes` are ready and no partition failed, the request
//! parks until an append wakes it or `max_wait_ms` passes. v13+ names topics
//! by id (UNKNOWN_TOPIC_ID when unknown). `current_leader_epoch` is checked
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Offsets outside the log get
//! OFFSET_OUT_OF_RANGE with the partition's offsets.
//!
//! Deviation: no fetch sessions yet (KIP-227); the response's session id is
//! 0, which tells clients to keep sending full fetch requests, as Kafka does
//! when its session cache is full. Follower fetches arrive with replication.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

fn partition_error(index: i32, code: ErrorCode, offsets: Option<(i64, i64)>) -> PartitionData {
    let (log_start, high_watermark) = offsets.unwrap_or((-1, -1));
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code.code())
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log_start)
}

/// One pass over the requested partitions: the response and how many bytes it carries.
fn read_once(
    broker: &Broker,
    ctx: &RequestContext,
    request: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let image = broker.image();
    let read_committed = request.isolation_level == 1;
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut failed = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = if ctx.version >= 13 {
            image.topic_by_id(topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.0.to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let Some(name) = name.as_deref() else {
                failed = true;
                partitions.push(partition_error(p.partition, ErrorCode::UnknownTopicId, None));
                continue;
            };
            let Some(partition) = broker.replicas.get(name, p.partition) else {
                failed = true;
                partitions.push(partition_error(p.partition, ErrorCode::UnknownTopicOrPartition, None));
                continue;
            };
            if let Err(code) = partition.check_leader_epoch(p.current_leader_epoch) {
                failed = true;
                partitions.push(partition_error(p.partition, code, None));
                continue;
            }
            let max_bytes = (p.partition_max_bytes.max(0) as usize).min(remaining);
            match partition.read(p.fetch_offset, max_bytes, total == 0) {
                Ok(read) => {
                    total += read.records.len();
                    remaining = remaining.saturating_sub(read.records.len());
                    partitions.push(
                        PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.last_stable_offset)
                            .with_log_start_offset(read.log_start_offset)
                            .with_aborted_transactions(read_committed.then(Vec::new))
                            .with_preferred_read_replica((-1).into())
                            .with_records(Some(read.records)),
                    );
                }
                Err(code) => {
                    failed = true;
                    let (log_start, _) = partition.offsets();
                    partitions.push(partition_error(p.partition, code, Some((log_start, partition.high_watermark()))));
                }
            }
        }
        let name_field = if ctx.version >= 13 { TopicName::default() } else { topic.topic.clone() };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(name_field)
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (topics, total, failed)
}

/// Serves Fetch, parking until `min_bytes` are ready or `max_wait_ms` passes.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Register for the wake-up before reading, so an append between the
        // read and the wait is not missed.
        let notified = broker.replicas.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (topics, bytes, failed) = read_once(broker, ctx, &request);
        let now = Instant::now();
        if bytes >= min_bytes || failed || now >= deadline || request.topics.is_empty() {
            return FetchResponse::default().with_session_id(0).with_responses(topics);
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
    }
}
