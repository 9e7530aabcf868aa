//! Leader elections and ISR changes on a quorum of one: ElectLeaders
//! (preferred, unclean, every partition), unclean election on fencing where
//! the topic allows it, the auto leader rebalance, and AlterPartition's
//! refusals with their Kafka codes (KIP-903 broker epochs included).

use super::*;

/// A quorum of one with brokers 1..=n registered and unfenced; nothing
/// times out and no rebalance runs by itself.
pub(super) async fn with_brokers(dir: &std::path::Path, n: i32) -> QuorumController {
    let c = QuorumController::open(ControllerConfig {
        broker_session_timeout_ms: u64::MAX / 4,
        auto_leader_rebalance_enable: false,
        ..ControllerConfig::new(1, dir)
    })
    .await
    .unwrap();
    for id in 1..=n {
        c.register_broker(BrokerRegistration::unfenced_for_test(id)).await.unwrap();
    }
    c
}

/// A topic with one partition on `replicas`, with `configs`.
pub(super) async fn create(c: &QuorumController, name: &str, replicas: &[i32], configs: &[(&str, &str)]) -> Uuid {
    let topic = CreateTopic {
        name: name.into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, replicas.to_vec())],
        configs: configs.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
    };
    c.create_topics(vec![topic], false).await.remove(0).unwrap().id
}

pub(super) fn partition(c: &QuorumController, name: &str) -> PartitionRegistration {
    c.image().topic(name).unwrap().partitions[0].clone()
}

fn epoch(c: &QuorumController, broker: i32) -> i64 {
    c.image().broker(broker).unwrap().epoch
}

/// The leader's AlterPartition for `name`-0 to `new_isr`, joining members at their registered epochs.
fn alter(c: &QuorumController, name: &str, id: Uuid, new_isr: &[i32]) -> AlterPartition {
    let p = partition(c, name);
    AlterPartition {
        broker_id: p.leader,
        broker_epoch: epoch(c, p.leader),
        topic_id: id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: new_isr.to_vec(),
        joining_broker_epochs: new_isr.iter().filter(|r| !p.isr.contains(r)).map(|&r| (r, epoch(c, r))).collect(),
    }
}

fn codes(results: &ElectionResults) -> Vec<(String, i32, i16)> {
    results
        .iter()
        .flat_map(|(t, ps)| {
            ps.iter().map(move |(p, r)| (t.clone(), *p, r.as_ref().map_or_else(|e| e.error_code(), |_| 0)))
        })
        .collect()
}

