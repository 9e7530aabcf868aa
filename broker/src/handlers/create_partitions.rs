//! CreatePartitions: v0-3.
//!
//! Behaviour: grows a topic to `count` partitions, placed by the controller
//! or by the given assignments; a count not above the current one gets
//! INVALID_PARTITIONS, an unknown topic UNKNOWN_TOPIC_OR_PARTITION, a topic
//! named twice INVALID_REQUEST. `validate_only` changes nothing.
//!
//! Deviation (Kafka has no such check), as in CreateTopics: new partitions
//! that would not fit in this broker's file descriptors are refused with
//! POLICY_VIOLATION before the controller records anything (see
//! `create_topics::DescriptorCheck`).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::create_topics::DescriptorCheck;
use super::RequestContext;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

/// Serves CreatePartitions.
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let image = broker.image();
    let mut fds = DescriptorCheck::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let result = {
            let name = t.name.0.to_string();
            let current = image.topic(&name).map_or(0, |topic| topic.partitions.len() as u64);
            let additional = (t.count.max(0) as u64).saturating_sub(current);
            let outcome = if seen.get(&name).copied().unwrap_or(0) > 1 {
                Err((ErrorCode::InvalidRequest.code(), format!("Duplicate topic {name} in the request.")))
            } else if let Err(message) = fds.reserve(additional) {
                Err((ErrorCode::PolicyViolation.code(), message))
            } else {
                let assignments = t
                    .assignments
                    .map(|a| a.into_iter().map(|p| p.broker_ids.into_iter().map(|b| b.0).collect()).collect());
                broker
                    .controller
                    .create_partitions(&name, t.count, assignments, request.validate_only)
                    .await
                    .map_err(|e| (e.error_code(), e.message()))
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            match outcome {
                Ok(()) => result,
                Err((code, message)) => {
                    result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        };
        results.push(result);
    }
    if !request.validate_only {
        broker.metadata_changed();
    }
    CreatePartitionsResponse::default().with_results(results)
}
