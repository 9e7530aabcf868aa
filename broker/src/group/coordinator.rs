//! The group coordinator: classic groups and their committed offsets, kept
//! in the compacted internal topic `__consumer_offsets`.
//!
//! A group lives in partition `abs(javaHash(group_id)) % partitions` of that
//! topic. Every change is written there first (commits are answered only
//! after the append, with the durability of any acks=-1 produce) and applied
//! to memory after, so loading the topic at start rebuilds the same state:
//! state changes through replay only. A failed write is answered to the
//! caller (its error code), with one exception taken from Kafka
//! (`GroupCoordinator.onCompleteJoin`, `GroupMetadataManager` "Failed to
//! write empty metadata"): a classic group that became Empty because its
//! last members left or expired keeps that state in memory and the failure
//! is logged at warn, since no member is left to answer and a reload of the
//! previous generation only lets its departed members time out. This broker
//! leads every partition of a single-node cluster, so it coordinates every
//! group.
//!
//! Locking: one mutex over all groups. Appends happen under it; they are
//! page-cache writes, and holding it keeps a group's records in the order
//! its state changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use tokio::sync::watch;
use tracing::{info, warn};
use weir_controller::{CreateTopic, MetadataImage};
use weir_protocol::ErrorCode;

use super::classic::{
    ClassicGroup, Effects, GroupConfig, GroupState, JoinRequest, JoinResponse, Reply, SyncRequest, SyncResponse,
};
use super::consumer::{ConsumerGroup, ConsumerGroupConfig};
use super::load::Ownership;
use super::offsets::GroupOffsets;
use super::records::{partition_for, GroupMetadataValue, MemberValue, OffsetValue, RecordKey};
use crate::broker::Broker;
use crate::replica::{now_ms, off_runtime, plain_record};
use weir_controller::ControllerOperations;

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A group and its committed offsets.
///
/// A group id names a classic group or, once a member joined it with
/// ConsumerGroupHeartbeat, a KIP-848 consumer group: `consumer` is set then
/// and the classic group stays empty. An empty group of either kind turns
/// into the other when a member of the other protocol joins, as in Kafka.
pub(super) struct GroupEntry {
    pub(super) group: ClassicGroup,
    pub(super) consumer: Option<ConsumerGroup>,
    pub(super) offsets: GroupOffsets,
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
    /// Leader epoch, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
}

/// Who commits: the member fields of an OffsetCommit.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    /// Member id, empty for a standalone commit.
    pub member_id: &'a str,
    /// Static member's instance id.
    pub instance: Option<&'a str>,
    /// Generation (classic) or member epoch (consumer group); -1 standalone.
    pub generation_id: i32,
    /// The OffsetCommit version (a consumer group member needs v9+).
    pub api_version: i16,
}

/// A group as ListGroups and DescribeGroups show it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// Group id.
    pub group_id: String,
    /// State name.
    pub state: &'static str,
    /// Protocol type (`consumer` for a KIP-848 group).
    pub protocol_type: String,
    /// `classic` or `consumer`.
    pub group_type: &'static str,
    /// Chosen protocol.
    pub protocol: String,
    /// Members: (member id, instance id, client id, client host, metadata, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The coordinator of every group on this broker.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, GroupEntry>>,
    /// The `__consumer_offsets` partitions this broker leads, by index (see `load.rs`).
    ownership: Mutex<HashMap<i32, Ownership>>,
    /// How many partitions `__consumer_offsets` has (0 before it exists).
    offsets_partitions: AtomicI32,
    /// Serializes loads and unloads.
    leadership: Mutex<()>,
    /// The metadata images this broker applies: a partition the latest one
    /// says this broker leads is about to be loaded (see `gate`).
    pub(super) images: watch::Receiver<Arc<MetadataImage>>,
    node_id: i32,
    pub(super) config: GroupConfig,
    pub(super) consumer_config: ConsumerGroupConfig,
}

