//! Partition reassignment on a quorum of one: the widened replica set, its
//! completion by the AlterPartition that brings the last target replica
//! into the ISR (moving leadership off a removed leader), a pure removal
//! completing at once, cancellation, and the refusals with Kafka's codes.

use super::election_tests::{create as create_with, partition, with_brokers};
use super::*;

async fn create(c: &QuorumController, name: &str, replicas: &[i32]) -> Uuid {
    create_with(c, name, replicas, &[]).await
}

async fn reassign(c: &QuorumController, name: &str, target: Option<&[i32]>) -> i16 {
    let targets = vec![(name.to_string(), vec![(0, target.map(<[i32]>::to_vec))])];
    let mut results = c.alter_partition_reassignments(targets).await.unwrap();
    results.remove(0).1.remove(0).1.map_or_else(|e| e.error_code(), |()| 0)
}

/// The leader's AlterPartition of `name`-0 to `new_isr`.
async fn alter_isr(c: &QuorumController, name: &str, id: Uuid, new_isr: &[i32]) -> PartitionRegistration {
    let p = partition(c, name);
    let image = c.image();
    let change = AlterPartition {
        broker_id: p.leader,
        broker_epoch: image.broker(p.leader).unwrap().epoch,
        topic_id: id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: new_isr.to_vec(),
        joining_broker_epochs: new_isr.iter().map(|&r| (r, image.broker(r).unwrap().epoch)).collect(),
    };
    c.alter_partition(change).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_widens_the_replicas_and_completes_when_the_targets_are_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 3).await;
    let id = create(&c, "r", &[1, 2]).await;
    assert_eq!(reassign(&c, "r", Some(&[3, 2])).await, 0);
    let p = partition(&c, "r");
    assert_eq!(
        (p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone()),
        (vec![3, 2, 1], vec![3], vec![1])
    );
    assert_eq!((p.isr.clone(), p.leader, p.leader_epoch), (vec![1, 2], 1, 0), "broker 3 copies before it counts");
    assert!(p.is_reassigning());

    // Broker 3 caught up: the leader's ISR expansion completes the move, and
    // leadership leaves the removed broker 1 for the first in-sync target.
    alter_isr(&c, "r", id, &[1, 2, 3]).await;
    let p = partition(&c, "r");
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch), (vec![3, 2], vec![2, 3], 3, 1));
    assert!(!p.is_reassigning());
    // It survives a restart of the controller (replayed from the log).
    c.shutdown().await;
    drop(c);
    let c = with_brokers(dir.path(), 0).await;
    assert_eq!(partition(&c, "r").replicas, vec![3, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_completes_at_once_and_a_cancel_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 4).await;
    create(&c, "shrink", &[1, 2, 3]).await;
    assert_eq!(reassign(&c, "shrink", Some(&[2, 3])).await, 0);
    let p = partition(&c, "shrink");
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![2, 3], vec![2, 3], 2));
    assert!(!p.is_reassigning());

    create(&c, "cancelled", &[1, 2]).await;
    assert_eq!(reassign(&c, "cancelled", Some(&[3, 4])).await, 0);
    assert_eq!(partition(&c, "cancelled").replicas, vec![3, 4, 1, 2]);
    assert_eq!(reassign(&c, "cancelled", None).await, 0);
    let p = partition(&c, "cancelled");
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![1, 2], vec![1, 2], 1));
    assert!(!p.is_reassigning());
    assert_eq!(reassign(&c, "cancelled", None).await, 85, "NO_REASSIGNMENT_IN_PROGRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_targets_are_refused_with_kafkas_codes() {
    let dir = tempfile::tempdir().unwrap();
    let c = with_brokers(dir.path(), 2).await;
    create(&c, "v", &[1, 2]).await;
    assert_eq!(reassign(&c, "v", Some(&[])).await, 39);
    assert_eq!(reassign(&c, "v", Some(&[2, 2])).await, 39);
    assert_eq!(reassign(&c, "v", Some(&[1, 9])).await, 39);
    assert_eq!(reassign(&c, "nope", Some(&[1])).await, 3);
    let twice = vec![("v".to_string(), vec![(0, Some(vec![2, 1])), (0, Some(vec![1, 2]))])];
    let results = c.alter_partition_reassignments(twice).await.unwrap();
    let codes: Vec<i16> = results[0].1.iter().map(|(_, r)| r.as_ref().map_or_else(|e| e.error_code(), |_| 0)).collect();
    assert_eq!(codes, vec![0, 42]);
    assert_eq!(partition(&c, "v").replicas, vec![2, 1], "a reorder completes at once");
}
