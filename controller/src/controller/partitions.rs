//! AlterPartition: a partition leader changes its ISR, as in KRaft's
//! `ReplicationControlManager.alterPartition`.
//!
//! The leader sends the ISR it wants with the leader epoch and partition
//! epoch it knows. The controller refuses a request from a broker whose
//! registration epoch is stale (STALE_BROKER_EPOCH), that does not lead the
//! partition (NOT_LEADER_OR_FOLLOWER), whose leader epoch is stale
//! (FENCED_LEADER_EPOCH) or whose partition epoch is not the current one
//! (INVALID_UPDATE_VERSION: another change came first; the leader learns the
//! new state from the metadata and tries again). The new ISR must hold the
//! leader and only replicas; a replica joining it must be registered and
//! unfenced (INELIGIBLE_REPLICA). The change bumps the partition epoch, not
//! the leader epoch. As in KIP-903, the leader sends the broker epoch each
//! joining member fetched with; a member registered since at another epoch
//! (a restarted broker that may have lost its log) is refused
//! (INELIGIBLE_REPLICA) until its new incarnation catches up.

use serde::{Deserialize, Serialize};

use super::*;

/// One partition's ISR change, from its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    /// The leader asking.
    pub broker_id: i32,
    /// Its registration epoch.
    pub broker_epoch: i64,
    /// The topic.
    pub topic_id: Uuid,
    /// The partition.
    pub partition: i32,
    /// The leader epoch the leader knows.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on.
    pub partition_epoch: i32,
    /// The ISR wanted.
    pub new_isr: Vec<i32>,
    /// The broker epoch each joining member's fetches carried.
    #[serde(default)]
    pub joining_broker_epochs: BTreeMap<i32, i64>,
}

impl QuorumController {
    /// The leader's side of [`ControllerOperations::alter_partition`].
    pub(super) async fn alter_partition_local(
        &self,
        change: AlterPartition,
    ) -> Result<PartitionRegistration, ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let broker = image.broker(change.broker_id).filter(|b| b.epoch == change.broker_epoch).ok_or_else(|| {
            ControllerError::StaleBrokerEpoch(format!(
                "Broker {} is not registered with epoch {}",
                change.broker_id, change.broker_epoch
            ))
        })?;
        let broker_id = broker.id;
        let topic = image
            .topic_by_id(change.topic_id)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("No topic with id {}", change.topic_id)))?;
        let name = format!("{}-{}", topic.name, change.partition);
        let current = topic
            .partition(change.partition)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("No partition {name}")))?;
        if current.leader != broker_id {
            return Err(ControllerError::NotLeaderOrFollower(format!(
                "Broker {broker_id} is not the leader of {name} (the leader is {})",
                current.leader
            )));
        }
        if change.leader_epoch < current.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch(format!(
                "Leader epoch {} of {name} is stale; the current one is {}",
                change.leader_epoch, current.leader_epoch
            )));
        }
        if change.leader_epoch > current.leader_epoch || change.partition_epoch != current.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion(format!(
                "Partition epoch {} (leader epoch {}) of {name} is not the current {} ({})",
                change.partition_epoch, change.leader_epoch, current.partition_epoch, current.leader_epoch
            )));
        }
        validate_isr(&image, current, &change, broker_id, &name)?;
        if change.new_isr == current.isr {
            return Ok(current.clone());
        }
        // The ISR change may complete a reassignment (see `reassignment.rs`).
        let mut next = current.clone();
        next.isr = change.new_isr.clone();
        let records = reassignment::change_records(&image, change.topic_id, change.partition, current, next);
        self.commit(&guard, records).await?;
        tracing::info!(partition = %name, from = ?current.isr, to = ?change.new_isr, "ISR changed");
        let image = self.image();
        image
            .topic_by_id(change.topic_id)
            .and_then(|t| t.partition(change.partition))
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("No partition {name}")))
    }
}

/// The new ISR holds the leader, no duplicates, only replicas, and every
/// member joining it is registered and unfenced.
fn validate_isr(
    image: &MetadataImage,
    current: &PartitionRegistration,
    change: &AlterPartition,
    leader: i32,
    name: &str,
) -> Result<(), ControllerError> {
    let new_isr = &change.new_isr;
    if !new_isr.contains(&leader) {
        return Err(ControllerError::InvalidRequest(format!("The new ISR {new_isr:?} of {name} lacks its leader")));
    }
    let mut seen = HashSet::new();
    for &replica in new_isr {
        if !seen.insert(replica) {
            return Err(ControllerError::InvalidRequest(format!(
                "The new ISR {new_isr:?} of {name} repeats {replica}"
            )));
        }
        if !current.replicas.contains(&replica) {
            return Err(ControllerError::IneligibleReplica(format!(
                "Broker {replica} is not a replica of {name} ({:?})",
                current.replicas
            )));
        }
        if current.isr.contains(&replica) {
            continue;
        }
        let Some(registration) = image.broker(replica).filter(|b| !b.fenced) else {
            return Err(ControllerError::IneligibleReplica(format!(
                "Broker {replica} is fenced or not registered and cannot join the ISR of {name}"
            )));
        };
        if let Some(&epoch) = change.joining_broker_epochs.get(&replica).filter(|&&e| e != registration.epoch) {
            return Err(ControllerError::IneligibleReplica(format!(
                "Broker {replica} fetched with broker epoch {epoch} but is registered with {}; it cannot join the ISR of {name}",
                registration.epoch
            )));
        }
    }
    Ok(())
}
