//! Partition reassignment (AlterPartitionReassignments), after KRaft's
//! `ReplicationControlManager` and `PartitionChangeBuilder`.
//!
//! Moving a partition from its current replicas to a target set first
//! widens it: the replica set becomes the target followed by the replicas
//! being removed, with `adding_replicas` (target minus current) and
//! `removing_replicas` (current minus target) recorded. The added brokers
//! create the log and fetch from the leader like any follower, and join the
//! ISR through the leader's AlterPartition once caught up. The change that
//! makes the ISR hold every target replica also completes the reassignment:
//! the replica set becomes the target, the ISR keeps only target members, and
//! a leader being removed hands over to the first in-sync target replica
//! (a new leader epoch). Brokers no longer in the replica set delete their
//! copy when they apply that image. A target already in sync (a pure
//! removal) completes at once. Cancelling (null replicas) reverts to the
//! replicas before the reassignment: the adding replicas leave the replica
//! set and the ISR. A new target while one is in progress starts from the
//! current, widened, replica set, as Kafka does.

use super::election::{self, Election};
use super::*;

/// Per topic, per partition: the target replicas, or `None` to cancel.
pub type ReassignmentTargets = Vec<(String, Vec<(i32, Option<Vec<i32>>)>)>;

/// Per topic, per partition, the outcome of an AlterPartitionReassignments.
pub type ReassignmentResults = Vec<(String, Vec<(i32, Result<(), ControllerError>)>)>;

impl QuorumController {
    /// The leader's side of [`ControllerOperations::alter_partition_reassignments`].
    pub(super) async fn alter_partition_reassignments_local(
        &self,
        targets: ReassignmentTargets,
    ) -> Result<ReassignmentResults, ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let mut records = Vec::new();
        let mut results: ReassignmentResults = Vec::new();
        let mut seen = HashSet::new();
        for (topic, partitions) in targets {
            let mut outcomes = Vec::new();
            for (partition, target) in partitions {
                let outcome = if seen.insert((topic.clone(), partition)) {
                    reassign(&image, &topic, partition, target)
                } else {
                    Err(ControllerError::InvalidRequest(format!("Partition {topic}-{partition} is named twice")))
                };
                match outcome {
                    Ok(changes) => {
                        records.extend(changes);
                        outcomes.push((partition, Ok(())));
                    }
                    Err(e) => outcomes.push((partition, Err(e))),
                }
            }
            results.push((topic, outcomes));
        }
        if !records.is_empty() {
            self.commit(&guard, records).await?;
            tracing::info!(
                partitions = results.iter().map(|(_, p)| p.iter().filter(|(_, r)| r.is_ok()).count()).sum::<usize>(),
                "partition reassignments changed"
            );
        }
        Ok(results)
    }
}

/// One partition's reassignment (or its cancellation): the records, or why none.
fn reassign(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let name = format!("{topic}-{partition}");
    let unknown = || ControllerError::UnknownTopicOrPartition(format!("Unable to find partition {name}"));
    let topic_image = image.topic(topic).ok_or_else(unknown)?;
    let current = topic_image.partition(partition).ok_or_else(unknown)?;
    let mut next = current.clone();
    match target {
        None => {
            if !current.is_reassigning() {
                return Err(ControllerError::NoReassignmentInProgress(format!(
                    "No ongoing reassignment for partition {name}"
                )));
            }
            next.replicas.retain(|r| !current.adding_replicas.contains(r));
            next.isr.retain(|r| !current.adding_replicas.contains(r));
            if next.isr.is_empty() {
                next.isr = current.isr.clone();
            }
            next.adding_replicas.clear();
            next.removing_replicas.clear();
        }
        Some(target) => {
            validate_target(image, &target)?;
            let removing: Vec<i32> = current.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
            next.adding_replicas = target.iter().copied().filter(|r| !current.replicas.contains(r)).collect();
            next.replicas = target.iter().copied().chain(removing.iter().copied()).collect();
            next.removing_replicas = removing;
        }
    }
    Ok(change_records(image, topic_image.id, partition, current, next))
}

/// As Kafka's `validateManualPartitionAssignment`: not empty, no broker
/// twice, every broker registered.
fn validate_target(image: &MetadataImage, target: &[i32]) -> Result<(), ControllerError> {
    if target.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut seen = HashSet::new();
    for &broker in target {
        if !seen.insert(broker) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {broker} more than once."
            )));
        }
        if image.broker(broker).is_none() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {broker}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

/// The records taking a partition from `current` to `next` (its replicas,
/// ISR and reassignment state; the leader follows): the reassignment is
/// completed first if every target replica is in `next`'s ISR, and the
/// leader re-elected if it is no longer a valid one.
pub(super) fn change_records(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    current: &PartitionRegistration,
    mut next: PartitionRegistration,
) -> Vec<MetadataRecord> {
    if next.is_reassigning() {
        let target = next.target_replicas();
        if target.iter().all(|r| next.isr.contains(r)) {
            next.isr.retain(|r| target.contains(r));
            next.replicas = target;
            next.adding_replicas.clear();
            next.removing_replicas.clear();
        }
    }
    let mut leader = None;
    if !next.replicas.contains(&next.leader) || (next.leader >= 0 && !next.isr.contains(&next.leader)) {
        let mut from = next.clone();
        if !from.replicas.contains(&from.leader) {
            from.leader = -1;
        }
        let elected = election::elect(&from, next.isr.clone(), Election::Clean, |r| election::is_live(image, r))
            .and_then(|(leader, _)| leader)
            .unwrap_or(from.leader);
        if elected != current.leader {
            leader = Some(elected);
        }
    }
    let mut records = Vec::new();
    let isr = (next.isr != current.isr).then(|| next.isr.clone());
    let replicas = (next.replicas != current.replicas).then(|| next.replicas.clone());
    if leader.is_some() || isr.is_some() || replicas.is_some() {
        records.push(MetadataRecord::PartitionChange { topic_id, partition_id: partition, leader, isr, replicas });
    }
    if next.adding_replicas != current.adding_replicas || next.removing_replicas != current.removing_replicas {
        records.push(MetadataRecord::PartitionReassignment {
            topic_id,
            partition_id: partition,
            adding_replicas: next.adding_replicas,
            removing_replicas: next.removing_replicas,
        });
    }
    records
}
