//! The voters' side of observers: nodes that are only brokers
//! (`process.roles=broker`) do not vote and keep no Raft log; they fetch the
//! committed metadata log from a voter, as KRaft observers fetch from the
//! leader (see [`crate::observer`] for their side).
//!
//! A fetch names the offset the observer's image has applied. The voter
//! answers, after waiting up to the fetch's long-poll time for something
//! newer, with the committed entries after it, read from its Raft log, or,
//! when the log no longer holds them (a snapshot covered and purged them),
//! with its whole image as the records of a snapshot. Only committed entries
//! are ever sent: a voter reads up to the offset its state machine applied.
//!
//! The leader remembers each observer's progress for DescribeQuorum, for
//! [`OBSERVER_SESSION`], as Kafka's leader keeps its observer states.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::*;
use crate::rpc::now_ms;
use crate::snapshot::image_records;

/// Most entries one fetch answers with.
const MAX_ENTRIES_PER_FETCH: u64 = 1000;
/// Longest long-poll a voter grants.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(2);
/// How long the leader lists an observer it no longer hears from (Kafka's
/// observer session timeout, 5 minutes).
const OBSERVER_SESSION: Duration = Duration::from_secs(300);

/// An observer's request for the committed metadata after its image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataFetch {
    /// The observer's node id.
    pub observer_id: i32,
    /// The cluster id the observer follows; empty before its first fetch.
    pub cluster_id: String,
    /// The offset of the last entry its image applied, -1 for none.
    pub after_offset: i64,
    /// How long to wait for an entry after `after_offset` before answering
    /// with none.
    pub max_wait_ms: u64,
}

/// The quorum's leader as the answering voter knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumLeader {
    /// The leader's node id.
    pub id: i32,
    /// Its epoch (Raft term).
    pub epoch: i32,
    /// Its controller listener, `host:port`.
    pub address: String,
}

/// One committed entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedEntry {
    /// Its offset (Raft log index).
    pub offset: i64,
    /// Its records, applied together; none for Raft's own entries.
    pub records: Vec<MetadataRecord>,
}

/// What an observer is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchedData {
    /// The committed entries right after the fetch's offset, in order; none
    /// when nothing newer was committed within the wait.
    Entries(Vec<FetchedEntry>),
    /// The image at `last_offset`, as snapshot records: the log no longer
    /// holds the entries the observer needs.
    Snapshot {
        /// The offset the image has applied.
        last_offset: i64,
        /// The image's records.
        records: Vec<MetadataRecord>,
    },
}

/// A voter's answer to a [`MetadataFetch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedMetadata {
    /// The leader, when the voter knows one: where the observer fetches and
    /// sends its operations next.
    pub leader: Option<QuorumLeader>,
    /// The metadata.
    pub data: FetchedData,
}

/// The leader's record of one observer.
#[derive(Debug, Clone, Copy)]
struct ObserverProgress {
    log_end_offset: i64,
    last_fetch_timestamp: i64,
    last_caught_up_timestamp: i64,
    seen: Instant,
}

/// The observers the leader has heard from, for one term of its leadership.
#[derive(Debug, Default)]
pub(super) struct Observers {
    term: u64,
    by_id: HashMap<i32, ObserverProgress>,
}

impl QuorumController {
    /// Answers an observer's fetch (see the module doc). Any voter answers;
    /// the leader also records the observer's progress.
    pub async fn fetch_metadata(&self, fetch: MetadataFetch) -> Result<FetchedMetadata, ControllerError> {
        let arrived = self.image();
        if !fetch.cluster_id.is_empty() && !arrived.cluster_id.is_empty() && fetch.cluster_id != arrived.cluster_id {
            return Err(ControllerError::InconsistentClusterId(format!(
                "node {} follows cluster {}, but this is cluster {}",
                fetch.observer_id, fetch.cluster_id, arrived.cluster_id
            )));
        }
        self.record_observer(&fetch, arrived.last_offset);
        let wait = Duration::from_millis(fetch.max_wait_ms).min(MAX_FETCH_WAIT);
        let mut images = self.images.clone();
        let _ = tokio::time::timeout(wait, images.wait_for(|image| image.last_offset > fetch.after_offset)).await;
        let image = self.image();
        let leader = self.leader_hint();
        if image.last_offset <= fetch.after_offset {
            return Ok(FetchedMetadata { leader, data: FetchedData::Entries(Vec::new()) });
        }
        let first = u64::try_from(fetch.after_offset + 1).unwrap_or(0);
        let last = u64::try_from(image.last_offset).unwrap_or(0).min(first.saturating_add(MAX_ENTRIES_PER_FETCH - 1));
        let data = match self.store.read_entries(first, last).await? {
            Some(entries) => FetchedData::Entries(
                entries
                    .into_iter()
                    .map(|entry| FetchedEntry {
                        offset: i64::try_from(entry.log_id.index).unwrap_or(i64::MAX),
                        records: match entry.payload {
                            openraft::EntryPayload::Normal(data) => data.records,
                            _ => Vec::new(),
                        },
                    })
                    .collect(),
            ),
            None => FetchedData::Snapshot { last_offset: image.last_offset, records: image_records(&image) },
        };
        Ok(FetchedMetadata { leader, data })
    }

    /// The leader this node knows of, with its controller address.
    fn leader_hint(&self) -> Option<QuorumLeader> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        let address = metrics.membership_config.membership().get_node(&id)?.addr.clone();
        Some(QuorumLeader {
            id: i32::try_from(id).ok()?,
            epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            address,
        })
    }

    /// On the leader, notes that `fetch`'s observer fetched now, and whether
    /// it had caught up with `leader_offset`, the leader's image when the
    /// fetch arrived.
    fn record_observer(&self, fetch: &MetadataFetch, leader_offset: i64) {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return;
        }
        let now = now_ms();
        let mut observers = self.observers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if observers.term != metrics.current_term {
            observers.term = metrics.current_term;
            observers.by_id.clear();
        }
        let previous_caught_up = observers.by_id.get(&fetch.observer_id).map_or(-1, |p| p.last_caught_up_timestamp);
        observers.by_id.insert(
            fetch.observer_id,
            ObserverProgress {
                log_end_offset: fetch.after_offset + 1,
                last_fetch_timestamp: now,
                last_caught_up_timestamp: if fetch.after_offset >= leader_offset { now } else { previous_caught_up },
                seen: Instant::now(),
            },
        );
    }

    /// The observers heard from within [`OBSERVER_SESSION`] in this term, by id.
    pub(super) fn observer_replicas(&self, term: u64) -> Vec<QuorumReplica> {
        let mut observers = self.observers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if observers.term != term {
            return Vec::new();
        }
        observers.by_id.retain(|_, progress| progress.seen.elapsed() < OBSERVER_SESSION);
        let mut replicas: Vec<QuorumReplica> = observers
            .by_id
            .iter()
            .map(|(id, progress)| QuorumReplica {
                id: *id,
                log_end_offset: progress.log_end_offset,
                last_fetch_timestamp: progress.last_fetch_timestamp,
                last_caught_up_timestamp: progress.last_caught_up_timestamp,
                address: String::new(),
            })
            .collect();
        replicas.sort_by_key(|r| r.id);
        replicas
    }
}
