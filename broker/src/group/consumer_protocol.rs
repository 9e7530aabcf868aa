//! The coordinator's side of the consumer group protocol (KIP-848):
//! ConsumerGroupHeartbeat and ConsumerGroupDescribe over the groups of
//! [`GroupCoordinator`]. The group logic is in [`super::consumer`].

use std::time::Instant;

use weir_protocol::ErrorCode;

use super::consumer::assignor::Assignment;
use super::consumer::{
    self, refuse, ConsumerGroup, ConsumerMember, HeartbeatError, HeartbeatRequest, HeartbeatResponse, TopicCatalog,
};
use super::coordinator::GroupCoordinator;
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

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat.
    ///
    /// A heartbeat at epoch 0 creates the group, or turns an empty classic
    /// group (or one that only holds committed offsets) into a consumer
    /// group. A non-empty classic group refuses it with GROUP_ID_NOT_FOUND,
    /// as Kafka does without online migration. A member of a group this
    /// broker does not know (after a restart: membership is not persisted)
    /// gets UNKNOWN_MEMBER_ID, which makes it rejoin.
    pub fn consumer_heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if group_id.is_empty() {
            return refuse(ErrorCode::InvalidRequest, "GroupId can't be empty.");
        }
        consumer::validate(&request, &self.consumer_config)?;
        if let Err(code) = self.ensure_offsets_topic(broker) {
            return refuse(code, "The coordinator is not available.");
        }
        let image = broker.image();
        let topics: TopicCatalog =
            image.topics.values().map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32))).collect();
        let mut groups = self.lock();
        let joining = request.member_epoch == 0;
        if !groups.contains_key(group_id) && !joining {
            return refuse(
                ErrorCode::UnknownMemberId,
                format!("Member {} is not in group {group_id}.", request.member_id),
            );
        }
        let entry = Self::entry(&mut groups, group_id);
        if entry.consumer.is_none() {
            if !entry.group.is_empty() {
                return refuse(ErrorCode::GroupIdNotFound, format!("Group {group_id} is not a consumer group."));
            }
            if !joining {
                return refuse(
                    ErrorCode::UnknownMemberId,
                    format!("Member {} is not in group {group_id}.", request.member_id),
                );
            }
            entry.consumer = Some(ConsumerGroup::new(group_id, now_ms()));
        }
        let Some(group) = entry.consumer.as_mut() else {
            return refuse(ErrorCode::UnknownServerError, "The group vanished.");
        };
        group.heartbeat(request, &topics, &self.consumer_config, Instant::now(), now_ms())
    }

    /// ConsumerGroupDescribe of one group: GROUP_ID_NOT_FOUND for a group
    /// that does not exist or is not a consumer group (the admin client
    /// then asks DescribeGroups).
    pub fn consumer_describe(&self, group_id: &str) -> Result<ConsumerGroupDescription, ErrorCode> {
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
