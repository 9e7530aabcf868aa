//! ListGroups: v0-5.
//!
//! Behaviour: every group this coordinator holds, with its protocol type,
//! v4+ its state (filtered by `states_filter`, case-insensitive) and v5+
//! its type (`classic` or `consumer`; filtered by `types_filter`).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::coordinator::str_bytes;

/// Serves ListGroups.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let state_ok = |state: &str| {
        ctx.version < 4
            || request.states_filter.is_empty()
            || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
    };
    let type_ok = |group_type: &str| {
        ctx.version < 5
            || request.types_filter.is_empty()
            || request.types_filter.iter().any(|t| t.eq_ignore_ascii_case(group_type))
    };
    let mut groups: Vec<ListedGroup> = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| state_ok(g.state) && type_ok(g.group_type))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_group_state(if ctx.version >= 4 {
                    StrBytes::from_static_str(g.state)
                } else {
                    StrBytes::default()
                })
                .with_group_type(if ctx.version >= 5 {
                    StrBytes::from_static_str(g.group_type)
                } else {
                    StrBytes::default()
                })
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}
