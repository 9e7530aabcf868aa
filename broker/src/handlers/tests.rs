//! Dispatch-table tests: every advertised API and version reaches a handler
//! and its response encodes at that version. These drive Weir's own codec
//! only; compatibility is proven by the real clients in compat-tests/.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable, StrBytes};
use weir_protocol::api_table::ADVERTISED_APIS;

use super::{handle_frame, HandleError};
use crate::test_support::{create_topic, test_broker};

fn body<T: Encodable + Default>(version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    T::default().encode(&mut b, version).expect("a default request encodes");
    b
}

fn default_request_body(key: ApiKey, version: i16) -> BytesMut {
    match key {
        ApiKey::Produce => body::<ProduceRequest>(version),
        ApiKey::Fetch => body::<FetchRequest>(version),
        ApiKey::ListOffsets => body::<ListOffsetsRequest>(version),
        ApiKey::Metadata => body::<MetadataRequest>(version),
        ApiKey::FindCoordinator => body::<FindCoordinatorRequest>(version),
        ApiKey::ApiVersions => body::<ApiVersionsRequest>(version),
        ApiKey::CreateTopics => body::<CreateTopicsRequest>(version),
        ApiKey::DeleteTopics => body::<DeleteTopicsRequest>(version),
        ApiKey::DeleteRecords => body::<DeleteRecordsRequest>(version),
        ApiKey::InitProducerId => body::<InitProducerIdRequest>(version),
        ApiKey::OffsetForLeaderEpoch => body::<OffsetForLeaderEpochRequest>(version),
        ApiKey::DescribeConfigs => body::<DescribeConfigsRequest>(version),
        ApiKey::AlterConfigs => body::<AlterConfigsRequest>(version),
        ApiKey::DescribeLogDirs => body::<DescribeLogDirsRequest>(version),
        ApiKey::CreatePartitions => body::<CreatePartitionsRequest>(version),
        ApiKey::IncrementalAlterConfigs => body::<IncrementalAlterConfigsRequest>(version),
        ApiKey::DescribeCluster => body::<DescribeClusterRequest>(version),
        ApiKey::DescribeQuorum => body::<DescribeQuorumRequest>(version),
        ApiKey::OffsetCommit => body::<OffsetCommitRequest>(version),
        ApiKey::OffsetFetch => body::<OffsetFetchRequest>(version),
        ApiKey::JoinGroup => body::<JoinGroupRequest>(version),
        ApiKey::Heartbeat => body::<HeartbeatRequest>(version),
        ApiKey::LeaveGroup => body::<LeaveGroupRequest>(version),
        ApiKey::SyncGroup => body::<SyncGroupRequest>(version),
        ApiKey::DescribeGroups => body::<DescribeGroupsRequest>(version),
        ApiKey::ListGroups => body::<ListGroupsRequest>(version),
        ApiKey::DeleteGroups => body::<DeleteGroupsRequest>(version),
        ApiKey::ElectLeaders => body::<ElectLeadersRequest>(version),
        ApiKey::AlterPartitionReassignments => body::<AlterPartitionReassignmentsRequest>(version),
        ApiKey::ListPartitionReassignments => body::<ListPartitionReassignmentsRequest>(version),
        ApiKey::DescribeTopicPartitions => body::<DescribeTopicPartitionsRequest>(version),
        ApiKey::OffsetDelete => body::<OffsetDeleteRequest>(version),
        ApiKey::ConsumerGroupHeartbeat => body::<ConsumerGroupHeartbeatRequest>(version),
        ApiKey::ConsumerGroupDescribe => body::<ConsumerGroupDescribeRequest>(version),
        other => panic!("{other:?} is advertised but this test cannot build its request"),
    }
}

fn frame(key: ApiKey, version: i16, body: &[u8]) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("dispatch-test")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &header).expect("header encodes");
    buf.extend_from_slice(body);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_advertised_version_is_dispatched_and_encodes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = test_broker(dir.path(), &[]).await;
    // A topic makes Metadata, DescribeConfigs and DescribeLogDirs answers non-trivial.
    create_topic(&broker, "t", 2).await;
    for range in ADVERTISED_APIS {
        let first = if range.api_key == ApiKey::Produce { 3 } else { range.min_version };
        for version in first..=range.max_version {
            let request = frame(range.api_key, version, &default_request_body(range.api_key, version));
            match handle_frame(&broker, request, "/127.0.0.1").await {
                Ok(Some(response)) => {
                    assert_eq!(&response.to_vec()[..4], &7i32.to_be_bytes(), "{:?} v{version}", range.api_key)
                }
                Ok(None) => assert_eq!(range.api_key, ApiKey::Produce, "only acks=0 Produce goes unanswered"),
                Err(e) => panic!("{:?} v{version}: {e}", range.api_key),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn unadvertised_apis_and_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = test_broker(dir.path(), &[]).await;
    let err = handle_frame(&broker, frame(ApiKey::SaslHandshake, 1, &[]), "/127.0.0.1").await.unwrap_err();
    assert!(matches!(err, HandleError::UnsupportedApi(ApiKey::SaslHandshake)));
    let err = handle_frame(&broker, frame(ApiKey::Metadata, 13, &[]), "/127.0.0.1").await.unwrap_err();
    assert!(matches!(err, HandleError::UnsupportedVersion { version: 13, .. }));
    // KIP-511: an unknown ApiVersions version is answered in the v0 layout with UNSUPPORTED_VERSION.
    let response = handle_frame(&broker, frame(ApiKey::ApiVersions, 9, &[]), "/127.0.0.1").await.unwrap().unwrap();
    assert_eq!(&response.to_vec()[4..6], &35i16.to_be_bytes());
    // Produce v0-2 is advertised and refused per partition.
    let mut legacy = BytesMut::new();
    legacy.extend_from_slice(&1i16.to_be_bytes());
    legacy.extend_from_slice(&1000i32.to_be_bytes());
    legacy.extend_from_slice(&0i32.to_be_bytes());
    let response = handle_frame(&broker, frame(ApiKey::Produce, 2, &legacy), "/127.0.0.1").await.unwrap().unwrap();
    assert_eq!(response.len(), 4 + 4 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn describe_quorum_answers_for_the_metadata_partition_only() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};

    let dir = tempfile::tempdir().unwrap();
    let broker = test_broker(dir.path(), &[]).await;
    let ctx = super::RequestContext {
        api_key: ApiKey::DescribeQuorum,
        version: 2,
        correlation_id: 1,
        client_id: None,
        client_host: "/127.0.0.1".into(),
    };
    let ask = |topic: &str, partition: i32| {
        DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![PartitionData::default().with_partition_index(partition)])])
    };
    let answer = super::describe_quorum::handle(&broker, &ctx, ask("__cluster_metadata", 0)).await;
    let partition = &answer.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.leader_id.0), (0, 1));
    assert_eq!(partition.current_voters.len(), 1);
    assert!(partition.high_watermark > 0 && partition.current_voters[0].log_end_offset >= partition.high_watermark);
    for (topic, index) in [("__cluster_metadata", 1), ("orders", 0)] {
        let answer = super::describe_quorum::handle(&broker, &ctx, ask(topic, index)).await;
        let partition = &answer.topics[0].partitions[0];
        assert_eq!((partition.partition_index, partition.error_code), (index, 3), "{topic}-{index}");
    }
}
