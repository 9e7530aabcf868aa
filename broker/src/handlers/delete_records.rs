//! DeleteRecords: v0-2.
//!
//! Behaviour: raises each partition's log start offset to the requested
//! offset (-1 means the high watermark) and deletes the segments wholly
//! below it; answers with the new low watermark. An offset above the high
//! watermark gets OFFSET_OUT_OF_RANGE; an unknown partition
//! UNKNOWN_TOPIC_OR_PARTITION.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::broker::Broker;

/// Serves DeleteRecords.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let outcome = broker
                        .replicas
                        .get(&name, p.partition_index)
                        .ok_or_else(|| broker.replicas.absent_error(&name, p.partition_index))
                        .and_then(|partition| partition.delete_records_before(p.offset));
                    match outcome {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(code) => result.with_low_watermark(-1).with_error_code(code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
