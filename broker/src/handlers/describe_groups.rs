//! DescribeGroups: v0-5.
//!
//! Behaviour: state, protocol type, chosen protocol and members (client id,
//! host, v4+ instance id, and in a Stable group each member's metadata and
//! assignment) of each group; an unknown group is described as Dead with
//! no error, as Kafka does. v3+ authorized operations, when asked, are every
//! group operation (no authorizer yet).

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::metadata::{authorized_operations, AUTHORIZED_OPERATIONS_OMITTED};
use super::RequestContext;
use crate::broker::Broker;
use crate::group::coordinator::str_bytes;

/// READ, DELETE, DESCRIBE on a group.
pub(super) const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Serves DescribeGroups.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = if ctx.version >= 3 {
        authorized_operations(request.include_authorized_operations, GROUP_OPERATIONS)
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            if id.0.is_empty() {
                return DescribedGroup::default().with_group_id(id).with_error_code(ErrorCode::InvalidGroupId.code());
            }
            if let Err(code) = broker.groups.gate(&id.0) {
                return DescribedGroup::default().with_group_id(id).with_error_code(code.code());
            }
            let g = broker.groups.describe(&id.0);
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_protocol_data(str_bytes(&g.protocol))
                .with_authorized_operations(operations)
                .with_members(
                    g.members
                        .into_iter()
                        .map(|(member_id, instance, client_id, client_host, metadata, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(&member_id))
                                .with_group_instance_id(if ctx.version >= 4 {
                                    instance.as_deref().map(str_bytes)
                                } else {
                                    None
                                })
                                .with_client_id(str_bytes(&client_id))
                                .with_client_host(str_bytes(&client_host))
                                .with_member_metadata(metadata)
                                .with_member_assignment(assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
