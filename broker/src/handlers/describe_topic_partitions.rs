//! DescribeTopicPartitions: v0 (KIP-966; Kafka 3.8+ admin clients'
//! `describeTopics`, `kafka-topics --describe`).
//!
//! Behaviour, as Kafka's KRaft brokers answer it from their metadata image:
//! the named topics, or every topic when none is named, deduplicated and in
//! name order, each with its id, whether it is internal, its authorized
//! operations (every topic operation: no authorizer yet) and its partitions:
//! leader (-1 when its broker is fenced or not registered, as in Metadata), leader epoch, replicas,
//! ISR, offline replicas (on fenced or unregistered brokers, or this broker's
//! own offline log) and empty ELR lists (Weir has no eligible leader
//! replicas). An unknown name gets UNKNOWN_TOPIC_OR_PARTITION, an illegal
//! one INVALID_TOPIC_EXCEPTION (both with a nil id); listing every topic
//! leaves nothing unknown. At most `response_partition_limit` partitions
//! are returned, capped by `max.request.partition.size.limit` (2000); the
//! answer then carries `next_cursor`, the first partition left out, and the
//! next request starts there (topics before the cursor's are skipped). A
//! cursor naming a topic outside the requested list gets INVALID_REQUEST on
//! every requested topic.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use weir_controller::topic_name::{is_internal_topic, validate_topic_name};
use weir_controller::{MetadataImage, TopicImage};
use weir_protocol::ErrorCode;

use super::metadata::{offline_replicas, topic_name, TOPIC_OPERATIONS};
use super::RequestContext;
use crate::broker::Broker;
use crate::replica::ReplicaManager;

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().copied().map(BrokerId).collect()
}

fn topic_error(name: &str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(topic_name(name)))
        .with_is_internal(is_internal_topic(name))
        .with_topic_authorized_operations(TOPIC_OPERATIONS)
}

/// Partitions `first..first + count` of `topic` (fewer at its end).
fn partitions(
    image: &MetadataImage,
    replicas: &ReplicaManager,
    topic: &TopicImage,
    first: usize,
    count: usize,
) -> Vec<DescribeTopicPartitionsResponsePartition> {
    topic
        .partitions
        .iter()
        .enumerate()
        .skip(first)
        .take(count)
        .map(|(index, p)| {
            let offline = offline_replicas(image, replicas, &topic.name, index as i32, p);
            // As Metadata: a leader on a fenced or unregistered broker is no leader.
            let leader = if offline.contains(&p.leader) { -1 } else { p.leader };
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(&offline))
        })
        .collect()
}

/// Serves DescribeTopicPartitions.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let list_all = request.topics.is_empty();
    let cursor = request.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index.max(0) as usize));
    let cursor_topic = cursor.as_ref().map_or("", |(t, _)| t.as_str());
    let names: BTreeSet<String> = if list_all {
        image.topics.keys().filter(|name| name.as_str() >= cursor_topic).cloned().collect()
    } else {
        let named: BTreeSet<String> = request.topics.iter().map(|t| t.name.0.to_string()).collect();
        if cursor.is_some() && !named.contains(cursor_topic) {
            let topics = named.iter().map(|name| topic_error(name, ErrorCode::InvalidRequest)).collect();
            return DescribeTopicPartitionsResponse::default().with_topics(topics);
        }
        named.into_iter().filter(|name| name.as_str() >= cursor_topic).collect()
    };
    let limit = request.response_partition_limit.min(broker.config.max_request_partition_size_limit).max(0) as usize;
    let mut remaining = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if remaining == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(0));
            break;
        }
        let Some(topic) = image.topic(&name) else {
            if !list_all {
                let code = if validate_topic_name(&name).is_ok() {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::InvalidTopicException
                };
                topics.push(topic_error(&name, code));
            }
            continue;
        };
        let first = match &cursor {
            Some((cursor_topic, index)) if *cursor_topic == name => *index,
            _ => 0,
        };
        let described = partitions(&image, &broker.replicas, topic, first, remaining);
        let end = first + described.len();
        remaining -= described.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal_topic(&name))
                .with_partitions(described)
                .with_topic_authorized_operations(TOPIC_OPERATIONS),
        );
        if end < topic.partitions.len() {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(end as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}
