//! Errors returned by the controller, each mapped to the Kafka error code a
//! Kafka controller would answer with.
//!
//! Every variant carries the human-readable message that goes into the
//! response's `error_message` field; [`ControllerError::error_code`] gives the
//! numeric Kafka code. `Display` prints the message only.

use thiserror::Error;

/// A failed controller operation.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum ControllerError {
    /// The topic name is illegal or collides with an existing topic
    /// (INVALID_TOPIC_EXCEPTION, 17).
    #[error("{0}")]
    InvalidTopic(String),
    /// The topic already exists (TOPIC_ALREADY_EXISTS, 36).
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// No topic (or partition) with that name (UNKNOWN_TOPIC_OR_PARTITION, 3).
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// No topic with that id (UNKNOWN_TOPIC_ID, 100).
    #[error("{0}")]
    UnknownTopicId(String),
    /// The partition count is invalid (INVALID_PARTITIONS, 37).
    #[error("{0}")]
    InvalidPartitions(String),
    /// The replication factor is invalid or unreachable
    /// (INVALID_REPLICATION_FACTOR, 38).
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment is invalid (INVALID_REPLICA_ASSIGNMENT, 39).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A config name or value is invalid (INVALID_CONFIG, 40).
    #[error("{0}")]
    InvalidConfig(String),
    /// The request itself is malformed (INVALID_REQUEST, 42).
    #[error("{0}")]
    InvalidRequest(String),
    /// A policy rejected the request (POLICY_VIOLATION, 44).
    #[error("{0}")]
    PolicyViolation(String),
    /// The broker is not registered or its epoch is stale
    /// (STALE_BROKER_EPOCH, 77).
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// An AlterPartition from a leader whose leader epoch is stale
    /// (FENCED_LEADER_EPOCH, 74).
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// An AlterPartition from a broker that does not lead the partition
    /// (NOT_LEADER_OR_FOLLOWER, 6).
    #[error("{0}")]
    NotLeaderOrFollower(String),
    /// An AlterPartition based on a stale partition epoch
    /// (INVALID_UPDATE_VERSION, 95).
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// An AlterPartition adding a replica that may not join the ISR: not a
    /// replica, or fenced (INELIGIBLE_REPLICA, 107).
    #[error("{0}")]
    IneligibleReplica(String),
    /// A preferred election found the preferred replica unable to lead: not
    /// in the ISR or fenced (PREFERRED_LEADER_NOT_AVAILABLE, 80).
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    /// An unclean election found no replica able to lead
    /// (ELIGIBLE_LEADERS_NOT_AVAILABLE, 83).
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// The partition already has the leader the election would give it
    /// (ELECTION_NOT_NEEDED, 84).
    #[error("{0}")]
    ElectionNotNeeded(String),
    /// A reassignment cancelled where none is in progress
    /// (NO_REASSIGNMENT_IN_PROGRESS, 85).
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// Another incarnation of the broker id is registered and its session
    /// is alive (DUPLICATE_BROKER_REGISTRATION, 101): retriable once that
    /// session expires.
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// This node is not the active controller, or lost that role while the
    /// request was being committed (NOT_CONTROLLER, 41): retriable.
    #[error("{0}")]
    NotController(String),
    /// A node of another cluster asked for this cluster's metadata
    /// (INCONSISTENT_CLUSTER_ID, 104).
    #[error("{0}")]
    InconsistentClusterId(String),
    /// The metadata log could not be read or written
    /// (UNKNOWN_SERVER_ERROR, -1).
    #[error("metadata log storage error: {0}")]
    Storage(String),
    /// An internal invariant was violated, e.g. a log record that cannot be
    /// applied to the image, or producer ids are exhausted
    /// (UNKNOWN_SERVER_ERROR, -1).
    #[error("{0}")]
    Internal(String),
}

impl ControllerError {
    /// Kafka's numeric error code for this error.
    pub fn error_code(&self) -> i16 {
        match self {
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::UnknownTopicOrPartition(_) => 3,
            ControllerError::UnknownTopicId(_) => 100,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidReplicaAssignment(_) => 39,
            ControllerError::InvalidConfig(_) => 40,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::PolicyViolation(_) => 44,
            ControllerError::StaleBrokerEpoch(_) => 77,
            ControllerError::FencedLeaderEpoch(_) => 74,
            ControllerError::NotLeaderOrFollower(_) => 6,
            ControllerError::InvalidUpdateVersion(_) => 95,
            ControllerError::IneligibleReplica(_) => 107,
            ControllerError::PreferredLeaderNotAvailable(_) => 80,
            ControllerError::EligibleLeadersNotAvailable(_) => 83,
            ControllerError::ElectionNotNeeded(_) => 84,
            ControllerError::NoReassignmentInProgress(_) => 85,
            ControllerError::DuplicateBrokerRegistration(_) => 101,
            ControllerError::NotController(_) => 41,
            ControllerError::InconsistentClusterId(_) => 104,
            ControllerError::Storage(_) | ControllerError::Internal(_) => -1,
        }
    }

    /// The message for the response's `error_message` field.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl From<std::io::Error> for ControllerError {
    fn from(e: std::io::Error) -> Self {
        ControllerError::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(ControllerError::InvalidTopic(String::new()).error_code(), 17);
        assert_eq!(ControllerError::UnknownTopicId(String::new()).error_code(), 100);
        assert_eq!(ControllerError::Storage("x".into()).error_code(), -1);
        assert_eq!(ControllerError::InvalidConfig("bad".into()).message(), "bad");
    }
}
