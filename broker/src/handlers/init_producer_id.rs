//! InitProducerId: v0-5.
//!
//! Behaviour: without a transactional id (the idempotent producer), every
//! request gets a fresh producer id at epoch 0, as Kafka's coordinator does
//! ("blindly accept"), from blocks the controller allocates so ids are never
//! reused, even across restarts.
//!
//! Deviation: a transactional id is answered with
//! COORDINATOR_NOT_AVAILABLE until the transaction coordinator exists.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

/// Serves InitProducerId.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return failed(ErrorCode::CoordinatorNotAvailable);
    }
    match broker.producer_ids.next_id(&broker.controller, broker.config.node_id) {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "could not allocate a producer id");
            failed(ErrorCode::CoordinatorLoadInProgress)
        }
    }
}
