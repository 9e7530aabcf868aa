//! ConsumerGroupDescribe: v0-1 (KIP-848; v1 adds the member type, KIP-1099).
//!
//! Behaviour: state, group epoch, assignment epoch, assignor and members of
//! each consumer group: member and instance ids, rack, epoch, client id and
//! host, subscribed topics, current and target assignments (topic id, name
//! and partitions), and (v1) the member type: 0 for a member that stayed on
//! the classic protocol after an online upgrade, 1 otherwise. A group that does not exist or is a classic group gets
//! GROUP_ID_NOT_FOUND (the admin client then falls back to DescribeGroups);
//! an empty group id INVALID_GROUP_ID. Authorized operations, when asked,
//! are every group operation (no authorizer yet).

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::MetadataImage;
use weir_protocol::ErrorCode;

use super::describe_groups::GROUP_OPERATIONS;
use super::metadata::{authorized_operations, topic_name};
use super::RequestContext;
use crate::broker::Broker;
use crate::group::consumer::assignor;
use crate::group::coordinator::str_bytes;

/// `MemberType` of a member on the classic protocol.
const CLASSIC_MEMBER: i8 = 0;
/// `MemberType` of a member on the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;

fn assignment(image: &MetadataImage, partitions: &assignor::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .iter()
            .map(|(id, partitions)| {
                let name = image.topic_by_id(*id).map(|t| t.name.clone()).unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(topic_name(&name))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}

/// Serves ConsumerGroupDescribe.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = broker.image();
    let operations = authorized_operations(request.include_authorized_operations, GROUP_OPERATIONS);
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let group = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(operations);
            if id.0.is_empty() {
                return group.with_error_code(ErrorCode::InvalidGroupId.code());
            }
            match broker.groups.consumer_describe(&id.0) {
                Ok(d) => group
                    .with_group_state(StrBytes::from_static_str(d.state))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(str_bytes(&d.assignor))
                    .with_members(
                        d.members
                            .iter()
                            .map(|(m, target)| {
                                Member::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                    .with_member_epoch(m.current.member_epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names.iter().map(|n| topic_name(n)).collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_topic_regex.as_ref().map(|r| str_bytes(&r.pattern)),
                                    )
                                    .with_assignment(assignment(&image, &m.current.assigned))
                                    .with_target_assignment(assignment(&image, target))
                                    .with_member_type(if m.classic.is_some() {
                                        CLASSIC_MEMBER
                                    } else {
                                        CONSUMER_MEMBER
                                    })
                            })
                            .collect(),
                    ),
                Err(e) => group.with_error_code(e.code()).with_error_message(Some(StrBytes::from_string(format!(
                    "Group {} not found or is not a consumer group.",
                    id.0
                )))),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
