//! Loading and unloading: the coordinator owns the groups of the
//! `__consumer_offsets` partitions this broker leads, as Kafka's does.
//!
//! When this broker becomes the leader of one (or leads it in a new leader
//! epoch), the partition is *loading*: its groups are dropped from memory and
//! rebuilt by replaying the partition from its log start to its log end (the
//! records that changed them), then it is *loaded*. When the broker stops
//! leading it, its groups are dropped. Requests for a group of a partition
//! being loaded get COORDINATOR_LOAD_IN_PROGRESS, for one not led here
//! NOT_COORDINATOR ([`GroupCoordinator::gate`]); clients then look the
//! coordinator up again. Loading runs where the metadata is applied, off the
//! async runtime.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tracing::{info, warn};
use weir_controller::MetadataImage;
use weir_protocol::ErrorCode;

use super::classic::{ClassicGroup, GroupState};
use super::consumer::ConsumerGroup;
use super::coordinator::{GroupCoordinator, GroupEntry, OFFSETS_TOPIC};
use super::records::{partition_for, ConsumerRecord, GroupMetadataValue, OffsetValue, RecordKey};
use crate::broker::Broker;
use crate::replica::{now_ms, Partition};

/// Where this broker stands with one `__consumer_offsets` partition it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    /// Its groups are being replayed.
    Loading {
        /// The leader epoch the load is for.
        leader_epoch: i32,
    },
    /// Its groups are in memory and served here.
    Loaded {
        /// The leader epoch it was loaded in.
        leader_epoch: i32,
    },
}

impl Ownership {
    fn leader_epoch(self) -> i32 {
        match self {
            Ownership::Loading { leader_epoch } | Ownership::Loaded { leader_epoch } => leader_epoch,
        }
    }
}

