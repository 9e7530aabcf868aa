//! Members that speak the classic protocol inside a consumer group: KIP-848's
//! online migration, as Kafka's coordinator runs it.
//!
//! A classic group whose members use the `consumer` protocol type becomes a
//! consumer group when a ConsumerGroupHeartbeat member joins it
//! ([`ConsumerGroup::from_classic`]): each classic member keeps its
//! partitions at an epoch equal to the old generation, and the new member's
//! arrival moves the group epoch. From then on the classic members' requests
//! are served by the consumer group: a JoinGroup is a full heartbeat (the
//! subscription and owned partitions come from the `ConsumerProtocol`
//! metadata) answered with the member epoch as the generation and no leader,
//! so no client computes an assignment; SyncGroup returns the member's
//! current partitions; Heartbeat answers REBALANCE_IN_PROGRESS whenever the
//! member must rejoin to move on. When the last member on the consumer
//! protocol leaves, the group turns back into a classic group
//! ([`ConsumerGroup::classic_group_value`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;
use weir_protocol::ErrorCode;

use super::assignor::Assignment;
use super::reconcile::{CurrentAssignment, MemberState};
use super::{ClassicMemberMetadata, ConsumerGroup, ConsumerGroupConfig, ConsumerMember, TopicCatalog};
use crate::group::classic::{ClassicGroup, JoinRequest, JoinResponse, SyncRequest, SyncResponse};
use crate::group::records::{GroupMetadataValue, MemberValue};

/// The protocol type of consumers; the only one a consumer group serves.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The newest `ConsumerProtocol` version this broker reads and writes.
const CONSUMER_PROTOCOL_MAX_VERSION: i16 = 3;

/// A `ConsumerProtocolSubscription`, with topic names resolved to ids.
struct Subscription {
    topics: Vec<String>,
    owned: Assignment,
    rack: Option<String>,
}

/// The version a `ConsumerProtocol` message starts with, capped at the
/// newest known (a newer one is read as that, as Kafka does).
fn protocol_version(bytes: &[u8]) -> Result<i16, String> {
    let version = bytes.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or("no version")?;
    if version < 0 {
        return Err(format!("version {version}"));
    }
    Ok(version.min(CONSUMER_PROTOCOL_MAX_VERSION))
}

fn decode_subscription(metadata: &Bytes, topics: &TopicCatalog) -> Result<Subscription, String> {
    let version = protocol_version(metadata)?;
    let mut body = metadata.slice(2..);
    let decoded = ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| e.to_string())?;
    let owned = by_topic_id(decoded.owned_partitions.into_iter().map(|tp| (tp.topic, tp.partitions)), topics);
    Ok(Subscription {
        topics: decoded.topics.into_iter().map(|t| t.to_string()).collect(),
        owned,
        rack: decoded.rack_id.map(|r| r.to_string()),
    })
}

/// Partitions by topic name as an [`Assignment`] by topic id; topics that
/// no longer exist are dropped.
fn by_topic_id(partitions: impl Iterator<Item = (TopicName, Vec<i32>)>, topics: &TopicCatalog) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, partitions) in partitions {
        if let Some((id, _)) = topics.get(topic.0.as_str()) {
            assignment.entry(*id).or_default().extend(partitions);
        }
    }
    assignment
}

/// A `ConsumerProtocolAssignment` of `assigned` at `version`.
pub(super) fn encode_assignment(assigned: &Assignment, names: &BTreeMap<Uuid, String>, version: i16) -> Bytes {
    let partitions = assigned
        .iter()
        .filter_map(|(id, partitions)| {
            let name = names.get(id)?;
            Some(
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(partitions.iter().copied().collect()),
            )
        })
        .collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(partitions);
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding a message the crate built from valid fields cannot fail.
    if assignment.encode(&mut buf, version).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

fn decode_assignment(bytes: &Bytes, topics: &TopicCatalog) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let version = protocol_version(bytes)?;
    let mut body = bytes.slice(2..);
    let decoded = ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| e.to_string())?;
    Ok(by_topic_id(decoded.assigned_partitions.into_iter().map(|tp| (tp.topic, tp.partitions)), topics))
}

/// Topic id -> name, for writing `ConsumerProtocol` assignments.
fn topic_names(topics: &TopicCatalog) -> BTreeMap<Uuid, String> {
    topics.iter().map(|(name, (id, _))| (*id, name.clone())).collect()
}

impl ClassicMemberMetadata {
    fn first_protocol(&self) -> Option<&(String, Bytes)> {
        self.supported_protocols.first()
    }

