//! A KIP-848 consumer group in `__consumer_offsets`: the records Kafka's
//! coordinator writes for it (key versions 3-8 with flexible version-0
//! values), the records that take a group from one state to the next, and
//! their replay.
//!
//! The coordinator runs a heartbeat on a copy of the group, writes what
//! [`ConsumerGroup::changes_since`] reports, and only then keeps the copy,
//! so a failed write changes nothing. Loading replays the same records with
//! [`ConsumerGroup::replay`]; [`ConsumerGroup::loaded`] then gives every
//! restored member a fresh session, as Kafka does when a coordinator takes
//! a partition over. Session deadlines are the only state not written.
//!
//! Values (all flexible: compact strings and arrays, tagged fields at the
//! end of every struct, none written):
//! - 3 `ConsumerGroupMetadataValue { epoch: int32 }`
//! - 4 `ConsumerGroupPartitionMetadataValue { topics: [topic_id: uuid,
//!   topic_name: string, num_partitions: int32, partition_metadata:
//!   [partition: int32, racks: [string]]] }` (racks are not written)
//! - 5 `ConsumerGroupMemberMetadataValue { instance_id: string?, rack_id:
//!   string?, client_id: string, client_host: string,
//!   subscribed_topic_names: [string], subscribed_topic_regex: string?,
//!   rebalance_timeout_ms: int32, server_assignor: string? }`; tagged field
//!   0 holds `ClassicMemberMetadata { session_timeout_ms: int32,
//!   supported_protocols: [name: string, metadata: bytes] }` for a member
//!   on the classic protocol (after an online upgrade)
//! - 6 `ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch: int32 }`
//! - 7 `ConsumerGroupTargetAssignmentMemberValue { topic_partitions:
//!   [topic_id: uuid, partitions: [int32]] }`
//! - 8 `ConsumerGroupCurrentMemberAssignmentValue { member_epoch: int32,
//!   previous_member_epoch: int32, state: int8, assigned_partitions,
//!   partitions_pending_revocation }` (both in the shape of 7's list)

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::assignor::Assignment;
use super::classic_members::{decode_classic_metadata, encode_classic_metadata};
use super::reconcile::{CurrentAssignment, MemberState};
use super::{ConsumerGroup, ConsumerGroupConfig, ConsumerMember, TopicCatalog, TopicRegex, LEAVE_GROUP_MEMBER_EPOCH};
use crate::group::records::{
    put_compact_len, put_compact_string, put_no_tagged_fields, put_uvarint, ConsumerRecord, MalformedRecord, Reader,
    RecordKey,
};

/// A record to append: key and value (None for a tombstone).
pub type Change = (Bytes, Option<Bytes>);

fn key(group: &str, record: ConsumerRecord) -> Bytes {
    RecordKey::ConsumerGroup { group: group.to_string(), record }.encode()
}

/// A version-0 value: the version, the fields, no tagged fields.
fn value(fields: impl FnOnce(&mut BytesMut)) -> Bytes {
    value_with_tags(fields, None)
}

/// A version-0 value with a tagged field (tag, bytes) at the end.
fn value_with_tags(fields: impl FnOnce(&mut BytesMut), tagged: Option<(u64, Bytes)>) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    fields(&mut buf);
    match tagged {
        None => put_no_tagged_fields(&mut buf),
        Some((tag, bytes)) => {
            put_uvarint(&mut buf, 1);
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, bytes.len() as u64);
            buf.put_slice(&bytes);
        }
    }
    buf.freeze()
}

fn epoch_value(epoch: i32) -> Bytes {
    value(|buf| buf.put_i32(epoch))
}

/// Tag of `ClassicMemberMetadata` in a member's subscription record.
const CLASSIC_MEMBER_METADATA_TAG: u64 = 0;

fn member_value(member: &ConsumerMember) -> Bytes {
    let classic = member.classic.as_ref().map(|c| (CLASSIC_MEMBER_METADATA_TAG, encode_classic_metadata(c)));
    value_with_tags(
        |buf| {
            put_compact_string(buf, member.instance_id.as_deref());
            put_compact_string(buf, member.rack_id.as_deref());
            put_compact_string(buf, Some(&member.client_id));
            put_compact_string(buf, Some(&member.client_host));
            put_compact_len(buf, Some(member.subscribed_topic_names.len()));
            for name in &member.subscribed_topic_names {
                put_compact_string(buf, Some(name));
            }
            put_compact_string(buf, member.subscribed_topic_regex.as_ref().map(|r| r.pattern.as_str()));
            buf.put_i32(member.rebalance_timeout_ms);
            put_compact_string(buf, member.server_assignor.as_deref());
        },
        classic,
    )
}

