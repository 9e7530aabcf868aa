//! The metadata image: the immutable state obtained by replaying the
//! metadata log, and the [`ImageBuilder`] that replays records into it.
//!
//! Invariants (kept by [`ImageBuilder::replay`], the only way state changes):
//! - `topic_ids` maps exactly the ids of `topics` to their names;
//! - a topic's `partitions[i]` is partition `i` (ids are dense from 0);
//! - `topic_configs` / `broker_configs` never hold empty maps;
//! - `last_offset` is the offset of the last applied log entry (-1 if none).
//!
//! A published image is shared as `Arc<MetadataImage>`; topics are behind
//! their own `Arc` so cloning an image to build the next one is cheap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ControllerError;
use crate::records::{MetadataRecord, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};

/// A listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Kafka security protocol id (0 = PLAINTEXT, 1 = SSL, 2 = SASL_PLAINTEXT, 3 = SASL_SSL).
    pub security_protocol: i16,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Broker id.
    pub id: i32,
    /// Random id of the broker process incarnation.
    pub incarnation_id: Uuid,
    /// Advertised listeners.
    pub listeners: Vec<Endpoint>,
    /// Rack, if any.
    pub rack: Option<String>,
    /// Fenced brokers get no leaderships or new replicas.
    pub fenced: bool,
    /// Broker epoch (log offset of the registration).
    pub epoch: i64,
}

#[cfg(test)]
impl BrokerRegistration {
    /// An unfenced registration of broker `id`, listening on 127.0.0.1:9091+id.
    pub(crate) fn unfenced_for_test(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation_id: Uuid::new_v4(),
            listeners: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: u16::try_from(9091 + id).unwrap_or(9092),
                security_protocol: 0,
            }],
            rack: None,
            fenced: false,
            epoch: 0,
        }
    }
}

/// Replica state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Replica broker ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader, -1 if none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
    /// Replicas a reassignment adds (empty when none is in progress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment removes when it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionRegistration {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition will have once its reassignment completes
    /// (all of them when none is in progress), in assignment order.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing_replicas.contains(r)).collect()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partitions; index = partition id.
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    /// One partition by id.
    pub fn partition(&self, partition: i32) -> Option<&PartitionRegistration> {
        usize::try_from(partition).ok().and_then(|p| self.partitions.get(p))
    }

    /// Number of replicas of partition 0 (0 if the topic has no partitions).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// The cluster metadata at one log offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataImage {
    /// Cluster id, empty until the `ClusterId` record is applied.
    pub cluster_id: String,
    /// Offset of the last applied log entry, -1 if none.
    pub last_offset: i64,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// Topic names by id.
    pub topic_ids: HashMap<Uuid, String>,
    /// Explicitly set topic configs: topic name -> config -> value.
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Dynamic broker configs: "" = cluster default, else broker id as text.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Next unallocated producer id.
    pub next_producer_id: i64,
}

impl Default for MetadataImage {
    fn default() -> Self {
        MetadataImage {
            cluster_id: String::new(),
            last_offset: -1,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_ids: HashMap::new(),
            topic_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            next_producer_id: 0,
        }
    }
}

impl MetadataImage {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_ids.get(&id).and_then(|name| self.topics.get(name))
    }

    /// A registered broker.
    pub fn broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Ids of unfenced brokers, ascending.
    pub fn unfenced_broker_ids(&self) -> Vec<i32> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect()
    }

    /// The explicitly set configs of a topic (empty map if none).
    pub fn topic_config_overrides(&self, topic: &str) -> BTreeMap<String, String> {
        self.topic_configs.get(topic).cloned().unwrap_or_default()
    }

    /// One explicitly set topic config.
    pub fn topic_config(&self, topic: &str, name: &str) -> Option<&str> {
        self.topic_configs.get(topic)?.get(name).map(String::as_str)
    }

    /// One dynamic broker config: the per-broker value, else the cluster default.
    pub fn broker_config(&self, broker_id: i32, name: &str) -> Option<&str> {
        self.broker_configs
            .get(&broker_id.to_string())
            .and_then(|m| m.get(name))
            .or_else(|| self.broker_configs.get("").and_then(|m| m.get(name)))
            .map(String::as_str)
    }

    /// Total number of partitions of all topics.
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }
}

