//! The metadata quorum's types for openraft: what a Raft log entry carries
//! and what applying it answers.
//!
//! A log entry's application data is one [`MetadataEntry`]: the records of one
//! controller operation, applied atomically (KRaft's record batch). Node ids
//! are Kafka's `node.id`s, which are never negative.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

openraft::declare_raft_types!(
    /// openraft's type configuration of the metadata quorum.
    pub TypeConfig:
        D = MetadataEntry,
        R = MetadataApplied,
);

/// A Raft node id: the `node.id` of a controller or broker.
pub type NodeId = u64;

/// A Raft log id (leader term and node, index).
pub type LogId = openraft::LogId<NodeId>;

/// A Raft log entry of the metadata log.
pub type Entry = openraft::Entry<TypeConfig>;

/// The records of one controller operation, committed and applied together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataEntry {
    /// The records, in replay order.
    pub records: Vec<MetadataRecord>,
}

/// What applying one committed log entry did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataApplied {
    /// The entry's log index, which is the image's `last_offset` after it.
    pub offset: u64,
    /// Set when the entry's records did not fit the image and were skipped;
    /// every node skips them alike, since every node applies the same log to
    /// the same image.
    pub error: Option<String>,
}

/// Waits (up to 20 s) until `raft` knows a leader other than `not`; returns it.
#[cfg(test)]
pub(crate) async fn wait_for_leader(raft: &openraft::Raft<TypeConfig>, not: Option<NodeId>) -> NodeId {
    let metrics = raft
        .wait(Some(std::time::Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some() && m.current_leader != not, "a leader")
        .await
        .expect("a leader is elected");
    metrics.current_leader.unwrap_or_default()
}
