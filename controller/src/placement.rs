//! Replica placement and manual assignment checks.
//!
//! Automatic placement is round-robin over the unfenced brokers with a start
//! offset: partition `p` placed at global position `start + p` is led by
//! `brokers[(start + p) % n]`, and its other replicas are the brokers that
//! follow in the list. The controller passes the cluster's current partition
//! count as `start`, so leaders spread over brokers as topics are created.
//!
//! Without racks the list is the brokers by ascending id. When brokers set
//! `broker.rack`, placement is rack-aware, as Kafka's is: the list
//! alternates racks (the first broker of each rack, then the second of
//! each, ...; a broker without a rack counts as a rack of its own), and a
//! partition's followers are taken from racks it has no replica on yet, as
//! long as there is one, so a partition spans min(replication factor,
//! racks) racks and losing one rack never takes every replica.

use std::collections::BTreeMap;

use crate::error::ControllerError;
use crate::image::BrokerRegistration;

/// Places `count` partitions with `replication_factor` replicas each.
/// Errors are INVALID_REPLICATION_FACTOR with Kafka's wording.
pub fn place_replicas(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    start: usize,
    count: usize,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let unfenced: Vec<i32> = brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect();
    let unable = |why: String| {
        ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): {why}"
        ))
    };
    if replication_factor <= 0 {
        return Err(unable("The replication factor must be positive.".to_string()));
    }
    if unfenced.is_empty() && !brokers.is_empty() {
        return Err(unable("All brokers are currently fenced.".to_string()));
    }
    let rf = replication_factor as usize;
    if rf > unfenced.len() {
        return Err(unable(format!(
            "The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
            unfenced.len()
        )));
    }
    let order = placement_order(brokers);
    Ok((0..count).map(|p| replicas_from(&order, (start + p) % order.len(), rf)).collect())
}

/// The unfenced brokers, with their racks, in placement order (see the
/// module doc).
fn placement_order(brokers: &BTreeMap<i32, BrokerRegistration>) -> Vec<(i32, Option<&str>)> {
    let mut racks: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for broker in brokers.values().filter(|b| !b.fenced) {
        racks.entry(broker.rack.as_deref()).or_default().push(broker.id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|depth| racks.iter().filter_map(move |(rack, ids)| ids.get(depth).map(|id| (*id, *rack))))
        .collect()
}

/// `rf` replicas led by `order[first]`: the brokers after it in `order`,
/// those on racks the partition has no replica on first.
fn replicas_from(order: &[(i32, Option<&str>)], first: usize, rf: usize) -> Vec<i32> {
    let (leader, leader_rack) = order[first];
    let mut replicas = vec![leader];
    let mut used_racks = vec![leader_rack];
    let following = (1..order.len()).map(|k| order[(first + k) % order.len()]);
    for (id, rack) in following.clone() {
        if replicas.len() == rf {
            return replicas;
        }
        if !used_racks.contains(&rack) {
            used_racks.push(rack);
            replicas.push(id);
        }
    }
    for (id, _) in following {
        if replicas.len() == rf {
            break;
        }
        if !replicas.contains(&id) {
            replicas.push(id);
        }
    }
    replicas
}

/// Checks one manual assignment as Kafka does: non-empty, only registered
/// brokers, no broker twice, and (if known) the same replica count as the
/// other partitions, and at least one unfenced replica (it will lead).
/// Errors are INVALID_REPLICA_ASSIGNMENT.
pub fn validate_manual_assignment(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    partition: i32,
    replicas: &[i32],
    expected_replication_factor: Option<usize>,
) -> Result<(), ControllerError> {
    if replicas.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".to_string(),
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    let mut prev = None;
    for &id in &sorted {
        if !brokers.contains_key(&id) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            )));
        }
        if prev == Some(id) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {id} more than once."
            )));
        }
        prev = Some(id);
    }
    if let Some(rf) = expected_replication_factor {
        if sorted.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                sorted.len()
            )));
        }
    }
    if !replicas.iter().any(|r| brokers.get(r).is_some_and(|b| !b.fenced)) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
        )));
    }
    Ok(())
}

