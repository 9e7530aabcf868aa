//! DescribeCluster: v0-1.
//!
//! Behaviour: the cluster id, the controller id and the unfenced brokers
//! with their advertised endpoints (v1 `endpoint_type` 1 = brokers; asking
//! for controllers (2) gets UNSUPPORTED_ENDPOINT_TYPE, as a broker answers).
//! The controller id is this broker: KRaft brokers answer a live broker, not
//! the active controller, since clients send admin requests there and every
//! node forwards them to the active controller. DescribeQuorum names the
//! quorum's leader.
//! With no authorizer yet, authorized operations (when requested) are every
//! cluster operation.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use weir_protocol::ErrorCode;

use super::metadata::{advertised_brokers, authorized_operations, CLUSTER_OPERATIONS};
use super::RequestContext;
use crate::broker::Broker;

/// Serves DescribeCluster.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_cluster_authorized_operations(authorized_operations(
            request.include_cluster_authorized_operations,
            CLUSTER_OPERATIONS,
        ));
    if ctx.version >= 1 && request.endpoint_type != 1 {
        return response
            .with_error_code(ErrorCode::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str("The broker only serves endpoint type 1 (brokers).")));
    }
    let brokers = advertised_brokers(&image)
        .map(|b| {
            DescribeClusterBroker::default().with_broker_id(b.id).with_host(b.host).with_port(b.port).with_rack(b.rack)
        })
        .collect();
    response.with_brokers(brokers)
}
