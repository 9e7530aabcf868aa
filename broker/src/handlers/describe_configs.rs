//! DescribeConfigs: v1-4.
//!
//! Behaviour: topics (resource type 2) list every topic config of Kafka's
//! catalog with its effective value, source (DYNAMIC_TOPIC_CONFIG,
//! STATIC_BROKER_CONFIG or DEFAULT_CONFIG), synonyms when asked (v1+), type
//! and documentation when asked (v3+); `configuration_keys` narrows the list.
//! This broker (type 4, its id or "" for the cluster default) lists the
//! broker properties Weir understands, with their values and sources.
//! An unknown topic gets UNKNOWN_TOPIC_OR_PARTITION; another broker's id or
//! another resource type INVALID_REQUEST.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::admin::configs::{broker_configs, resolve_topic_configs, ConfigSynonym, DescribedConfig};
use crate::broker::Broker;

/// DescribeConfigs resource type for topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs resource type for brokers.
pub const RESOURCE_BROKER: i8 = 4;

fn entry(config: DescribedConfig, request: &DescribeConfigsRequest) -> DescribeConfigsResourceResult {
    let synonyms = if request.include_synonyms {
        config
            .synonyms
            .into_iter()
            .map(|ConfigSynonym { name, value, source }| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_source(source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(config.name))
        .with_value(config.value.map(StrBytes::from_string))
        .with_read_only(config.read_only)
        .with_config_source(config.source as i8)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config.config_type.code())
        .with_documentation(request.include_documentation.then(|| StrBytes::from_string(config.doc.to_string())))
}

/// Serves DescribeConfigs.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let described: Result<Vec<DescribedConfig>, (ErrorCode, String)> = match resource.resource_type {
                RESOURCE_TOPIC => match image.topic(&name) {
                    Some(_) => Ok(resolve_topic_configs(&broker.config, &image.topic_config_overrides(&name))
                        .into_iter()
                        .map(DescribedConfig::from)
                        .collect()),
                    None => Err((ErrorCode::UnknownTopicOrPartition, format!("Topic {name} does not exist."))),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok(broker_configs(&broker.config))
                }
                RESOURCE_BROKER => Err((
                    ErrorCode::InvalidRequest,
                    format!("Unexpected broker id, expected {}", broker.config.node_id),
                )),
                other => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type {other}"))),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match described {
                Ok(configs) => {
                    let wanted = |n: &str| {
                        resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == n))
                    };
                    result.with_configs(
                        configs.into_iter().filter(|c| wanted(&c.name)).map(|c| entry(c, &request)).collect(),
                    )
                }
                Err((code, message)) => {
                    result.with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
