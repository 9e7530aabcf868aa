//! FindCoordinator: v0-6.
//!
//! Behaviour: for a group (key type 0) the coordinator is the leader of the
//! group's `__consumer_offsets` partition: in a single-node cluster, this
//! broker. The topic is created on the first such request, as Kafka does.
//! v4+ batches keys, each with its own answer. Another key type gets
//! INVALID_REQUEST.
//!
//! Deviation: there is no transaction coordinator yet, so a transactional id
//! (key type 1) is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED and the
//! message "Transactions are not supported by this broker yet". Kafka sends
//! that code when the principal may not use the transactional id; it is the
//! one code every client treats as fatal at this step: librdkafka
//! (`rd_kafka_txn_handle_FindCoordinator` fails the transactional producer,
//! so `init_transactions()` returns at once instead of retrying until its
//! timeout), Java's producer (`TransactionManager.FindCoordinatorHandler`)
//! and Admin (`CoordinatorStrategy`, so `kafka-transactions.sh` exits).
//! The retriable COORDINATOR_NOT_AVAILABLE made clients retry without end.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The error message refusing a transactional id.
pub(crate) const TRANSACTIONS_UNSUPPORTED: &str = "Transactions are not supported by this broker yet";

/// (node, host, port) of the coordinator, or the error.
async fn coordinator_for(broker: &Broker, key_type: i8) -> Result<(i32, String, i32), ErrorCode> {
    match key_type {
        KEY_TYPE_GROUP => {
            broker.groups.ensure_offsets_topic(broker).await?;
            let image = broker.image();
            let me = image.broker(broker.config.node_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let endpoint = me.listeners.first().ok_or(ErrorCode::CoordinatorNotAvailable)?;
            Ok((me.id, endpoint.host.clone(), endpoint.port as i32))
        }
        KEY_TYPE_TRANSACTION => Err(ErrorCode::TransactionalIdAuthorizationFailed),
        _ => Err(ErrorCode::InvalidRequest),
    }
}

fn message(code: ErrorCode) -> StrBytes {
    StrBytes::from_static_str(match code {
        ErrorCode::InvalidRequest => "Unknown coordinator key type.",
        ErrorCode::TransactionalIdAuthorizationFailed => TRANSACTIONS_UNSUPPORTED,
        _ => "The coordinator is not available.",
    })
}

/// Serves FindCoordinator.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let key_type = if ctx.version >= 1 { request.key_type } else { KEY_TYPE_GROUP };
    let found = coordinator_for(broker, key_type).await;
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                match &found {
                    Ok((node, host, port)) => {
                        c.with_node_id(BrokerId(*node)).with_host(StrBytes::from_string(host.clone())).with_port(*port)
                    }
                    Err(code) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(Some(message(*code))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match found {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err(code) => FindCoordinatorResponse::default()
            .with_error_code(code.code())
            .with_error_message(if ctx.version >= 1 { Some(message(code)) } else { None })
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1),
    }
}
