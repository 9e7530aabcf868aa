//! OffsetCommit: v2-9.
//!
//! Behaviour: a member of the current generation (or, with a negative
//! generation / member epoch, anyone while the group is empty or missing,
//! whatever member id it sends: a "simple" group, which the commit creates,
//! as in Kafka's `validateOffsetCommit`) commits offsets; they are written to
//! `__consumer_offsets` and the response is sent once the append is done.
//! Per partition: UNKNOWN_TOPIC_OR_PARTITION for a partition that does not
//! exist, OFFSET_METADATA_TOO_LARGE past `offset.metadata.max.bytes`. For the
//! whole request: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION (a missing group
//! with a generation before v9), GROUP_ID_NOT_FOUND (the same from v9),
//! REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, INVALID_GROUP_ID. A KIP-848
//! consumer group member commits at its current member epoch with v9+
//! (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION). The v2-v4
//! retention time is ignored (`offsets.retention.minutes` applies, as in
//! Kafka 2.1+).

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;
use crate::broker::Broker;
use crate::group::coordinator::{Committer, OffsetCommit};

/// Serves OffsetCommit.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let commits: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let results = broker
        .groups
        .commit(
            broker,
            &request.group_id.0,
            Committer {
                member_id: &request.member_id,
                instance: request.group_instance_id.as_deref(),
                generation_id: request.generation_id_or_member_epoch,
                api_version: ctx.version,
            },
            commits,
        )
        .await;
    // A commit is answered once the ISR has it, as Kafka's coordinator does.
    let results = if results.iter().any(Option::is_none) {
        match broker.groups.await_replicated(broker, &request.group_id.0).await {
            Ok(()) => results,
            Err(code) => results.into_iter().map(|r| r.or(Some(code))).collect(),
        }
    } else {
        results
    };
    let mut results = results.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = results.next().flatten();
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
