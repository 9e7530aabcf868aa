//! CreateTopics: v2-7.
//!
//! Behaviour: validated and placed by the controller (names, partition
//! count, replication factor against the registered brokers, manual
//! assignments, configs); each topic gets its own error code and message.
//! `validate_only` checks everything and creates nothing. v5+ results carry
//! the partition count, replication factor and every config of the new
//! topic with its source, as Kafka returns them; v7 the topic id. The
//! partitions are open on this broker before the response is sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::CreateTopic;

use super::RequestContext;
use crate::admin::configs::resolve_topic_configs;
use crate::broker::Broker;

/// Serves CreateTopics.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let creates: Vec<CreateTopic> = request
        .topics
        .iter()
        .map(|t| CreateTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                .collect(),
            configs: t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect(),
        })
        .collect();
    let results = broker.controller.create_topics(creates.clone(), request.validate_only);
    if !request.validate_only {
        broker.metadata_changed();
    }
    let topics = request
        .topics
        .into_iter()
        .zip(creates)
        .zip(results)
        .map(|((requested, create), result)| {
            let base = CreatableTopicResult::default().with_name(requested.name);
            match result {
                Ok(topic) => {
                    tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), validate_only = request.validate_only, "created topic");
                    let mut result = base
                        .with_topic_id(topic.id)
                        .with_num_partitions(topic.partitions.len() as i32)
                        .with_replication_factor(topic.replication_factor() as i16);
                    if ctx.version >= 5 {
                        let overrides: BTreeMap<String, String> =
                            create.configs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
                        let configs = resolve_topic_configs(&broker.config, &overrides)
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(c.def.name))
                                    .with_value(Some(StrBytes::from_string(c.value)))
                                    .with_read_only(false)
                                    .with_config_source(c.source as i8)
                                    .with_is_sensitive(false)
                            })
                            .collect();
                        result = result.with_configs(Some(configs));
                    }
                    result
                }
                Err(e) => base
                    .with_error_code(e.error_code())
                    .with_error_message(Some(StrBytes::from_string(e.message())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
