//! ApiVersions: v0-4.
//!
//! Behaviour: lists [`ADVERTISED_APIS`](weir_protocol::api_table::ADVERTISED_APIS)
//! exactly. A version newer than 4 is answered in the v0 layout with
//! UNSUPPORTED_VERSION and the key list (KIP-511), so the client retries
//! with a version both sides know. No supported or finalized features are
//! sent (Weir has no feature flags yet); the response header is v0 at every
//! version, and no tagged field at its default value is written, which
//! librdkafka before 2.2.0 needs.

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use weir_protocol::api_table::ADVERTISED_APIS;
use weir_protocol::header::write_response_header;
use weir_protocol::ErrorCode;

use super::RequestContext;
use crate::broker::Broker;

fn api_keys() -> Vec<ApiVersion> {
    ADVERTISED_APIS
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.api_key as i16)
                .with_min_version(r.min_version)
                .with_max_version(r.max_version)
        })
        .collect()
}

/// Serves ApiVersions.
pub async fn handle(_broker: &Arc<Broker>, _ctx: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys())
}

/// The whole v0 response frame body for an ApiVersions version Weir does not know.
pub fn unsupported_version_response(correlation_id: i32) -> BytesMut {
    let response =
        ApiVersionsResponse::default().with_error_code(ErrorCode::UnsupportedVersion.code()).with_api_keys(api_keys());
    let mut buf = BytesMut::new();
    write_response_header(&mut buf, correlation_id, 0);
    // v0 holds only the error code and the key list, which always encode.
    if response.encode(&mut buf, 0).is_err() {
        buf.truncate(4);
    }
    buf
}