impl GroupCoordinator {
    /// Whether requests for `group_id` are served here: NOT_COORDINATOR when
    /// this broker does not lead the group's partition (or the topic does not
    /// exist yet), COORDINATOR_LOAD_IN_PROGRESS while it is being loaded,
    /// which includes the moment between a metadata image making this broker
    /// the leader (FindCoordinator already points here) and the load starting.
    pub fn gate(&self, group_id: &str) -> Result<(), ErrorCode> {
        let count = match self.offsets_partition_count() {
            0 => self.images.borrow().topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as i32),
            count => count,
        };
        if count <= 0 {
            return Err(ErrorCode::NotCoordinator);
        }
        let index = partition_for(group_id, count);
        match self.ownership().get(&index) {
            Some(Ownership::Loaded { .. }) => Ok(()),
            Some(Ownership::Loading { .. }) => Err(ErrorCode::CoordinatorLoadInProgress),
            None if self.leads_in_image(index) => Err(ErrorCode::CoordinatorLoadInProgress),
            None => Err(ErrorCode::NotCoordinator),
        }
    }

    /// Follows the leadership of the `__consumer_offsets` partitions in
    /// `image` (applied to the replicas first): loads those this broker now
    /// leads, unloads those it no longer leads. Blocking: reads the log.
    pub fn follow_leadership(&self, broker: &Broker, image: &MetadataImage) {
        let _one_at_a_time = self.leadership_lock();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else { return };
        self.set_offsets_partition_count(topic.partitions.len() as i32);
        for index in 0..topic.partitions.len() as i32 {
            let led = broker.replicas.get(OFFSETS_TOPIC, index).filter(|p| p.is_leader());
            let current = self.ownership().get(&index).copied();
            match (led, current) {
                (Some(partition), current) if current.is_none_or(|o| o.leader_epoch() != partition.leader_epoch()) => {
                    self.load_partition(&partition, topic.partitions.len() as i32);
                }
                (None, Some(_)) => {
                    self.ownership().remove(&index);
                    let dropped = self.unload(index, topic.partitions.len() as i32);
                    info!(
                        partition = index,
                        groups = dropped,
                        "no longer the coordinator of {OFFSETS_TOPIC} partition; groups unloaded"
                    );
                }
                _ => {}
            }
        }
    }

    /// Waits until everything written so far to `group_id`'s partition is
    /// replicated to its ISR (`offsets.commit.timeout.ms`, 5 s by default),
    /// answering a failure with the error Kafka's coordinator maps it to:
    /// NOT_COORDINATOR when leadership moved, COORDINATOR_NOT_AVAILABLE on a
    /// timeout or too small an ISR.
    pub async fn await_replicated(&self, broker: &Broker, group_id: &str) -> Result<(), ErrorCode> {
        let count = self.offsets_partition_count();
        let partition = broker
            .replicas
            .get(OFFSETS_TOPIC, partition_for(group_id, count.max(1)))
            .ok_or(ErrorCode::NotCoordinator)?;
        let timeout = broker.config.raw.get("offsets.commit.timeout.ms").and_then(|v| v.trim().parse().ok());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout.unwrap_or(5_000u64));
        let (_, written) = partition.offsets();
        match partition.wait_for_high_watermark(written, deadline).await {
            Ok(()) if (partition.isr_size() as i32) < partition.min_insync_replicas() => {
                Err(ErrorCode::CoordinatorNotAvailable)
            }
            Ok(()) => Ok(()),
            Err(ErrorCode::NotLeaderOrFollower) => Err(ErrorCode::NotCoordinator),
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Drops the groups of partition `index`; how many.
    fn unload(&self, index: i32, count: i32) -> usize {
        let mut groups = self.lock();
        let before = groups.len();
        groups.retain(|group_id, _| partition_for(group_id, count) != index);
        before - groups.len()
    }

    /// Loads one partition this broker leads (see the module docs).
    fn load_partition(&self, partition: &Partition, count: i32) {
        let index = partition.index;
        let leader_epoch = partition.leader_epoch();
        self.ownership().insert(index, Ownership::Loading { leader_epoch });
        self.unload(index, count);
        let started = Instant::now();
        let mut loaded: HashMap<String, GroupEntry> = HashMap::new();
        let (mut records_loaded, mut batches) = (0usize, 0usize);
        let (mut offset, end) = partition.offsets();
        'partition: while offset < end {
            let read = match partition.read_written(offset, 8 << 20) {
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
                            Self::replay(&mut loaded, record.offset, record.key, record.value);
                        }
                    }
                    Err(e) => {
                        warn!(partition = index, offset, error = %e, "skipping an undecodable {OFFSETS_TOPIC} batch")
                    }
                }
            }
        }
        loaded.retain(|_, e| e.group.state != GroupState::Dead);
        let high_watermark = partition.high_watermark();
        for entry in loaded.values_mut() {
            entry.offsets.replicated_up_to(high_watermark);
        }
        let (now, now_ms) = (Instant::now(), now_ms());
        for consumer in loaded.values_mut().filter_map(|e| e.consumer.as_mut()) {
            consumer.loaded(&self.consumer_config, now, now_ms);
        }
        let group_count = loaded.len();
        let still_ours = self.ownership().get(&index) == Some(&Ownership::Loading { leader_epoch });
        if still_ours {
            self.lock().extend(loaded);
            self.ownership().insert(index, Ownership::Loaded { leader_epoch });
        }
        info!(
            partition = index,
            leader_epoch,
            groups = group_count,
            records = records_loaded,
            batches,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded groups from {OFFSETS_TOPIC}"
        );
    }

    /// Applies the record at `record_offset`. Offsets are pending until
    /// the load is done: those past the high watermark stay so.
    fn replay(groups: &mut HashMap<String, GroupEntry>, record_offset: i64, key: Option<Bytes>, value: Option<Bytes>) {
        let Some(key) = key.and_then(|k| RecordKey::decode(k).ok().flatten()) else { return };
        match key {
            RecordKey::Offset { group, topic, partition } => match value.map(OffsetValue::decode) {
                Some(Ok(v)) => {
                    Self::entry(groups, &group).offsets.insert_pending((topic, partition), record_offset, v);
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
