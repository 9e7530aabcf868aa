//! ElectLeaders: v0-2 (`kafka-leader-election`, the admin API's `electLeaders`).
//!
//! Behaviour: the controller elects (see the controller's `election.rs`):
//! PREFERRED (0, and v0, which has no type) moves leadership to the first
//! replica of the assignment when it is in the ISR and live
//! (PREFERRED_LEADER_NOT_AVAILABLE otherwise, ELECTION_NOT_NEEDED when it
//! leads already); UNCLEAN (1) gives a leaderless partition a leader, from
//! outside the ISR if no member of it is live (ELIGIBLE_LEADERS_NOT_AVAILABLE
//! if no replica is; ELECTION_NOT_NEEDED when it has a leader). Unknown
//! partitions get UNKNOWN_TOPIC_OR_PARTITION. A null partition list elects
//! for every partition and leaves out those needing no election, as Kafka
//! does. Another election type is INVALID_REQUEST for the whole request.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::{ControllerOperations, Election};
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

/// Serves ElectLeaders.
pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let election = match request.election_type {
        0 => Election::Preferred,
        1 => Election::Unclean,
        other => {
            tracing::debug!(election_type = other, "ElectLeaders with an unknown election type");
            return ElectLeadersResponse::default().with_error_code(ErrorCode::InvalidRequest.code());
        }
    };
    let targets = request
        .topic_partitions
        .map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect::<Vec<_>>());
    let results = match broker.controller.elect_leaders(election, targets).await {
        Ok(results) => results,
        Err(e) => return ElectLeadersResponse::default().with_error_code(e.error_code()),
    };
    broker.metadata_changed();
    let results = results
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, outcome)| {
                    let result = PartitionResult::default().with_partition_id(partition);
                    match outcome {
                        Ok(()) => result,
                        Err(e) => result
                            .with_error_code(e.error_code())
                            .with_error_message(Some(StrBytes::from_string(e.message()))),
                    }
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(super::metadata::topic_name(&topic))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