fn request_error<T>(e: ErrorCode) -> Result<T, ErrorCode> {
    Err(e)
}

impl GroupCoordinator {
    /// A coordinator with the broker's group settings, following the
    /// leadership in `images`.
    pub fn new(broker: &crate::config::BrokerConfig, images: watch::Receiver<Arc<MetadataImage>>) -> GroupCoordinator {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            ownership: Mutex::new(HashMap::new()),
            offsets_partitions: AtomicI32::new(0),
            leadership: Mutex::new(()),
            images,
            node_id: broker.node_id,
            config: GroupConfig {
                min_session_timeout: Duration::from_millis(broker.group_min_session_timeout_ms),
                max_session_timeout: Duration::from_millis(broker.group_max_session_timeout_ms),
                initial_rebalance_delay: Duration::from_millis(broker.group_initial_rebalance_delay_ms),
                max_size: broker.group_max_size,
            },
            consumer_config: ConsumerGroupConfig {
                heartbeat_interval: Duration::from_millis(broker.group_consumer_heartbeat_interval_ms),
                session_timeout: Duration::from_millis(broker.group_consumer_session_timeout_ms),
                max_size: broker.group_consumer_max_size,
                assignors: broker.group_consumer_assignors.clone(),
                upgrade: broker.group_consumer_migration.0,
                downgrade: broker.group_consumer_migration.1,
            },
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupEntry>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn ownership(&self) -> MutexGuard<'_, HashMap<i32, Ownership>> {
        self.ownership.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn leadership_lock(&self) -> MutexGuard<'_, ()> {
        self.leadership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the latest metadata image makes this broker the leader of
    /// `__consumer_offsets` partition `index`, loaded here or not yet.
    pub(super) fn leads_in_image(&self, index: i32) -> bool {
        let image = self.images.borrow();
        image
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(index as usize))
            .is_some_and(|p| p.leader == self.node_id)
    }

    pub(super) fn offsets_partition_count(&self) -> i32 {
        self.offsets_partitions.load(Ordering::Acquire)
    }

    pub(super) fn set_offsets_partition_count(&self, count: i32) {
        self.offsets_partitions.store(count, Ordering::Release);
    }

