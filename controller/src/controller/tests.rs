//! Controller tests: validation errors with their Kafka codes, persistence
//! across reopen, torn-log recovery, config operations, producer ids.

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::configs::AlterOp;
use crate::log::METADATA_LOG_FILE;

/// A quorum of one whose brokers never time out: these tests do not heartbeat.
async fn open(dir: &std::path::Path) -> QuorumController {
    QuorumController::open(ControllerConfig {
        broker_session_timeout_ms: u64::MAX / 4,
        ..ControllerConfig::new(1, dir)
    })
    .await
    .unwrap()
}

/// Stops the controller and drops it, closing its database for a reopen.
async fn close(c: QuorumController) {
    c.shutdown().await;
}

async fn with_brokers(dir: &std::path::Path, n: i32) -> QuorumController {
    let c = open(dir).await;
    for id in 1..=n {
        c.register_broker(BrokerRegistration::unfenced_for_test(id)).await.unwrap();
    }
    c
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreateTopic {
    CreateTopic { name: name.into(), num_partitions: partitions, replication_factor: rf, ..Default::default() }
}

async fn create(c: &QuorumController, t: CreateTopic) -> Result<Arc<TopicImage>, ControllerError> {
    c.create_topics(vec![t], false).await.remove(0)
}

fn code<T: std::fmt::Debug>(r: Result<T, ControllerError>) -> i16 {
    r.unwrap_err().error_code()
}

fn set(name: &str, value: &str) -> AlterConfigOp {
    AlterConfigOp { name: name.into(), op: AlterOp::Set, value: Some(value.into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_cluster_id_and_reopen_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path()).await;
    let id = c.image().cluster_id.clone();
    assert_eq!(id.len(), 22);
    let offset = c.image().last_offset;
    assert!(offset >= 0);
    close(c).await;
    let c = open(dir.path()).await;
    assert_eq!(c.image().cluster_id, id);
    assert!(c.image().last_offset >= offset);
    close(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_broker_unfences_and_sets_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    let img = c.image();
    assert_eq!(img.unfenced_broker_ids(), vec![1, 2]);
    let (first, second) = (img.broker(1).unwrap().epoch, img.broker(2).unwrap().epoch);
    assert!(first > 0 && second > first, "epochs {first}, {second}");
    // Re-registering gives a higher epoch.
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert!(c.image().broker(1).unwrap().epoch > second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_places_replicas_and_replay_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 3).await;
    let mut t = topic("orders", 3, 2);
    t.configs = vec![("retention.ms".into(), Some("1000".into())), ("segment.ms".into(), None)];
    let created = create(&c, t).await.unwrap();
    assert_eq!(created.partitions.len(), 3);
    assert!(!created.id.is_nil());
    for p in &created.partitions {
        assert_eq!(p.replicas.len(), 2);
        // A new partition's log is empty: every live replica is in sync.
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
    }
    let leaders: Vec<i32> = created.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, vec![1, 2, 3]);
    let defaults = create(&c, topic("defaults", -1, -1)).await.unwrap();
    assert_eq!((defaults.partitions.len(), defaults.replication_factor()), (1, 1));
    c.incremental_alter_configs(ConfigResource::Broker(String::new()), vec![set("log.retention.ms", "5")], false)
        .await
        .unwrap();
    c.allocate_producer_ids(1).await.unwrap();
    c.fence_broker(3).await.unwrap();
    let before = c.image();
    assert_eq!(before.topic_config("orders", "retention.ms"), Some("1000"));
    assert_eq!(before.topic_config("orders", "segment.ms"), None);
    assert_eq!(before.topic_by_id(created.id).unwrap().name, "orders");
    close(c).await;
    let after = open(dir.path()).await.image();
    assert_eq!(*after, *before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topic_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    create(&c, topic("a.b", 1, 1)).await.unwrap();
    assert_eq!(code(create(&c, topic("bad name", 1, 1)).await), 17);
    assert_eq!(code(create(&c, topic("..", 1, 1)).await), 17);
    assert_eq!(code(create(&c, topic(&"x".repeat(250), 1, 1)).await), 17);
    let e = create(&c, topic("a_b", 1, 1)).await.unwrap_err();
    assert_eq!((e.error_code(), e.message().as_str()), (17, "Topic 'a_b' collides with existing topic: a.b"));
    assert_eq!(code(create(&c, topic("a.b", 1, 1)).await), 36);
    assert_eq!(code(create(&c, topic("t", 0, 1)).await), 37);
    assert_eq!(code(create(&c, topic("t", -2, 1)).await), 37);
    assert_eq!(code(create(&c, topic("t", 1, 0)).await), 38);
    assert_eq!(code(create(&c, topic("t", 1, -5)).await), 38);
    let e = create(&c, topic("t", 1, 3)).await.unwrap_err();
    assert_eq!(e.error_code(), 38);
    assert_eq!(
        e.message(),
        "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
    );
    assert_eq!(code(create(&c, topic("t", 10_001, 1)).await), 44);
    let mut t = topic("t", 2, -1);
    t.assignments = vec![(0, vec![1])];
    assert_eq!(code(create(&c, t).await), 42);
    let mut t = topic("t", -1, 1);
    t.assignments = vec![(0, vec![1])];
    assert_eq!(code(create(&c, t).await), 42);
    for assignments in [
        vec![(0, vec![1]), (0, vec![2])],
        vec![(0, vec![1]), (2, vec![2])],
        vec![(0, vec![1, 1])],
        vec![(0, vec![7])],
        vec![(0, vec![])],
        vec![(0, vec![1]), (1, vec![1, 2])],
    ] {
        let mut t = topic("t", -1, -1);
        t.assignments = assignments;
        assert_eq!(code(create(&c, t).await), 39);
    }
    let mut t = topic("t", 1, 1);
    t.configs = vec![("nope".into(), Some("1".into()))];
    assert_eq!(create(&c, t).await.unwrap_err().message(), "Unknown topic config name: nope");
    let mut t = topic("t", 1, 1);
    t.configs = vec![("cleanup.policy".into(), Some("shred".into()))];
    assert_eq!(code(create(&c, t).await), 40);
    // Duplicates within one request: both fail, the other topic succeeds.
    let results = c.create_topics(vec![topic("d", 1, 1), topic("ok", 1, 1), topic("d", 1, 1)], false).await;
    assert_eq!(results[0].as_ref().unwrap_err().error_code(), 42);
    assert!(results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap_err().error_code(), 42);
    // Collision inside one request.
    let results = c.create_topics(vec![topic("x.y", 1, 1), topic("x_y", 1, 1)], false).await;
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().error_code(), 17);
    let img = c.image();
    assert_eq!(img.topics.keys().collect::<Vec<_>>(), vec!["a.b", "ok", "x.y"]);
    // Internal topic names are allowed.
    create(&c, topic("__consumer_offsets", 3, 1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_assignment_and_no_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path()).await;
    assert_eq!(code(create(&c, topic("t", 1, 1)).await), 38);
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(2)).await.unwrap();
    let mut t = topic("t", -1, -1);
    t.assignments = vec![(1, vec![1, 2]), (0, vec![2, 1])];
    let created = create(&c, t).await.unwrap();
    assert_eq!(created.partitions[0].replicas, vec![2, 1]);
    assert_eq!(created.partitions[0].leader, 2);
    assert_eq!(created.partitions[1].replicas, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 1).await;
    let offset = c.image().last_offset;
    let results = c.create_topics(vec![topic("v", 4, 1), topic("bad/name", 1, 1)], true).await;
    assert_eq!(results[0].as_ref().unwrap().partitions.len(), 4);
    assert_eq!(results[1].as_ref().unwrap_err().error_code(), 17);
    create(&c, topic("t", 1, 1)).await.unwrap();
    c.create_partitions("t", 5, None, true).await.unwrap();
    c.incremental_alter_configs(ConfigResource::Topic("t".into()), vec![set("retention.ms", "1")], true).await.unwrap();
    c.alter_configs(ConfigResource::Topic("t".into()), vec![("retention.ms".into(), Some("1".into()))], true)
        .await
        .unwrap();
    let img = c.image();
    assert!(img.topic("v").is_none());
    assert_eq!(img.topic("t").unwrap().partitions.len(), 1);
    assert!(img.topic_configs.is_empty());
    assert_eq!(img.last_offset, offset + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_growth_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 3).await;
    create(&c, topic("t", 2, 2)).await.unwrap();
    c.create_partitions("t", 4, None, false).await.unwrap();
    let t = c.image().topic("t").unwrap().clone();
    assert_eq!(t.partitions.len(), 4);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == 2 && p.isr == p.replicas && p.leader == p.isr[0]));
    c.create_partitions("t", 5, Some(vec![vec![3, 1]]), false).await.unwrap();
    assert_eq!(c.image().topic("t").unwrap().partitions[4].replicas, vec![3, 1]);
    let e = c.create_partitions("t", 5, None, false).await.unwrap_err();
    assert_eq!((e.error_code(), e.message().as_str()), (37, "Topic already has 5 partitions."));
    let e = c.create_partitions("t", 3, None, false).await.unwrap_err();
    assert_eq!(
        (e.error_code(), e.message().as_str()),
        (37, "Topic currently has 5 partitions, which is higher than the requested 3.")
    );
    assert_eq!(code(c.create_partitions("nope", 3, None, false).await), 3);
    assert_eq!(code(c.create_partitions("t", 7, Some(vec![vec![1, 2]]), false).await), 39);
    assert_eq!(code(c.create_partitions("t", 6, Some(vec![vec![1]]), false).await), 39);
    assert_eq!(code(c.create_partitions("t", 6, Some(vec![vec![1, 9]]), false).await), 39);
    assert_eq!(code(c.create_partitions("t", 100_000, None, false).await), 44);
    c.fence_broker(3).await.unwrap();
    c.fence_broker(2).await.unwrap();
    assert_eq!(code(c.create_partitions("t", 6, None, false).await), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_delete_append_subtract_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 1).await;
    create(&c, topic("t", 1, 1)).await.unwrap();
    let res = || ConfigResource::Topic("t".into());
    let op =
        |name: &str, op, value: Option<&str>| AlterConfigOp { name: name.into(), op, value: value.map(String::from) };
    c.incremental_alter_configs(res(), vec![set("retention.ms", "100"), set("segment.bytes", "1048576")], false)
        .await
        .unwrap();
    c.incremental_alter_configs(res(), vec![op("cleanup.policy", AlterOp::Append, Some("compact"))], false)
        .await
        .unwrap();
    let cfg = |c: &QuorumController| c.image().topic_config_overrides("t");
    assert_eq!(cfg(&c).get("cleanup.policy").unwrap(), "delete,compact");
    c.incremental_alter_configs(res(), vec![op("cleanup.policy", AlterOp::Subtract, Some("delete"))], false)
        .await
        .unwrap();
    assert_eq!(cfg(&c).get("cleanup.policy").unwrap(), "compact");
    c.incremental_alter_configs(res(), vec![op("retention.ms", AlterOp::Delete, None)], false).await.unwrap();
    assert!(!cfg(&c).contains_key("retention.ms"));
    assert_eq!(code(c.incremental_alter_configs(res(), vec![set("retention.ms", "-7")], false).await), 40);
    assert_eq!(code(c.incremental_alter_configs(res(), vec![set("bogus", "1")], false).await), 40);
    assert_eq!(
        code(c.incremental_alter_configs(res(), vec![op("retention.ms", AlterOp::Append, Some("1"))], false).await),
        40
    );
    assert_eq!(
        code(
            c.incremental_alter_configs(
                res(),
                vec![set("min.compaction.lag.ms", "10"), set("max.compaction.lag.ms", "5")],
                false
            )
            .await
        ),
        40
    );
    assert_eq!(code(c.incremental_alter_configs(ConfigResource::Topic("zz".into()), vec![], false).await), 3);
    assert_eq!(code(c.incremental_alter_configs(ConfigResource::Topic(String::new()), vec![], false).await), 42);
    assert_eq!(code(c.incremental_alter_configs(ConfigResource::Broker("x".into()), vec![], false).await), 42);
    // Legacy AlterConfigs replaces the whole set.
    c.alter_configs(res(), vec![("retention.bytes".into(), Some("10".into()))], false).await.unwrap();
    assert_eq!(cfg(&c).into_iter().collect::<Vec<_>>(), vec![("retention.bytes".to_string(), "10".to_string())]);
    assert_eq!(code(c.alter_configs(res(), vec![("retention.bytes".into(), Some("x".into()))], false).await), 40);
    c.alter_configs(res(), vec![], false).await.unwrap();
    assert!(c.image().topic_configs.is_empty());
    // Broker configs.
    c.incremental_alter_configs(ConfigResource::Broker("1".into()), vec![set("log.retention.ms", "77")], false)
        .await
        .unwrap();
    c.incremental_alter_configs(ConfigResource::Broker(String::new()), vec![set("log.retention.ms", "88")], false)
        .await
        .unwrap();
    assert_eq!(c.image().broker_config(1, "log.retention.ms"), Some("77"));
    assert_eq!(c.image().broker_config(2, "log.retention.ms"), Some("88"));
    assert_eq!(
        code(
            c.incremental_alter_configs(ConfigResource::Broker("1".into()), vec![set("log.retention.ms", "x")], false)
                .await
        ),
        40
    );
    // Configs survive reopen and vanish with the topic.
    c.incremental_alter_configs(res(), vec![set("retention.ms", "5")], false).await.unwrap();
    close(c).await;
    let c = open(dir.path()).await;
    assert_eq!(c.image().topic_config("t", "retention.ms"), Some("5"));
    c.delete_topics(vec![TopicRef::Name("t".into())]).await.remove(0).unwrap();
    assert!(c.image().topic_configs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_by_name_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 1).await;
    let a = create(&c, topic("a", 1, 1)).await.unwrap();
    let b = create(&c, topic("b", 1, 1)).await.unwrap();
    let results = c
        .delete_topics(vec![
            TopicRef::Name("a".into()),
            TopicRef::Id(b.id),
            TopicRef::Name("missing".into()),
            TopicRef::Id(Uuid::new_v4()),
            TopicRef::Id(Uuid::nil()),
        ])
        .await;
    assert_eq!(results[0].as_ref().unwrap(), &("a".to_string(), a.id));
    assert_eq!(results[1].as_ref().unwrap(), &("b".to_string(), b.id));
    assert_eq!(results[2].as_ref().unwrap_err().error_code(), 3);
    assert_eq!(results[3].as_ref().unwrap_err().error_code(), 100);
    assert_eq!(results[4].as_ref().unwrap_err().error_code(), 42);
    let img = c.image();
    assert!(img.topics.is_empty() && img.topic_ids.is_empty());
    // The same topic named twice, and by name and id at once.
    let c2 = create(&c, topic("c", 1, 1)).await.unwrap();
    let r = c.delete_topics(vec![TopicRef::Name("c".into()), TopicRef::Name("c".into())]).await;
    assert!(r.iter().all(|r| r.as_ref().unwrap_err().error_code() == 42));
    let r = c.delete_topics(vec![TopicRef::Name("c".into()), TopicRef::Id(c2.id)]).await;
    assert!(r.iter().all(Result::is_ok));
    close(c).await;
    let c = open(dir.path()).await;
    assert!(c.image().topics.is_empty());
    // A deleted name can be created again, with a new id.
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert_ne!(create(&c, topic("a", 1, 1)).await.unwrap().id, a.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_id_blocks_never_overlap_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 1).await;
    assert_eq!(code(c.allocate_producer_ids(9).await), 77);
    assert_eq!(c.allocate_producer_ids(1).await.unwrap(), (0, 1000));
    assert_eq!(c.allocate_producer_ids(1).await.unwrap(), (1000, 1000));
    close(c).await;
    let c = open(dir.path()).await;
    assert_eq!(c.image().next_producer_id, 2000);
    assert_eq!(c.allocate_producer_ids(1).await.unwrap(), (2000, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_metadata_log_is_imported_on_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let topic_id = Uuid::new_v4();
    {
        let mut old = crate::log::MetadataLog::open(dir.path()).unwrap().log;
        old.append(&[MetadataRecord::ClusterId { cluster_id: "b2xkLXNpbmdsZS1ub2RlLTE".into() }]).unwrap();
        let registration = BrokerRegistration::unfenced_for_test(1);
        old.append(&[
            MetadataRecord::RegisterBroker {
                id: 1,
                incarnation_id: registration.incarnation_id,
                listeners: registration.listeners,
                rack: None,
                fenced: false,
                epoch: 1,
            },
            MetadataRecord::Topic { name: "kept".into(), topic_id },
            MetadataRecord::Partition {
                topic_id,
                partition_id: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 4,
                partition_epoch: 6,
            },
            MetadataRecord::Config {
                resource_type: crate::records::CONFIG_RESOURCE_TOPIC,
                resource_name: "kept".into(),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            },
            MetadataRecord::ProducerIds { broker_id: 1, broker_epoch: 1, next_producer_id: 5000 },
        ])
        .unwrap();
    }
    let c = open(dir.path()).await;
    let img = c.image();
    assert_eq!(img.cluster_id, "b2xkLXNpbmdsZS1ub2RlLTE");
    let kept = img.topic("kept").unwrap();
    assert_eq!((kept.id, kept.partitions[0].leader_epoch, kept.partitions[0].partition_epoch), (topic_id, 4, 6));
    assert_eq!(img.topic_config("kept", "retention.ms"), Some("1000"));
    assert!(img.last_offset >= 1, "new offsets follow the old log's: {}", img.last_offset);
    assert!(!dir.path().join(METADATA_LOG_FILE).exists());
    assert!(dir.path().join(crate::store::IMPORTED_LOG_FILE).exists());
    assert_eq!(c.allocate_producer_ids(1).await.unwrap(), (5000, 1000));
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert!(c.image().broker(1).unwrap().epoch > 1);
    close(c).await;
    let c = open(dir.path()).await;
    assert!(c.image().topic("kept").is_some());
    assert_eq!(c.image().next_producer_id, 6000);
    close(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_moves_leadership_and_reregistration_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    let mut t = topic("t", -1, -1);
    t.assignments = vec![(0, vec![1, 2]), (1, vec![2, 1])];
    create(&c, t).await.unwrap();
    c.fence_broker(1).await.unwrap();
    // Fencing the leader elects the other ISR member (a new leader epoch);
    // the fenced broker leaves every ISR.
    let img = c.image();
    let p0 = &img.topic("t").unwrap().partitions[0];
    assert_eq!((p0.leader, p0.isr.clone(), p0.leader_epoch, p0.partition_epoch), (2, vec![2], 1, 1));
    let p1 = &img.topic("t").unwrap().partitions[1];
    assert_eq!((p1.leader, p1.isr.clone(), p1.leader_epoch, p1.partition_epoch), (2, vec![2], 0, 1));
    let mut m = topic("m", -1, -1);
    m.assignments = vec![(0, vec![1, 2])];
    let m = create(&c, m).await.unwrap();
    assert_eq!((m.partitions[0].leader, m.partitions[0].isr.clone()), (2, vec![2]));
    let mut only_fenced = topic("f", -1, -1);
    only_fenced.assignments = vec![(0, vec![1])];
    assert_eq!(code(create(&c, only_fenced).await), 39);
    // Back, broker 1 is not in sync until it fetched (AlterPartition): leadership stays.
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    let p0 = c.image().topic("t").unwrap().partitions[0].clone();
    assert_eq!((p0.leader, p0.isr.clone(), p0.leader_epoch), (2, vec![2], 1));
    // The last ISR member fenced: no leader (unclean election is off), the
    // ISR keeps it, and its return gives the leadership back.
    c.fence_broker(2).await.unwrap();
    let p1 = c.image().topic("t").unwrap().partitions[1].clone();
    assert_eq!((p1.leader, p1.isr.clone(), p1.leader_epoch), (-1, vec![2], 1));
    c.register_broker(BrokerRegistration::unfenced_for_test(2)).await.unwrap();
    let p1 = c.image().topic("t").unwrap().partitions[1].clone();
    assert_eq!((p1.leader, p1.leader_epoch), (2, 2));
    assert_eq!(code(c.fence_broker(9).await), 77);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_new_images() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 1).await;
    let mut rx = c.subscribe();
    assert!(!rx.has_changed().unwrap());
    create(&c, topic("w", 1, 1)).await.unwrap();
    assert!(rx.has_changed().unwrap());
    let seen = rx.borrow_and_update().clone();
    assert!(seen.topic("w").is_some());
    assert!(Arc::ptr_eq(&seen, &c.image()));
    // A failed request publishes nothing.
    let _ = create(&c, topic("w", 1, 1)).await;
    assert!(!rx.has_changed().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_woken() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(with_brokers(dir.path(), 1).await);
    let mut rx = c.subscribe();
    let waiter = tokio::spawn(async move { rx.wait_for(|image| image.topic("async").is_some()).await.is_ok() });
    let c2 = c.clone();
    tokio::spawn(async move { create(&c2, topic("async", 1, 1)).await.unwrap() }).await.unwrap();
    assert!(waiter.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_taken_after_the_configured_bytes_of_records_and_serves_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = ControllerConfig { snapshot_max_bytes: 2000, ..ControllerConfig::new(1, dir.path()) };
    let c = QuorumController::open(config.clone()).await.unwrap();
    c.register_broker(BrokerRegistration::unfenced_for_test(1)).await.unwrap();
    assert!(c.raft.metrics().borrow().snapshot.is_none());
    for i in 0..40 {
        create(&c, topic(&format!("topic-{i:02}"), 2, 1)).await.unwrap();
    }
    let metrics = c
        .raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap();
    let covered = metrics.snapshot.map(|s| s.index).unwrap_or_default();
    assert!(covered > 0);
    let before = c.image();
    close(c).await;
    let c = QuorumController::open(config).await.unwrap();
    assert_eq!(c.image().topics, before.topics);
    assert!(c.raft.metrics().borrow().snapshot.is_some_and(|s| s.index >= covered));
    close(c).await;
}
