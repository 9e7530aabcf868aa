//! FindCoordinator: v0-6.
//!
//! Behaviour: for a group (key type 0) the coordinator is the leader of the
//! group's `__consumer_offsets` partition. The topic is created on the first such request, as Kafka does.
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
use crate::group::records::partition_for;
use crate::group::OFFSETS_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The error message refusing a transactional id.
pub(crate) const TRANSACTIONS_UNSUPPORTED: &str = "Transactions are not supported by this broker yet";

/// (node, host, port) of the coordinator of `key`, or the error. A group's
/// coordinator is the leader of its `__consumer_offsets` partition, as
/// Kafka's; COORDINATOR_NOT_AVAILABLE while that partition has no live leader.
async fn coordinator_for(broker: &Broker, key_type: i8, key: &str) -> Result<(i32, String, i32), ErrorCode> {
    match key_type {
        KEY_TYPE_GROUP => {
            broker.groups.ensure_offsets_topic(broker).await?;
            let image = broker.image();
            let topic = image.topic(OFFSETS_TOPIC).ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let index = partition_for(key, topic.partitions.len() as i32);
            let leader = topic.partitions.get(index as usize).map_or(-1, |p| p.leader);
            let node = image.broker(leader).filter(|b| !b.fenced).ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let endpoint = node.listeners.first().ok_or(ErrorCode::CoordinatorNotAvailable)?;
            Ok((node.id, endpoint.host.clone(), endpoint.port as i32))
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
    if ctx.version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = coordinator_for(broker, key_type, &key).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push(match found {
                Ok((node, host, port)) => {
                    c.with_node_id(BrokerId(node)).with_host(StrBytes::from_string(host)).with_port(port)
                }
                Err(code) => c
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(code.code())
                    .with_error_message(Some(message(code))),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match coordinator_for(broker, key_type, &request.key).await {
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
