//! DeleteRecords: v0-2.
//!
//! Behaviour: raises each partition's log start offset to the requested
//! offset (-1 means the high watermark) and deletes the segments wholly
//! below it; answers with the new low watermark. An offset above the high
//! watermark gets OFFSET_OUT_OF_RANGE; an unknown partition
//! UNKNOWN_TOPIC_OR_PARTITION. A partition of an internal topic
//! (`__consumer_offsets`, `__transaction_state`) gets
//! INVALID_TOPIC_EXCEPTION, as in Kafka's `ReplicaManager.deleteRecords`
//! ("Cannot delete records of internal topic"; the response carries no
//! message).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::debug;
use weir_controller::is_internal_topic;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;
use crate::replica::on_blocking_pool;

/// True if the metadata has this partition.
fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker.image().topic(topic).is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

/// Serves DeleteRecords.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let broker = broker.clone();
    on_blocking_pool(move || answer(&broker, request)).await
}

fn answer(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
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
                    // Internal topics are closed to clients (after the unknown-partition check, as in Kafka).
                    if is_internal_topic(&name) && partition_exists(broker, &name, p.partition_index) {
                        debug!(topic = %name, partition = p.partition_index, "refused DeleteRecords on an internal topic");
                        return result.with_low_watermark(-1).with_error_code(ErrorCode::InvalidTopicException.code());
                    }
                    let outcome = broker
                        .replicas
                        .lookup(&name, p.partition_index)
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
