//! Request dispatch: one module per Kafka API, each opening with its
//! versions, behaviour and deviations from Kafka.
//!
//! The dispatch table below maps an API key to its handler and holds no
//! logic; the versions served come from
//! [`weir_protocol::api_table::ADVERTISED_APIS`], which ApiVersions also
//! reports, so what is advertised and what is dispatched cannot drift apart
//! (a test walks the table).

pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leader_hints;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tracing::debug;
use weir_protocol::api_table::{advertised_range, PRODUCE_MIN_SERVED_VERSION};
use weir_protocol::chunked::ChunkedBuf;
use weir_protocol::header::{parse_request, write_response_header, HeaderError};
use weir_protocol::legacy_produce;

use crate::broker::Broker;

/// A request that closes its connection instead of getting a response, as
/// Kafka closes connections for requests it cannot parse or does not serve.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The header does not parse.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// An API Weir does not serve.
    #[error("api {0:?} is not served")]
    UnsupportedApi(ApiKey),
    /// A version outside the advertised range.
    #[error("{api_key:?} v{version} is outside the advertised range")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The version requested.
        version: i16,
    },
    /// The body does not decode at its version.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api_key: ApiKey,
        /// The version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// The response does not encode (a bug, logged and the connection closed).
    #[error("could not encode the {0:?} response: {1}")]
    Encode(ApiKey, String),
    /// The table advertises an API the dispatcher has no arm for (a bug; a test guards it).
    #[error("no handler for advertised api {0:?}")]
    NoHandler(ApiKey),
}

/// What a handler knows of its request besides the body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The API.
    pub api_key: ApiKey,
    /// The request version.
    pub version: i16,
    /// The correlation id.
    pub correlation_id: i32,
    /// The client id, if sent.
    pub client_id: Option<StrBytes>,
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
}

fn decode<T: Decodable>(ctx: &RequestContext, body: &mut Bytes) -> Result<T, HandleError> {
    T::decode(body, ctx.version).map_err(|e| HandleError::Malformed {
        api_key: ctx.api_key,
        version: ctx.version,
        reason: e.to_string(),
    })
}

