//! ConsumerGroupHeartbeat: v0-1 (KIP-848).
//!
//! Behaviour: joins (epoch 0), keeps alive, reconciles and leaves (epoch -1;
//! -2 for a static member leaving for now) a member of a consumer group whose
//! assignment the coordinator computes (see `group::consumer`). The response
//! carries the member id (made by the coordinator when empty), the member
//! epoch, the heartbeat interval and, when it changed or the request was a
//! full one, the member's partitions by topic id. Errors as Kafka's:
//! INVALID_REQUEST (with its message) for a malformed request,
//! UNSUPPORTED_ASSIGNOR, FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID,
//! UNRELEASED_INSTANCE_ID, FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED,
//! GROUP_ID_NOT_FOUND for a classic group with members,
//! INVALID_REGULAR_EXPRESSION. v1 (KIP-1082) makes the client generate its
//! member id (an empty one is INVALID_REQUEST) and subscribe with a regular
//! expression (RE2 syntax, matched against whole topic names, internal
//! topics left out, re-resolved as topics come and go).

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::RequestContext;
use crate::broker::Broker;
use crate::group::consumer::assignor;
use crate::group::consumer::HeartbeatRequest;
use crate::group::coordinator::str_bytes;

/// Serves ConsumerGroupHeartbeat.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let owned = request.topic_partitions.map(|topics| {
        let mut owned = assignor::Assignment::new();
        for t in topics {
            let partitions: BTreeSet<i32> = t.partitions.into_iter().collect();
            if !partitions.is_empty() {
                owned.entry(t.topic_id).or_default().extend(partitions);
            }
        }
        owned
    });
    let heartbeat = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        require_member_id: ctx.version >= 1,
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.as_deref().unwrap_or_default().to_string(),
        client_host: ctx.client_host.clone(),
    };
    match broker.groups.consumer_heartbeat(broker, &request.group_id.0, heartbeat).await {
        Ok(response) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(&response.member_id)))
            .with_member_epoch(response.member_epoch)
            .with_heartbeat_interval_ms(response.heartbeat_interval_ms)
            .with_assignment(response.assignment.map(|assignment| {
                Assignment::default().with_topic_partitions(
                    assignment
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(str_bytes(&e.message)))
            .with_member_epoch(-1),
    }
}
