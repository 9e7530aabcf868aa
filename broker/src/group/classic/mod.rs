//! A classic consumer group: the rebalance protocol of JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup as Kafka's coordinator runs it.
//!
//! States: `Empty` (no members; offsets may still be committed),
//! `PreparingRebalance` (collecting JoinGroups), `CompletingRebalance`
//! (joined; waiting for the leader's SyncGroup), `Stable`, `Dead` (deleted).
//! A rebalance completes when every member has rejoined and no member id
//! handed out with MEMBER_ID_REQUIRED is still outstanding, or when the
//! rebalance timeout passes (members that did not rejoin are dropped). The
//! first rebalance of an empty group waits `group.initial.rebalance.delay.ms`
//! for more members, extended by each new one up to the rebalance timeout.
//!
//! This module is pure state: requests wait on oneshot channels that the
//! transitions complete; time comes in as `Instant`s; writing the group's
//! record is the caller's job (see [`super::coordinator`]). Static members
//! (`group.instance.id`, KIP-345) keep their assignment across restarts
//! within the session timeout; a stale member id with a known instance id is
//! FENCED_INSTANCE_ID.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use tokio::sync::oneshot;
use weir_protocol::ErrorCode;

use super::records::GroupMetadataValue;

/// The state of a classic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Collecting JoinGroup requests.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka's tools print.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup carries, decoded from any version.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id, empty for a new member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type.
    pub protocol_type: String,
    /// Supported protocols with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member must first get a member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// What a SyncGroup carries, decoded from any version.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The generation the member synced in.
    pub generation_id: i32,
    /// v5+: the protocol type the member expects.
    pub protocol_type: Option<String>,
    /// v5+: the protocol the member expects.
    pub protocol_name: Option<String>,
    /// The leader's assignments, by member id.
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResponse {
    /// Error, if any.
    pub error: Option<ErrorCode>,
    /// Generation.
    pub generation_id: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The receiver's member id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResponse {
    fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse { error: Some(error), generation_id: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResponse {
    /// Error, if any.
    pub error: Option<ErrorCode>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse { error: Some(error), ..Default::default() }
    }
}

/// An answer now, or one to wait for.
pub enum Reply<T> {
    /// Answered at once.
    Now(T),
    /// Answered when the rebalance moves on.
    Wait(oneshot::Receiver<T>),
}

/// One member of a classic group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Supported protocols and metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation.
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    session_deadline: Instant,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// A classic group.
#[derive(Debug)]
pub struct ClassicGroup {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Generation.
    pub generation_id: i32,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// The chosen protocol of the current generation.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader_id: Option<String>,
    /// Members in join order (the first joiner leads).
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, Instant>,
    /// Static instance id -> member id.
    static_members: HashMap<String, String>,
    /// When the current rebalance gives up on members that have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits until then for more members.
    initial_delay_until: Option<Instant>,
    /// How far new members may push `initial_delay_until`.
    initial_delay_cap: Option<Instant>,
    /// When the state last changed (ms since the epoch), as Kafka records it.
    pub state_timestamp_ms: i64,
}

/// Settings of the coordinator that bound the protocol.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_size: i32::MAX as usize,
        }
    }
}

