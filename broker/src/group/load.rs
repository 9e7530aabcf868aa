//! Loading: the coordinator's state is rebuilt by replaying
//! `__consumer_offsets` from its log start, the same records that changed it.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tracing::{info, warn};

use super::classic::{ClassicGroup, GroupState};
use super::consumer::ConsumerGroup;
use super::coordinator::{GroupCoordinator, GroupEntry, OFFSETS_TOPIC};
use super::records::{ConsumerRecord, GroupMetadataValue, OffsetValue, RecordKey};
use crate::broker::Broker;
use crate::replica::now_ms;

impl GroupCoordinator {
    /// Rebuilds groups and offsets from `__consumer_offsets` (at start).
    pub fn load(&self, broker: &Broker) {
        let Some(topic) = broker.image().topic(OFFSETS_TOPIC).cloned() else { return };
        let mut groups = self.lock();
        let (mut records_loaded, mut batches) = (0usize, 0usize);
        for index in 0..topic.partitions.len() as i32 {
            let Some(partition) = broker.replicas.get(OFFSETS_TOPIC, index) else { continue };
            let (mut offset, _) = partition.offsets();
            let end = partition.high_watermark();
            'partition: while offset < end {
                let read = match partition.read(offset, 8 << 20, true) {
                    Ok(read) if !read.records.is_empty() => read,
                    _ => break,
                };
                let records = read.records;
                for batch in weir_protocol::batch::batches(&records) {
                    let Ok((header, range)) = batch else {
                        warn!(partition = index, offset, "unreadable {OFFSETS_TOPIC} batch; loading stops here");
                        break 'partition;
                    };
                    // Advance by the batch, not its records: compaction can empty a batch.
                    offset = offset.max(header.last_offset() + 1);
                    batches += 1;
                    if header.is_control() {
                        continue;
                    }
                    let mut bytes = records.slice(range);
                    match RecordBatchDecoder::decode(&mut bytes) {
                        Ok(set) => {
                            for record in set.records {
                                records_loaded += 1;
                                Self::replay(&mut groups, record.key, record.value);
                            }
                        }
                        Err(e) => {
                            warn!(partition = index, offset, error = %e, "skipping an undecodable {OFFSETS_TOPIC} batch")
                        }
                    }
                }
            }
        }
        groups.retain(|_, e| e.group.state != GroupState::Dead);
        let (now, now_ms) = (Instant::now(), now_ms());
        for consumer in groups.values_mut().filter_map(|e| e.consumer.as_mut()) {
            consumer.loaded(&self.consumer_config, now, now_ms);
        }
        info!(groups = groups.len(), records = records_loaded, batches, "loaded groups from {OFFSETS_TOPIC}");
    }

    fn replay(groups: &mut HashMap<String, GroupEntry>, key: Option<Bytes>, value: Option<Bytes>) {
        let Some(key) = key.and_then(|k| RecordKey::decode(k).ok().flatten()) else { return };
        match key {
            RecordKey::Offset { group, topic, partition } => match value.map(OffsetValue::decode) {
                Some(Ok(v)) => {
                    Self::entry(groups, &group).offsets.insert((topic, partition), v);
                }
                Some(Err(e)) => warn!(group, error = %e, "skipping an unreadable offset record"),
                None => {
                    if let Some(entry) = groups.get_mut(&group) {
                        entry.offsets.remove(&(topic, partition));
                    }
                }
            },
            RecordKey::GroupMetadata { group } => match value.map(GroupMetadataValue::decode) {
                Some(Ok(v)) => {
                    let restored = ClassicGroup::restore(&group, v, Instant::now());
                    Self::entry(groups, &group).group = restored;
                }
                Some(Err(e)) => warn!(group, error = %e, "skipping an unreadable group record"),
                None => {
                    // The classic group goes; committed offsets have their own tombstones.
                    if let Some(entry) = groups.get_mut(&group) {
                        entry.group = ClassicGroup::new(&group, now_ms());
                    }
                    Self::forget_if_unused(groups, &group);
                }
            },
            RecordKey::ConsumerGroup { group, record } => {
                if record == ConsumerRecord::GroupEpoch && value.is_none() {
                    if let Some(entry) = groups.get_mut(&group) {
                        entry.consumer = None;
                    }
                    Self::forget_if_unused(groups, &group);
                    return;
                }
                let entry = Self::entry(groups, &group);
                let consumer = entry.consumer.get_or_insert_with(|| ConsumerGroup::new(&group, now_ms()));
                if let Err(e) = consumer.replay(record, value, Instant::now()) {
                    warn!(group, error = %e, "skipping an unreadable consumer group record");
                }
            }
        }
    }

    /// Drops a group left with no offsets, no classic record and no
    /// consumer group.
    fn forget_if_unused(groups: &mut HashMap<String, GroupEntry>, group: &str) {
        let unused = groups
            .get(group)
            .is_some_and(|e| e.offsets.is_empty() && e.consumer.is_none() && e.group.protocol_type.is_none());
        if unused {
            groups.remove(group);
        }
    }
}
