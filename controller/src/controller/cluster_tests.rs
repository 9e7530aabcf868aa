//! Three controllers in one process, each with its own data dir and
//! controller listener on a loopback port: operations on any voter reach the
//! leader, the survivors of a stopped leader elect another and go on, and a
//! restarted voter catches up. Misconfigured voter sets are refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::*;

struct Node {
    dir: tempfile::TempDir,
    address: SocketAddr,
}

fn config(node: &Node, id: i32, voters: &BTreeMap<i32, String>) -> ControllerConfig {
    ControllerConfig {
        controller_address: node.address.to_string(),
        voters: voters.clone(),
        broker_session_timeout_ms: u64::MAX / 4,
        ..ControllerConfig::new(id, node.dir.path())
    }
}

async fn open(node: &Node, id: i32, voters: &BTreeMap<i32, String>) -> Result<QuorumController, ControllerError> {
    let listener = TcpListener::bind(node.address).await.unwrap();
    QuorumController::open_with_listener(config(node, id, voters), Some(listener)).await
}

fn topic(name: &str, partitions: i32, replication_factor: i16) -> CreateTopic {
    CreateTopic { name: name.into(), num_partitions: partitions, replication_factor, ..Default::default() }
}

async fn leader_of(controller: &QuorumController, not: Option<u64>) -> u64 {
    crate::raft::wait_for_leader(&controller.raft, not).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_forward_to_the_leader_fail_over_and_catch_up() {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(Node { dir: tempfile::tempdir().unwrap(), address: probe.local_addr().unwrap() });
    }
    let voters: BTreeMap<i32, String> =
        nodes.iter().enumerate().map(|(i, n)| (i as i32 + 1, n.address.to_string())).collect();

    // All three start together: none is ready before a leader exists.
    let (a, b, c) = tokio::join!(open(&nodes[0], 1, &voters), open(&nodes[1], 2, &voters), open(&nodes[2], 3, &voters));
    let mut controllers = vec![Some(a.unwrap()), Some(b.unwrap()), Some(c.unwrap())];
    let cluster_id = controllers[0].as_ref().unwrap().image().cluster_id.clone();
    assert!(controllers.iter().flatten().all(|c| c.image().cluster_id == cluster_id && !cluster_id.is_empty()));

    // Every broker registers through its own controller; followers forward.
    for (i, controller) in controllers.iter().flatten().enumerate() {
        controller.register_broker(BrokerRegistration::unfenced_for_test(i as i32 + 1)).await.unwrap();
    }
    let leader = leader_of(controllers[0].as_ref().unwrap(), None).await;
    let follower = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
    let via_follower = controllers[follower].as_ref().unwrap();
    let created = via_follower.create_topics(vec![topic("orders", 6, 3)], false).await.remove(0).unwrap();
    assert_eq!(created.partitions.len(), 6);
    // The forwarding voter sees its own change at once.
    assert!(via_follower.image().topic("orders").is_some());
    assert_eq!(via_follower.image().unfenced_broker_ids(), vec![1, 2, 3]);
    let refused = via_follower.create_topics(vec![topic("orders", 1, 1)], false).await.remove(0);
    assert_eq!(refused.unwrap_err().error_code(), 36, "errors travel back as the leader answered them");
    let first = via_follower.allocate_producer_ids(2).await.unwrap();
    let second = controllers[leader as usize - 1].as_ref().unwrap().allocate_producer_ids(1).await.unwrap();
    assert_ne!(first.0, second.0, "producer-id blocks never overlap across voters");

    // DescribeQuorum, asked of a follower, reports every voter's progress:
    // followers answer the leader's AppendEntries every heartbeat.
    let asked_at = crate::rpc::now_ms();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quorum = via_follower.describe_quorum().await.unwrap();
    assert_eq!(quorum.leader_id as u64, leader);
    assert_eq!(quorum.voters.iter().map(|v| v.id as u64).next(), Some(leader), "the leader is listed first");
    for voter in &quorum.voters {
        assert!(voter.log_end_offset > 0 && voter.log_end_offset <= quorum.voters[0].log_end_offset, "{voter:?}");
        assert!(voter.last_fetch_timestamp >= asked_at, "{voter:?}");
        assert!(voter.last_caught_up_timestamp >= asked_at, "{voter:?}");
    }

    // The leader stops: the other two elect one of themselves and go on.
    let stopped = controllers[leader as usize - 1].take().unwrap();
    let stopped_at = Instant::now();
    stopped.shutdown().await;
    drop(stopped);
    let survivor = controllers.iter().flatten().next().unwrap();
    let new_leader = leader_of(survivor, Some(leader)).await;
    let failover = stopped_at.elapsed();
    assert!(failover < Duration::from_secs(10), "failover took {failover:?}");
    for controller in controllers.iter().flatten() {
        let answer =
            controller.create_topics(vec![topic(&format!("after-{}", controller.config.node_id), 1, 2)], false);
        answer.await.remove(0).unwrap();
    }
    let deleted = survivor.delete_topics(vec![TopicRef::Name("orders".into())]).await;
    assert!(deleted[0].is_ok());

    // The old leader restarts on its data and catches up.
    let index = leader as usize - 1;
    let restarted = open(&nodes[index], leader as i32, &voters).await.unwrap();
    let mut images = restarted.subscribe();
    let expected = survivor.image().topics.keys().cloned().collect::<Vec<_>>();
    tokio::time::timeout(
        Duration::from_secs(20),
        images.wait_for(|image| image.topics.keys().cloned().collect::<Vec<_>>() == expected),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(restarted.image().topic("orders").is_none());
    assert_eq!(new_leader, leader_of(&restarted, None).await);
    controllers[index] = Some(restarted);

    for controller in controllers.into_iter().flatten() {
        controller.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voter_sets_that_do_not_fit_are_refused() {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node { dir: tempfile::tempdir().unwrap(), address: probe.local_addr().unwrap() };
    drop(probe);
    let other = "127.0.0.1:1".to_string();

    // A controller that is not among the voters.
    let voters = BTreeMap::from([(2, node.address.to_string()), (3, other.clone())]);
    let err = open(&node, 1, &voters).await.unwrap_err().to_string();
    assert!(err.contains("node.id 1 is not one of controller.quorum.voters"), "{err}");

    // Several voters need a controller listener.
    let voters = BTreeMap::from([(1, node.address.to_string()), (2, other.clone())]);
    let err = QuorumController::open(config(&node, 1, &voters)).await.unwrap_err().to_string();
    assert!(err.contains("needs a controller listener"), "{err}");

    // A quorum stored with one voter set, reopened with another.
    let alone = open(&node, 1, &BTreeMap::new()).await.unwrap();
    alone.shutdown().await;
    drop(alone);
    let err = open(&node, 1, &voters).await.unwrap_err().to_string();
    assert!(err.contains("controller.quorum.voters names [1, 2], but the metadata quorum stored in"), "{err}");
    assert!(err.contains("has the voters [1]"), "{err}");
}

#[test]
fn voters_election_timeouts_never_overlap() {
    let ranges: Vec<(u64, u64)> = (0..5).map(super::quorum::election_timeout_range).collect();
    assert_eq!(ranges[0], (1000, 1200));
    for pair in ranges.windows(2) {
        let ((_, lower_max), (higher_min, higher_max)) = (pair[0], pair[1]);
        assert!(higher_min >= lower_max + 200 && higher_max > higher_min, "{ranges:?}");
    }
}
