//! Partition leader election, after KRaft's `PartitionChangeBuilder`, and
//! the operations that run it: ElectLeaders (preferred and unclean) and the
//! active controller's periodic preferred-leader rebalance
//! (`auto.leader.rebalance.enable`). Fencing and unfencing a broker elect
//! through the same rules (`brokers.rs`).
//!
//! A replica is a *valid* leader when it is in the partition's ISR and its
//! broker is registered and unfenced. A clean election keeps a valid current
//! leader, else takes the first valid replica in assignment order; an
//! unclean one (the topic's `unclean.leader.election.enable`, or an
//! ElectLeaders of type UNCLEAN) may then take any live replica, which
//! becomes the only ISR member: records only it has are what the partition
//! holds from then on. A preferred election moves leadership to the first
//! replica of the assignment when it is valid.

use serde::{Deserialize, Serialize};

use super::*;

/// At most this many records go into one commit of an ElectLeaders naming
/// every partition (Kafka's `MAX_RECORDS_PER_USER_OP`); the rest follow in
/// further commits, as Kafka's non-atomic election result does.
const MAX_RECORDS_PER_COMMIT: usize = 10_000;

/// At most this many leaders move in one rebalance pass (Kafka's
/// `maxElectionsPerImbalance`); a pass that hit it is followed by another at once.
const MAX_ELECTIONS_PER_IMBALANCE: usize = 1_000;

/// What an election may choose (Kafka's `Election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// The preferred replica if valid, else keep a valid leader, else any valid replica.
    Preferred,
    /// A valid leader; none if the ISR has no live member.
    Clean,
    /// A valid leader, else any live replica (data outside the ISR may be lost).
    Unclean,
}

/// A partition's leader and ISR after an election, if they change.
pub(super) fn elect(
    part: &PartitionRegistration,
    target_isr: Vec<i32>,
    election: Election,
    live: impl Fn(i32) -> bool,
) -> Option<(Option<i32>, Option<Vec<i32>>)> {
    let valid = |r: i32| target_isr.contains(&r) && live(r);
    let first_valid = |skip: usize| part.replicas.iter().skip(skip).copied().find(|&r| valid(r));
    let (leader, isr) = match election {
        Election::Preferred => {
            let preferred = part.replicas.first().copied().filter(|&r| valid(r));
            let leader = preferred
                .or((part.leader >= 0 && valid(part.leader)).then_some(part.leader))
                .or_else(|| first_valid(1));
            (leader.unwrap_or(-1), target_isr)
        }
        Election::Clean | Election::Unclean => {
            let clean = (part.leader >= 0 && valid(part.leader)).then_some(part.leader).or_else(|| first_valid(0));
            match clean {
                Some(leader) => (leader, target_isr),
                None if election == Election::Unclean => match part.replicas.iter().copied().find(|&r| live(r)) {
                    Some(leader) => {
                        tracing::warn!(leader, isr = ?part.isr, "unclean leader election: a replica outside the ISR leads; records only the ISR had may be lost");
                        (leader, vec![leader])
                    }
                    None => (-1, target_isr),
                },
                None => (-1, target_isr),
            }
        }
    };
    let leader_change = (leader != part.leader).then_some(leader);
    let isr_change = (isr != part.isr).then_some(isr);
    (leader_change.is_some() || isr_change.is_some()).then_some((leader_change, isr_change))
}

/// The record applying an election's outcome.
pub(super) fn partition_change(
    topic_id: Uuid,
    partition_id: i32,
    (leader, isr): (Option<i32>, Option<Vec<i32>>),
) -> MetadataRecord {
    MetadataRecord::PartitionChange { topic_id, partition_id, leader, isr, replicas: None }
}

/// Whether a broker is registered and unfenced in `image`.
pub(super) fn is_live(image: &MetadataImage, broker_id: i32) -> bool {
    image.broker(broker_id).is_some_and(|b| !b.fenced)
}

/// The partitions an ElectLeaders names: `None` is every partition.
pub type ElectionTargets = Option<Vec<(String, Vec<i32>)>>;

/// Per topic, per partition, the outcome of an ElectLeaders.
pub type ElectionResults = Vec<(String, Vec<(i32, Result<(), ControllerError>)>)>;

