//! OffsetForLeaderEpoch: v2-4.
//!
//! Behaviour: for each partition, the largest leader epoch not above the
//! requested one and the offset where it ended (the log end offset for the
//! current epoch), from the leader epoch cache, as consumers use it to
//! detect log truncation (KIP-320). `current_leader_epoch` is checked like
//! Fetch does; an unknown partition gets UNKNOWN_TOPIC_OR_PARTITION, one
//! offline on this broker (its log could not be opened) KAFKA_STORAGE_ERROR.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::broker::Broker;
use crate::replica::on_blocking_pool;

/// Serves OffsetForLeaderEpoch.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let broker = broker.clone();
    on_blocking_pool(move || answer(&broker, request)).await
}

fn answer(broker: &Broker, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = EpochEndOffset::default().with_partition(p.partition);
                    let outcome = broker.replicas.lookup(&name, p.partition).and_then(|partition| {
                        partition.check_leader_epoch(p.current_leader_epoch)?;
                        Ok(partition.end_offset_for_epoch(p.leader_epoch))
                    });
                    match outcome {
                        Ok((epoch, end_offset)) => result.with_leader_epoch(epoch).with_end_offset(end_offset),
                        Err(code) => result.with_error_code(code.code()).with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