/// An encoded response (response header and message) as chunks written in
/// order: a Fetch response references the record batches it read instead of
/// copying them.
#[derive(Debug)]
pub struct Response {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Response {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never, for a Kafka response).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Its bytes in one buffer (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

impl From<BytesMut> for Response {
    fn from(buf: BytesMut) -> Response {
        Response { len: buf.len(), chunks: vec![buf.freeze()] }
    }
}

impl From<ChunkedBuf> for Response {
    fn from(buf: ChunkedBuf) -> Response {
        Response { len: buf.len(), chunks: buf.into_chunks() }
    }
}

/// Encodes a response with its header.
fn encode<T: Encodable + HeaderVersion>(ctx: &RequestContext, response: &T) -> Result<Response, HandleError> {
    let mut buf = BytesMut::with_capacity(response.compute_size(ctx.version).unwrap_or(64) + 8);
    write_response_header(&mut buf, ctx.correlation_id, T::header_version(ctx.version));
    response.encode(&mut buf, ctx.version).map_err(|e| HandleError::Encode(ctx.api_key, e.to_string()))?;
    Ok(buf.into())
}

/// Encodes a Fetch response with its header, referencing its records.
fn encode_fetch(ctx: &RequestContext, response: &FetchResponse) -> Result<Response, HandleError> {
    let records: Vec<Bytes> =
        response.responses.iter().flat_map(|t| &t.partitions).filter_map(|p| p.records.clone()).collect();
    let mut header = BytesMut::with_capacity(16);
    write_response_header(&mut header, ctx.correlation_id, FetchResponse::header_version(ctx.version));
    let mut buf = ChunkedBuf::new(records);
    buf.put_slice(&header);
    response.encode(&mut buf, ctx.version).map_err(|e| HandleError::Encode(ctx.api_key, e.to_string()))?;
    Ok(buf.into())
}

/// Decodes, dispatches and encodes one request frame. `Ok(None)` means the
/// request gets no response (Produce with acks=0).
pub async fn handle_frame(
    broker: &Arc<Broker>,
    frame: BytesMut,
    client_host: &str,
) -> Result<Option<Response>, HandleError> {
    let request = parse_request(frame)?;
    let version = request.header.request_api_version;
    let ctx = RequestContext {
        api_key: request.api_key,
        version,
        correlation_id: request.header.correlation_id,
        client_id: request.header.client_id,
        client_host: client_host.to_string(),
    };
    let range = advertised_range(ctx.api_key).ok_or(HandleError::UnsupportedApi(ctx.api_key))?;
    if !range.contains(version) {
        if ctx.api_key == ApiKey::ApiVersions {
            // KIP-511: answer in the v0 layout so the client can pick a version.
            return Ok(Some(api_versions::unsupported_version_response(ctx.correlation_id).into()));
        }
        return Err(HandleError::UnsupportedVersion { api_key: ctx.api_key, version });
    }
    debug!(api = ?ctx.api_key, version, correlation_id = ctx.correlation_id, "request");
    let mut body = request.body;
    // Decode the typed request, call the handler, encode its response.
    macro_rules! route {
        ($handler:ident) => {
            encode(&ctx, &$handler::handle(broker, &ctx, decode(&ctx, &mut body)?).await)
        };
    }
    let response = match ctx.api_key {
        ApiKey::Produce if version < PRODUCE_MIN_SERVED_VERSION => {
            let body = legacy_produce::unsupported_version_response(body, version)
                .map_err(|e| HandleError::Malformed { api_key: ctx.api_key, version, reason: e.to_string() })?;
            return Ok(body.map(|b| {
                let mut buf = BytesMut::with_capacity(b.len() + 4);
                write_response_header(&mut buf, ctx.correlation_id, 0);
                buf.extend_from_slice(&b);
                buf.into()
            }));
        }
        ApiKey::Produce => {
            let request: ProduceRequest = decode(&ctx, &mut body)?;
            return match produce::handle(broker, &ctx, request).await {
                Some(response) => encode(&ctx, &response).map(Some),
                None => Ok(None),
            };
        }
        ApiKey::Fetch => encode_fetch(&ctx, &fetch::handle(broker, &ctx, decode(&ctx, &mut body)?).await),
        ApiKey::ListOffsets => route!(list_offsets),
        ApiKey::Metadata => route!(metadata),
        ApiKey::OffsetCommit => route!(offset_commit),
        ApiKey::OffsetFetch => route!(offset_fetch),
        ApiKey::FindCoordinator => route!(find_coordinator),
        ApiKey::JoinGroup => route!(join_group),
        ApiKey::Heartbeat => route!(heartbeat),
        ApiKey::LeaveGroup => route!(leave_group),
        ApiKey::SyncGroup => route!(sync_group),
        ApiKey::DescribeGroups => route!(describe_groups),
        ApiKey::ListGroups => route!(list_groups),
        ApiKey::ApiVersions => route!(api_versions),
        ApiKey::CreateTopics => route!(create_topics),
        ApiKey::DeleteTopics => route!(delete_topics),
        ApiKey::DeleteRecords => route!(delete_records),
        ApiKey::InitProducerId => route!(init_producer_id),
        ApiKey::OffsetForLeaderEpoch => route!(offset_for_leader_epoch),
        ApiKey::DescribeConfigs => route!(describe_configs),
        ApiKey::AlterConfigs => route!(alter_configs),
        ApiKey::DescribeLogDirs => route!(describe_log_dirs),
        ApiKey::CreatePartitions => route!(create_partitions),
        ApiKey::ElectLeaders => route!(elect_leaders),
        ApiKey::AlterPartitionReassignments => route!(alter_partition_reassignments),
        ApiKey::ListPartitionReassignments => route!(list_partition_reassignments),
        ApiKey::DescribeTopicPartitions => route!(describe_topic_partitions),
        ApiKey::DeleteGroups => route!(delete_groups),
        ApiKey::IncrementalAlterConfigs => route!(incremental_alter_configs),
        ApiKey::OffsetDelete => route!(offset_delete),
        ApiKey::DescribeCluster => route!(describe_cluster),
        ApiKey::DescribeQuorum => route!(describe_quorum),
        ApiKey::ConsumerGroupHeartbeat => route!(consumer_group_heartbeat),
        ApiKey::ConsumerGroupDescribe => route!(consumer_group_describe),
        other => Err(HandleError::NoHandler(other)),
    }?;
    Ok(Some(response))
}
