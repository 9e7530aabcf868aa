//! CreateTopics: v2-7.
//!
//! Behaviour: validated and placed by the controller (names, partition
//! count, replication factor against the registered brokers, manual
//! assignments, configs); each topic gets its own error code and message.
//! `validate_only` checks everything and creates nothing. v5+ results carry
//! the partition count, replication factor and every config of the new
//! topic with its source, as Kafka returns them; v7 the topic id. The
//! partitions are open on this broker before the response is sent.
//!
//! Deviation (Kafka has no such check): a topic whose partitions would not
//! fit in this broker's file descriptors is refused with POLICY_VIOLATION
//! (non-retriable) and a message saying so, before the controller records
//! anything, instead of being created and then failing to open with EMFILE.
//! Each partition log needs one descriptor (its active segment's `.log`;
//! indexes are memory-mapped). The check assumes this broker hosts a replica
//! of every new partition (exact on one node, conservative in a cluster) and
//! keeps [`FD_RESERVE`] descriptors free for connections and transient files:
//! it refuses when `open + new partitions + FD_RESERVE > soft RLIMIT_NOFILE`,
//! read from `/proc/self/limits` and `/proc/self/fd` (no check where those are
//! unreadable or the limit is unlimited). Topics of one request are counted
//! in order, so the ones that fit are still created.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use weir_controller::CreateTopic;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::admin::configs::resolve_topic_configs;
use crate::broker::Broker;
use weir_controller::ControllerOperations;

/// Descriptors kept free for connections, segment rolls and short-lived files when deciding whether
/// new partitions fit (see the module docs).
pub(crate) const FD_RESERVE: u64 = 1000;

/// This process's soft `RLIMIT_NOFILE` and currently open descriptors, from `/proc/self`;
/// `None` when unknown or unlimited.
fn descriptor_budget() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft: u64 = line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((soft, open))
}

/// Tracks descriptors promised to partitions accepted earlier in the same request.
pub(crate) struct DescriptorCheck {
    budget: Option<(u64, u64)>,
    promised: u64,
}

impl DescriptorCheck {
    pub(crate) fn new() -> Self {
        DescriptorCheck { budget: descriptor_budget(), promised: 0 }
    }

    /// `Err(message)` if `partitions` more partition logs would not fit; otherwise counts them.
    /// Zero partitions always fit (the request is invalid or changes nothing: the controller answers).
    pub(crate) fn reserve(&mut self, partitions: u64) -> Result<(), String> {
        if partitions == 0 {
            return Ok(());
        }
        if let Some((limit, open)) = self.budget {
            let needed = open + self.promised + partitions + FD_RESERVE;
            if needed > limit {
                tracing::warn!(
                    partitions,
                    open,
                    limit,
                    reserve = FD_RESERVE,
                    "refusing new partitions: not enough file descriptors"
                );
                return Err(format!(
                    "Not enough file descriptors on broker: {partitions} new partition(s) need one each, \
                     {} are open or promised and {FD_RESERVE} are kept for connections, of a limit of {limit} \
                     (raise the broker's RLIMIT_NOFILE, ulimit -n).",
                    open + self.promised
                ));
            }
        }
        self.promised += partitions;
        Ok(())
    }
}

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
    // Refused for lack of descriptors: never sent to the controller. Existing topics and invalid
    // partition counts count as nothing: the controller gives them their own error.
    let image = broker.image();
    let mut fds = DescriptorCheck::new();
    let refused: Vec<Option<String>> = creates
        .iter()
        .map(|c| {
            let partitions = match (c.num_partitions, c.assignments.len()) {
                _ if image.topic(&c.name).is_some() => 0,
                (n, _) if n > 0 => n as u64,
                (-1, 0) => broker.config.num_partitions.max(0) as u64,
                (-1, a) => a as u64,
                _ => 0,
            };
            fds.reserve(partitions).err()
        })
        .collect();
    let to_create: Vec<CreateTopic> =
        creates.iter().zip(&refused).filter(|(_, r)| r.is_none()).map(|(c, _)| c.clone()).collect();
    let mut results = broker.controller.create_topics(to_create, request.validate_only).await.into_iter();
    if !request.validate_only {
        broker.metadata_changed();
    }
    let topics = request
        .topics
        .into_iter()
        .zip(creates)
        .zip(refused)
        .map(|((requested, create), refused)| {
            let base = CreatableTopicResult::default().with_name(requested.name);
            let result = match refused {
                Some(message) => Err((ErrorCode::PolicyViolation.code(), message)),
                None => match results.next() {
                    Some(result) => result.map_err(|e| (e.error_code(), e.message())),
                    None => Err((ErrorCode::UnknownServerError.code(), "No result from the controller.".to_string())),
                },
            };
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
                Err((code, message)) => base
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_check_refuses_what_does_not_fit() {
        let mut check = DescriptorCheck::new();
        let Some((limit, _)) = check.budget else { return };
        assert!(check.reserve(1).is_ok());
        let message = check.reserve(limit).unwrap_err();
        assert!(message.contains("file descriptors"), "{message}");
        // What was refused is not counted against later topics; nothing always fits.
        assert!(check.reserve(1).is_ok());
        assert_eq!(check.promised, 2);
        check.promised = limit;
        assert!(check.reserve(0).is_ok());
    }
}
