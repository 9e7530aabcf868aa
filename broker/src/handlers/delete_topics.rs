//! DeleteTopics: v1-6.
//!
//! Behaviour: by name (v1-5 `topic_names`, v6 `topics`) or by id (v6); an
//! unknown topic gets UNKNOWN_TOPIC_OR_PARTITION or UNKNOWN_TOPIC_ID. The
//! topic leaves the metadata log first, then its partition directories are
//! removed on this broker before the response is sent.
//!
//! Deviation: an existing internal topic (`__consumer_offsets`,
//! `__transaction_state`), named or by id, is refused with
//! INVALID_TOPIC_EXCEPTION "Cannot delete internal topic <name>". Kafka's
//! brokers have no such check (only `kafka-topics.sh` refuses on the client
//! side); deleting `__consumer_offsets` would lose every group's offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::{is_internal_topic, ControllerError, TopicRef};

use super::metadata::topic_name;
use super::RequestContext;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

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
    // Internal topics are closed to clients: refused here, never sent to the controller.
    let image = broker.image();
    let internal: Vec<Option<String>> = refs
        .iter()
        .map(|r| match r {
            TopicRef::Name(n) => image.topic(n).map(|t| t.name.clone()),
            TopicRef::Id(id) => image.topic_by_id(*id).map(|t| t.name.clone()),
        })
        .map(|name| name.filter(|n| is_internal_topic(n)))
        .collect();
    let deletable: Vec<TopicRef> =
        refs.iter().zip(&internal).filter(|(_, i)| i.is_none()).map(|(r, _)| r.clone()).collect();
    let mut deleted = broker.controller.delete_topics(deletable).await.into_iter();
    broker.metadata_changed();
    let results: Vec<Result<(String, uuid::Uuid), ControllerError>> = internal
        .into_iter()
        .map(|i| match i {
            Some(name) => {
                tracing::info!(topic = %name, "refused to delete an internal topic");
                Err(ControllerError::InvalidTopic(format!("Cannot delete internal topic {name}")))
            }
            None => deleted.next().unwrap_or_else(|| {
                Err(ControllerError::Internal("the controller gave no result for this topic".to_string()))
            }),
        })
        .collect();
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
