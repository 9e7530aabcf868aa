//! ListPartitionReassignments: v0 (`kafka-reassign-partitions --verify`,
//! the admin API's `listPartitionReassignments`).
//!
//! Behaviour: from this broker's metadata image, the partitions whose
//! reassignment is in progress, with their replicas (target first, then the
//! replicas being removed) and the adding and removing replicas; every such
//! partition when `topics` is null, else those among the named ones (unknown
//! topics and partitions are left out, as Kafka's controller does).

use std::sync::Arc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};
use weir_controller::TopicImage;

use super::RequestContext;
use crate::broker::Broker;

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().copied().map(BrokerId).collect()
}

/// The topic's reassigning partitions among `indexes` (all when `None`).
fn ongoing(topic: &TopicImage, indexes: Option<&[i32]>) -> Option<OngoingTopicReassignment> {
    let partitions: Vec<OngoingPartitionReassignment> = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(index, p)| p.is_reassigning() && indexes.is_none_or(|wanted| wanted.contains(&(*index as i32))))
        .map(|(index, p)| {
            OngoingPartitionReassignment::default()
                .with_partition_index(index as i32)
                .with_replicas(ids(&p.replicas))
                .with_adding_replicas(ids(&p.adding_replicas))
                .with_removing_replicas(ids(&p.removing_replicas))
        })
        .collect();
    (!partitions.is_empty()).then(|| {
        OngoingTopicReassignment::default()
            .with_name(super::metadata::topic_name(&topic.name))
            .with_partitions(partitions)
    })
}

/// Serves ListPartitionReassignments.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let topics = match &request.topics {
        None => image.topics.values().filter_map(|t| ongoing(t, None)).collect(),
        Some(named) => named
            .iter()
            .filter_map(|t| image.topic(t.name.0.as_str()).and_then(|topic| ongoing(topic, Some(&t.partition_indexes))))
            .collect(),
    };
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