    fn assignment_version(&self) -> i16 {
        self.first_protocol().and_then(|(_, metadata)| protocol_version(metadata).ok()).unwrap_or(0)
    }
}

/// A duration as the int32 milliseconds Kafka's records and requests carry.
fn millis(duration: Duration) -> i32 {
    duration.as_millis().min(i32::MAX as u128) as i32
}

/// Int32 milliseconds from a record or request as a duration (negative: none).
fn duration(millis: i32) -> Duration {
    Duration::from_millis(millis.max(0) as u64)
}

impl ConsumerMember {
    /// How long the member may stay silent: its own session timeout if it
    /// speaks the classic protocol, the group's otherwise.
    pub fn session_timeout(&self, config: &ConsumerGroupConfig) -> Duration {
        match &self.classic {
            Some(classic) => duration(classic.session_timeout_ms),
            None => config.session_timeout,
        }
    }

    /// How long the member may take to revoke partitions (or, on the
    /// classic protocol, to rejoin and sync).
    pub fn rebalance_timeout(&self) -> Duration {
        duration(self.rebalance_timeout_ms)
    }
}

impl ConsumerGroup {
    /// Whether a joining classic member's protocols fit the group: the
    /// consumer protocol type, and a protocol every classic member has.
    fn supports_classic_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        let classic: Vec<&ClassicMemberMetadata> = self.members.values().filter_map(|m| m.classic.as_ref()).collect();
        protocols.iter().any(|(name, _)| {
            classic.iter().all(|c| c.supported_protocols.iter().any(|(supported, _)| supported == name))
        })
    }

    /// The classic member a SyncGroup, Heartbeat or LeaveGroup names.
    fn classic_member(&self, member_id: &str, instance: Option<&str>) -> Result<&ConsumerMember, ErrorCode> {
        let member = match instance {
            None => self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?,
            Some(instance) => {
                let holder = self.static_members.get(instance).ok_or(ErrorCode::UnknownMemberId)?;
                let member = self.members.get(holder).ok_or(ErrorCode::UnknownMemberId)?;
                if !member_id.is_empty() && member.member_id != member_id {
                    return Err(ErrorCode::FencedInstanceId);
                }
                member
            }
        };
        if member.classic.is_none() {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(member)
    }

    /// Whether a classic member must rejoin: the group moved on, it has
    /// partitions to give up, or the partitions it waits for are free now.
    fn classic_member_must_rejoin(&self, member: &ConsumerMember) -> bool {
        let waiting_on_others = || {
            let target = self.target.get(&member.member_id);
            target.into_iter().flatten().any(|(topic, partitions)| {
                let held = member.current.assigned.get(topic);
                partitions
                    .iter()
                    .any(|p| !held.is_some_and(|h| h.contains(p)) && self.owners.contains_key(&(*topic, *p)))
            })
        };
        member.current.member_epoch < self.group_epoch
            || member.current.state == MemberState::UnrevokedPartitions
            || (member.current.state == MemberState::UnreleasedPartitions && !waiting_on_others())
    }

    /// Tells a classic member to rejoin, giving it the rebalance timeout to do so.
    fn ask_to_rejoin(&mut self, member_id: &str, now: Instant) -> ErrorCode {
        if let Some(member) = self.members.get_mut(member_id) {
            if member.rejoin_deadline.is_none() {
                member.rejoin_deadline = Some(now + member.rebalance_timeout());
            }
        }
        ErrorCode::RebalanceInProgress
    }

    /// JoinGroup from a classic member (or a new one).
    pub fn classic_join(
        &mut self,
        request: &JoinRequest,
        topics: &TopicCatalog,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> Result<JoinResponse, ErrorCode> {
        let unknown = request.member_id.is_empty();
        let member_id = if unknown { Uuid::new_v4().to_string() } else { request.member_id.clone() };
        if self.members.len() >= config.max_size && !self.members.contains_key(&member_id) {
            return Err(ErrorCode::GroupMaxSizeReached);
        }
        if !self.supports_classic_protocols(&request.protocol_type, &request.protocols) {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        if request.require_known_member_id && unknown && request.group_instance_id.is_none() {
            return Ok(JoinResponse {
                error: Some(ErrorCode::MemberIdRequired),
                generation_id: -1,
                member_id,
                ..Default::default()
            });
        }
        let (member, is_new) = match &request.group_instance_id {
            None => match self.members.get(&member_id) {
                Some(m) if m.classic.is_none() => return Err(ErrorCode::UnknownMemberId),
                Some(m) => (m.clone(), false),
                None => (ConsumerMember::new(member_id.clone(), now), true),
            },
            Some(instance) => match self.static_members.get(instance).and_then(|id| self.members.get(id)).cloned() {
                None => (ConsumerMember::new(member_id.clone(), now), true),
                Some(holder) if holder.member_id == member_id => (holder, false),
                // A classic static member's new incarnation fences the old one.
                Some(old) if unknown => (self.replace_static_member(&old, &member_id), false),
                Some(_) => return Err(ErrorCode::FencedInstanceId),
            },
        };
        let metadata = request.protocols.first().map(|(_, m)| m.clone()).unwrap_or_default();
        // Kafka answers a malformed embedded subscription as an internal error.
        let subscription = decode_subscription(&metadata, topics).map_err(|e| {
            tracing::warn!(group = %self.group_id, member = %member_id, error = %e, "malformed consumer subscription");
            ErrorCode::UnknownServerError
        })?;
        let mut updated = member.clone();
        updated.instance_id = request.group_instance_id.clone().or(updated.instance_id);
        updated.rack_id = subscription.rack.or(updated.rack_id);
        updated.rebalance_timeout_ms = millis(request.rebalance_timeout);
        updated.subscribed_topic_names = subscription.topics.into_iter().collect();
        updated.subscribed_topic_regex = None;
        updated.client_id = request.client_id.clone();
        updated.client_host = request.client_host.clone();
        updated.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: millis(request.session_timeout),
            supported_protocols: request.protocols.clone(),
        });
        let member = self.update_member(&member, updated, is_new, Some(&subscription.owned), topics, config, now);
        if let Some(m) = self.members.get_mut(&member_id) {
            m.session_deadline = now + request.session_timeout;
            // It must now sync within the rebalance timeout.
            m.rejoin_deadline = Some(now + request.rebalance_timeout);
        }
        Ok(JoinResponse {
            error: None,
            generation_id: member.current.member_epoch,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: request.protocols.first().map(|(name, _)| name.clone()),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        })
    }

    /// SyncGroup from a classic member: its current partitions.
    pub fn classic_sync(
        &mut self,
        request: &SyncRequest,
        topics: &TopicCatalog,
        now: Instant,
    ) -> Result<SyncResponse, ErrorCode> {
        let member = self.classic_member(&request.member_id, request.group_instance_id.as_deref())?;
        let classic = member.classic.clone().ok_or(ErrorCode::UnknownMemberId)?;
        if request.generation_id != member.current.member_epoch {
            return Err(ErrorCode::IllegalGeneration);
        }
        let protocol_name = classic.first_protocol().map(|(name, _)| name.as_str());
        if request.protocol_type.as_deref().is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || request.protocol_name.as_deref().is_some_and(|n| Some(n) != protocol_name)
        {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        let member_id = member.member_id.clone();
        if self.group_epoch > member.current.member_epoch && member.current.state != MemberState::UnrevokedPartitions {
            return Err(self.ask_to_rejoin(&member_id, now));
        }
        let assignment =
            encode_assignment(&member.current.assigned, &topic_names(topics), classic.assignment_version());
        if let Some(m) = self.members.get_mut(&member_id) {
            m.rejoin_deadline = None;
            m.session_deadline = now + duration(classic.session_timeout_ms);
        }
        Ok(SyncResponse {
            error: None,
            protocol_type: request.protocol_type.clone(),
            protocol_name: request.protocol_name.clone(),
            assignment,
        })
    }

    /// Heartbeat from a classic member: REBALANCE_IN_PROGRESS when it must rejoin.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let member = self.classic_member(member_id, instance)?;
        if generation_id != member.current.member_epoch {
            return Err(ErrorCode::IllegalGeneration);
        }
        let must_rejoin = self.classic_member_must_rejoin(member);
        let (id, session) = (member.member_id.clone(), member.session_timeout(config));
        if let Some(m) = self.members.get_mut(&id) {
            m.session_deadline = now + session;
        }
        if must_rejoin {
            return Err(self.ask_to_rejoin(&id, now));
        }
        Ok(())
    }

    /// One member of a LeaveGroup from a classic member: it leaves for good.
    pub fn classic_leave(&mut self, member_id: &str, instance: Option<&str>, now_ms: i64) -> Result<(), ErrorCode> {
        let id = self.classic_member(member_id, instance)?.member_id.clone();
        self.fence(&id, now_ms);
        tracing::info!(group = %self.group_id, member = %id, "classic member left the consumer group");
        Ok(())
    }

    /// The consumer group an online upgrade makes of `classic`: every member
    /// keeps its partitions, at an epoch equal to the classic generation.
    pub fn from_classic(
        classic: &ClassicGroup,
        topics: &TopicCatalog,
        config: &ConsumerGroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Result<ConsumerGroup, String> {
        let protocol = classic.protocol_name.clone().ok_or("the group has no protocol yet")?;
        let generation = classic.generation_id;
        let mut group = ConsumerGroup::new(&classic.group_id, now_ms);
        group.group_epoch = generation;
        group.assignment_epoch = generation;
        for m in classic.members.values() {
            let metadata = m.protocols.iter().find(|(name, _)| *name == protocol).map(|(_, b)| b.clone());
            let subscription = decode_subscription(&metadata.unwrap_or_default(), topics)?;
            let assigned = decode_assignment(&m.assignment, topics)?;
            let mut member = ConsumerMember::new(m.member_id.clone(), now);
            member.instance_id = m.group_instance_id.clone();
            member.rack_id = subscription.rack;
            member.client_id = m.client_id.clone();
            member.client_host = m.client_host.clone();
            member.subscribed_topic_names = subscription.topics.into_iter().collect();
            member.rebalance_timeout_ms = millis(m.rebalance_timeout);
            member.current = CurrentAssignment {
                member_epoch: generation,
                previous_member_epoch: generation,
                state: MemberState::Stable,
                assigned: assigned.clone(),
                pending_revocation: Assignment::new(),
            };
            member.classic = Some(ClassicMemberMetadata {
                session_timeout_ms: millis(m.session_timeout),
                supported_protocols: m.protocols.clone(),
            });
            group.target.insert(m.member_id.clone(), assigned);
            group.members.insert(m.member_id.clone(), member);
        }
        group.loaded(config, now, now_ms);
        Ok(group)
    }

    /// The classic group an online downgrade makes of this one, as its
    /// stored record: only when every member speaks the classic protocol.
    /// The generation is the group epoch; each member's assignment is its
    /// current partitions.
    pub fn classic_group_value(&self, topics: &TopicCatalog, now_ms: i64) -> Option<GroupMetadataValue> {
        let classic: Vec<(&ConsumerMember, &ClassicMemberMetadata)> =
            self.members.values().map(|m| m.classic.as_ref().map(|c| (m, c))).collect::<Option<_>>()?;
        let (_, first) = classic.first()?;
        let protocol = first
            .supported_protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| classic.iter().all(|(_, c)| c.supported_protocols.iter().any(|(n, _)| n == *name)))?
            .clone();
        let names = topic_names(topics);
        let members = classic
            .iter()
            .map(|(m, c)| {
                let subscription = c.supported_protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone());
                MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: c.session_timeout_ms,
                    subscription: subscription.unwrap_or_default(),
                    assignment: encode_assignment(&m.current.assigned, &names, c.assignment_version()),
                }
            })
            .collect::<Vec<_>>();
        Some(GroupMetadataValue {
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
            generation: self.group_epoch,
            protocol: Some(protocol),
            leader: members.first().map(|m| m.member_id.clone()),
            current_state_timestamp: now_ms,
            members,
        })
    }
}