/// Applies metadata records to an image. Loading the log and committing a
/// new entry both go through [`ImageBuilder::replay`], so a reloaded image is
/// identical to the one that was live before shutdown.
#[derive(Debug, Clone, Default)]
pub struct ImageBuilder {
    image: MetadataImage,
}

fn replay_error(msg: String) -> ControllerError {
    ControllerError::Internal(format!("cannot apply metadata record: {msg}"))
}

impl ImageBuilder {
    /// A builder starting from the empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from an existing image.
    pub fn from_image(image: MetadataImage) -> Self {
        ImageBuilder { image }
    }

    /// The image built so far.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Applies all records of the log entry at `offset`, then sets `last_offset`.
    pub fn replay_entry(&mut self, offset: i64, records: &[MetadataRecord]) -> Result<(), ControllerError> {
        for record in records {
            self.replay(record)?;
        }
        self.image.last_offset = offset;
        Ok(())
    }

    /// Applies a committed log entry whole, or, when its records do not fit
    /// the image, not at all (every node skips such an entry alike, since
    /// every node applies the same log); `last_offset` becomes `offset`
    /// either way. Returns why an entry was skipped.
    pub fn apply_committed(&mut self, offset: i64, records: &[MetadataRecord]) -> Result<(), ControllerError> {
        let mut scratch = self.clone();
        match scratch.replay_entry(offset, records) {
            Ok(()) => {
                *self = scratch;
                Ok(())
            }
            Err(e) => {
                self.image.last_offset = offset;
                Err(e)
            }
        }
    }

    /// Sets `last_offset` for a log entry that carries no records (a Raft
    /// leader's blank entry, a membership change).
    pub fn set_last_offset(&mut self, offset: i64) {
        self.image.last_offset = offset;
    }

    /// Finishes building.
    pub fn build(self) -> MetadataImage {
        self.image
    }

    /// Applies one record. Fails (leaving the builder partly updated) if the
    /// record does not fit the current state, e.g. a partition of an unknown
    /// topic; callers replay onto a scratch copy before committing.
    pub fn replay(&mut self, record: &MetadataRecord) -> Result<(), ControllerError> {
        let img = &mut self.image;
        match record {
            MetadataRecord::ClusterId { cluster_id } => img.cluster_id = cluster_id.clone(),
            MetadataRecord::RegisterBroker { id, incarnation_id, listeners, rack, fenced, epoch } => {
                img.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        incarnation_id: *incarnation_id,
                        listeners: listeners.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                        epoch: *epoch,
                    },
                );
            }
            MetadataRecord::UnfenceBroker { id, epoch } | MetadataRecord::FenceBroker { id, epoch } => {
                let broker = img
                    .brokers
                    .get_mut(id)
                    .filter(|b| b.epoch == *epoch)
                    .ok_or_else(|| replay_error(format!("no broker {id} with epoch {epoch}")))?;
                broker.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::Topic { name, topic_id } => {
                if img.topics.contains_key(name) || img.topic_ids.contains_key(topic_id) || topic_id.is_nil() {
                    return Err(replay_error(format!("topic {name} / id {topic_id} already exists or is invalid")));
                }
                img.topic_ids.insert(*topic_id, name.clone());
                img.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage { name: name.clone(), id: *topic_id, partitions: Vec::new() }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition_id,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let topic = topic_mut(img, *topic_id)?;
                let registration = PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                };
                let index = usize::try_from(*partition_id)
                    .map_err(|_| replay_error(format!("negative partition id {partition_id}")))?;
                if index < topic.partitions.len() {
                    topic.partitions[index] = registration;
                } else if index == topic.partitions.len() {
                    topic.partitions.push(registration);
                } else {
                    return Err(replay_error(format!(
                        "partition {partition_id} of {} would leave a gap after {} partitions",
                        topic.name,
                        topic.partitions.len()
                    )));
                }
            }
            MetadataRecord::PartitionChange { topic_id, partition_id, leader, isr, replicas } => {
                let partition = partition_mut(img, *topic_id, *partition_id)?;
                if let Some(leader) = leader {
                    partition.leader = *leader;
                    partition.leader_epoch += 1;
                }
                if let Some(isr) = isr {
                    partition.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    partition.replicas = replicas.clone();
                }
                partition.partition_epoch += 1;
            }
            MetadataRecord::PartitionReassignment { topic_id, partition_id, adding_replicas, removing_replicas } => {
                let partition = partition_mut(img, *topic_id, *partition_id)?;
                partition.adding_replicas = adding_replicas.clone();
                partition.removing_replicas = removing_replicas.clone();
            }
            MetadataRecord::Config { resource_type, resource_name, name, value } => {
                let map = match *resource_type {
                    CONFIG_RESOURCE_TOPIC => &mut img.topic_configs,
                    CONFIG_RESOURCE_BROKER => &mut img.broker_configs,
                    other => return Err(replay_error(format!("unknown config resource type {other}"))),
                };
                match value {
                    Some(v) => {
                        map.entry(resource_name.clone()).or_default().insert(name.clone(), v.clone());
                    }
                    None => {
                        if let Some(configs) = map.get_mut(resource_name) {
                            configs.remove(name);
                            if configs.is_empty() {
                                map.remove(resource_name);
                            }
                        }
                    }
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = img
                    .topic_ids
                    .remove(topic_id)
                    .ok_or_else(|| replay_error(format!("no topic with id {topic_id} to remove")))?;
                img.topics.remove(&name);
                img.topic_configs.remove(&name);
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                if *next_producer_id < img.next_producer_id {
                    return Err(replay_error(format!(
                        "producer id {next_producer_id} is below the current next id {}",
                        img.next_producer_id
                    )));
                }
                img.next_producer_id = *next_producer_id;
            }
        }
        Ok(())
    }
}

