//! OffsetFetch: v1-9.
//!
//! Behaviour: the committed offset, leader epoch (v5+) and metadata of each
//! requested partition, -1 where nothing is committed; `topics` null (v2+)
//! means every partition the group committed. v8+ batches several groups.
//! `require_stable` (v7+) needs nothing more while there are no
//! transactional commits. An empty group id gets INVALID_GROUP_ID. v9+
//! carries the member id and epoch of a KIP-848 consumer group member,
//! checked like OffsetCommit's (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::metadata::topic_name;
use super::RequestContext;
use crate::broker::Broker;
use crate::group::coordinator::str_bytes;
use crate::group::records::OffsetValue;

type Fetched = Vec<(String, i32, Option<OffsetValue>)>;
/// A topic and its partitions' committed values.
type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

/// Groups the fetched offsets by topic, in first-seen order.
fn by_topic(fetched: Fetched) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, value) in fetched {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, partitions)) => partitions.push((partition, value)),
            None => out.push((topic, vec![(partition, value)])),
        }
    }
    out
}

fn fetch(
    broker: &Broker,
    group: &str,
    member: Option<(Option<&str>, i32)>,
    wanted: Option<Vec<(String, i32)>>,
) -> Result<Fetched, ErrorCode> {
    if group.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    broker.groups.fetch_offsets(broker, group, member, wanted)
}

/// Serves OffsetFetch.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.to_string(), *p)))
                        .collect()
                });
                let result = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                let member = (ctx.version >= 9).then_some((g.member_id.as_deref(), g.member_epoch));
                match fetch(broker, &g.group_id.0, member, wanted) {
                    Ok(fetched) => result.with_topics(
                        by_topic(fetched)
                            .into_iter()
                            .map(|(topic, partitions)| {
                                OffsetFetchResponseTopics::default().with_name(topic_name(&topic)).with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(p, v)| {
                                            let (offset, epoch, metadata) = committed(v);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(metadata))
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    ),
                    Err(e) => result.with_error_code(e.code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.as_ref().map(|topics| {
        topics.iter().flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.to_string(), *p))).collect()
    });
    match fetch(broker, &request.group_id.0, None, wanted) {
        Ok(fetched) => OffsetFetchResponse::default().with_topics(
            by_topic(fetched)
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default().with_name(topic_name(&topic)).with_partitions(
                        partitions
                            .into_iter()
                            .map(|(p, v)| {
                                let (offset, epoch, metadata) = committed(v);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(if ctx.version >= 5 { epoch } else { -1 })
                                    .with_metadata(Some(metadata))
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
        Err(e) if ctx.version >= 2 => OffsetFetchResponse::default().with_error_code(e.code()),
        // v1 has no top-level error: report it on every requested partition.
        Err(e) => OffsetFetchResponse::default().with_topics(
            request
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(t.name.0.clone())).with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(StrBytes::default()))
                                    .with_error_code(e.code())
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}

/// (offset, leader epoch, metadata) of a committed value, or Kafka's "none".
fn committed(value: Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match value {
        Some(v) => (v.offset, v.leader_epoch, str_bytes(&v.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}
