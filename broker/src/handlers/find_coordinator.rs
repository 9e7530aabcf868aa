//! FindCoordinator: v0-6.
//!
//! Behaviour: Weir has no group or transaction coordinator yet, so every key
//! (v0-3 single key, v4+ batched `coordinator_keys`) is answered with
//! COORDINATOR_NOT_AVAILABLE, node -1, which clients treat as retriable.
//! Advertised because librdkafka requires FindCoordinator v0 before it uses
//! other features.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

const MESSAGE: &str = "The coordinator is not available.";

/// Serves FindCoordinator.
pub async fn handle(
    _broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let code = ErrorCode::CoordinatorNotAvailable.code();
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id((-1).into())
                    .with_host(StrBytes::from_static_str(""))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_static_str(MESSAGE)))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_static_str(MESSAGE)))
        .with_node_id((-1).into())
        .with_host(StrBytes::from_static_str(""))
        .with_port(-1)
}
