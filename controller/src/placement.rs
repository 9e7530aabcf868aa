//! Replica placement and manual assignment checks.
//!
//! Automatic placement is round-robin over the unfenced brokers (ascending
//! id) with a start offset: partition `p` placed at global position
//! `start + p` gets replicas `brokers[(start + p + j) % n]` for
//! `j in 0..replication_factor`. Leader = first replica, ISR = replicas.
//! The controller passes the cluster's current partition count as `start`,
//! so leaders spread over brokers as topics are created.

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
    let n = unfenced.len();
    Ok((0..count).map(|p| (0..rf).map(|j| unfenced[(start + p + j) % n]).collect()).collect())
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

/// The ISR a new partition starts with: its first unfenced replica alone,
/// which becomes the leader. The other replicas hold none of its data until
/// they fetch it (replica fetchers are the replication issue's work), so the
/// ISR says only what is true, and `min.insync.replicas` above 1 refuses
/// `acks=all` rather than acknowledge a record on one copy.
pub fn initial_isr(brokers: &BTreeMap<i32, BrokerRegistration>, replicas: &[i32]) -> Vec<i32> {
    replicas.iter().copied().filter(|r| brokers.get(r).is_some_and(|b| !b.fenced)).take(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
        assert_eq!(initial_isr(&b, &[2, 1]), vec![2]);
        for (r, rf) in [(vec![], None), (vec![1, 1], None), (vec![1, 9], None), (vec![1], Some(2))] {
            assert_eq!(validate_manual_assignment(&b, 0, &r, rf).unwrap_err().error_code(), 39);
        }
    }
}
