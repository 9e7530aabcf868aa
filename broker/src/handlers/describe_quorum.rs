//! DescribeQuorum: v0-2 (what `kafka-metadata-quorum.sh describe` and the
//! Admin clients' `describeMetadataQuorum` send).
//!
//! Behaviour, as KRaft's `handleDescribeQuorumRequest`: the request must name
//! `__cluster_metadata` partition 0 (anything else gets the request's
//! partitions back with UNKNOWN_TOPIC_OR_PARTITION); any node asks the active
//! controller, as a Kafka broker forwards the request to it, and answers its
//! id, epoch, high watermark and each voter's and observer's log end offset
//! and last fetch / caught-up timestamps (the leader's own are now);
//! NOT_LEADER_OR_FOLLOWER while there is no leader.
//!
//! v2's `nodes` carry each voter's controller listener.
//!
//! A follower's last fetch is its last answer to the leader's AppendEntries
//! (Raft pushes where KRaft's followers fetch), and it is caught up when that
//! answer acknowledged the leader's whole log; an observer's are its metadata
//! fetches. Timestamps from before this leader's term are -1, as Kafka
//! resets them with each leader.
//!
//! Deviations: replica directory ids are unknown (zero).

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_controller::QuorumReplica;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

/// The metadata log's topic, as KRaft names it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

fn replica_state(replica: &QuorumReplica) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(replica.id))
        .with_log_end_offset(replica.log_end_offset)
        .with_last_fetch_timestamp(replica.last_fetch_timestamp)
        .with_last_caught_up_timestamp(replica.last_caught_up_timestamp)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Serves DescribeQuorum.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let valid = request.topics.len() == 1
        && request.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && request.topics[0].partitions.len() == 1
        && request.topics[0].partitions[0].partition_index == 0;
    if !valid {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                    })
                    .collect();
                TopicData::default().with_topic_name(topic.topic_name).with_partitions(partitions)
            })
            .collect();
        return DescribeQuorumResponse::default().with_topics(topics);
    }
    let mut nodes = Vec::new();
    let partition = match broker.controller.describe_quorum().await {
        Ok(quorum) => {
            if ctx.version >= 2 {
                nodes = quorum.voters.iter().filter_map(|voter| node_endpoint(broker, voter)).collect();
            }
            PartitionData::default()
                .with_leader_id(BrokerId(quorum.leader_id))
                .with_leader_epoch(quorum.leader_epoch)
                .with_high_watermark(quorum.high_watermark)
                .with_current_voters(quorum.voters.iter().map(replica_state).collect())
                .with_observers(quorum.observers.iter().map(replica_state).collect())
        }
        Err(e) => PartitionData::default()
            .with_error_code(ErrorCode::NotLeaderOrFollower.code())
            .with_error_message(Some(StrBytes::from_string(e.message())))
            .with_leader_id(BrokerId(-1))
            .with_leader_epoch(-1)
            .with_high_watermark(-1),
    };
    let topic = TopicData::default().with_topic_name(topic_name(METADATA_TOPIC)).with_partitions(vec![partition]);
    DescribeQuorumResponse::default().with_topics(vec![topic]).with_nodes(nodes)
}

/// A voter's controller listener, for v2's `nodes` (the listener name is
/// this node's `controller.listener.names`: every node is configured alike).
fn node_endpoint(broker: &Broker, voter: &QuorumReplica) -> Option<Node> {
    let (host, port) = voter.address.rsplit_once(':')?;
    let listener = Listener::default()
        .with_name(StrBytes::from_string(broker.config.controller_listener_name()))
        .with_host(StrBytes::from_string(host.trim_start_matches('[').trim_end_matches(']').to_string()))
        .with_port(port.parse().ok()?);
    Some(Node::default().with_node_id(BrokerId(voter.id)).with_listeners(vec![listener]))
}
