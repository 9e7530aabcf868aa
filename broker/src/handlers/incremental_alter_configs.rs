//! IncrementalAlterConfigs: v0-1.
//!
//! Behaviour: for a topic, each operation SET, DELETE, APPEND or SUBTRACT
//! (the last two on list configs such as `cleanup.policy`) applies to the
//! overrides, validated against Kafka's topic config catalog; an unknown
//! name or bad value gets INVALID_CONFIG, an unknown operation
//! INVALID_REQUEST, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
//! `validate_only` changes nothing.
//!
//! Deviation: broker resources get INVALID_REQUEST, as in AlterConfigs.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::{AlterConfigOp, AlterOp, ControllerError};

use super::alter_configs::config_resource;
use super::RequestContext;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

/// Serves IncrementalAlterConfigs.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let planned = config_resource(resource.resource_type, &resource.resource_name).and_then(|target| {
            let ops = resource
                .configs
                .iter()
                .map(|c| {
                    let op = AlterOp::from_code(c.config_operation).ok_or_else(|| {
                        ControllerError::InvalidRequest(format!("Unknown config operation {}", c.config_operation))
                    })?;
                    Ok(AlterConfigOp { name: c.name.to_string(), op, value: c.value.as_ref().map(|v| v.to_string()) })
                })
                .collect::<Result<Vec<_>, ControllerError>>()?;
            Ok((target, ops))
        });
        let outcome = match planned {
            Ok((target, ops)) => broker.controller.incremental_alter_configs(target, ops, request.validate_only).await,
            Err(e) => Err(e),
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => {
                response.with_error_code(e.error_code()).with_error_message(Some(StrBytes::from_string(e.message())))
            }
        });
    }
    if !request.validate_only {
        broker.metadata_changed();
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