/// The ISR a new partition starts with: every unfenced replica, in replica
/// order (the first becomes the leader), as KRaft creates partitions: an
/// empty log is trivially in sync everywhere. The leader's high watermark
/// then waits for each of them to fetch, and a replica that dies before it
/// does is fenced and leaves the ISR.
pub fn initial_isr(brokers: &BTreeMap<i32, BrokerRegistration>, replicas: &[i32]) -> Vec<i32> {
    replicas.iter().copied().filter(|r| brokers.get(r).is_some_and(|b| !b.fenced)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn racked(ids: &[(i32, &str)]) -> BTreeMap<i32, BrokerRegistration> {
        let mut b = brokers(&ids.iter().map(|(id, _)| (*id, false)).collect::<Vec<_>>());
        for (id, rack) in ids {
            b.get_mut(id).unwrap().rack = (!rack.is_empty()).then(|| rack.to_string());
        }
        b
    }

    fn racks_of(b: &BTreeMap<i32, BrokerRegistration>, replicas: &[i32]) -> Vec<Option<String>> {
        let mut racks: Vec<_> = replicas.iter().map(|r| b[r].rack.clone()).collect();
        racks.sort();
        racks.dedup();
        racks
    }

    #[test]
    fn rack_aware() {
        // Six brokers in three racks: every partition of RF 3 spans the three
        // racks, and leaders spread evenly.
        let b = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let placed = place_replicas(&b, 0, 12, 3).unwrap();
        assert_eq!(placed[0], vec![1, 3, 5]);
        for replicas in &placed {
            assert_eq!(racks_of(&b, replicas).len(), 3, "{replicas:?}");
        }
        let mut leaders: Vec<i32> = placed.iter().map(|r| r[0]).collect();
        leaders.sort();
        assert_eq!(leaders, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
        // RF 2 over uneven racks: the lone broker of rack b is in every partition.
        let uneven = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
        for replicas in place_replicas(&uneven, 0, 8, 2).unwrap() {
            assert!(replicas.contains(&4) && racks_of(&uneven, &replicas).len() == 2, "{replicas:?}");
        }
        // More replicas than racks: every rack first, then the others.
        let two_racks = racked(&[(1, "a"), (2, "a"), (3, "b")]);
        for replicas in place_replicas(&two_racks, 0, 3, 3).unwrap() {
            let mut sorted = replicas.clone();
            sorted.sort();
            assert_eq!(sorted, [1, 2, 3]);
            assert_ne!(two_racks[&replicas[0]].rack, two_racks[&replicas[1]].rack, "{replicas:?}");
        }
        // A broker without a rack is a rack of its own; fenced brokers are left out.
        let mut mixed = racked(&[(1, "a"), (2, "a"), (3, "")]);
        for replicas in place_replicas(&mixed, 0, 4, 2).unwrap() {
            assert_eq!(racks_of(&mixed, &replicas).len(), 2, "{replicas:?}");
        }
        mixed.get_mut(&3).unwrap().fenced = true;
        assert!(place_replicas(&mixed, 0, 4, 2).unwrap().iter().all(|r| !r.contains(&3)));
    }

    fn brokers(ids: &[(i32, bool)]) -> BTreeMap<i32, BrokerRegistration> {
        ids.iter()
            .map(|&(id, fenced)| {
                (
                    id,
                    BrokerRegistration {
                        id,
                        incarnation_id: Uuid::nil(),
                        listeners: vec![],
                        rack: None,
                        fenced,
                        epoch: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn round_robin() {
        let b = brokers(&[(1, false), (2, false), (3, false), (4, true)]);
        assert_eq!(place_replicas(&b, 0, 4, 2).unwrap(), vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        assert_eq!(place_replicas(&b, 1, 1, 3).unwrap(), vec![vec![2, 3, 1]]);
        let e = place_replicas(&b, 0, 1, 4).unwrap_err();
        assert_eq!(e.error_code(), 38);
        assert_eq!(e.message(), "Unable to replicate the partition 4 time(s): The target replication factor of 4 cannot be reached because only 3 broker(s) are registered.");
        assert!(place_replicas(&brokers(&[(1, true)]), 0, 1, 1).unwrap_err().message().contains("fenced"));
        assert!(place_replicas(&BTreeMap::new(), 0, 1, 1).unwrap_err().message().contains("only 0 broker(s)"));
    }

    #[test]
    fn manual() {
        let b = brokers(&[(1, false), (2, false)]);
        assert!(validate_manual_assignment(&b, 0, &[2, 1], Some(2)).is_ok());
        let f = brokers(&[(1, true), (2, false)]);
        assert_eq!(validate_manual_assignment(&f, 0, &[1], None).unwrap_err().error_code(), 39);
        assert_eq!(initial_isr(&f, &[1, 2]), vec![2]);
        assert_eq!(initial_isr(&b, &[2, 1]), vec![2, 1]);
        for (r, rf) in [(vec![], None), (vec![1, 1], None), (vec![1, 9], None), (vec![1], Some(2))] {
            assert_eq!(validate_manual_assignment(&b, 0, &r, rf).unwrap_err().error_code(), 39);
        }
    }
}