fn subscription_metadata_value(topics: &TopicCatalog) -> Bytes {
    value(|buf| {
        put_compact_len(buf, Some(topics.len()));
        for (name, (id, partitions)) in topics {
            buf.put_slice(id.as_bytes());
            put_compact_string(buf, Some(name));
            buf.put_i32(*partitions);
            put_compact_len(buf, Some(0));
            put_no_tagged_fields(buf);
        }
    })
}

fn put_assignment(buf: &mut BytesMut, assignment: &Assignment) {
    put_compact_len(buf, Some(assignment.len()));
    for (topic, partitions) in assignment {
        buf.put_slice(topic.as_bytes());
        put_compact_len(buf, Some(partitions.len()));
        for p in partitions {
            buf.put_i32(*p);
        }
        put_no_tagged_fields(buf);
    }
}

fn current_value(current: &CurrentAssignment) -> Bytes {
    value(|buf| {
        buf.put_i32(current.member_epoch);
        buf.put_i32(current.previous_member_epoch);
        buf.put_i8(current.state.code());
        put_assignment(buf, &current.assigned);
        put_assignment(buf, &current.pending_revocation);
    })
}

/// Reads a value's version (only 0 is known) and hands its fields to `read`.
fn read_value<T>(
    bytes: Bytes,
    what: &str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, MalformedRecord>,
) -> Result<T, MalformedRecord> {
    read_value_with_tags(bytes, what, read).map(|(fields, _)| fields)
}

/// [`read_value`], also returning the value's tagged fields.
fn read_value_with_tags<T>(
    mut bytes: Bytes,
    what: &str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, MalformedRecord>,
) -> Result<(T, Vec<(u64, Bytes)>), MalformedRecord> {
    let mut r = Reader(&mut bytes);
    let version = r.i16()?;
    if version != 0 {
        return Err(MalformedRecord(format!("{what} value version {version}")));
    }
    let fields = read(&mut r)?;
    let tagged = r.tagged_fields()?;
    Ok((fields, tagged))
}

