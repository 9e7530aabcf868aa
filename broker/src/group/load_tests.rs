//! Which answer a group gets while its `__consumer_offsets` partition's
//! leadership reaches the coordinator.

use weir_protocol::ErrorCode;

use crate::group::GroupCoordinator;
use crate::test_support::test_broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_partition_led_in_the_image_but_not_loaded_yet_is_loading() {
    let dir = tempfile::tempdir().unwrap();
    let broker = test_broker(dir.path(), &[("offsets.topic.num.partitions", "1")]).await;
    assert_eq!(broker.groups.gate("g"), Err(ErrorCode::NotCoordinator), "no __consumer_offsets yet");
    broker.groups.ensure_offsets_topic(&broker).await.expect("created");
    assert_eq!(broker.groups.gate("g"), Ok(()));

    // A coordinator that has not followed the image yet: FindCoordinator
    // already points clients here, so they are told to retry, not to look again.
    let behind = GroupCoordinator::new(&broker.config, broker.controller.subscribe());
    assert_eq!(behind.gate("g"), Err(ErrorCode::CoordinatorLoadInProgress));
    let mut elsewhere = broker.config.as_ref().clone();
    elsewhere.node_id += 1;
    let other_broker = GroupCoordinator::new(&elsewhere, broker.controller.subscribe());
    assert_eq!(other_broker.gate("g"), Err(ErrorCode::NotCoordinator), "led by another broker");

    let b = broker.clone();
    let behind = tokio::task::spawn_blocking(move || {
        behind.follow_leadership(&b, &b.image());
        behind
    })
    .await
    .unwrap();
    assert_eq!(behind.gate("g"), Ok(()));
    broker.replicas.shutdown();
}