/// Encodes the `ClassicMemberMetadata` tagged field of a member record.
pub(super) fn encode_classic_metadata(classic: &ClassicMemberMetadata) -> Bytes {
    use crate::group::records::{put_compact_len, put_compact_string, put_no_tagged_fields};
    let mut buf = BytesMut::new();
    buf.put_i32(classic.session_timeout_ms);
    put_compact_len(&mut buf, Some(classic.supported_protocols.len()));
    for (name, metadata) in &classic.supported_protocols {
        put_compact_string(&mut buf, Some(name));
        put_compact_len(&mut buf, Some(metadata.len()));
        buf.put_slice(metadata);
        put_no_tagged_fields(&mut buf);
    }
    put_no_tagged_fields(&mut buf);
    buf.freeze()
}

/// Decodes the `ClassicMemberMetadata` tagged field of a member record.
pub(super) fn decode_classic_metadata(
    mut bytes: Bytes,
) -> Result<ClassicMemberMetadata, crate::group::records::MalformedRecord> {
    use crate::group::records::{MalformedRecord, Reader};
    let mut r = Reader(&mut bytes);
    let session_timeout_ms = r.i32()?;
    let count = r.compact_len()?.unwrap_or(0);
    let mut supported_protocols = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = r.compact_string()?;
        let len = r.compact_len()?.ok_or_else(|| MalformedRecord("null protocol metadata".into()))?;
        let metadata = r.0.split_to(len);
        r.skip_tagged_fields()?;
        supported_protocols.push((name, metadata));
    }
    r.skip_tagged_fields()?;
    Ok(ClassicMemberMetadata { session_timeout_ms, supported_protocols })
}
