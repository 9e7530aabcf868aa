//! Metadata records: the entries of the replicated metadata log, named after
//! KRaft's records (`TopicRecord`, `PartitionRecord`, ...).
//!
//! Serialized as JSON objects tagged by `"type"`, e.g.
//! `{"type":"Topic","name":"t","topic_id":"..."}`. Records are only ever
//! added to this enum (never renamed or removed) so old logs keep replaying.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::Endpoint;

/// Config resource type code for topics (Kafka's `ConfigResource.Type.TOPIC`).
pub const CONFIG_RESOURCE_TOPIC: i8 = 2;
/// Config resource type code for brokers (Kafka's `ConfigResource.Type.BROKER`).
pub const CONFIG_RESOURCE_BROKER: i8 = 4;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// Sets the cluster id; written once, on the first start.
    ClusterId {
        /// 22-character base64url cluster id.
        cluster_id: String,
    },
    /// Registers (or re-registers) a broker, initially as given by `fenced`.
    RegisterBroker {
        /// Broker id (`node.id`).
        id: i32,
        /// Random id of this broker process incarnation.
        incarnation_id: Uuid,
        /// Advertised listeners.
        listeners: Vec<Endpoint>,
        /// Rack, if configured.
        rack: Option<String>,
        /// Whether the broker starts fenced.
        fenced: bool,
        /// Broker epoch: the log offset of this registration.
        epoch: i64,
    },
    /// Marks a registered broker unfenced (may lead and be in ISRs).
    UnfenceBroker {
        /// Broker id.
        id: i32,
        /// Must equal the broker's registered epoch.
        epoch: i64,
    },
    /// Marks a registered broker fenced.
    FenceBroker {
        /// Broker id.
        id: i32,
        /// Must equal the broker's registered epoch.
        epoch: i64,
    },
    /// Creates a topic (its partitions follow as `Partition` records).
    Topic {
        /// Topic name.
        name: String,
        /// Topic id.
        topic_id: Uuid,
    },
    /// Creates (or replaces) one partition of an existing topic. Partition ids
    /// of a topic are dense: a new partition's id equals the current count.
    Partition {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition_id: i32,
        /// Replica broker ids, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replicas.
        isr: Vec<i32>,
        /// Leader broker id, -1 if none.
        leader: i32,
        /// Leader epoch.
        leader_epoch: i32,
        /// Partition epoch (bumped on every change).
        partition_epoch: i32,
    },
    /// Changes a partition. A leader change bumps the leader epoch; every
    /// change bumps the partition epoch, as in KRaft.
    PartitionChange {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition_id: i32,
        /// New leader, if it changes.
        leader: Option<i32>,
        /// New ISR, if it changes.
        isr: Option<Vec<i32>>,
        /// New replica set, if it changes.
        replicas: Option<Vec<i32>>,
    },
    /// Sets a partition's ongoing reassignment (both lists empty: none), as
    /// KRaft's `adding_replicas`/`removing_replicas`. The replica set itself
    /// changes with the `PartitionChange` in the same log entry, which bumps
    /// the partition epoch; this record does not.
    PartitionReassignment {
        /// Owning topic.
        topic_id: Uuid,
        /// Partition index.
        partition_id: i32,
        /// Replicas being added (in the replica set, catching up).
        adding_replicas: Vec<i32>,
        /// Replicas being removed once the reassignment completes.
        removing_replicas: Vec<i32>,
    },
    /// Sets (`value: Some`) or deletes (`value: None`) one config.
    Config {
        /// 2 = topic, 4 = broker.
        resource_type: i8,
        /// Topic name, or broker id as text ("" = cluster default).
        resource_name: String,
        /// Config name.
        name: String,
        /// New value; `None` deletes the explicit setting.
        value: Option<String>,
    },
    /// Deletes a topic with its partitions and configs.
    RemoveTopic {
        /// The topic to remove.
        topic_id: Uuid,
    },
    /// Records a producer-id block handed to a broker: every id below
    /// `next_producer_id` has been allocated.
    ProducerIds {
        /// The broker that got the block.
        broker_id: i32,
        /// That broker's epoch.
        broker_epoch: i64,
        /// First id of the next unallocated block.
        next_producer_id: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let records = vec![
            MetadataRecord::ClusterId { cluster_id: "abc".into() },
            MetadataRecord::PartitionChange {
                topic_id: Uuid::from_u128(7),
                partition_id: 1,
                leader: Some(2),
                isr: None,
                replicas: None,
            },
            MetadataRecord::Config {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: None,
            },
        ];
        let json = serde_json::to_string(&records).unwrap_or_default();
        assert!(json.contains("\"type\":\"ClusterId\""));
        let back: Vec<MetadataRecord> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, records);
    }
}
