//! The coordinator's side of consumer groups (KIP-848): ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe over the groups of [`GroupCoordinator`], the
//! classic requests of members that stayed on the classic protocol, online
//! upgrade and downgrade, and writing every change to `__consumer_offsets`
//! before it is kept. The group logic is in [`super::consumer`].

use std::time::Instant;

use tracing::{info, warn};
use weir_protocol::ErrorCode;

use super::classic::{ClassicGroup, JoinRequest, JoinResponse, SyncRequest, SyncResponse};
use super::consumer::assignor::Assignment;
use super::consumer::records::Change;
use super::consumer::{
    self, refuse, ConsumerGroup, ConsumerMember, HeartbeatError, HeartbeatRequest, HeartbeatResponse, TopicCatalog,
    CONSUMER_PROTOCOL_TYPE,
};
use super::coordinator::{GroupCoordinator, GroupEntry};
use super::records::RecordKey;
use crate::broker::Broker;
use crate::replica::now_ms;

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerGroupDescription {
    /// State name.
    pub state: &'static str,
    /// Group epoch.
    pub group_epoch: i32,
    /// Target assignment epoch.
    pub assignment_epoch: i32,
    /// The server assignor in use.
    pub assignor: String,
    /// Members with their target assignments.
    pub members: Vec<(ConsumerMember, Assignment)>,
}

/// Whether a classic member joined in the step from `before` to `after` with
/// the instance id of a consumer-protocol static member that is now gone.
fn replaced_by_classic_static_member(before: &ConsumerGroup, after: &ConsumerGroup) -> bool {
    let departed_instance = |instance: &String| {
        before.members.values().any(|old| {
            old.classic.is_none()
                && old.instance_id.as_ref() == Some(instance)
                && !after.members.contains_key(&old.member_id)
        })
    };
    after.members.values().any(|m| {
        m.classic.is_some()
            && !before.members.contains_key(&m.member_id)
            && m.instance_id.as_ref().is_some_and(departed_instance)
    })
}

