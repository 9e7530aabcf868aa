//! AlterConfigs: v0-2 (the legacy, whole-set form).
//!
//! Behaviour: for a topic, the given configs replace every override it had
//! (a null value is dropped), validated against Kafka's topic config catalog
//! (INVALID_CONFIG for an unknown name or a bad value); `validate_only`
//! changes nothing. Partitions apply the new settings before the response.
//!
//! Deviation: broker resources get INVALID_REQUEST: dynamic broker configs
//! are not applied by Weir yet, so they are not accepted either.

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::{ConfigResource, ControllerError};

use super::describe_configs::RESOURCE_TOPIC;
use super::RequestContext;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

/// The controller resource for a request's (type, name), or the error Kafka gives.
pub fn config_resource(resource_type: i8, name: &str) -> Result<ConfigResource, ControllerError> {
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigResource::Topic(name.to_string())),
        super::describe_configs::RESOURCE_BROKER => {
            Err(ControllerError::InvalidRequest("Dynamic broker configs are not supported by this broker yet".into()))
        }
        other => Err(ControllerError::InvalidRequest(format!("Unsupported resource type {other}"))),
    }
}

/// Serves AlterConfigs.
pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = match config_resource(resource.resource_type, &resource.resource_name) {
            Ok(target) => {
                let configs = resource
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                broker.controller.alter_configs(target, configs, request.validate_only).await
            }
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
    AlterConfigsResponse::default().with_responses(responses)
}
