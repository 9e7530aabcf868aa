//! An observer against a real voter on a loopback controller listener: it
//! skips an unreachable bootstrap address, follows the log, runs operations
//! on the leader and sees them at once, appears in DescribeQuorum, is sent a
//! snapshot once the log is purged, and is refused by another cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::controller::{ControllerConfig, CreateTopic, FetchedEntry, QuorumController};
use crate::image::BrokerRegistration;
use crate::records::MetadataRecord;

fn topic(name: &str, partitions: i32) -> CreateTopic {
    CreateTopic { name: name.into(), num_partitions: partitions, replication_factor: 1, ..Default::default() }
}

async fn voter(dir: &std::path::Path) -> (QuorumController, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let config = ControllerConfig {
        controller_address: address.clone(),
        voters: BTreeMap::from([(1, address.clone())]),
        ..ControllerConfig::new(1, dir)
    };
    (QuorumController::open_with_listener(config, Some(listener)).await.unwrap(), address)
}

async fn open_observer(node_id: i32, bootstrap: Vec<String>) -> MetadataObserver {
    let opened = MetadataObserver::open(ObserverConfig { node_id, bootstrap_servers: bootstrap });
    tokio::time::timeout(Duration::from_secs(20), opened).await.expect("observer caught up").unwrap()
}

async fn wait_for_topic(observer: &MetadataObserver, name: &str) {
    let mut images = observer.subscribe();
    tokio::time::timeout(Duration::from_secs(10), images.wait_for(|image| image.topic(name).is_some()))
        .await
        .expect("the observer applied the topic")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_log_and_runs_operations_on_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (voter, address) = voter(dir.path()).await;
    // A dead bootstrap address first: the observer moves on to the next.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
    let observer = open_observer(4, vec![closed, address.clone()]).await;
    assert_eq!(observer.image().cluster_id, voter.image().cluster_id);

    // Operations through the observer run on the leader and are seen at once.
    observer.register_broker(BrokerRegistration::unfenced_for_test(4)).await.unwrap();
    let created = observer.create_topics(vec![topic("orders", 3)], false).await.remove(0).unwrap();
    assert_eq!(created.partitions.len(), 3);
    assert!(observer.image().topic("orders").is_some());
    let refused = observer.create_topics(vec![topic("orders", 1)], false).await.remove(0);
    assert_eq!(refused.unwrap_err().error_code(), 36, "errors travel back as the leader answered them");

    // A change made on the voter reaches the observer by its fetches.
    voter.create_topics(vec![topic("payments", 2)], false).await.remove(0).unwrap();
    wait_for_topic(&observer, "payments").await;
    assert_eq!(observer.image().last_offset, voter.image().last_offset);

    // The leader lists the observer with its progress.
    let quorum = observer.describe_quorum().await.unwrap();
    assert_eq!(quorum.voters.iter().map(|v| v.id).collect::<Vec<_>>(), [1]);
    let listed = quorum.observers.iter().find(|o| o.id == 4).expect("observer 4 is listed");
    assert!(listed.log_end_offset > 0 && listed.last_fetch_timestamp > 0 && listed.last_caught_up_timestamp > 0);

    // Once the log is purged, a new observer is sent a snapshot, and then
    // follows the log after it.
    voter.snapshot_and_purge().await;
    let from_start = MetadataFetch { observer_id: 7, cluster_id: String::new(), after_offset: -1, max_wait_ms: 0 };
    let fetched = voter.fetch_metadata(from_start).await.unwrap();
    assert!(matches!(fetched.data, FetchedData::Snapshot { .. }), "the purged log is sent as a snapshot");
    let late = open_observer(5, vec![address.clone()]).await;
    assert_eq!(late.image().topics.keys().collect::<Vec<_>>(), ["orders", "payments"]);
    voter.create_topics(vec![topic("refunds", 1)], false).await.remove(0).unwrap();
    wait_for_topic(&late, "refunds").await;
    wait_for_topic(&observer, "refunds").await;

    // A node that follows another cluster is refused.
    let foreign = MetadataFetch { observer_id: 6, cluster_id: "other".into(), after_offset: -1, max_wait_ms: 0 };
    assert_eq!(voter.fetch_metadata(foreign).await.unwrap_err().error_code(), 104);

    observer.shutdown();
    late.shutdown();
    voter.shutdown().await;
}

#[test]
fn entries_apply_in_order_only_and_a_snapshot_replaces_the_image() {
    let mut image = MetadataImage::default();
    let cluster = |id: &str| vec![MetadataRecord::ClusterId { cluster_id: id.into() }];
    image = apply(&image, FetchedData::Entries(vec![FetchedEntry { offset: 0, records: cluster("a") }])).unwrap();
    assert_eq!((image.last_offset, image.cluster_id.as_str()), (0, "a"));
    // A gap is not applied.
    let gap = FetchedData::Entries(vec![FetchedEntry { offset: 2, records: Vec::new() }]);
    assert!(apply(&image, gap).is_none());
    assert!(apply(&image, FetchedData::Entries(Vec::new())).is_none());
    // A snapshot replaces the image whole.
    let snapshot = apply(&image, FetchedData::Snapshot { last_offset: 9, records: cluster("b") }).unwrap();
    assert_eq!((snapshot.last_offset, snapshot.cluster_id.as_str()), (9, "b"));
}