    /// Creates `__consumer_offsets` if it does not exist yet (compacted, with
    /// `offsets.topic.num.partitions` partitions), as Kafka does on the first
    /// FindCoordinator for a group.
    pub async fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), ErrorCode> {
        if broker.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let live = broker.image().unfenced_broker_ids().len().max(1) as i16;
        let create = CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: broker.config.offsets_topic_num_partitions,
            replication_factor: broker.config.offsets_topic_replication_factor.clamp(1, live),
            assignments: Vec::new(),
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                ("compression.type".into(), Some("producer".into())),
                ("segment.bytes".into(), Some(broker.config.offsets_topic_segment_bytes.to_string())),
            ],
        };
        let result = broker.controller.create_topics(vec![create], false).await.into_iter().next();
        broker.metadata_changed();
        match result {
            Some(Ok(_)) => {
                info!(partitions = broker.config.offsets_topic_num_partitions, "created {OFFSETS_TOPIC}");
                Ok(())
            }
            Some(Err(e)) if e.error_code() == ErrorCode::TopicAlreadyExists.code() => Ok(()),
            Some(Err(e)) => {
                warn!(error = %e, "could not create {OFFSETS_TOPIC}");
                Err(ErrorCode::CoordinatorNotAvailable)
            }
            None => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Appends records for `group` to its `__consumer_offsets` partition;
    /// the offset of the last one.
    pub(super) fn write(
        &self,
        broker: &Broker,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<i64, ErrorCode> {
        let partitions = broker
            .image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let partition = broker
            .replicas
            .get(OFFSETS_TOPIC, partition_for(group, partitions))
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let now = now_ms();
        let records: Vec<Record> =
            records.into_iter().enumerate().map(|(i, (key, value))| plain_record(i, now, Some(key), value)).collect();
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            &records,
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .map_err(|e| {
            warn!(error = %e, "could not encode a {OFFSETS_TOPIC} batch");
            ErrorCode::UnknownServerError
        })?;
        let appended = off_runtime(|| partition.append(&batch.freeze(), -1, now)).map_err(|rejected| {
            warn!(group, error = ?rejected.code, message = %rejected.message, "could not write to {OFFSETS_TOPIC}");
            match rejected.code {
                ErrorCode::UnknownTopicOrPartition | ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                _ => ErrorCode::CoordinatorNotAvailable,
            }
        })?;
        Ok(appended.last_offset)
    }

    pub(super) fn group_record(group: &ClassicGroup) -> (Bytes, Option<Bytes>) {
        let protocol = group.protocol_name.clone();
        let value = GroupMetadataValue {
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            generation: group.generation_id,
            protocol: protocol.clone(),
            leader: group.leader_id.clone(),
            current_state_timestamp: group.state_timestamp_ms,
            members: group
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: protocol
                        .as_deref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, meta)| meta.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        (RecordKey::GroupMetadata { group: group.group_id.clone() }.encode(), Some(value.encode()))
    }

    /// Writes what a transition asked for.
    fn apply_effects(&self, broker: &Broker, entry: &mut GroupEntry, effects: Effects, now: Instant) {
        if effects.persist_assignment {
            let record = Self::group_record(&entry.group);
            let result = self.write(broker, &entry.group.group_id.clone(), vec![record]).err();
            entry.group.complete_sync(result, &self.config, now, now_ms());
        } else if effects.persist_state {
            // The group became Empty (its last members left or expired); the
            // state machine has already let them go and answered their
            // waiters, so there is nothing to undo. As Kafka does, a failed
            // write is only logged: until the next rebalance writes again, a
            // reload brings back the previous generation, whose members have
            // gone and simply time out.
            let record = Self::group_record(&entry.group);
            if let Err(e) = self.write(broker, &entry.group.group_id.clone(), vec![record]) {
                warn!(
                    group = %entry.group.group_id,
                    error = ?e,
                    "failed to write the empty group's metadata to {OFFSETS_TOPIC}; the group stays empty in memory"
                );
            }
        }
    }

    /// JoinGroup.
    pub async fn join(&self, broker: &Broker, group_id: &str, request: JoinRequest) -> JoinResponse {
        let error = |e| JoinResponse {
            error: Some(e),
            generation_id: -1,
            member_id: request.member_id.clone(),
            ..Default::default()
        };
        if group_id.is_empty() {
            return error(ErrorCode::InvalidGroupId);
        }
        if let Err(e) = self.ensure_offsets_topic(broker).await {
            return error(e);
        }
        if let Err(e) = self.gate(group_id) {
            return error(e);
        }
        let reply = {
            let mut groups = self.lock();
            let now = Instant::now();
            let entry = Self::entry(&mut groups, group_id);
            match &entry.consumer {
                Some(consumer) if !consumer.members.is_empty() => {
                    return self.classic_join_consumer_group(broker, entry, &request);
                }
                Some(consumer) => {
                    if let Err(e) = self.write(broker, group_id, consumer.tombstones()) {
                        return error(e);
                    }
                    info!(group = group_id, "converted an empty consumer group to a classic group");
                    entry.consumer = None;
                }
                None => {}
            }
            if entry.group.state == GroupState::Dead {
                entry.group = ClassicGroup::new(group_id, now_ms());
            }
            let reply = entry.group.join(request.clone(), &self.config, now, now_ms());
            let effects = entry.group.try_complete_join(now, now_ms());
            self.apply_effects(broker, entry, effects, now);
            reply
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Wait(rx) => rx.await.unwrap_or_else(|_| error(ErrorCode::RebalanceInProgress)),
        }
    }

    /// SyncGroup.
    pub async fn sync(&self, broker: &Broker, group_id: &str, request: SyncRequest) -> SyncResponse {
        let error = |e| SyncResponse { error: Some(e), ..Default::default() };
        if group_id.is_empty() {
            return error(ErrorCode::InvalidGroupId);
        }
        if let Err(e) = self.gate(group_id) {
            return error(e);
        }
        let reply = {
            let mut groups = self.lock();
            let Some(entry) = groups.get_mut(group_id) else { return error(ErrorCode::UnknownMemberId) };
            if entry.consumer.is_some() {
                return self.classic_sync_consumer_group(broker, entry, &request);
            }
            let now = Instant::now();
            let (reply, effects) = entry.group.sync(request, now);
            self.apply_effects(broker, entry, effects, now);
            reply
        };
        match reply {
            Reply::Now(response) => response,
            Reply::Wait(rx) => rx.await.unwrap_or_else(|_| error(ErrorCode::RebalanceInProgress)),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Option<ErrorCode> {
        if group_id.is_empty() {
            return Some(ErrorCode::InvalidGroupId);
        }
        if let Err(e) = self.gate(group_id) {
            return Some(e);
        }
        let mut groups = self.lock();
        match groups.get_mut(group_id) {
            Some(entry) if entry.consumer.is_some() => {
                self.classic_heartbeat_consumer_group(broker, entry, member_id, instance, generation_id)
            }
            Some(entry) => entry.group.heartbeat(member_id, instance, generation_id, Instant::now()),
            None => Some(ErrorCode::UnknownMemberId),
        }
    }

    /// LeaveGroup, one result per member.
    pub fn leave(
        &self,
        broker: &Broker,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        if group_id.is_empty() {
            return request_error(ErrorCode::InvalidGroupId);
        }
        self.gate(group_id)?;
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else { return request_error(ErrorCode::UnknownMemberId) };
        if entry.consumer.is_some() {
            return self.classic_leave_consumer_group(broker, entry, members);
        }
        let now = Instant::now();
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            match entry.group.leave(member_id, instance.as_deref(), &self.config, now, now_ms()) {
                Ok(effects) => {
                    self.apply_effects(broker, entry, effects, now);
                    results.push(None);
                }
                Err(e) => results.push(Some(e)),
            }
        }
        let effects = entry.group.try_complete_join(now, now_ms());
        self.apply_effects(broker, entry, effects, now);
        Ok(results)
    }

    /// OffsetCommit: validates the member, writes the offsets, then applies
    /// them. Returns one result per commit, in order.
    pub async fn commit(
        &self,
        broker: &Broker,
        group_id: &str,
        committer: Committer<'_>,
        commits: Vec<OffsetCommit>,
    ) -> Vec<Option<ErrorCode>> {
        let Committer { member_id, instance, generation_id, api_version } = committer;
        let fail_all = |e: ErrorCode, n: usize| vec![Some(e); n];
        if group_id.is_empty() {
            return fail_all(ErrorCode::InvalidGroupId, commits.len());
        }
        if let Err(e) = self.ensure_offsets_topic(broker).await {
            return fail_all(e, commits.len());
        }
        if let Err(e) = self.gate(group_id) {
            return fail_all(e, commits.len());
        }
        let image = broker.image();
        let mut groups = self.lock();
        // As Kafka's `OffsetMetadataManager.validateOffsetCommit`: a negative
        // generation (or member epoch) creates a missing group as a "simple"
        // group whatever the member id; otherwise a missing group is
        // GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
        let entry = match groups.get_mut(group_id) {
            Some(entry) => entry,
            None if generation_id < 0 => {
                info!(group = group_id, "creating a simple group via a manual offset commit");
                Self::entry(&mut groups, group_id)
            }
            None if api_version >= 9 => return fail_all(ErrorCode::GroupIdNotFound, commits.len()),
            None => return fail_all(ErrorCode::IllegalGeneration, commits.len()),
        };
        let checked = match &entry.consumer {
            Some(consumer) => consumer.check_commit(member_id, generation_id, api_version),
            None => entry.group.check_commit(member_id, instance, generation_id),
        };
        if let Err(e) = checked {
            return fail_all(e, commits.len());
        }
        let now = now_ms();
        let mut results = vec![None; commits.len()];
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for (i, c) in commits.iter().enumerate() {
            let known =
                image.topic(&c.topic).is_some_and(|t| c.partition >= 0 && (c.partition as usize) < t.partitions.len());
            if !known {
                results[i] = Some(ErrorCode::UnknownTopicOrPartition);
            } else if c.metadata.as_ref().is_some_and(|m| m.len() > broker.config.offset_metadata_max_bytes) {
                results[i] = Some(ErrorCode::OffsetMetadataTooLarge);
            } else {
                let value = OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone().unwrap_or_default(),
                    commit_timestamp: now,
                };
                let key =
                    RecordKey::Offset { group: group_id.to_string(), topic: c.topic.clone(), partition: c.partition };
                records.push((key.encode(), Some(value.encode())));
                accepted.push((i, (c.topic.clone(), c.partition), value));
            }
        }
        if records.is_empty() {
            return results;
        }
        let record_offset = match self.write(broker, group_id, records) {
            Ok(record_offset) => record_offset,
            Err(e) => {
                for (i, _, _) in accepted {
                    results[i] = Some(e);
                }
                return results;
            }
        };
        for (_, key, value) in accepted {
            entry.offsets.insert_pending(key, record_offset, value);
        }
        results
    }

    /// OffsetFetch: the committed offsets of the requested partitions (all
    /// when `None`), as (topic, partition, offset value or none). Only
    /// commits the ISR has are served (see `offsets.rs`).
    ///
    /// `member` (OffsetFetch v9+): the member id and epoch of a consumer
    /// group member, checked like Kafka (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH).
    pub fn fetch_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        member: Option<(Option<&str>, i32)>,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, Option<OffsetValue>)>, ErrorCode> {
        self.gate(group_id)?;
        let high_watermark = broker
            .replicas
            .get(OFFSETS_TOPIC, partition_for(group_id, self.offsets_partition_count().max(1)))
            .map(|partition| partition.high_watermark());
        let mut groups = self.lock();
        if let (Some((member_id, epoch)), Some(consumer)) =
            (member, groups.get(group_id).and_then(|e| e.consumer.as_ref()))
        {
            consumer.check_fetch(member_id, epoch)?;
        }
        if let (Some(entry), Some(high_watermark)) = (groups.get_mut(group_id), high_watermark) {
            entry.offsets.replicated_up_to(high_watermark);
        }
        let offsets = groups.get(group_id).map(|e| &e.offsets);
        Ok(match partitions {
            Some(wanted) => wanted
                .into_iter()
                .map(|(t, p)| {
                    let v = offsets.and_then(|o| o.get(&(t.clone(), p)).cloned());
                    (t, p, v)
                })
                .collect(),
            None => offsets
                .map(|o| o.iter().map(|((t, p), v)| (t.clone(), *p, Some(v.clone()))).collect())
                .unwrap_or_default(),
        })
    }

    /// Every group that is not dead, for ListGroups.
    pub fn list(&self) -> Vec<GroupSummary> {
        self.lock()
            .values()
            .filter(|e| e.consumer.is_some() || e.group.state != GroupState::Dead)
            .map(|e| match &e.consumer {
                Some(consumer) => GroupSummary {
                    group_id: consumer.group_id.clone(),
                    state: consumer.state().name(),
                    protocol_type: "consumer".to_string(),
                    group_type: "consumer",
                    protocol: String::new(),
                    members: Vec::new(),
                },
                None => Self::summary(&e.group),
            })
            .collect()
    }

    /// One group for DescribeGroups; an unknown group, or a consumer group
    /// (ConsumerGroupDescribe describes those), is reported Dead, as Kafka does.
    pub fn describe(&self, group_id: &str) -> GroupSummary {
        match self.lock().get(group_id) {
            Some(entry) if entry.consumer.is_none() => Self::summary(&entry.group),
            _ => GroupSummary {
                group_id: group_id.to_string(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                group_type: "classic",
                protocol: String::new(),
                members: Vec::new(),
            },
        }
    }

    fn summary(group: &ClassicGroup) -> GroupSummary {
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        GroupSummary {
            group_id: group.group_id.clone(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            group_type: "classic",
            protocol: if stable { protocol.clone() } else { String::new() },
            members: group
                .members
                .values()
                .map(|m| {
                    let metadata =
                        m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone()).unwrap_or_default();
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        if stable { metadata } else { Bytes::new() },
                        if stable { m.assignment.clone() } else { Bytes::new() },
                    )
                })
                .collect(),
        }
    }

    /// The entry of `group`, created empty if there is none.
    pub(super) fn entry<'a>(groups: &'a mut HashMap<String, GroupEntry>, group: &str) -> &'a mut GroupEntry {
        groups.entry(group.to_string()).or_insert_with(|| GroupEntry {
            group: ClassicGroup::new(group, now_ms()),
            consumer: None,
            offsets: GroupOffsets::default(),
        })
    }

    /// Session expiry, rebalance deadlines, initial delays. Called every 100 ms.
    pub fn tick(&self, broker: &Broker) {
        let mut groups = self.lock();
        let now = Instant::now();
        for entry in groups.values_mut() {
            if entry.consumer.is_some() {
                self.consumer_tick(broker, entry, now);
                continue;
            }
            let effects = entry.group.tick(&self.config, now, now_ms());
            self.apply_effects(broker, entry, effects, now);
        }
    }
}

