//! Metadata snapshots: a [`MetadataImage`] written as the records that
//! rebuild it, as KRaft writes its snapshots (`MetadataImage.write` into an
//! `ImageWriter`), so a snapshot replays through the same
//! [`ImageBuilder::replay`] as the log and can never drift from it.
//!
//! Encoding: a JSON object `{"version":1,"records":[...]}`; records use the
//! log's own JSON form ([`MetadataRecord`]). A snapshot of a later version is
//! refused rather than half-read.

use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::image::{ImageBuilder, MetadataImage};
use crate::records::{MetadataRecord, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    records: Vec<MetadataRecord>,
}

/// The records that rebuild `image` from the empty image, in replay order:
/// cluster id, brokers, topics each followed by their partitions, configs,
/// and the producer-id high water mark.
pub fn image_records(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::with_capacity(2 + image.brokers.len() + image.topics.len() + image.partition_count());
    if !image.cluster_id.is_empty() {
        records.push(MetadataRecord::ClusterId { cluster_id: image.cluster_id.clone() });
    }
    for broker in image.brokers.values() {
        records.push(MetadataRecord::RegisterBroker {
            id: broker.id,
            incarnation_id: broker.incarnation_id,
            listeners: broker.listeners.clone(),
            rack: broker.rack.clone(),
            fenced: broker.fenced,
            epoch: broker.epoch,
        });
    }
    for topic in image.topics.values() {
        records.push(MetadataRecord::Topic { name: topic.name.clone(), topic_id: topic.id });
        for (index, partition) in topic.partitions.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic_id: topic.id,
                // Partition ids are dense and bounded by MAX_PARTITIONS_PER_REQUEST per change.
                partition_id: i32::try_from(index).unwrap_or(i32::MAX),
                replicas: partition.replicas.clone(),
                isr: partition.isr.clone(),
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
                partition_epoch: partition.partition_epoch,
            });
            if partition.is_reassigning() {
                records.push(MetadataRecord::PartitionReassignment {
                    topic_id: topic.id,
                    partition_id: i32::try_from(index).unwrap_or(i32::MAX),
                    adding_replicas: partition.adding_replicas.clone(),
                    removing_replicas: partition.removing_replicas.clone(),
                });
            }
        }
    }
    let configs = [(CONFIG_RESOURCE_TOPIC, &image.topic_configs), (CONFIG_RESOURCE_BROKER, &image.broker_configs)];
    for (resource_type, by_resource) in configs {
        for (resource_name, values) in by_resource {
            for (name, value) in values {
                records.push(MetadataRecord::Config {
                    resource_type,
                    resource_name: resource_name.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
    }
    if image.next_producer_id > 0 {
        records.push(MetadataRecord::ProducerIds {
            broker_id: -1,
            broker_epoch: -1,
            next_producer_id: image.next_producer_id,
        });
    }
    records
}

/// Encodes `image` as snapshot bytes.
pub fn encode_snapshot(image: &MetadataImage) -> Result<Vec<u8>, ControllerError> {
    let file = SnapshotFile { version: SNAPSHOT_VERSION, records: image_records(image) };
    serde_json::to_vec(&file).map_err(|e| ControllerError::Internal(format!("cannot encode metadata snapshot: {e}")))
}

/// Decodes snapshot bytes into the image they describe, with `last_offset`
/// set to the log offset the snapshot covers.
pub fn decode_snapshot(bytes: &[u8], last_offset: i64) -> Result<MetadataImage, ControllerError> {
    let file: SnapshotFile = serde_json::from_slice(bytes)
        .map_err(|e| ControllerError::Storage(format!("metadata snapshot does not decode: {e}")))?;
    if file.version != SNAPSHOT_VERSION {
        return Err(ControllerError::Storage(format!(
            "metadata snapshot version {} is not supported (this build reads version {SNAPSHOT_VERSION})",
            file.version
        )));
    }
    let mut builder = ImageBuilder::new();
    builder.replay_entry(last_offset, &file.records)?;
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::image::Endpoint;

    /// An image touched by every kind of record, including changes that
    /// leave state behind (fenced broker, moved leader, deleted config).
    fn busy_image() -> MetadataImage {
        let topic = Uuid::from_u128(1);
        let gone = Uuid::from_u128(2);
        let mut records = vec![
            MetadataRecord::ClusterId { cluster_id: "Zm9vYmFyYmF6cXV4MTIzNA".into() },
            MetadataRecord::RegisterBroker {
                id: 1,
                incarnation_id: Uuid::from_u128(11),
                listeners: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                    security_protocol: 0,
                }],
                rack: Some("r1".into()),
                fenced: true,
                epoch: 3,
            },
            MetadataRecord::RegisterBroker {
                id: 2,
                incarnation_id: Uuid::from_u128(12),
                listeners: vec![],
                rack: None,
                fenced: true,
                epoch: 4,
            },
            MetadataRecord::UnfenceBroker { id: 1, epoch: 3 },
            MetadataRecord::Topic { name: "orders".into(), topic_id: topic },
            MetadataRecord::Topic { name: "gone".into(), topic_id: gone },
        ];
        for partition_id in 0..3 {
            records.push(MetadataRecord::Partition {
                topic_id: topic,
                partition_id,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        records.extend([
            MetadataRecord::PartitionChange {
                topic_id: topic,
                partition_id: 2,
                leader: Some(2),
                isr: Some(vec![2]),
                replicas: None,
            },
            // Partition 1 moves from [1, 2] to [2, 3].
            MetadataRecord::PartitionChange {
                topic_id: topic,
                partition_id: 1,
                leader: None,
                isr: None,
                replicas: Some(vec![2, 3, 1]),
            },
            MetadataRecord::PartitionReassignment {
                topic_id: topic,
                partition_id: 1,
                adding_replicas: vec![3],
                removing_replicas: vec![1],
            },
            MetadataRecord::Config {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "orders".into(),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
            MetadataRecord::Config {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "orders".into(),
                name: "cleanup.policy".into(),
                value: Some("compact".into()),
            },
            MetadataRecord::Config {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "orders".into(),
                name: "cleanup.policy".into(),
                value: None,
            },
            MetadataRecord::Config {
                resource_type: CONFIG_RESOURCE_BROKER,
                resource_name: String::new(),
                name: "log.retention.ms".into(),
                value: Some("5".into()),
            },
            MetadataRecord::RemoveTopic { topic_id: gone },
            MetadataRecord::ProducerIds { broker_id: 1, broker_epoch: 3, next_producer_id: 2000 },
        ]);
        let mut builder = ImageBuilder::new();
        builder.replay_entry(41, &records).unwrap();
        builder.build()
    }

    #[test]
    fn a_snapshot_rebuilds_the_image_it_was_taken_from() {
        let image = busy_image();
        let bytes = encode_snapshot(&image).unwrap();
        let back = decode_snapshot(&bytes, 41).unwrap();
        assert_eq!(back, image);
        assert_eq!(back.topic("orders").unwrap().partitions[2].leader_epoch, 1);
        assert!(back.broker(2).unwrap().fenced && !back.broker(1).unwrap().fenced);

        let empty = MetadataImage::default();
        assert_eq!(decode_snapshot(&encode_snapshot(&empty).unwrap(), -1).unwrap(), empty);
    }

    #[test]
    fn damaged_or_newer_snapshots_are_refused() {
        let bytes = encode_snapshot(&busy_image()).unwrap();
        assert!(decode_snapshot(&bytes[..bytes.len() / 2], 0).is_err());
        let newer = String::from_utf8(bytes).unwrap().replacen("\"version\":1", "\"version\":2", 1);
        let err = decode_snapshot(newer.as_bytes(), 0).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
