//! DeleteGroups: v0-2.
//!
//! Behaviour: an empty group is deleted with its committed offsets
//! (tombstones in `__consumer_offsets`); a group with members gets
//! NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

/// Serves DeleteGroups.
pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|id| {
            let error = if id.0.is_empty() {
                Some(ErrorCode::InvalidGroupId)
            } else {
                broker.groups.delete_group(broker, &id.0)
            };
            DeletableGroupResult::default().with_group_id(id).with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
