//! AlterPartitionReassignments: v0-1 (`kafka-reassign-partitions --execute`,
//! the admin API's `alterPartitionReassignments`).
//!
//! Behaviour: the controller starts, changes or (null replicas) cancels each
//! partition's reassignment (see the controller's `reassignment.rs`); the
//! answer comes once the change is committed, not when the data has moved
//! (ListPartitionReassignments shows what is still moving). A target that is
//! empty, names a broker twice or names an unregistered broker gets
//! INVALID_REPLICA_ASSIGNMENT; a cancel with nothing in progress
//! NO_REASSIGNMENT_IN_PROGRESS; an unknown partition
//! UNKNOWN_TOPIC_OR_PARTITION. v1 with `allow_replication_factor_change`
//! false refuses a target of another size than the current one with
//! INVALID_REPLICATION_FACTOR (KIP-860).

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::{ControllerError, ControllerOperations};

use super::RequestContext;
use crate::broker::Broker;

/// Serves AlterPartitionReassignments.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let image = broker.image();
    let keep_size = ctx.version >= 1 && !request.allow_replication_factor_change;
    let mut refused: Vec<(String, i32, ControllerError)> = Vec::new();
    let mut targets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let target: Option<Vec<i32>> = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let current_size =
                image.topic(&name).and_then(|t| t.partition(p.partition_index)).map(|r| r.target_replicas().len());
            match (&target, current_size) {
                (Some(target), Some(size)) if keep_size && target.len() != size => refused.push((
                    name.clone(),
                    p.partition_index,
                    ControllerError::InvalidReplicationFactor(format!(
                        "The replication factor is changed from {size} to {} but allowReplicationFactorChange is false",
                        target.len()
                    )),
                )),
                _ => partitions.push((p.partition_index, target)),
            }
        }
        targets.push((name, partitions));
    }
    let results = match broker.controller.alter_partition_reassignments(targets).await {
        Ok(results) => results,
        Err(e) => {
            return AlterPartitionReassignmentsResponse::default()
                .with_error_code(e.error_code())
                .with_error_message(Some(StrBytes::from_string(e.message())))
        }
    };
    broker.metadata_changed();
    let entry = |index: i32, outcome: Result<(), ControllerError>| {
        let response = ReassignablePartitionResponse::default().with_partition_index(index);
        match outcome {
            Ok(()) => response,
            Err(e) => {
                response.with_error_code(e.error_code()).with_error_message(Some(StrBytes::from_string(e.message())))
            }
        }
    };
    let responses = results
        .into_iter()
        .map(|(topic, partitions)| {
            let mut entries: Vec<ReassignablePartitionResponse> =
                partitions.into_iter().map(|(index, outcome)| entry(index, outcome)).collect();
            entries.extend(
                refused.iter().filter(|(t, _, _)| *t == topic).map(|(_, index, e)| entry(*index, Err(e.clone()))),
            );
            ReassignableTopicResponse::default().with_name(super::metadata::topic_name(&topic)).with_partitions(entries)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}
