//! JoinGroup: v0-9.
//!
//! Behaviour: Kafka's classic rebalance protocol (see [`crate::group::classic`]):
//! v4+ new members first get MEMBER_ID_REQUIRED with their id; v5+ static
//! members (`group_instance_id`); the request parks until the rebalance
//! completes, then the leader gets every member's metadata for the protocol
//! chosen by vote. v0 has no rebalance timeout: the session timeout serves.
//! A join to a KIP-848 group with members (one upgraded online) is a full
//! heartbeat of that group: the answer comes at once, with the member epoch
//! as the generation and no leader (see [`crate::group::consumer`]).
//! Errors: INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT,
//! INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
//! GROUP_MAX_SIZE_REACHED, as Kafka answers them.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::classic::JoinRequest;
use crate::group::coordinator::str_bytes;

/// Serves JoinGroup.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    let rebalance_timeout = if ctx.version >= 1 {
        Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
    } else {
        session_timeout
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout,
        rebalance_timeout,
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let outcome = broker.groups.join(broker, &request.group_id.0, join).await;
    // Before v7 the protocol name is a non-null string.
    let protocol_name = match (&outcome.protocol_name, ctx.version >= 7) {
        (Some(name), _) => Some(str_bytes(name)),
        (None, true) => None,
        (None, false) => Some(StrBytes::default()),
    };
    let members = outcome
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&member_id))
                .with_group_instance_id(if ctx.version >= 5 { instance.as_deref().map(str_bytes) } else { None })
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |e| e.code()))
        .with_generation_id(outcome.generation_id)
        .with_protocol_type(if ctx.version >= 7 { outcome.protocol_type.as_deref().map(str_bytes) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(members)
}
