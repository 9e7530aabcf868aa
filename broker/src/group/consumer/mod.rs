//! A consumer group of the KIP-848 protocol: members send
//! ConsumerGroupHeartbeat, the coordinator computes the assignment with a
//! server-side assignor and hands each member its share as the previous
//! owners let go of it.
//!
//! Epochs: the group epoch moves when membership, a subscription or the
//! subscribed topics' metadata change; the target assignment is recomputed
//! for it (its epoch becomes the assignment epoch); each member then moves
//! to that epoch through [`reconcile`]. Errors follow Kafka: an epoch ahead
//! of the coordinator's, or behind it other than by the one bump a lost
//! response can explain, is FENCED_MEMBER_EPOCH; a static member whose
//! instance id is held by a live member is UNRELEASED_INSTANCE_ID.
//!
//! Pure state like [`super::classic`]: time comes in as `Instant`s and the
//! caller does the I/O. The caller writes what a change did as Kafka's
//! records ([`records`]) before it keeps the change, so a restarted broker
//! has the same members, epochs and assignments.

pub mod assignor;
mod classic_members;
pub use classic_members::CONSUMER_PROTOCOL_TYPE;
pub mod reconcile;
pub mod records;
mod request;
pub(crate) use request::refuse;
pub use request::{validate, HeartbeatError, HeartbeatRequest, HeartbeatResponse, TopicRegex};
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use uuid::Uuid;
use weir_protocol::ErrorCode;

use assignor::{Assignment, MemberSubscription};
use reconcile::{reconcile, CurrentAssignment, MemberState};

