//! The controller operations a broker asks for, whichever way its node
//! reaches the active controller: a voter runs them on the quorum's leader
//! (itself, or forwarded to it), an observer sends them to a voter
//! ([`crate::observer`]). Each typed operation is one [`Operation`] and the
//! [`Outcome`] of the same kind.

use std::future::Future;

use super::*;
use crate::configs::{AlterConfigOp, ConfigResource};

pub(super) fn mismatch() -> ControllerError {
    ControllerError::Internal("the active controller answered another operation".to_string())
}

/// Runs controller operations on the active controller. Implementors give
/// [`ControllerOperations::on_leader`]; the typed operations are built on it.
pub trait ControllerOperations: Sync {
    /// Runs `operation` on the active controller and returns its outcome once
    /// this node's image holds the change. NOT_CONTROLLER while no leader is
    /// known or reachable, which clients retry.
    fn on_leader(&self, operation: Operation) -> impl Future<Output = Result<Outcome, ControllerError>> + Send;

    /// Creates topics. One result per input, in order; all successful topics
    /// of the request are committed in one atomic log entry.
    fn create_topics(
        &self,
        topics: Vec<CreateTopic>,
        validate_only: bool,
    ) -> impl Future<Output = Vec<Result<Arc<TopicImage>, ControllerError>>> + Send {
        async move {
            let count = topics.len();
            match self.on_leader(Operation::CreateTopics { topics, validate_only }).await {
                Ok(Outcome::CreatedTopics(results)) => results.into_iter().map(|r| r.map(Arc::new)).collect(),
                Ok(_) => vec![Err(mismatch()); count],
                Err(e) => vec![Err(e); count],
            }
        }
    }

    /// Deletes topics by name or id. One result per input, in order, giving
    /// the deleted topic's name and id; all deletions commit in one entry.
    fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> impl Future<Output = Vec<Result<(String, Uuid), ControllerError>>> + Send {
        async move {
            let count = topics.len();
            match self.on_leader(Operation::DeleteTopics { topics }).await {
                Ok(Outcome::DeletedTopics(results)) => results,
                Ok(_) => vec![Err(mismatch()); count],
                Err(e) => vec![Err(e); count],
            }
        }
    }

    /// Hands a registered broker the next block of producer ids: returns the
    /// first id and the block size. Blocks never overlap, across restarts too.
    fn allocate_producer_ids(
        &self,
        broker_id: i32,
    ) -> impl Future<Output = Result<(i64, i64), ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::AllocateProducerIds { broker_id }).await? {
                Outcome::ProducerIds(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// Describes the metadata quorum as its leader sees it: leader, epoch,
    /// high watermark, each voter's and observer's progress (a Kafka broker
    /// forwards DescribeQuorum to the active controller too).
    fn describe_quorum(&self) -> impl Future<Output = Result<QuorumDescription, ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::DescribeQuorum).await? {
                Outcome::Quorum(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// A broker's heartbeat to the active controller (see `sessions.rs`):
    /// keeps its session, unfences it once caught up, or, with
    /// `want_shutdown`, fences it for a controlled shutdown.
    fn broker_heartbeat(
        &self,
        heartbeat: BrokerHeartbeat,
    ) -> impl Future<Output = Result<HeartbeatReply, ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::BrokerHeartbeat(heartbeat)).await? {
                Outcome::Heartbeat(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// Grows a topic to `new_total` partitions, placing new replicas
    /// automatically or from `assignments` (one replica list per new partition).
    fn create_partitions(
        &self,
        topic: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> impl Future<Output = Result<(), ControllerError>> + Send {
        let topic = topic.to_string();
        run_done(self, Operation::CreatePartitions { topic, new_total, assignments, validate_only })
    }

    /// IncrementalAlterConfigs for one resource.
    fn incremental_alter_configs(
        &self,
        resource: ConfigResource,
        ops: Vec<AlterConfigOp>,
        validate_only: bool,
    ) -> impl Future<Output = Result<(), ControllerError>> + Send {
        run_done(self, Operation::IncrementalAlterConfigs { resource, ops, validate_only })
    }

    /// Legacy AlterConfigs: replaces the resource's whole explicit config set.
    fn alter_configs(
        &self,
        resource: ConfigResource,
        configs: Vec<(String, Option<String>)>,
        validate_only: bool,
    ) -> impl Future<Output = Result<(), ControllerError>> + Send {
        run_done(self, Operation::AlterConfigs { resource, configs, validate_only })
    }

    /// Registers a broker (see `brokers.rs` for its epoch). A registration
    /// with `fenced` set stays fenced until a heartbeat shows the broker
    /// caught up, as brokers register; one without is unfenced at once.
    fn register_broker(
        &self,
        registration: BrokerRegistration,
    ) -> impl Future<Output = Result<(), ControllerError>> + Send {
        run_done(self, Operation::RegisterBroker(registration))
    }

    /// A partition leader's ISR change (Kafka's AlterPartition, see
    /// `partitions.rs`): the partition's state once committed.
    fn alter_partition(
        &self,
        change: AlterPartition,
    ) -> impl Future<Output = Result<PartitionRegistration, ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::AlterPartition(change)).await? {
                Outcome::PartitionState(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// ElectLeaders (see `election.rs`): per topic and partition, whether a
    /// leader was elected.
    fn elect_leaders(
        &self,
        election: Election,
        targets: ElectionTargets,
    ) -> impl Future<Output = Result<ElectionResults, ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::ElectLeaders { election, targets }).await? {
                Outcome::Elected(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// AlterPartitionReassignments (see `reassignment.rs`): per topic and
    /// partition, whether the reassignment was started, changed or cancelled.
    fn alter_partition_reassignments(
        &self,
        targets: ReassignmentTargets,
    ) -> impl Future<Output = Result<ReassignmentResults, ControllerError>> + Send {
        async move {
            match self.on_leader(Operation::AlterPartitionReassignments(targets)).await? {
                Outcome::Reassigned(result) => result,
                _ => Err(mismatch()),
            }
        }
    }

    /// Fences a broker: it leaves every ISR it is in and gives up its
    /// leaderships (see `brokers.rs`).
    fn fence_broker(&self, broker_id: i32) -> impl Future<Output = Result<(), ControllerError>> + Send {
        run_done(self, Operation::FenceBroker { broker_id })
    }
}

/// Runs an operation that answers only success or an error.
async fn run_done<C: ControllerOperations + ?Sized>(
    controller: &C,
    operation: Operation,
) -> Result<(), ControllerError> {
    match controller.on_leader(operation).await? {
        Outcome::Done(result) => result,
        _ => Err(mismatch()),
    }
}