impl QuorumController {
    /// The effective `unclean.leader.election.enable` of a topic: its own
    /// config, else the cluster-wide dynamic default, else this node's.
    pub(super) fn unclean_election_enabled(&self, image: &MetadataImage, topic: &str) -> bool {
        const KEY: &str = "unclean.leader.election.enable";
        image
            .topic_config(topic, KEY)
            .or_else(|| image.broker_configs.get("").and_then(|m| m.get(KEY)).map(String::as_str))
            .map_or(self.config.unclean_leader_election_enable, |v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The leader's side of [`ControllerOperations::elect_leaders`]
    /// (KRaft's `ReplicationControlManager.electLeaders`): for every
    /// partition named, or every partition when `targets` is `None` (whose
    /// answer then leaves out those needing no election).
    pub(super) async fn elect_leaders_local(
        &self,
        election: Election,
        targets: ElectionTargets,
    ) -> Result<ElectionResults, ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        let all = targets.is_none();
        let targets = targets.unwrap_or_else(|| {
            image.topics.values().map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect())).collect()
        });
        let mut records = Vec::new();
        let mut results: ElectionResults = Vec::new();
        // A partition named twice is elected once (one leader epoch bump).
        let mut elected = HashSet::new();
        for (topic, partitions) in targets {
            let mut outcomes = Vec::new();
            for partition in partitions {
                let outcome = if elected.contains(&(topic.clone(), partition)) {
                    Err(ControllerError::ElectionNotNeeded(format!(
                        "Leader election for topic partition {topic}-{partition} is already in this request"
                    )))
                } else {
                    elect_one(&image, &topic, partition, election)
                };
                if outcome.is_ok() {
                    elected.insert((topic.clone(), partition));
                }
                match outcome {
                    Ok(record) => {
                        records.push(record);
                        outcomes.push((partition, Ok(())));
                    }
                    Err(ControllerError::ElectionNotNeeded(_)) if all => {}
                    Err(e) => outcomes.push((partition, Err(e))),
                }
            }
            results.push((topic, outcomes));
        }
        let count = records.len();
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(MAX_RECORDS_PER_COMMIT));
            self.commit(&guard, records).await?;
            records = rest;
        }
        if count > 0 {
            tracing::info!(?election, partitions = count, "leaders elected");
        }
        Ok(results)
    }

    /// The preferred-leader elections the periodic rebalance would make:
    /// up to `limit` partitions whose preferred replica is a valid leader and does not lead.
    pub(super) fn imbalanced_partitions(image: &MetadataImage, limit: usize) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for topic in image.topics.values() {
            for (index, part) in topic.partitions.iter().enumerate() {
                if records.len() == limit {
                    return records;
                }
                let Some(&preferred) = part.replicas.first() else { continue };
                if part.leader == preferred || !part.isr.contains(&preferred) || !is_live(image, preferred) {
                    continue;
                }
                if let Some(change) = elect(part, part.isr.clone(), Election::Preferred, |r| is_live(image, r)) {
                    records.push(partition_change(topic.id, index as i32, change));
                }
            }
        }
        records
    }

    /// Moves leadership back to preferred replicas (Kafka's auto leader
    /// rebalance), at most [`MAX_ELECTIONS_PER_IMBALANCE`] partitions; returns how many.
    pub(super) async fn rebalance_leaders(&self) -> Result<usize, ControllerError> {
        let guard = self.lock().await?;
        let records = Self::imbalanced_partitions(&self.image(), MAX_ELECTIONS_PER_IMBALANCE);
        let count = records.len();
        if count > 0 {
            self.commit(&guard, records).await?;
            tracing::info!(partitions = count, "auto leader rebalance: leadership back to preferred replicas");
        }
        Ok(count)
    }
}

/// One partition's election for ElectLeaders: its record, or why none.
fn elect_one(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election: Election,
) -> Result<MetadataRecord, ControllerError> {
    let name = format!("{topic}-{partition}");
    let unknown = || ControllerError::UnknownTopicOrPartition(format!("No such partition as {name}"));
    let topic_image = image.topic(topic).ok_or_else(unknown)?;
    let part = topic_image.partition(partition).ok_or_else(unknown)?;
    let needed = match election {
        Election::Preferred => part.replicas.first() != Some(&part.leader),
        _ => part.leader < 0,
    };
    if !needed {
        return Err(ControllerError::ElectionNotNeeded(format!(
            "Leader election not needed for topic partition {name}"
        )));
    }
    match elect(part, part.isr.clone(), election, |r| is_live(image, r)) {
        Some(change) if change.0.is_some() => Ok(partition_change(topic_image.id, partition, change)),
        _ if election == Election::Preferred => Err(ControllerError::PreferredLeaderNotAvailable(format!(
            "Failed to elect leader for partition {name} under strategy PreferredReplicaPartitionLeaderElectionStrategy"
        ))),
        _ => Err(ControllerError::EligibleLeadersNotAvailable(format!(
            "Failed to elect leader for partition {name} under strategy UncleanLeaderElectionStrategy"
        ))),
    }
}

/// The active controller's auto leader rebalance: every
/// `leader.imbalance.check.interval.seconds` while this voter leads.
pub(super) async fn rebalance_leaders_periodically(controller: QuorumController) {
    let interval = controller.config.leader_imbalance_check_interval;
    loop {
        tokio::time::sleep(interval).await;
        if controller.raft.metrics().borrow().state != openraft::ServerState::Leader {
            continue;
        }
        loop {
            match controller.rebalance_leaders().await {
                Ok(MAX_ELECTIONS_PER_IMBALANCE) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "auto leader rebalance failed; retrying at the next check");
                    break;
                }
            }
        }
    }
}