/// The topics a group can use, from the broker's metadata image.
fn catalog(broker: &Broker) -> TopicCatalog {
    broker.image().topics.values().map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32))).collect()
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat.
    ///
    /// A heartbeat at epoch 0 creates the group, or turns an empty classic
    /// group (or one that only holds committed offsets) into a consumer
    /// group. A classic group with members of the `consumer` protocol type
    /// is upgraded online when `group.consumer.migration.policy` allows
    /// (its members stay, speaking the classic protocol); any other
    /// non-empty classic group answers GROUP_ID_NOT_FOUND, as in Kafka.
    pub async fn consumer_heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if group_id.is_empty() {
            return refuse(ErrorCode::InvalidRequest, "GroupId can't be empty.");
        }
        consumer::validate(&request, &self.consumer_config)?;
        if let Err(code) = self.ensure_offsets_topic(broker).await {
            return refuse(code, "The coordinator is not available.");
        }
        if let Err(code) = self.gate(group_id) {
            return refuse(code, format!("This broker is not the coordinator of group {group_id}."));
        }
        let topics = catalog(broker);
        let mut groups = self.lock();
        let joining = request.member_epoch == 0;
        let unknown_member =
            || refuse(ErrorCode::UnknownMemberId, format!("Member {} is not in group {group_id}.", request.member_id));
        if !groups.contains_key(group_id) && !joining {
            return unknown_member();
        }
        let entry = Self::entry(&mut groups, group_id);
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut changes = Vec::new();
        let mut upgraded = false;
        let before = match &entry.consumer {
            Some(group) => group.clone(),
            None if !entry.group.is_empty() => {
                if !joining || !self.upgradable(&entry.group) {
                    return refuse(ErrorCode::GroupIdNotFound, format!("Group {group_id} is not a consumer group."));
                }
                let group = ConsumerGroup::from_classic(&entry.group, &topics, &self.consumer_config, now, now_ms)
                    .or_else(|e| {
                        refuse(ErrorCode::GroupIdNotFound, format!("Cannot upgrade the classic group {group_id}: {e}."))
                    })?;
                changes.push((RecordKey::GroupMetadata { group: group_id.to_string() }.encode(), None));
                changes.extend(group.changes_since(&ConsumerGroup::new(group_id, now_ms)));
                upgraded = true;
                group
            }
            None => {
                if !joining {
                    return unknown_member();
                }
                if entry.group.protocol_type.is_some() {
                    // The empty classic group's record goes, as Kafka writes on a conversion.
                    changes.push((RecordKey::GroupMetadata { group: group_id.to_string() }.encode(), None));
                }
                ConsumerGroup::new(group_id, now_ms)
            }
        };
        let mut group = before.clone();
        let response = group.heartbeat(request, &topics, &self.consumer_config, now, now_ms)?;
        if let Err(code) = self.keep(broker, entry, &before, group, changes) {
            return refuse(code, "The group's records could not be written.");
        }
        if upgraded {
            info!(group = group_id, "upgraded a classic group to a consumer group");
        }
        Ok(response)
    }

    /// Whether `group.consumer.migration.policy` and the group let a
    /// classic group with members become a consumer group.
    fn upgradable(&self, classic: &ClassicGroup) -> bool {
        self.consumer_config.upgrade
            && classic.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
            && classic.members.len() <= self.consumer_config.max_size
    }

    /// Writes what took a consumer group from `before` to `group` (after
    /// `changes`, records that must come first), then keeps `group` in
    /// `entry`. A group left with only classic-protocol members after the
    /// last consumer-protocol member went becomes a classic group again
    /// (online downgrade). It rebalances at once, unless a classic static
    /// member took the departed member's place in a settled group: then, as
    /// in Kafka, it stays stable and the newcomer's SyncGroup at its member
    /// epoch gets the partitions it inherited.
    fn keep(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        before: &ConsumerGroup,
        group: ConsumerGroup,
        mut changes: Vec<Change>,
    ) -> Result<(), ErrorCode> {
        let group_id = group.group_id.clone();
        let (now, now_ms) = (Instant::now(), now_ms());
        // The last consumer-protocol member just went, and classic members are left.
        let downgrade = self.consumer_config.downgrade
            && before.members.values().any(|m| m.classic.is_none())
            && !group.members.is_empty()
            && group.members.values().all(|m| m.classic.is_some())
            && group.members.len() <= self.config.max_size;
        // Only then the topic catalog (for the members' assignments): not on every heartbeat.
        if let Some(mut value) = downgrade.then(|| group.classic_group_value(&catalog(broker), now_ms)).flatten() {
            // Every member already owns its target at the group epoch, which is the generation.
            let settled = replaced_by_classic_static_member(before, &group)
                && group.state() == consumer::ConsumerGroupState::Stable;
            if !settled {
                // As in Kafka, the departure is not a new epoch: the generation
                // is the epoch the classic members are at, so they rejoin
                // cooperatively instead of losing their partitions.
                value.generation = before.group_epoch;
            }
            let mut classic = ClassicGroup::restore(&group_id, value, now);
            changes.extend(before.tombstones());
            changes.push(Self::group_record(&classic));
            self.write(broker, &group_id, changes)?;
            if !settled {
                classic.prepare_rebalance(&self.config, now, now_ms);
            }
            entry.consumer = None;
            entry.group = classic;
            info!(group = %group_id, rebalancing = !settled,
                "downgraded a consumer group to a classic group: only classic members are left");
            return Ok(());
        }
        changes.extend(group.changes_since(before));
        if !changes.is_empty() {
            self.write(broker, &group_id, changes)?;
        }
        if !entry.group.is_empty() {
            // An upgrade: the classic group's waiting requests must rejoin the consumer group.
            entry.group.answer_waiters(ErrorCode::RebalanceInProgress);
            entry.group = ClassicGroup::new(&group_id, now_ms);
        }
        entry.consumer = Some(group);
        Ok(())
    }

    /// Fences the members of a consumer group whose session or rebalance
    /// timeout ran out, writing their departure first (retried on the next
    /// tick if the write fails).
    pub(super) fn consumer_tick(&self, broker: &Broker, entry: &mut GroupEntry, now: Instant) {
        let Some(before) = entry.consumer.as_ref().filter(|g| !g.expired_members(now).is_empty()).cloned() else {
            return;
        };
        let mut group = before.clone();
        group.tick(now, now_ms());
        if let Err(code) = self.keep(broker, entry, &before, group, Vec::new()) {
            warn!(group = %before.group_id, error = ?code, "could not write fenced members; will retry");
        }
    }

    /// Runs a classic request on the entry's consumer group and keeps what
    /// it changed.
    fn with_consumer_group<T>(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        request: impl FnOnce(&mut ConsumerGroup) -> Result<T, ErrorCode>,
    ) -> Result<T, ErrorCode> {
        let before = entry.consumer.clone().ok_or(ErrorCode::UnknownMemberId)?;
        let mut group = before.clone();
        let answer = request(&mut group);
        // Even a refused request may have moved a deadline or a session.
        self.keep(broker, entry, &before, group, Vec::new())?;
        answer
    }

    /// JoinGroup to a consumer group that has members.
    pub(super) fn classic_join_consumer_group(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        request: &JoinRequest,
    ) -> JoinResponse {
        let config = &self.consumer_config;
        let timeouts = self.config.min_session_timeout..=self.config.max_session_timeout;
        let topics = catalog(broker);
        self.with_consumer_group(broker, entry, |group| {
            if !timeouts.contains(&request.session_timeout) {
                return Err(ErrorCode::InvalidSessionTimeout);
            }
            group.classic_join(request, &topics, config, Instant::now())
        })
        .unwrap_or_else(|code| JoinResponse {
            error: Some(code),
            generation_id: -1,
            member_id: request.member_id.clone(),
            ..Default::default()
        })
    }

    /// SyncGroup to a consumer group.
    pub(super) fn classic_sync_consumer_group(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        request: &SyncRequest,
    ) -> SyncResponse {
        let topics = catalog(broker);
        self.with_consumer_group(broker, entry, |group| group.classic_sync(request, &topics, Instant::now()))
            .unwrap_or_else(|code| SyncResponse { error: Some(code), ..Default::default() })
    }

    /// Heartbeat to a consumer group.
    pub(super) fn classic_heartbeat_consumer_group(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Option<ErrorCode> {
        let config = &self.consumer_config;
        self.with_consumer_group(broker, entry, |group| {
            group.classic_heartbeat(member_id, instance, generation_id, config, Instant::now())
        })
        .err()
    }

    /// LeaveGroup to a consumer group, one result per member.
    pub(super) fn classic_leave_consumer_group(
        &self,
        broker: &Broker,
        entry: &mut GroupEntry,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        self.with_consumer_group(broker, entry, |group| {
            Ok(members
                .iter()
                .map(|(member_id, instance)| group.classic_leave(member_id, instance.as_deref(), now_ms()).err())
                .collect())
        })
    }

    /// ConsumerGroupDescribe of one group: GROUP_ID_NOT_FOUND for a group
    /// that does not exist or is not a consumer group (the admin client
    /// then asks DescribeGroups).
    pub fn consumer_describe(&self, group_id: &str) -> Result<ConsumerGroupDescription, ErrorCode> {
        self.gate(group_id)?;
        let groups = self.lock();
        let group = groups.get(group_id).and_then(|e| e.consumer.as_ref()).ok_or(ErrorCode::GroupIdNotFound)?;
        Ok(ConsumerGroupDescription {
            state: group.state().name(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: group.assignor_name(&self.consumer_config),
            members: group
                .members
                .values()
                .map(|m| (m.clone(), group.target.get(&m.member_id).cloned().unwrap_or_default()))
                .collect(),
        })
    }
}
