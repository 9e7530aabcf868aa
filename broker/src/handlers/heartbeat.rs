//! Heartbeat: v0-4.
//!
//! Behaviour: keeps a member's session alive; REBALANCE_IN_PROGRESS while
//! the group prepares a rebalance (the member must rejoin),
//! UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION and FENCED_INSTANCE_ID as Kafka
//! answers them.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::broker::Broker;

/// Serves Heartbeat.
pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = broker.groups.heartbeat(
        broker,
        &request.group_id.0,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
