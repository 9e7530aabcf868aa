//! The controller's operations, run where the quorum's leader is.
//!
//! On the leader an operation runs locally. Any other voter forwards it to
//! the leader over the controller listener (as KRaft brokers forward admin
//! requests to the active controller), gets the leader's answer and the
//! image offset after it, and waits until its own image has applied that
//! offset, so the caller sees its own change at once. With no known leader,
//! or when another leader is elected while a forwarded operation waits for
//! its answer, the operation fails with NOT_CONTROLLER, which clients (and
//! the broker's heartbeat loop) retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::operations::{mismatch, ControllerOperations};
use super::sessions::{BrokerHeartbeat, HeartbeatReply};
use super::*;
use crate::configs::{AlterConfigOp, ConfigResource};
use crate::raft::NodeId;
use crate::rpc::client::{self, CallOnceError};
use crate::rpc::{ControllerRequest, ControllerResponse};

/// How long a forwarded operation may take on the leader.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an operation waits for an election to end (two election timeouts).
const ELECTION_WAIT: Duration = Duration::from_secs(4);
/// How long an operation keeps asking for a reachable leader after the one it
/// knew became unreachable: past an election (about 4 s), within clients'
/// request timeouts.
pub(crate) const UNREACHABLE_RETRY: Duration = Duration::from_secs(10);
/// How long a voter waits for its own image to catch up with a forwarded change.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// One controller operation, as it travels to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Operation {
    /// CreateTopics.
    CreateTopics {
        /// The topics.
        topics: Vec<CreateTopic>,
        /// Check only.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics {
        /// The topics.
        topics: Vec<TopicRef>,
    },
    /// CreatePartitions for one topic.
    CreatePartitions {
        /// The topic.
        topic: String,
        /// The new partition count.
        new_total: i32,
        /// Manual assignments of the new partitions.
        assignments: Option<Vec<Vec<i32>>>,
        /// Check only.
        validate_only: bool,
    },
    /// IncrementalAlterConfigs for one resource.
    IncrementalAlterConfigs {
        /// The resource.
        resource: ConfigResource,
        /// The changes.
        ops: Vec<AlterConfigOp>,
        /// Check only.
        validate_only: bool,
    },
    /// AlterConfigs for one resource.
    AlterConfigs {
        /// The resource.
        resource: ConfigResource,
        /// The whole new set.
        configs: Vec<(String, Option<String>)>,
        /// Check only.
        validate_only: bool,
    },
    /// A broker registers.
    RegisterBroker(BrokerRegistration),
    /// A broker is fenced.
    FenceBroker {
        /// The broker.
        broker_id: i32,
    },
    /// A broker needs a block of producer ids.
    AllocateProducerIds {
        /// The broker.
        broker_id: i32,
    },
    /// DescribeQuorum, which only the leader can answer.
    DescribeQuorum,
    /// A broker's heartbeat.
    BrokerHeartbeat(BrokerHeartbeat),
    /// A partition leader changes the ISR.
    AlterPartition(AlterPartition),
    /// ElectLeaders.
    ElectLeaders {
        /// Preferred or unclean.
        election: Election,
        /// The partitions; `None` is all.
        targets: ElectionTargets,
    },
    /// AlterPartitionReassignments.
    AlterPartitionReassignments(ReassignmentTargets),
}

/// What an [`Operation`] returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// Per topic of CreateTopics.
    CreatedTopics(Vec<Result<TopicImage, ControllerError>>),
    /// Per topic of DeleteTopics.
    DeletedTopics(Vec<Result<(String, Uuid), ControllerError>>),
    /// A producer-id block: first id and size.
    ProducerIds(Result<(i64, i64), ControllerError>),
    /// The quorum as its leader sees it.
    Quorum(Result<QuorumDescription, ControllerError>),
    /// The answer to a heartbeat.
    Heartbeat(Result<HeartbeatReply, ControllerError>),
    /// The partition's state after an AlterPartition.
    PartitionState(Result<PartitionRegistration, ControllerError>),
    /// Per partition of ElectLeaders.
    Elected(Result<ElectionResults, ControllerError>),
    /// Per partition of AlterPartitionReassignments.
    Reassigned(Result<ReassignmentResults, ControllerError>),
    /// Every other operation.
    Done(Result<(), ControllerError>),
}

/// The leader's answer to a forwarded operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// What the operation returned.
    pub outcome: Outcome,
    /// The leader's image offset after it: the forwarding voter waits for its
    /// own image to reach it.
    pub offset: i64,
}

/// Why forwarding failed.
enum Forwarding {
    /// The leader could not be connected to; the operation never left.
    Unreachable(String),
    /// The leader refused it, or may have run it without answering.
    Failed(ControllerError),
}