fn one(topic: &str) -> ElectionTargets {
    Some(vec![(topic.to_string(), vec![0])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_partition_refuses_stale_state_and_stale_joining_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 3).await;
    let id = create(&c, "t", &[1, 2, 3], &[]).await;
    assert_eq!(partition(&c, "t").isr, vec![1, 2, 3]);
    let shrunk = c.alter_partition(alter(&c, "t", id, &[1])).await.unwrap();
    assert_eq!((shrunk.isr.clone(), shrunk.leader_epoch, shrunk.partition_epoch), (vec![1], 0, 1));

    // KIP-903: broker 2 fetched as an incarnation that has since re-registered.
    let mut stale_member = alter(&c, "t", id, &[1, 2]);
    stale_member.joining_broker_epochs.insert(2, epoch(&c, 2) - 1);
    assert_eq!(c.alter_partition(stale_member).await.unwrap_err().error_code(), 107);
    // Based on an old partition epoch; from a stale leader incarnation; from a follower.
    let mut old = alter(&c, "t", id, &[1, 2]);
    old.partition_epoch = 0;
    assert_eq!(c.alter_partition(old).await.unwrap_err().error_code(), 95);
    let mut stale_leader = alter(&c, "t", id, &[1, 2]);
    stale_leader.broker_epoch -= 1;
    assert_eq!(c.alter_partition(stale_leader).await.unwrap_err().error_code(), 77);
    let mut not_leader = alter(&c, "t", id, &[1, 2]);
    (not_leader.broker_id, not_leader.broker_epoch) = (2, epoch(&c, 2));
    assert_eq!(c.alter_partition(not_leader).await.unwrap_err().error_code(), 6);
    // A fenced broker may not join.
    c.fence_broker(3).await.unwrap();
    let mut fenced = alter(&c, "t", id, &[1, 3]);
    fenced.joining_broker_epochs.clear();
    assert_eq!(c.alter_partition(fenced).await.unwrap_err().error_code(), 107);
    assert_eq!(c.alter_partition(alter(&c, "t", id, &[1, 2])).await.unwrap().isr, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_election_waits_for_the_preferred_replica_to_be_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    let id = create(&c, "p", &[1, 2], &[]).await;
    create(&c, "q", &[2, 1], &[]).await;
    c.fence_broker(1).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert_eq!((partition(&c, "p").leader, partition(&c, "p").isr), (2, vec![2]));

    let results = c.elect_leaders(Election::Preferred, one("p")).await.unwrap();
    assert_eq!(codes(&results), vec![("p".into(), 0, 80)], "the preferred replica is not in the ISR");
    c.alter_partition(alter(&c, "p", id, &[2, 1])).await.unwrap();
    let twice = Some(vec![("p".to_string(), vec![0, 0])]);
    let results = c.elect_leaders(Election::Preferred, twice).await.unwrap();
    assert_eq!(codes(&results), vec![("p".into(), 0, 0), ("p".into(), 0, 84)], "elected once");
    let p = partition(&c, "p");
    assert_eq!((p.leader, p.leader_epoch, p.isr), (1, 2, vec![2, 1]));
    let results = c.elect_leaders(Election::Preferred, one("p")).await.unwrap();
    assert_eq!(codes(&results), vec![("p".into(), 0, 84)]);
    // Every partition: those needing no election are left out of the answer.
    let results = c.elect_leaders(Election::Preferred, None).await.unwrap();
    assert!(codes(&results).is_empty(), "{results:?}");
    let unknown = Some(vec![("nope".to_string(), vec![0]), ("p".to_string(), vec![5])]);
    let results = c.elect_leaders(Election::Preferred, unknown).await.unwrap();
    assert_eq!(codes(&results), vec![("nope".into(), 0, 3), ("p".into(), 5, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_election_takes_a_live_replica_outside_the_isr() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    create(&c, "u", &[1, 2], &[]).await;
    create(&c, "allowed", &[1, 2], &[("unclean.leader.election.enable", "true")]).await;
    // Broker 2 drops out of both ISRs, then the leader 1 goes.
    c.fence_broker(2).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(2)).await.unwrap();
    c.fence_broker(1).await.unwrap();
    // Clean election (the default): offline, the last ISR member kept.
    let u = partition(&c, "u");
    assert_eq!((u.leader, u.isr.clone()), (-1, vec![1]));
    // The topic that allows unclean election got broker 2 at once, alone in its ISR.
    let allowed = partition(&c, "allowed");
    assert_eq!((allowed.leader, allowed.isr.clone()), (2, vec![2]));

    let results = c.elect_leaders(Election::Preferred, one("u")).await.unwrap();
    assert_eq!(codes(&results), vec![("u".into(), 0, 80)]);
    let results = c.elect_leaders(Election::Unclean, one("u")).await.unwrap();
    assert_eq!(codes(&results), vec![("u".into(), 0, 0)]);
    let u = partition(&c, "u");
    assert_eq!((u.leader, u.isr, u.leader_epoch), (2, vec![2], 2));
    let results = c.elect_leaders(Election::Unclean, one("u")).await.unwrap();
    assert_eq!(codes(&results), vec![("u".into(), 0, 84)], "it has a leader");
    // No live replica at all.
    c.fence_broker(2).await.unwrap();
    let results = c.elect_leaders(Election::Unclean, one("u")).await.unwrap();
    assert_eq!(codes(&results), vec![("u".into(), 0, 83)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebalance_gives_leadership_back_to_in_sync_preferred_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    let id = create(&c, "r", &[1, 2], &[]).await;
    let other = create(&c, "s", &[1, 2], &[]).await;
    c.fence_broker(1).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert_eq!(c.rebalance_leaders().await.unwrap(), 0, "broker 1 is not in sync yet");
    c.alter_partition(alter(&c, "r", id, &[2, 1])).await.unwrap();
    c.alter_partition(alter(&c, "s", other, &[2, 1])).await.unwrap();
    // A pass moves at most its limit of leaders.
    assert_eq!(QuorumController::imbalanced_partitions(&c.image(), 1).len(), 1);
    assert_eq!(c.rebalance_leaders().await.unwrap(), 2);
    assert_eq!((partition(&c, "r").leader, partition(&c, "s").leader), (1, 1));
    assert_eq!(c.rebalance_leaders().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_leads_again_only_in_a_new_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 3).await;
    create(&c, "shared", &[1, 2, 3], &[]).await;
    create(&c, "solo", &[1], &[]).await;
    let before = (partition(&c, "shared"), partition(&c, "solo"));
    assert_eq!((before.0.leader, before.1.leader), (1, 1));

    // Broker 1 is killed and comes back (a new incarnation) before its session expired.
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    let shared = partition(&c, "shared");
    assert_eq!(shared.leader, 2, "another ISR member took over");
    assert_eq!(shared.isr, vec![2, 3], "broker 1 rejoins the ISR by catching up");
    assert!(shared.leader_epoch > before.0.leader_epoch);
    let solo = partition(&c, "solo");
    assert_eq!(solo.leader, 1, "the only replica leads again...");
    assert!(solo.leader_epoch > before.1.leader_epoch, "...in a new leader epoch");
    assert_eq!(solo.isr, vec![1]);

    // The same incarnation registering again (a retried request) changes nothing.
    let registered = c.image().broker(1).unwrap().clone();
    let mut again = BrokerRegistration::unfenced_for_test(1);
    again.incarnation_id = registered.incarnation_id;
    c.register_broker(again).await.unwrap();
    assert_eq!(partition(&c, "solo").leader_epoch, solo.leader_epoch);
    assert_eq!(partition(&c, "shared"), shared);
}