/// What a transition asks the caller to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The group completed a rebalance: write its record, then call
    /// [`ClassicGroup::complete_sync`].
    pub persist_assignment: bool,
    /// The group became empty or changed membership without a new
    /// assignment: write its record as it is now.
    pub persist_state: bool,
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(group_id: &str, now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            initial_delay_cap: None,
            state_timestamp_ms: now_ms,
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Restores a group from its stored record (members get a fresh session).
    pub fn restore(group_id: &str, value: GroupMetadataValue, now: Instant) -> ClassicGroup {
        let mut group = ClassicGroup::new(group_id, value.current_state_timestamp);
        group.generation_id = value.generation;
        group.protocol_type = Some(value.protocol_type).filter(|p| !p.is_empty());
        group.protocol_name = value.protocol.clone();
        group.leader_id = value.leader;
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let session_timeout = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols: vec![(value.protocol.clone().unwrap_or_default(), m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    session_deadline: now + session_timeout,
                },
            );
        }
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Validates the member fields of a request against the group, as Kafka does
    /// for heartbeats, syncs and commits.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
                None if self.members.contains_key(member_id) => return Err(ErrorCode::FencedInstanceId),
                None => return Err(ErrorCode::UnknownMemberId),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(())
    }

    /// Handles a SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, now: Instant) -> (Reply<SyncResponse>, Effects) {
        let member_id = req.member_id.as_str();
        let now_reply = |e| (Reply::Now(SyncResponse::error(e)), Effects::default());
        if self.state == GroupState::Dead {
            return now_reply(ErrorCode::CoordinatorNotAvailable);
        }
        if let Err(e) = self.check_member(member_id, req.group_instance_id.as_deref()) {
            return now_reply(e);
        }
        if req.generation_id != self.generation_id {
            return now_reply(ErrorCode::IllegalGeneration);
        }
        if req.protocol_type.as_ref().is_some_and(|p| Some(p) != self.protocol_type.as_ref())
            || req.protocol_name.as_ref().is_some_and(|p| Some(p) != self.protocol_name.as_ref())
        {
            return now_reply(ErrorCode::InconsistentGroupProtocol);
        }
        self.members[member_id].session_deadline = now + self.members[member_id].session_timeout;
        match self.state {
            GroupState::Empty => now_reply(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => now_reply(ErrorCode::RebalanceInProgress),
            GroupState::Stable => (Reply::Now(self.sync_response_for(member_id)), Effects::default()),
            GroupState::CompletingRebalance | GroupState::Dead => {
                let (tx, rx) = oneshot::channel();
                self.members[member_id].sync_waiter = Some(tx);
                if self.leader_id.as_deref() == Some(member_id) {
                    let mut assigned: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = assigned.remove(&member.member_id).unwrap_or_default();
                    }
                    return (Reply::Wait(rx), Effects { persist_assignment: true, persist_state: false });
                }
                (Reply::Wait(rx), Effects::default())
            }
        }
    }

    /// After the group's record is written (or failed: `error`), moves the
    /// group to Stable and answers the waiting syncs.
    pub fn complete_sync(&mut self, error: Option<ErrorCode>, config: &GroupConfig, now: Instant, now_ms: i64) {
        if self.state != GroupState::CompletingRebalance {
            return;
        }
        if let Some(error) = error {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncResponse::error(error));
                }
            }
            self.prepare_rebalance(config, now, now_ms);
            return;
        }
        self.transition(GroupState::Stable, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.sync_response_for(&id);
            if let Some(waiter) = self.members[&id].sync_waiter.take() {
                let _ = waiter.send(response);
            }
        }
    }

    fn sync_response_for(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Option<ErrorCode> {
        if self.state == GroupState::Dead {
            return Some(ErrorCode::CoordinatorNotAvailable);
        }
        if let Err(e) = self.check_member(member_id, instance) {
            return Some(e);
        }
        if generation_id != self.generation_id {
            return Some(ErrorCode::IllegalGeneration);
        }
        self.members[member_id].session_deadline = now + self.members[member_id].session_timeout;
        match self.state {
            GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
            GroupState::Empty => Some(ErrorCode::UnknownMemberId),
            _ => None,
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id
    /// when the member id is unknown to the client).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Result<Effects, ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let target = match instance {
            Some(instance) => {
                let current = self.static_members.get(instance).cloned().ok_or(ErrorCode::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != current {
                    return Err(ErrorCode::FencedInstanceId);
                }
                current
            }
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    return Ok(Effects::default());
                }
                if !self.members.contains_key(member_id) {
                    return Err(ErrorCode::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        Ok(self.member_gone(&target, config, now, now_ms))
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.shift_remove(member_id) {
            if let Some(instance) = &member.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResponse::error(ErrorCode::UnknownMemberId, member_id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ErrorCode::UnknownMemberId));
            }
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    /// A member left or expired: rebalance the rest, or become Empty.
    fn member_gone(&mut self, member_id: &str, config: &GroupConfig, now: Instant, now_ms: i64) -> Effects {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation_id += 1;
                    self.protocol_name = None;
                    self.leader_id = None;
                    self.transition(GroupState::Empty, now_ms);
                    Effects { persist_assignment: false, persist_state: true }
                } else {
                    self.prepare_rebalance(config, now, now_ms);
                    Effects::default()
                }
            }
            _ => Effects::default(),
        }
    }

    /// Expires members whose session passed and pending member ids never
    /// used; then tries to complete a join. Called periodically.
    pub fn tick(&mut self, config: &GroupConfig, now: Instant, now_ms: i64) -> Effects {
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none() && m.session_deadline <= now)
            .map(|m| m.member_id.clone())
            .collect();
        let mut effects = Effects::default();
        for id in expired {
            let e = self.member_gone(&id, config, now, now_ms);
            effects.persist_state |= e.persist_state;
        }
        let e = self.try_complete_join(now, now_ms);
        effects.persist_state |= e.persist_state;
        effects
    }

    /// Validates an OffsetCommit's member fields, as Kafka's
    /// `ClassicGroup.validateOffsetCommit`: a negative generation commits to
    /// an Empty group whatever the member id (a "simple" group: the admin
    /// client, or a consumer that assigns its partitions itself; a KIP-848
    /// client sends its own member id with epoch -1); otherwise the member
    /// and generation must match.
    pub fn check_commit(&self, member_id: &str, instance: Option<&str>, generation_id: i32) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id < 0 && member_id.is_empty() && instance.is_none() {
            // A standalone commit while the group has members.
            return Err(ErrorCode::UnknownMemberId);
        }
        self.check_member(member_id, instance)?;
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// The topics the members subscribe to, as far as the consumer protocol
    /// metadata tells (for OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for member in self.members.values() {
            topics.extend(consumer_subscription_topics(&member.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Answers every waiting JoinGroup and SyncGroup with `error`.
    pub fn answer_waiters(&mut self, error: ErrorCode) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResponse::error(error, &member.member_id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(error));
            }
        }
    }

    /// Marks the group deleted: every waiting request is answered.
    pub fn mark_dead(&mut self, now_ms: i64) {
        self.answer_waiters(ErrorCode::CoordinatorNotAvailable);
        self.transition(GroupState::Dead, now_ms);
    }
}

/// Topics of a consumer protocol subscription (`ConsumerProtocolSubscription`:
/// int16 version, then an array of int16-prefixed topic names).
fn consumer_subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let b = &metadata[..];
    let count = i32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
    let mut pos = 6;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
        pos += 2;
        let name = b.get(pos..pos + len.max(0) as usize)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        pos += len.max(0) as usize;
    }
    Some(topics)
}

mod join;
#[cfg(test)]
mod tests;
