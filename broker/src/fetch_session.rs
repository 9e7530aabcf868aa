//! Incremental fetch sessions (KIP-227).
//!
//! A client that sends `session_epoch` 0 asks for a session: the broker
//! remembers the partitions of that full request and answers with a session
//! id. Later requests carry the id and the next epoch, name only the
//! partitions that changed (added, new offset, or in `forgotten_topics_data`),
//! and get back only the partitions whose data or offsets changed since the
//! last response. Epoch -1 closes the session. A wrong epoch gets
//! INVALID_FETCH_SESSION_EPOCH, an unknown id FETCH_SESSION_ID_NOT_FOUND.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots`
//! sessions (Kafka's default 1000); when full, the least recently used one is
//! evicted, and its client starts over with a full fetch when told the id
//! is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;
use weir_protocol::ErrorCode;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const DEFAULT_CACHE_SLOTS: usize = 1000;

/// One partition a fetch reads: where, from which offset, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    /// Topic id (zero before Fetch v13 unless known).
    pub topic_id: Uuid,
    /// Topic name (empty when unknown, for instance an unknown id).
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Offset to read from.
    pub fetch_offset: i64,
    /// Per-partition byte limit.
    pub max_bytes: i32,
    /// The leader epoch the client believes current, or -1.
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher has (v12+; -1: none), for a
    /// follower's divergence check.
    pub last_fetched_epoch: i32,
    /// The fetcher's log start offset (v5+; -1 from consumers): a follower's,
    /// which the leader weighs when it picks a preferred read replica.
    pub log_start_offset: i64,
}

/// Offsets last sent for a partition, to decide whether it changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentOffsets {
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
}

type PartitionKey = (String, i32);

struct Session {
    next_epoch: i32,
    /// In the order the client added them.
    partitions: Vec<(FetchTarget, Option<SentOffsets>)>,
    last_used: Instant,
}

/// The sessions of this broker.
pub struct FetchSessionCache {
    sessions: Mutex<HashMap<i32, Session>>,
    slots: usize,
}

/// How a request relates to sessions, decided before reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionContext {
    /// No session: a full request and a full response, session id 0.
    Sessionless,
    /// A session was created (or the cache was full: then id 0); full response.
    Created {
        /// The new session id, 0 if none could be kept.
        session_id: i32,
    },
    /// An incremental request on an existing session; only changes are sent.
    Incremental {
        /// The session id.
        session_id: i32,
    },
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl Default for FetchSessionCache {
    fn default() -> Self {
        FetchSessionCache::new(DEFAULT_CACHE_SLOTS)
    }
}

impl FetchSessionCache {
    /// A cache with room for `slots` sessions.
    pub fn new(slots: usize) -> Self {
        FetchSessionCache { sessions: Mutex::new(HashMap::new()), slots }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a request's session fields into the partitions to read and
    /// the session context, applying the request's additions and removals.
    pub fn begin(
        &self,
        session_id: i32,
        session_epoch: i32,
        requested: Vec<FetchTarget>,
        forgotten: &[(String, i32)],
    ) -> Result<(SessionContext, Vec<FetchTarget>), ErrorCode> {
        let mut sessions = self.lock();
        match session_epoch {
            -1 => {
                if session_id != 0 {
                    sessions.remove(&session_id);
                }
                Ok((SessionContext::Sessionless, requested))
            }
            0 => {
                if session_id != 0 {
                    sessions.remove(&session_id);
                }
                if sessions.len() >= self.slots {
                    if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id) {
                        sessions.remove(&oldest);
                    }
                }
                let id = loop {
                    let candidate = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
                    if candidate != 0 && !sessions.contains_key(&candidate) {
                        break candidate;
                    }
                };
                let partitions = requested.iter().map(|t| (t.clone(), None)).collect();
                sessions.insert(id, Session { next_epoch: 1, partitions, last_used: Instant::now() });
                Ok((SessionContext::Created { session_id: id }, requested))
            }
            epoch => {
                let session = sessions.get_mut(&session_id).ok_or(ErrorCode::FetchSessionIdNotFound)?;
                if session.next_epoch != epoch {
                    return Err(ErrorCode::InvalidFetchSessionEpoch);
                }
                session.next_epoch = next_epoch(epoch);
                session.last_used = Instant::now();
                session.partitions.retain(|(t, _)| !forgotten.contains(&(t.topic.clone(), t.partition)));
                for target in requested {
                    match session
                        .partitions
                        .iter_mut()
                        .find(|(t, _)| t.topic == target.topic && t.partition == target.partition)
                    {
                        Some((existing, _)) => *existing = target,
                        None => session.partitions.push((target, None)),
                    }
                }
                let targets = session.partitions.iter().map(|(t, _)| t.clone()).collect();
                Ok((SessionContext::Incremental { session_id }, targets))
            }
        }
    }

