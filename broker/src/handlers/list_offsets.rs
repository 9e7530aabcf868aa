//! ListOffsets: v1-9.
//!
//! Behaviour: per partition, by the special timestamps -1 (latest: the high
//! watermark, which is also the last stable offset while there are no
//! transactions), -2 (earliest: log start offset), -3 (v7+, the record with
//! the largest timestamp), -4 (v8+, earliest local: the log start offset, as
//! there is no tiered storage), -5 (v9+, latest tiered: -1, none), or a
//! timestamp (the first record whose timestamp is at least it; -1/-1 when
//! there is none). `current_leader_epoch` is checked like Fetch does. A
//! partition offline on this broker gets KAFKA_STORAGE_ERROR. A new leader
//! whose high watermark is still below the start of its leader epoch
//! answers OFFSET_NOT_AVAILABLE (retriable), as Kafka does, rather than an
//! offset lower than one its predecessor gave.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;
use crate::replica::{on_blocking_pool, Partition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

fn lookup(partition: &Partition, timestamp: i64, version: i16) -> Result<(i64, i64), ErrorCode> {
    match timestamp {
        LATEST => Ok((-1, partition.high_watermark())),
        EARLIEST => Ok((-1, partition.offsets().0)),
        MAX_TIMESTAMP if version >= 7 => Ok(partition.max_timestamp_offset()?.map_or((-1, -1), |(o, t)| (t, o))),
        EARLIEST_LOCAL if version >= 8 => Ok((-1, partition.offsets().0)),
        LATEST_TIERED if version >= 9 => Ok((-1, -1)),
        ts if ts >= 0 => {
            let found = partition.offset_for_timestamp(ts)?;
            // Only committed records are visible to a timestamp lookup.
            Ok(found.filter(|(o, _)| *o < partition.high_watermark()).map_or((-1, -1), |(o, t)| (t, o)))
        }
        _ => Err(ErrorCode::InvalidRequest),
    }
}

/// Serves ListOffsets.
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let (broker, version) = (broker.clone(), ctx.version);
    on_blocking_pool(move || answer(&broker, version, request)).await
}

fn answer(broker: &Broker, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let result = broker.replicas.lookup(&name, p.partition_index).and_then(|partition| {
                        partition.check_leader_epoch(p.current_leader_epoch)?;
                        partition.check_high_watermark_caught_up()?;
                        let (timestamp, offset) = lookup(&partition, p.timestamp, version)?;
                        // The epoch field exists from v4; older versions must leave it unset.
                        let epoch = if offset >= 0 && version >= 4 { partition.leader_epoch() } else { -1 };
                        Ok((timestamp, offset, epoch))
                    });
                    match result {
                        Ok((timestamp, offset, epoch)) => {
                            response.with_timestamp(timestamp).with_offset(offset).with_leader_epoch(epoch)
                        }
                        Err(code) => response
                            .with_error_code(code.code())
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