/// Member epoch of a heartbeat that leaves the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for now (it may come back).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// The broker's `group.consumer.*` settings.
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.assignors`: names, the default first.
    pub assignors: Vec<String>,
    /// `group.consumer.migration.policy` allows upgrading a classic group.
    pub upgrade: bool,
    /// `group.consumer.migration.policy` allows downgrading to a classic group.
    pub downgrade: bool,
}

/// Every topic a group can subscribe to: name -> (id, partition count).
pub type TopicCatalog = BTreeMap<String, (Uuid, i32)>;

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// The topics it subscribes to by name.
    pub subscribed_topic_names: BTreeSet<String>,
    /// Its regular-expression subscription.
    pub subscribed_topic_regex: Option<TopicRegex>,
    /// The assignor it asked for.
    pub server_assignor: Option<String>,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout_ms: i32,
    /// Its epoch and partitions.
    pub current: CurrentAssignment,
    /// Set for a member that speaks the classic protocol (JoinGroup,
    /// SyncGroup, Heartbeat) in this group, after an online upgrade.
    pub classic: Option<ClassicMemberMetadata>,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
    /// A classic member told to rejoin (or that joined) must rejoin (or
    /// sync) by then.
    rejoin_deadline: Option<Instant>,
}

/// What a member speaking the classic protocol in a consumer group sent in
/// its JoinGroup: kept so the group can answer it and, when only such
/// members are left, turn back into a classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberMetadata {
    /// Its session timeout (ms).
    pub session_timeout_ms: i32,
    /// Its protocols (assignor names) with their `ConsumerProtocolSubscription`s.
    pub supported_protocols: Vec<(String, bytes::Bytes)>,
}

impl ConsumerMember {
    fn new(member_id: String, now: Instant) -> ConsumerMember {
        ConsumerMember {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: 0,
            current: CurrentAssignment::new(),
            classic: None,
            session_deadline: now,
            revocation_deadline: None,
            rejoin_deadline: None,
        }
    }
}

/// The states Kafka's tools print for a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch moved; the target assignment is not computed yet.
    Assigning,
    /// Some member has not reached the target assignment.
    Reconciling,
    /// Every member has its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// The name Kafka's tools print.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    /// Group id.
    pub group_id: String,
    /// Moves with membership, subscriptions and subscribed topic metadata.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment by member id.
    pub target: BTreeMap<String, Assignment>,
    static_members: HashMap<String, String>,
    /// Name -> (id, partition count) of the subscribed topics that exist.
    subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    /// Epoch of the member holding each partition (assigned or revoking).
    owners: HashMap<(Uuid, i32), i32>,
    /// When the group last became empty (offsets expire from there).
    pub state_timestamp_ms: i64,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(group_id: &str, now_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            static_members: HashMap::new(),
            subscription_metadata: BTreeMap::new(),
            owners: HashMap::new(),
            state_timestamp_ms: now_ms,
        }
    }

    /// The group's state.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| !m.current.is_reconciled_to(self.assignment_epoch)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The assignor the group uses: the one most members asked for, else
    /// the broker's default.
    pub fn assignor_name(&self, config: &ConsumerGroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.members.values().filter_map(|m| m.server_assignor.as_deref()) {
            *votes.entry(name).or_default() += 1;
        }
        let best = votes.iter().max_by_key(|(name, count)| (**count, std::cmp::Reverse(**name)));
        match best {
            Some((name, _)) => name.to_string(),
            None => config.assignors.first().cloned().unwrap_or_else(|| assignor::ASSIGNOR_NAMES[0].to_string()),
        }
    }

    /// Every topic some member subscribes to: by name, or by a regular
    /// expression as last resolved.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        let names = self.members.values().flat_map(|m| m.subscribed_topic_names.iter().cloned());
        names.chain(self.subscription_metadata.keys().cloned()).collect()
    }

    /// The existing topics `member` subscribes to.
    fn member_topics<'a>(member: &'a ConsumerMember, topics: &'a TopicCatalog) -> impl Iterator<Item = &'a str> {
        let by_name = member.subscribed_topic_names.iter().filter(|n| topics.contains_key(*n)).map(String::as_str);
        let by_regex = member
            .subscribed_topic_regex
            .iter()
            .flat_map(move |regex| topics.keys().filter(move |t| regex.matches(t)).map(String::as_str));
        by_name.chain(by_regex)
    }

    /// ConsumerGroupHeartbeat (the request already passed [`validate`]).
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        topics: &TopicCatalog,
        config: &ConsumerGroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if request.member_epoch < 0 {
            return self.leave(&request, now_ms);
        }
        let joining = request.member_epoch == 0;
        if joining && self.members.len() >= config.max_size && !self.members.contains_key(&request.member_id) {
            return refuse(
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {} members.", config.max_size),
            );
        }
        let member_id =
            if request.member_id.is_empty() { Uuid::new_v4().to_string() } else { request.member_id.clone() };
        let (member, is_new) = self.member_for(&request, &member_id, now)?;

        if member.classic.is_some() {
            return refuse(
                ErrorCode::UnknownMemberId,
                format!("Member {member_id} does not use the consumer protocol."),
            );
        }
        let mut updated = member.clone();
        updated.instance_id = request.instance_id.clone().or(updated.instance_id);
        updated.rack_id = request.rack_id.clone().or(updated.rack_id);
        if request.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(name) = &request.server_assignor {
            updated.server_assignor = Some(name.clone());
        }
        if let Some(names) = &request.subscribed_topic_names {
            updated.subscribed_topic_names = names.iter().cloned().collect();
        }
        match request.subscribed_topic_regex.as_deref() {
            None => {}
            Some("") => updated.subscribed_topic_regex = None,
            Some(pattern) if updated.subscribed_topic_regex.as_ref().map(|r| r.pattern.as_str()) != Some(pattern) => {
                updated.subscribed_topic_regex = Some(TopicRegex::new(pattern)?);
            }
            Some(_) => {}
        }
        updated.client_id = request.client_id.clone();
        updated.client_host = request.client_host.clone();
        let assigned_before = member.current.assigned.clone();
        let member = self.update_member(&member, updated, is_new, request.owned.as_ref(), topics, config, now);
        // A full request (a join, or one after an error) gets the assignment
        // whether or not it changed.
        let full = joining
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && request.owned.is_some());
        let assignment = (full || member.current.assigned != assigned_before).then(|| member.current.assigned.clone());
        if let Some(member) = self.members.get_mut(&member_id) {
            member.session_deadline = now + config.session_timeout;
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: member.current.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as i32,
            assignment,
        })
    }

    /// Puts `updated`, the new version of `member` (`is_new` when it just
    /// joined), in the group and runs the three steps of a rebalance: the
    /// group epoch when membership, subscriptions or their topics changed;
    /// the target assignment for that epoch; and the member's move towards
    /// its target, given the partitions it says it `owned`.
    #[allow(clippy::too_many_arguments)]
    fn update_member(
        &mut self,
        member: &ConsumerMember,
        updated: ConsumerMember,
        is_new: bool,
        owned: Option<&Assignment>,
        topics: &TopicCatalog,
        config: &ConsumerGroupConfig,
        now: Instant,
    ) -> ConsumerMember {
        let member_id = updated.member_id.clone();
        let subscription_changed = is_new
            || updated.subscribed_topic_names != member.subscribed_topic_names
            || updated.subscribed_topic_regex.as_ref().map(|r| &r.pattern)
                != member.subscribed_topic_regex.as_ref().map(|r| &r.pattern);
        if let Some(instance) = &updated.instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), updated);

        // 1. The group epoch.
        let metadata: TopicCatalog = self
            .members
            .values()
            .flat_map(|m| Self::member_topics(m, topics))
            .filter_map(|name| topics.get(name).map(|meta| (name.to_string(), *meta)))
            .collect();
        if subscription_changed || metadata != self.subscription_metadata {
            self.subscription_metadata = metadata;
            self.group_epoch += 1;
            tracing::info!(group = %self.group_id, epoch = self.group_epoch, "bumped consumer group epoch");
        }
        // 2. The target assignment for it.
        if self.group_epoch > self.assignment_epoch {
            self.compute_target_assignment(config);
        }
        // 3. This member towards its target.
        self.reconcile_member(&member_id, owned, now)
    }

    /// The member a heartbeat is for: existing (epoch checked), new on a
    /// join, or a static member's replacement.
    fn member_for(
        &mut self,
        request: &HeartbeatRequest,
        member_id: &str,
        now: Instant,
    ) -> Result<(ConsumerMember, bool), HeartbeatError> {
        let joining = request.member_epoch == 0;
        let Some(instance) = &request.instance_id else {
            return match self.members.get(member_id) {
                Some(member) => {
                    check_epoch(member, request.member_epoch, request.owned.as_ref())?;
                    Ok((member.clone(), false))
                }
                None if joining => Ok((ConsumerMember::new(member_id.to_string(), now), true)),
                None => refuse(
                    ErrorCode::UnknownMemberId,
                    format!("Member {member_id} is not a member of group {}.", self.group_id),
                ),
            };
        };
        let existing = self.static_members.get(instance).and_then(|id| self.members.get(id)).cloned();
        match existing {
            None if joining => match self.members.get(member_id) {
                Some(member) => Ok((member.clone(), false)),
                None => Ok((ConsumerMember::new(member_id.to_string(), now), true)),
            },
            None => refuse(ErrorCode::UnknownMemberId, format!("Instance id {instance} is unknown.")),
            Some(old) if joining => {
                if old.current.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    return refuse(
                        ErrorCode::UnreleasedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance} cannot join the group because \
                             the instance id is owned by {} member.",
                            old.member_id
                        ),
                    );
                }
                let replacement = self.replace_static_member(&old, member_id);
                tracing::info!(group = %self.group_id, instance, member = member_id, replaced = %old.member_id,
                    "static member rejoined the consumer group");
                Ok((replacement, false))
            }
            Some(old) => {
                if old.member_id != member_id {
                    return refuse(
                        ErrorCode::FencedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance} was fenced by member {}.",
                            old.member_id
                        ),
                    );
                }
                check_epoch(&old, request.member_epoch, request.owned.as_ref())?;
                Ok((old, false))
            }
        }
    }

    /// A new incarnation of a static member takes over the old one's place:
    /// its partitions and target, at epoch 0 until it reconciles.
    fn replace_static_member(&mut self, old: &ConsumerMember, member_id: &str) -> ConsumerMember {
        let mut replacement = old.clone();
        replacement.member_id = member_id.to_string();
        replacement.current.member_epoch = 0;
        replacement.current.previous_member_epoch = 0;
        let target = self.target.remove(&old.member_id);
        self.remove_member(&old.member_id);
        if let Some(target) = target {
            self.target.insert(member_id.to_string(), target);
        }
        replacement
    }

    fn compute_target_assignment(&mut self, config: &ConsumerGroupConfig) {
        let name = self.assignor_name(config);
        let Some(assignor) = assignor::by_name(&name) else { return };
        let partitions: BTreeMap<Uuid, i32> = self.subscription_metadata.values().copied().collect();
        let subscriptions: Vec<MemberSubscription> = self
            .members
            .values()
            .map(|m| MemberSubscription {
                member_id: m.member_id.clone(),
                topics: Self::member_topics(m, &self.subscription_metadata)
                    .filter_map(|name| self.subscription_metadata.get(name).map(|(id, _)| *id))
                    .collect(),
                current: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        self.target = assignor.assign(&subscriptions, &partitions);
        self.assignment_epoch = self.group_epoch;
        tracing::debug!(group = %self.group_id, epoch = self.assignment_epoch, assignor = name,
            "computed the target assignment");
    }

    /// Reconciles one member and keeps the partition owners in step.
    fn reconcile_member(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) -> ConsumerMember {
        let Some(member) = self.members.get(member_id).cloned() else {
            return ConsumerMember::new(member_id.to_string(), now);
        };
        if member.current.is_reconciled_to(self.assignment_epoch) {
            return member;
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owners = &self.owners;
        let next =
            reconcile(&member.current, self.assignment_epoch, &target, &|t, p| owners.get(&(t, p)).copied(), owned);
        if next == member.current {
            return member;
        }
        self.release(&member.current);
        self.hold(&next);
        let mut updated = member;
        if next.state == MemberState::UnrevokedPartitions {
            updated.revocation_deadline = Some(now + updated.rebalance_timeout());
        } else {
            updated.revocation_deadline = None;
        }
        updated.current = next;
        self.members.insert(member_id.to_string(), updated.clone());
        updated
    }

    fn release(&mut self, current: &CurrentAssignment) {
        for (topic, partitions) in current.assigned.iter().chain(current.pending_revocation.iter()) {
            for p in partitions {
                self.owners.remove(&(*topic, *p));
            }
        }
    }

    fn hold(&mut self, current: &CurrentAssignment) {
        for (topic, partitions) in current.assigned.iter().chain(current.pending_revocation.iter()) {
            for p in partitions {
                self.owners.insert((*topic, *p), current.member_epoch);
            }
        }
    }

    fn remove_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let member = self.members.remove(member_id)?;
        self.release(&member.current);
        self.target.remove(member_id);
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).is_some_and(|id| id == member_id) {
                self.static_members.remove(instance);
            }
        }
        Some(member)
    }

    /// Removes a member for good and moves the group epoch so the others
    /// get its partitions.
    pub fn fence(&mut self, member_id: &str, now_ms: i64) -> bool {
        if self.remove_member(member_id).is_none() {
            return false;
        }
        self.group_epoch += 1;
        if self.members.is_empty() {
            self.state_timestamp_ms = now_ms;
        }
        true
    }

    fn leave(&mut self, request: &HeartbeatRequest, now_ms: i64) -> Result<HeartbeatResponse, HeartbeatError> {
        let member_id = match &request.instance_id {
            None => {
                if !self.members.contains_key(&request.member_id) {
                    return refuse(
                        ErrorCode::UnknownMemberId,
                        format!("Member {} is not a member of group {}.", request.member_id, self.group_id),
                    );
                }
                request.member_id.clone()
            }
            Some(instance) => {
                let Some(holder) = self.static_members.get(instance).cloned() else {
                    return refuse(ErrorCode::UnknownMemberId, format!("Instance id {instance} is unknown."));
                };
                if holder != request.member_id {
                    return refuse(
                        ErrorCode::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {instance} was fenced by member {holder}.",
                            request.member_id
                        ),
                    );
                }
                if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    // Gone for now: it keeps its partitions until its session expires.
                    if let Some(member) = self.members.get(&holder).cloned() {
                        self.release(&member.current);
                        let mut current = member.current.clone();
                        current.previous_member_epoch = current.member_epoch;
                        current.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                        current.pending_revocation.clear();
                        self.hold(&current);
                        if let Some(m) = self.members.get_mut(&holder) {
                            m.current = current;
                            m.revocation_deadline = None;
                        }
                    }
                    tracing::info!(group = %self.group_id, member = %holder, instance, "static member left for now");
                    return Ok(HeartbeatResponse {
                        member_id: holder,
                        member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
                        heartbeat_interval_ms: 0,
                        assignment: None,
                    });
                }
                holder
            }
        };
        self.fence(&member_id, now_ms);
        tracing::info!(group = %self.group_id, member = %member_id, "member left the consumer group");
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Members whose session expired or that did not revoke within their
    /// rebalance timeout, with why.
    pub fn expired_members(&self, now: Instant) -> Vec<(String, &'static str)> {
        self.members
            .values()
            .filter_map(|m| {
                if now >= m.session_deadline {
                    Some((m.member_id.clone(), "its session expired"))
                } else if m.revocation_deadline.is_some_and(|d| now >= d)
                    && m.current.state == MemberState::UnrevokedPartitions
                {
                    Some((m.member_id.clone(), "it did not revoke its partitions within the rebalance timeout"))
                } else if m.rejoin_deadline.is_some_and(|d| now >= d) {
                    Some((m.member_id.clone(), "it did not rejoin or sync within the rebalance timeout"))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Fences members whose session expired or that did not revoke within
    /// their rebalance timeout. Returns their ids.
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> Vec<String> {
        let expired = self.expired_members(now);
        for (member_id, why) in &expired {
            tracing::info!(group = %self.group_id, member = %member_id, "fenced a consumer group member: {why}");
            self.fence(member_id, now_ms);
        }
        expired.into_iter().map(|(id, _)| id).collect()
    }

    /// OffsetCommit from this group: an admin or standalone commit (epoch
    /// below 0) only while the group is empty; a member's only at its
    /// current epoch, with OffsetCommit v9 or later.
    pub fn check_commit(&self, member_id: &str, member_epoch: i32, api_version: i16) -> Result<(), ErrorCode> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if member.classic.is_some() {
            // A classic member commits with its generation, which is its epoch.
            return if member_epoch == member.current.member_epoch {
                Ok(())
            } else {
                Err(ErrorCode::IllegalGeneration)
            };
        }
        if api_version < 9 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        if member_epoch != member.current.member_epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch v9+ from a member: only at its current epoch.
    pub fn check_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> Result<(), ErrorCode> {
        let Some(member_id) = member_id else {
            return if member_epoch < 0 { Ok(()) } else { Err(ErrorCode::UnknownMemberId) };
        };
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if member_epoch != member.current.member_epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// The epoch checks of a heartbeat from a known member.
fn check_epoch(member: &ConsumerMember, received: i32, owned: Option<&Assignment>) -> Result<(), HeartbeatError> {
    let known = member.current.member_epoch;
    if received > known {
        return refuse(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group \
                 coordinator ({known}). The member must abandon all its partitions and rejoin."
            ),
        );
    }
    if received < known {
        // One bump behind, owning only what it still has: the response with
        // the bump was lost, so it gets the epoch again.
        let subset = owned.is_some_and(|owned| {
            owned.iter().all(|(topic, partitions)| {
                member.current.assigned.get(topic).is_some_and(|assigned| partitions.is_subset(assigned))
            })
        });
        if received != member.current.previous_member_epoch || !subset {
            return refuse(
                ErrorCode::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({received}) than the one known by the \
                     group coordinator ({known}). The member must abandon all its partitions and rejoin."
                ),
            );
        }
    }
    Ok(())
}