impl QuorumController {
    /// Runs `operation` on this node, which must lead the quorum (the
    /// controller listener calls this for forwarded operations).
    pub async fn execute_local(&self, operation: Operation) -> Forwarded {
        let outcome = match operation {
            Operation::CreateTopics { topics, validate_only } => Outcome::CreatedTopics(
                self.create_topics_local(topics, validate_only)
                    .await
                    .into_iter()
                    .map(|r| r.map(|topic| (*topic).clone()))
                    .collect(),
            ),
            Operation::DeleteTopics { topics } => Outcome::DeletedTopics(self.delete_topics_local(topics).await),
            Operation::CreatePartitions { topic, new_total, assignments, validate_only } => {
                Outcome::Done(self.create_partitions_local(&topic, new_total, assignments, validate_only).await)
            }
            Operation::IncrementalAlterConfigs { resource, ops, validate_only } => {
                Outcome::Done(self.incremental_alter_configs_local(resource, ops, validate_only).await)
            }
            Operation::AlterConfigs { resource, configs, validate_only } => {
                Outcome::Done(self.alter_configs_local(resource, configs, validate_only).await)
            }
            Operation::RegisterBroker(registration) => Outcome::Done(self.register_broker_local(registration).await),
            Operation::FenceBroker { broker_id } => {
                Outcome::Done(self.fence_broker_local(broker_id, "requested").await)
            }
            Operation::AllocateProducerIds { broker_id } => {
                Outcome::ProducerIds(self.allocate_producer_ids_local(broker_id).await)
            }
            Operation::DescribeQuorum => Outcome::Quorum(self.describe_quorum_local()),
            Operation::BrokerHeartbeat(heartbeat) => Outcome::Heartbeat(self.broker_heartbeat_local(heartbeat).await),
            Operation::AlterPartition(change) => Outcome::PartitionState(self.alter_partition_local(change).await),
            Operation::ElectLeaders { election, targets } => {
                Outcome::Elected(self.elect_leaders_local(election, targets).await)
            }
            Operation::AlterPartitionReassignments(targets) => {
                Outcome::Reassigned(self.alter_partition_reassignments_local(targets).await)
            }
        };
        Forwarded { outcome, offset: self.image().last_offset }
    }

    /// The leader's id and controller address when another voter leads.
    /// While no leader is known (an election is on) it waits for one, up to
    /// [`ELECTION_WAIT`]; then the operation runs here and fails with
    /// NOT_CONTROLLER.
    async fn remote_leader(&self) -> Option<(NodeId, String)> {
        let elected = self.raft.wait(Some(ELECTION_WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await;
        let metrics = match elected {
            Ok(metrics) => metrics,
            Err(_) => self.raft.metrics().borrow().clone(),
        };
        let leader = metrics.current_leader.filter(|leader| *leader != metrics.id)?;
        metrics.membership_config.membership().get_node(&leader).map(|node| (leader, node.addr.clone()))
    }

    /// Resolves once this voter knows of a leader other than `leader` (it was
    /// elected in a later term, or this voter was).
    async fn leader_replaced(&self, leader: NodeId) {
        let mut metrics = self.raft.metrics();
        // An error means the Raft core stopped: this node is shutting down and
        // the forward's own timeout ends it.
        if metrics.wait_for(|m| m.current_leader.is_some_and(|current| current != leader)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sends `operation` to the leader at `address`, then waits for this
    /// node's image to catch up with it. The wait for the answer ends when
    /// another leader is elected: a leader that stopped (SIGSTOP, a long
    /// pause) or was cut off keeps the connection open without answering, and
    /// a broker's heartbeat stuck there would let its session expire on the
    /// new leader, as a Kafka broker's controller channel drops the requests
    /// in flight to a controller that is no longer active.
    async fn forward(&self, leader: NodeId, address: &str, operation: Operation) -> Result<Outcome, Forwarding> {
        let request = ControllerRequest::Forward(operation);
        let answer = tokio::select! {
            answer = client::call_once(address, &request, FORWARD_TIMEOUT) => answer,
            () = self.leader_replaced(leader) => {
                // It may have run on the old leader: the caller retries, not this node.
                return Err(Forwarding::Failed(ControllerError::NotController(format!(
                    "the active controller at {address} was replaced while the operation was on its way"
                ))));
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(CallOnceError::Unreachable(e)) => return Err(Forwarding::Unreachable(e.to_string())),
            Err(CallOnceError::Unanswered(e)) => {
                return Err(Forwarding::Failed(ControllerError::NotController(format!(
                    "no answer from the active controller at {address}: {e}"
                ))))
            }
        };
        let ControllerResponse::Forwarded(forwarded) = answer else {
            return Err(Forwarding::Failed(mismatch()));
        };
        let forwarded = forwarded.map_err(Forwarding::Failed)?;
        let mut images = self.images.clone();
        let caught_up =
            tokio::time::timeout(CATCH_UP_TIMEOUT, images.wait_for(|image| image.last_offset >= forwarded.offset))
                .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            tracing::warn!(offset = forwarded.offset, "this voter's metadata image is behind a forwarded change");
        }
        Ok(forwarded.outcome)
    }
}

impl ControllerOperations for QuorumController {
    /// Runs `operation` where the leader is: here when this node leads, else
    /// forwarded. A leader that cannot be connected to (it died, and the
    /// election that replaces it is on) is asked again once another is known,
    /// until [`UNREACHABLE_RETRY`] has passed, as a KRaft broker holds
    /// forwarded requests while the controller changes: nothing reached the
    /// old leader, so nothing is done twice.
    async fn on_leader(&self, operation: Operation) -> Result<Outcome, ControllerError> {
        let deadline = tokio::time::Instant::now() + UNREACHABLE_RETRY;
        loop {
            let Some((leader, address)) = self.remote_leader().await else {
                return Ok(self.execute_local(operation).await.outcome);
            };
            match self.forward(leader, &address, operation.clone()).await {
                Err(Forwarding::Unreachable(reason)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%address, %reason, "the active controller is unreachable; asking again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Forwarding::Unreachable(reason)) => {
                    return Err(ControllerError::NotController(format!(
                        "cannot reach the active controller at {address}: {reason}"
                    )))
                }
                Err(Forwarding::Failed(e)) => return Err(e),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }
}
