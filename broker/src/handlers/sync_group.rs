//! SyncGroup: v0-5.
//!
//! Behaviour: the leader's assignments are stored with the group in
//! `__consumer_offsets`; then every member's SyncGroup is answered with its
//! own assignment (always carrying the assignment bytes, empty if the
//! leader gave it none). Followers park until the leader syncs. Errors:
//! UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
//! FENCED_INSTANCE_ID, and v5 INCONSISTENT_GROUP_PROTOCOL when the protocol
//! type or name does not match the group's.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::RequestContext;
use crate::broker::Broker;
use crate::group::classic::SyncRequest;
use crate::group::coordinator::str_bytes;

/// Serves SyncGroup.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let outcome = broker.groups.sync(broker, &request.group_id.0, sync).await;
    let v5 = ctx.version >= 5;
    SyncGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |e| e.code()))
        .with_protocol_type(if v5 { outcome.protocol_type.as_deref().map(str_bytes) } else { None })
        .with_protocol_name(if v5 { outcome.protocol_name.as_deref().map(str_bytes) } else { None })
        .with_assignment(outcome.assignment)
}