fn read_array<T>(
    r: &mut Reader<'_>,
    mut element: impl FnMut(&mut Reader<'_>) -> Result<T, MalformedRecord>,
) -> Result<Vec<T>, MalformedRecord> {
    let len = r.compact_len()?.unwrap_or(0);
    (0..len).map(|_| element(r)).collect()
}

fn read_assignment(r: &mut Reader<'_>) -> Result<Assignment, MalformedRecord> {
    let topics = read_array(r, |r| {
        let topic = r.uuid()?;
        let partitions: BTreeSet<i32> = read_array(r, |r| r.i32())?.into_iter().collect();
        r.skip_tagged_fields()?;
        Ok((topic, partitions))
    })?;
    Ok(topics.into_iter().collect())
}

/// The fields of a member that its subscription record holds.
pub(super) fn same_subscription(a: &ConsumerMember, b: &ConsumerMember) -> bool {
    a.instance_id == b.instance_id
        && a.rack_id == b.rack_id
        && a.client_id == b.client_id
        && a.client_host == b.client_host
        && a.subscribed_topic_names == b.subscribed_topic_names
        && a.subscribed_topic_regex.as_ref().map(|r| &r.pattern)
            == b.subscribed_topic_regex.as_ref().map(|r| &r.pattern)
        && a.rebalance_timeout_ms == b.rebalance_timeout_ms
        && a.server_assignor == b.server_assignor
        && a.classic == b.classic
}

impl ConsumerGroup {
    /// The records that take `before` to this state, in the order Kafka
    /// writes them: departed members' tombstones, then subscriptions, the
    /// subscribed topics' metadata, the group epoch, the target assignment
    /// and its epoch, and the members' current assignments.
    pub fn changes_since(&self, before: &ConsumerGroup) -> Vec<Change> {
        let group = self.group_id.as_str();
        let mut changes = Vec::new();
        for id in before.members.keys().filter(|id| !self.members.contains_key(*id)) {
            changes.push((key(group, ConsumerRecord::CurrentAssignment(id.clone())), None));
            changes.push((key(group, ConsumerRecord::TargetAssignment(id.clone())), None));
            changes.push((key(group, ConsumerRecord::MemberSubscription(id.clone())), None));
        }
        for (id, member) in &self.members {
            if !before.members.get(id).is_some_and(|old| same_subscription(old, member)) {
                changes.push((key(group, ConsumerRecord::MemberSubscription(id.clone())), Some(member_value(member))));
            }
        }
        if self.subscription_metadata != before.subscription_metadata {
            let value = subscription_metadata_value(&self.subscription_metadata);
            changes.push((key(group, ConsumerRecord::SubscriptionMetadata), Some(value)));
        }
        if self.group_epoch != before.group_epoch {
            changes.push((key(group, ConsumerRecord::GroupEpoch), Some(epoch_value(self.group_epoch))));
        }
        for (id, target) in &self.target {
            if before.target.get(id) != Some(target) {
                let value = value(|buf| put_assignment(buf, target));
                changes.push((key(group, ConsumerRecord::TargetAssignment(id.clone())), Some(value)));
            }
        }
        for id in before.target.keys() {
            if !self.target.contains_key(id) && self.members.contains_key(id) {
                changes.push((key(group, ConsumerRecord::TargetAssignment(id.clone())), None));
            }
        }
        if self.assignment_epoch != before.assignment_epoch {
            let value = epoch_value(self.assignment_epoch);
            changes.push((key(group, ConsumerRecord::TargetAssignmentEpoch), Some(value)));
        }
        for (id, member) in &self.members {
            if before.members.get(id).map(|old| &old.current) != Some(&member.current) {
                let value = current_value(&member.current);
                changes.push((key(group, ConsumerRecord::CurrentAssignment(id.clone())), Some(value)));
            }
        }
        changes
    }

    /// The tombstones that delete the group, in Kafka's order.
    pub fn tombstones(&self) -> Vec<Change> {
        let group = self.group_id.as_str();
        let members = || self.members.keys().cloned();
        let mut changes: Vec<Change> = Vec::new();
        changes.extend(members().map(|id| (key(group, ConsumerRecord::CurrentAssignment(id)), None)));
        changes.extend(members().map(|id| (key(group, ConsumerRecord::TargetAssignment(id)), None)));
        changes.push((key(group, ConsumerRecord::TargetAssignmentEpoch), None));
        changes.extend(members().map(|id| (key(group, ConsumerRecord::MemberSubscription(id)), None)));
        changes.push((key(group, ConsumerRecord::SubscriptionMetadata), None));
        changes.push((key(group, ConsumerRecord::GroupEpoch), None));
        changes
    }

    fn member_mut(&mut self, member_id: &str, now: Instant) -> &mut ConsumerMember {
        self.members.entry(member_id.to_string()).or_insert_with(|| ConsumerMember::new(member_id.to_string(), now))
    }

    /// Applies one record of this group while loading. A group epoch
    /// tombstone deletes the whole group; the caller handles it.
    pub fn replay(
        &mut self,
        record: ConsumerRecord,
        value: Option<Bytes>,
        now: Instant,
    ) -> Result<(), MalformedRecord> {
        match (record, value) {
            (ConsumerRecord::GroupEpoch, Some(v)) => {
                self.group_epoch = read_value(v, "consumer group metadata", |r| r.i32())?;
            }
            (ConsumerRecord::GroupEpoch, None) => {}
            (ConsumerRecord::SubscriptionMetadata, Some(v)) => {
                let topics = read_value(v, "consumer group partition metadata", |r| {
                    read_array(r, |r| {
                        let id = r.uuid()?;
                        let name = r.compact_string()?;
                        let partitions = r.i32()?;
                        read_array(r, |r| {
                            r.i32()?;
                            read_array(r, |r| r.compact_string())?;
                            r.skip_tagged_fields()
                        })?;
                        r.skip_tagged_fields()?;
                        Ok((name, (id, partitions)))
                    })
                })?;
                self.subscription_metadata = topics.into_iter().collect();
            }
            (ConsumerRecord::SubscriptionMetadata, None) => self.subscription_metadata.clear(),
            (ConsumerRecord::MemberSubscription(id), Some(v)) => {
                // The subscription goes onto a blank member; the current
                // assignment (its own record) is kept.
                let mut read = ConsumerMember::new(id.clone(), now);
                let (_, tagged) = read_value_with_tags(v, "consumer group member metadata", |r| {
                    read.instance_id = r.compact_nullable_string()?;
                    read.rack_id = r.compact_nullable_string()?;
                    read.client_id = r.compact_string()?;
                    read.client_host = r.compact_string()?;
                    read.subscribed_topic_names = read_array(r, |r| r.compact_string())?.into_iter().collect();
                    read.subscribed_topic_regex = match r.compact_nullable_string()? {
                        Some(pattern) => Some(TopicRegex::new(&pattern).map_err(|e| MalformedRecord(e.message))?),
                        None => None,
                    };
                    read.rebalance_timeout_ms = r.i32()?;
                    read.server_assignor = r.compact_nullable_string()?;
                    Ok(())
                })?;
                read.classic = match tagged.into_iter().find(|(tag, _)| *tag == CLASSIC_MEMBER_METADATA_TAG) {
                    Some((_, bytes)) => Some(decode_classic_metadata(bytes)?),
                    None => None,
                };
                let member = self.member_mut(&id, now);
                read.current = std::mem::take(&mut member.current);
                *member = read;
            }
            (ConsumerRecord::MemberSubscription(id), None) => {
                self.members.remove(&id);
            }
            (ConsumerRecord::TargetAssignmentEpoch, Some(v)) => {
                self.assignment_epoch = read_value(v, "consumer group target assignment metadata", |r| r.i32())?;
            }
            (ConsumerRecord::TargetAssignmentEpoch, None) => self.assignment_epoch = 0,
            (ConsumerRecord::TargetAssignment(id), Some(v)) => {
                let target = read_value(v, "consumer group target assignment", read_assignment)?;
                self.target.insert(id, target);
            }
            (ConsumerRecord::TargetAssignment(id), None) => {
                self.target.remove(&id);
            }
            (ConsumerRecord::CurrentAssignment(id), Some(v)) => {
                let current = read_value(v, "consumer group current member assignment", |r| {
                    let member_epoch = r.i32()?;
                    let previous_member_epoch = r.i32()?;
                    let state = match r.i8()? {
                        0 => MemberState::Stable,
                        1 => MemberState::UnrevokedPartitions,
                        2 => MemberState::UnreleasedPartitions,
                        other => return Err(MalformedRecord(format!("member state {other}"))),
                    };
                    let assigned = read_assignment(r)?;
                    let pending_revocation = read_assignment(r)?;
                    Ok(CurrentAssignment { member_epoch, previous_member_epoch, state, assigned, pending_revocation })
                })?;
                self.member_mut(&id, now).current = current;
            }
            (ConsumerRecord::CurrentAssignment(id), None) => {
                // Kafka keeps the member until its subscription's tombstone, owning nothing.
                if let Some(member) = self.members.get_mut(&id) {
                    member.current = CurrentAssignment::new();
                    member.current.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    member.current.previous_member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                }
            }
        }
        Ok(())
    }

    /// After loading: rebuilds what is derived from the records (static
    /// members, partition owners) and gives every member a new session and,
    /// if it was revoking, a new rebalance timeout.
    pub fn loaded(&mut self, config: &ConsumerGroupConfig, now: Instant, now_ms: i64) {
        let members = &self.members;
        self.target.retain(|id, _| members.contains_key(id));
        self.static_members.clear();
        self.owners.clear();
        let currents: Vec<CurrentAssignment> = self.members.values().map(|m| m.current.clone()).collect();
        for current in &currents {
            self.hold(current);
        }
        for member in self.members.values_mut() {
            if let Some(instance) = &member.instance_id {
                self.static_members.insert(instance.clone(), member.member_id.clone());
            }
            member.session_deadline = now + member.session_timeout(config);
            member.revocation_deadline =
                (member.current.state == MemberState::UnrevokedPartitions).then(|| now + member.rebalance_timeout());
        }
        if self.members.is_empty() {
            self.state_timestamp_ms = now_ms;
        }
    }
}