/// A client id or member id for responses.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use weir_controller::TopicRef;

    use super::*;

    /// Collects what the `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_write_of_an_emptied_group_is_logged_and_the_group_stays_empty() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = crate::test_support::test_broker(dir.path(), &[("group.initial.rebalance.delay.ms", "0")]).await;
        let coordinator = &broker.groups;

        // One member joins and syncs: the group is Stable, written to __consumer_offsets.
        let joined = coordinator
            .join(
                &broker,
                "g",
                JoinRequest {
                    member_id: String::new(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(10),
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::from_static(b"m"))],
                    require_known_member_id: false,
                },
            )
            .await;
        assert_eq!(joined.error, None);
        let member = joined.member_id.clone();
        let synced = coordinator
            .sync(
                &broker,
                "g",
                SyncRequest {
                    member_id: member.clone(),
                    generation_id: joined.generation_id,
                    assignments: vec![(member.clone(), Bytes::from_static(b"a"))],
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(synced.error, None);
        assert_eq!(coordinator.describe("g").state, "Stable");

        // Every write fails from now on: the partition is gone.
        let deleted = broker.controller.delete_topics(vec![TopicRef::Name(OFFSETS_TOPIC.to_string())]).await;
        assert!(deleted.iter().all(Result::is_ok));
        broker.metadata_changed();
        assert_eq!(
            coordinator.write(&broker, "g", vec![GroupCoordinator::group_record(&coordinator.lock()["g"].group)]),
            Err(ErrorCode::CoordinatorNotAvailable)
        );

        // The last member leaves: the group is Empty in memory and the failed write is logged.
        let left = coordinator.leave(&broker, "g", &[(member, None)]);
        assert_eq!(left, Ok(vec![None]));
        assert_eq!(coordinator.describe("g").state, "Empty");
        let logs = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
        assert!(logs.contains("WARN") && logs.contains("failed to write the empty group's metadata"), "{logs}");
    }
}