fn topic_mut(img: &mut MetadataImage, topic_id: Uuid) -> Result<&mut TopicImage, ControllerError> {
    let name = img.topic_ids.get(&topic_id).ok_or_else(|| replay_error(format!("no topic with id {topic_id}")))?;
    let topic = img.topics.get_mut(name).ok_or_else(|| replay_error(format!("topic id {topic_id} has no topic")))?;
    Ok(Arc::make_mut(topic))
}

fn partition_mut(
    img: &mut MetadataImage,
    topic_id: Uuid,
    partition_id: i32,
) -> Result<&mut PartitionRegistration, ControllerError> {
    let topic = topic_mut(img, topic_id)?;
    let name = topic.name.clone();
    usize::try_from(partition_id)
        .ok()
        .and_then(|p| topic.partitions.get_mut(p))
        .ok_or_else(|| replay_error(format!("no partition {name}-{partition_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic_id: Uuid, partition_id: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition_id,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    #[test]
    fn replay_topics_partitions_changes() {
        let id = Uuid::from_u128(42);
        let mut b = ImageBuilder::new();
        b.replay_entry(0, &[MetadataRecord::Topic { name: "t".into(), topic_id: id }, part(id, 0), part(id, 1)])
            .unwrap();
        assert!(b.replay(&part(id, 3)).is_err());
        b.replay(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition_id: 1,
            leader: Some(2),
            isr: Some(vec![2]),
            replicas: None,
        })
        .unwrap();
        b.replay(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition_id: 0,
            leader: None,
            isr: Some(vec![1]),
            replicas: None,
        })
        .unwrap();
        let img = b.image().clone();
        let t = img.topic_by_id(id).unwrap();
        assert_eq!(img.last_offset, 0);
        assert_eq!((t.partitions[1].leader, t.partitions[1].leader_epoch, t.partitions[1].partition_epoch), (2, 1, 1));
        assert_eq!(
            (t.partitions[0].leader_epoch, t.partitions[0].partition_epoch, t.partitions[0].isr.clone()),
            (0, 1, vec![1])
        );
        b.replay(&MetadataRecord::Config {
            resource_type: 2,
            resource_name: "t".into(),
            name: "a".into(),
            value: Some("1".into()),
        })
        .unwrap();
        assert_eq!(b.image().topic_config("t", "a"), Some("1"));
        b.replay(&MetadataRecord::RemoveTopic { topic_id: id }).unwrap();
        assert!(b.image().topics.is_empty() && b.image().topic_ids.is_empty() && b.image().topic_configs.is_empty());
        assert!(b.replay(&MetadataRecord::RemoveTopic { topic_id: id }).is_err());
        assert!(b.replay(&MetadataRecord::UnfenceBroker { id: 1, epoch: 0 }).is_err());
    }
}