    /// After the read: records the offsets sent and the next fetch offsets,
    /// and for incremental sessions says which partitions go in the response
    /// (those with records, an error, or offsets that moved).
    pub fn complete(&self, context: &SessionContext, results: &[(FetchTarget, SentOffsets, bool)]) -> Vec<bool> {
        let session_id = match context {
            SessionContext::Sessionless => return vec![true; results.len()],
            SessionContext::Created { session_id } | SessionContext::Incremental { session_id } => *session_id,
        };
        let incremental = matches!(context, SessionContext::Incremental { .. });
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(&session_id) else { return vec![true; results.len()] };
        let index: BTreeMap<PartitionKey, usize> =
            session.partitions.iter().enumerate().map(|(i, (t, _))| ((t.topic.clone(), t.partition), i)).collect();
        results
            .iter()
            .map(|(target, sent, has_data_or_error)| {
                let Some(&i) = index.get(&(target.topic.clone(), target.partition)) else { return true };
                let previous = session.partitions[i].1.replace(*sent);
                !incremental || *has_data_or_error || previous != Some(*sent)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(p: i32, offset: i64) -> FetchTarget {
        FetchTarget {
            topic_id: Uuid::nil(),
            topic: "t".into(),
            partition: p,
            fetch_offset: offset,
            max_bytes: 1024,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        }
    }

    #[test]
    fn create_then_incremental_then_close() {
        let cache = FetchSessionCache::new(10);
        let (ctx, targets) = cache.begin(0, 0, vec![target(0, 0), target(1, 0)], &[]).unwrap();
        let SessionContext::Created { session_id } = ctx else { panic!("{ctx:?}") };
        assert_eq!(targets.len(), 2);
        let sent = SentOffsets { high_watermark: 5, last_stable_offset: 5, log_start_offset: 0 };
        assert_eq!(cache.complete(&ctx, &[(target(0, 0), sent, true), (target(1, 0), sent, false)]), vec![true, true]);

        // Next epoch names only partition 0 with a new offset; partition 1 is still read.
        let (ctx, targets) = cache.begin(session_id, 1, vec![target(0, 5)], &[]).unwrap();
        assert_eq!(targets, vec![target(0, 5), target(1, 0)]);
        // Partition 1 did not change: left out; partition 0 moved its high watermark: sent.
        let moved = SentOffsets { high_watermark: 7, ..sent };
        assert_eq!(
            cache.complete(&ctx, &[(target(0, 5), moved, false), (target(1, 0), sent, false)]),
            vec![true, false]
        );

        assert_eq!(cache.begin(session_id, 1, vec![], &[]).unwrap_err(), ErrorCode::InvalidFetchSessionEpoch);
        let (_, targets) = cache.begin(session_id, 2, vec![], &[("t".into(), 0)]).unwrap();
        assert_eq!(targets, vec![target(1, 0)]);
        assert_eq!(cache.begin(session_id, -1, vec![], &[]).unwrap().0, SessionContext::Sessionless);
        assert_eq!(cache.begin(session_id, 3, vec![], &[]).unwrap_err(), ErrorCode::FetchSessionIdNotFound);
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used() {
        let cache = FetchSessionCache::new(1);
        let (first, _) = cache.begin(0, 0, vec![target(0, 0)], &[]).unwrap();
        let (_second, _) = cache.begin(0, 0, vec![target(0, 0)], &[]).unwrap();
        let SessionContext::Created { session_id } = first else { panic!() };
        assert_eq!(cache.begin(session_id, 1, vec![], &[]).unwrap_err(), ErrorCode::FetchSessionIdNotFound);
    }
}
