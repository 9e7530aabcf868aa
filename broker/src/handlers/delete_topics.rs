//! DeleteTopics: v1-6.
//!
//! Behaviour: by name (v1-5 `topic_names`, v6 `topics`) or by id (v6); an
//! unknown topic gets UNKNOWN_TOPIC_OR_PARTITION or UNKNOWN_TOPIC_ID. The
//! topic leaves the metadata log first, then its partition directories are
//! removed on this broker before the response is sent.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::TopicRef;

use super::metadata::topic_name;
use super::RequestContext;
use crate::broker::Broker;

/// Serves DeleteTopics.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let refs: Vec<TopicRef> = if ctx.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => TopicRef::Name(name.0.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        request.topic_names.iter().map(|n| TopicRef::Name(n.0.to_string())).collect()
    };
    let results = broker.controller.delete_topics(refs.clone());
    broker.metadata_changed();
    let responses = refs
        .into_iter()
        .zip(results)
        .map(|(r, result)| match result {
            Ok((name, id)) => {
                tracing::info!(topic = %name, "deleted topic");
                DeletableTopicResult::default().with_name(Some(topic_name(&name))).with_topic_id(id)
            }
            Err(e) => {
                let (name, id) = match r {
                    TopicRef::Name(n) => (Some(topic_name(&n)), uuid::Uuid::nil()),
                    TopicRef::Id(id) => (None, id),
                };
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(e.error_code())
                    .with_error_message(Some(StrBytes::from_string(e.message())))
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
