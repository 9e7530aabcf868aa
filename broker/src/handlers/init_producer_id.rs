//! InitProducerId: v0-5.
//!
//! Behaviour: without a transactional id (the idempotent producer), every
//! request gets a fresh producer id at epoch 0, as Kafka's coordinator does
//! ("blindly accept"), from blocks the controller allocates so ids are never
//! reused, even across restarts.
//!
//! Deviation: there is no transaction coordinator yet, so a request with a
//! transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! which clients treat as fatal (librdkafka `rd_kafka_idemp_check_error`,
//! Java `TransactionManager.InitProducerIdHandler`), rather than the
//! retriable COORDINATOR_NOT_AVAILABLE they would retry until their timeout.
//! The response has no message field; FindCoordinator, which clients send
//! first, carries "Transactions are not supported by this broker yet".

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};
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
    if let Some(id) = &request.transactional_id {
        debug!(transactional_id = %id.as_str(), "refused a transactional InitProducerId: transactions are not supported yet");
        return failed(ErrorCode::TransactionalIdAuthorizationFailed);
    }
    match broker.producer_ids.next_id(&broker.controller, broker.config.node_id).await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "could not allocate a producer id");
            failed(ErrorCode::CoordinatorLoadInProgress)
        }
    }
}
