//! Metadata: v0-12.
//!
//! Behaviour: served from the local metadata image. `topics` null (v1+) or
//! empty (v0) lists every topic. An unknown topic is created when the request
//! allows it (always before v4, then `allow_auto_topic_creation`) and
//! `auto.create.topics.enable` is on, with `num.partitions` and
//! `default.replication.factor`; Kafka answers such a topic with
//! LEADER_NOT_AVAILABLE until its partitions are ready, whereas Weir creates
//! them before answering and returns the topic ready. Illegal names get
//! INVALID_TOPIC_EXCEPTION. v10+ lookups by topic id get UNKNOWN_TOPIC_ID
//! when the id is unknown. With no authorizer yet, authorized operations
//! (when requested) are every operation of the resource type.
//!
//! `offline_replicas` lists, as Kafka's KRaft metadata cache does, the
//! replicas on brokers that are fenced or not registered, and this broker's
//! replica when its log could not be opened; when the leader is one of them
//! (or there is none: no ISR member is alive and unclean election is off)
//! the partition gets LEADER_NOT_AVAILABLE with leader -1, replicas and ISR
//! as in the image. (Kafka's controller would also elect another leader for
//! a replica whose log dir failed; this broker does not tell the controller.)

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_controller::topic_name::{is_internal_topic, validate_topic_name};
use weir_controller::{CreateTopic, MetadataImage, PartitionRegistration, TopicImage};
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;
use crate::replica::ReplicaManager;
use weir_controller::ControllerOperations;

/// Kafka's value for "authorized operations were not requested".
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// ACL operation codes (Kafka's AclOperation) as authorized-operation bits.
const fn ops(codes: &[u8]) -> i32 {
    let mut bits = 0;
    let mut i = 0;
    while i < codes.len() {
        bits |= 1 << codes[i];
        i += 1;
    }
    bits
}

/// With no authorizer every operation is allowed: READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS on a topic.
pub const TOPIC_OPERATIONS: i32 = ops(&[3, 4, 5, 6, 7, 8, 10, 11]);
/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE on the cluster.
pub const CLUSTER_OPERATIONS: i32 = ops(&[5, 7, 8, 9, 10, 11, 12]);

/// The authorized-operations field: all operations when asked (no
/// authorizer yet), Kafka's "omitted" sentinel otherwise.
pub fn authorized_operations(requested: bool, all: i32) -> i32 {
    if requested {
        all
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    }
}

/// A topic name for a response.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The replicas of partition `index` of `topic` that are offline: on a
/// fenced or unregistered broker, or this broker's own if its log is offline.
pub fn offline_replicas(
    image: &MetadataImage,
    replicas: &ReplicaManager,
    topic: &str,
    index: i32,
    partition: &PartitionRegistration,
) -> Vec<i32> {
    let local = replicas.offline_replica(topic, index);
    partition
        .replicas
        .iter()
        .copied()
        .filter(|&r| Some(r) == local || image.broker(r).is_none_or(|b| b.fenced))
        .collect()
}

/// The response entry of a known topic; `replicas` tells which of this
/// broker's replicas are offline.
pub fn describe_topic(
    image: &MetadataImage,
    topic: &TopicImage,
    topic_operations: i32,
    replicas: &ReplicaManager,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let offline = offline_replicas(image, replicas, &topic.name, index as i32, p);
            let leader = if offline.contains(&p.leader) { -1 } else { p.leader };
            MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                .with_offline_replicas(offline.into_iter().map(BrokerId).collect())
                .with_error_code(if leader < 0 { ErrorCode::LeaderNotAvailable.code() } else { 0 })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_operations)
}

fn topic_error(name: Option<&str>, id: uuid::Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_error_code(code.code())
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// A live broker as clients should reach it.
pub struct AdvertisedBroker {
    /// Broker id.
    pub id: BrokerId,
    /// Advertised host.
    pub host: StrBytes,
    /// Advertised port.
    pub port: i32,
    /// Rack, if set.
    pub rack: Option<StrBytes>,
}

/// The unfenced brokers with their first advertised listener.
pub fn advertised_brokers(image: &MetadataImage) -> impl Iterator<Item = AdvertisedBroker> + '_ {
    image.brokers.values().filter(|b| !b.fenced).filter_map(|b| {
        let endpoint = b.listeners.first()?;
        Some(AdvertisedBroker {
            id: BrokerId(b.id),
            host: StrBytes::from_string(endpoint.host.clone()),
            port: endpoint.port as i32,
            rack: b.rack.clone().map(StrBytes::from_string),
        })
    })
}

fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    advertised_brokers(image)
        .map(|b| {
            MetadataResponseBroker::default().with_node_id(b.id).with_host(b.host).with_port(b.port).with_rack(b.rack)
        })
        .collect()
}

/// Serves Metadata.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let allow_auto_create =
        broker.config.auto_create_topics_enable && (ctx.version < 4 || request.allow_auto_topic_creation);
    let list_all = match &request.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let topic_operations = authorized_operations(request.include_topic_authorized_operations, TOPIC_OPERATIONS);
    let mut image = broker.image();
    let mut topics = Vec::new();
    if list_all {
        topics.extend(image.topics.values().map(|t| describe_topic(&image, t, topic_operations, &broker.replicas)));
    } else {
        let requested = request.topics.unwrap_or_default();
        // Create the unknown, legal names first, in one controller call.
        let to_create: Vec<String> = requested
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .filter(|n| image.topic(n).is_none() && validate_topic_name(n).is_ok())
            .collect();
        if allow_auto_create && !to_create.is_empty() {
            let creates = to_create
                .iter()
                .map(|name| CreateTopic {
                    name: name.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: Vec::new(),
                    configs: Vec::new(),
                })
                .collect();
            for result in broker.controller.create_topics(creates, false).await {
                match result {
                    Ok(created) => {
                        tracing::info!(topic = %created.name, partitions = created.partitions.len(), "auto-created topic")
                    }
                    Err(e) => tracing::debug!(error = %e, "auto-creation failed"),
                }
            }
            broker.metadata_changed();
            image = broker.image();
        }
        for wanted in requested {
            match wanted.name.as_ref().map(|n| n.0.to_string()) {
                Some(name) => match image.topic(&name) {
                    Some(t) => topics.push(describe_topic(&image, t, topic_operations, &broker.replicas)),
                    None if validate_topic_name(&name).is_err() => {
                        topics.push(topic_error(Some(&name), uuid::Uuid::nil(), ErrorCode::InvalidTopicException))
                    }
                    None => {
                        topics.push(topic_error(Some(&name), uuid::Uuid::nil(), ErrorCode::UnknownTopicOrPartition))
                    }
                },
                None => match image.topic_by_id(wanted.topic_id) {
                    Some(t) => topics.push(describe_topic(&image, t, topic_operations, &broker.replicas)),
                    None => topics.push(topic_error(None, wanted.topic_id, ErrorCode::UnknownTopicId)),
                },
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized_operations(
            request.include_cluster_authorized_operations && (8..=10).contains(&ctx.version),
            CLUSTER_OPERATIONS,
        ))
}
