//! Broker sessions: a registration stays fenced until a heartbeat shows the
//! broker caught up; a silent broker is fenced after the session timeout; a
//! controlled shutdown fences at once and stays fenced.

use std::time::Duration;

use super::*;

async fn open(dir: &std::path::Path, session_timeout_ms: u64) -> QuorumController {
    let config = ControllerConfig { broker_session_timeout_ms: session_timeout_ms, ..ControllerConfig::new(1, dir) };
    QuorumController::open(config).await.unwrap()
}

fn heartbeat(c: &QuorumController, broker_id: i32, metadata_offset: i64, want_shutdown: bool) -> BrokerHeartbeat {
    let broker_epoch = c.image().broker(broker_id).map_or(-1, |b| b.epoch);
    BrokerHeartbeat { broker_id, broker_epoch, metadata_offset, want_shutdown }
}

/// A heartbeat from a broker whose image is caught up.
async fn beat(c: &QuorumController, broker_id: i32, want_shutdown: bool) -> HeartbeatReply {
    let offset = c.image().last_offset;
    c.broker_heartbeat(heartbeat(c, broker_id, offset, want_shutdown)).await.unwrap()
}

fn fenced(c: &QuorumController, broker_id: i32) -> bool {
    c.image().broker(broker_id).unwrap().fenced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_fenced_until_a_heartbeat_shows_it_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), 60_000).await;
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    let mut t = CreateTopic { name: "t".into(), num_partitions: -1, replication_factor: -1, ..Default::default() };
    t.assignments = vec![(0, vec![1])];
    c.create_topics(vec![t], false).await.remove(0).unwrap();
    c.fence_broker(1).await.unwrap();
    assert_eq!(c.image().topic("t").unwrap().partitions[0].leader, -1);

    c.register_broker(BrokerRegistration { fenced: true, ..BrokerRegistration::unfenced_for_test(1) }).await.unwrap();
    assert!(fenced(&c, 1));
    let epoch = c.image().broker(1).unwrap().epoch;
    let behind = c.broker_heartbeat(heartbeat(&c, 1, epoch - 1, false)).await.unwrap();
    assert!(behind.fenced && fenced(&c, 1));
    let caught_up = c.broker_heartbeat(heartbeat(&c, 1, epoch, false)).await.unwrap();
    assert!(!caught_up.fenced && !fenced(&c, 1));
    // Unfencing gives the broker its leaderless partitions back.
    assert_eq!(c.image().topic("t").unwrap().partitions[0].leader, 1);

    let stale = BrokerHeartbeat { broker_epoch: epoch - 1, ..heartbeat(&c, 1, epoch, false) };
    assert_eq!(c.broker_heartbeat(stale).await.unwrap_err().error_code(), 77);
    let unknown = BrokerHeartbeat { broker_id: 9, broker_epoch: 1, metadata_offset: 0, want_shutdown: false };
    assert_eq!(c.broker_heartbeat(unknown).await.unwrap_err().error_code(), 77);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_after_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), 600).await;
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(2)).await.unwrap();
    let started = std::time::Instant::now();
    while !fenced(&c, 2) {
        assert!(started.elapsed() < Duration::from_secs(20), "broker 2 was never fenced");
        beat(&c, 1, false).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not before its session expired, and the heartbeating broker kept its own.
    assert!(started.elapsed() >= Duration::from_millis(600), "fenced after {:?}", started.elapsed());
    assert!(!fenced(&c, 1));
    // Back: a heartbeat from the fenced broker unfences it.
    assert!(!beat(&c, 2, false).await.fenced);
    assert!(!fenced(&c, 2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controlled_shutdown_fences_at_once_and_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), 60_000).await;
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert!(beat(&c, 1, true).await.fenced);
    assert!(fenced(&c, 1));
    // A heartbeat that was already on its way does not unfence it again.
    assert!(beat(&c, 1, false).await.fenced);
    assert!(fenced(&c, 1));
    // A new registration (the broker restarted) starts afresh.
    c.register_broker(BrokerRegistration { fenced: true, ..BrokerRegistration::unfenced_for_test(1) }).await.unwrap();
    assert!(!beat(&c, 1, false).await.fenced);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_incarnation_waits_for_the_live_session_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), 800).await;
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    beat(&c, 1, false).await;
    // Another process with node id 1 while the first heartbeats: refused.
    let impostor = c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap_err();
    assert_eq!(impostor.error_code(), 101, "{impostor}");
    // Once the first one's session expired (it was fenced), the new one gets in.
    let started = std::time::Instant::now();
    while !fenced(&c, 1) {
        assert!(started.elapsed() < Duration::from_secs(20), "broker 1 was never fenced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    c.shutdown().await;
}
