//! Committed offsets are served only once the ISR of their
//! `__consumer_offsets` partition has them.

use crate::admin::configs::TopicSettings;
use crate::group::coordinator::{Committer, OffsetCommit};
use crate::group::OFFSETS_TOPIC;
use crate::replica::leader::{FollowerFetch, FollowerRead};
use crate::replica::{now_ms, Leadership};
use crate::test_support::{create_topic, test_broker};

const STANDALONE: Committer<'static> = Committer { member_id: "", instance: None, generation_id: -1, api_version: 9 };

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn offset_fetch_serves_a_commit_only_once_the_isr_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = test_broker(dir.path(), &[("offsets.topic.num.partitions", "1")]).await;
    create_topic(&broker, "t", 1).await;
    let commit = async |offset: i64| {
        let commit = OffsetCommit { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None };
        let results = broker.groups.commit(&broker, "g", STANDALONE, vec![commit]).await;
        assert_eq!(results, vec![None]);
    };
    let fetched = || {
        let offsets = broker.groups.fetch_offsets(&broker, "g", None, Some(vec![("t".into(), 0)])).expect("served");
        offsets[0].2.as_ref().map(|v| v.offset)
    };
    commit(5).await;
    assert_eq!(fetched(), Some(5), "alone in the ISR, the coordinator commits at once");

    // Broker 2 joins the ISR of the offsets partition (same leader epoch: the
    // coordinator keeps its groups) but has not fetched yet.
    let partition = broker.replicas.get(OFFSETS_TOPIC, 0).expect("offsets partition");
    let node = broker.config.node_id;
    let leadership = Leadership {
        is_leader: true,
        leader: node,
        leader_epoch: partition.leader_epoch(),
        partition_epoch: 7,
        replicas: vec![node, 2],
        isr: vec![node, 2],
    };
    partition.update(TopicSettings::from_resolved(&[]), leadership, now_ms());
    commit(9).await;
    commit(12).await;
    assert_eq!(fetched(), Some(5), "not on the follower: still the replicated commit");
    assert!(
        broker.groups.delete_offsets(&broker, "g", &[("t".into(), 0)]).is_ok(),
        "a pending commit is an offset OffsetDelete can delete"
    );
    assert_eq!(fetched(), None);
    commit(20).await;
    assert_eq!(fetched(), None);

    // The follower fetches up to the log end: the last commit is served.
    let (_, log_end) = partition.offsets();
    let follower = FollowerFetch {
        replica_id: 2,
        broker_epoch: 1,
        log_start_offset: 0,
        isr_eligible: true,
        record_progress: true,
    };
    let read = partition.read_for_follower(follower, log_end, partition.leader_epoch(), 1 << 20, true, now_ms());
    assert!(matches!(read, Ok(FollowerRead::Records { .. })), "{read:?}");
    assert_eq!(partition.high_watermark(), log_end);
    assert_eq!(fetched(), Some(20));
    broker.replicas.shutdown();
}
