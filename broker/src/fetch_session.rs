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
//! sessions (Kafka's default 1000). When it is full, a new session takes the
//! slot of one unused for `min.incremental.fetch.session.eviction.ms` (120 s),
//! else of the least valuable session it may displace, if that is worth less
//! than itself: followers' sessions (privileged) above consumers', then more
//! partitions above fewer. A follower may displace any consumer's session,
//! anyone a session older than the eviction time; the rest keep their slots
//! and the newcomer fetches without a session (id 0), as Kafka's
//! `FetchSessionCache` decides. An evicted session's client starts over with a
//! full fetch when told the id is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;
use weir_protocol::ErrorCode;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const DEFAULT_CACHE_SLOTS: usize = 1000;

/// Kafka's `min.incremental.fetch.session.eviction.ms` default: a session
/// unused this long goes first; one this old may be displaced by a bigger one.
const MIN_EVICTION: Duration = Duration::from_secs(120);

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

/// What the read of one partition of a fetch gave, for [`FetchSessionCache::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRead {
    /// The offsets the response reports.
    pub sent: SentOffsets,
    /// Records were returned.
    pub records: bool,
    /// An error, a divergence or a preferred read replica: answered even if nothing moved.
    pub must_answer: bool,
}

/// A partition a request drops from its session (`forgotten_topics_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenPartition {
    /// Topic id (v13+; zero before unless known).
    pub topic_id: Uuid,
    /// Topic name (empty when the id is unknown, for instance a deleted topic).
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl FetchTarget {
    /// Whether this is the partition `topic_id`/`topic` `partition`: by topic
    /// id where both sides have one (a deleted topic's id no longer has a
    /// name, a recreated topic's name has a new id), else by name.
    fn is(&self, topic_id: Uuid, topic: &str, partition: i32) -> bool {
        let same_topic =
            if self.topic_id.is_nil() || topic_id.is_nil() { self.topic == topic } else { self.topic_id == topic_id };
        same_topic && self.partition == partition
    }
}

struct Session {
    next_epoch: i32,
    /// In the order the client added them.
    partitions: Vec<(FetchTarget, Option<SentOffsets>)>,
    /// A follower's session.
    privileged: bool,
    created: Instant,
    last_used: Instant,
}

impl Session {
    /// What the session is worth against a newcomer's, as Kafka orders them.
    fn worth(&self) -> (bool, usize) {
        (self.privileged, self.partitions.len())
    }
}

/// The session whose slot a new one (`privileged`, with `size` partitions)
/// takes in a full cache, if any.
fn slot_to_take(sessions: &HashMap<i32, Session>, privileged: bool, size: usize, now: Instant) -> Option<i32> {
    let (&least_recent, session) = sessions.iter().min_by_key(|(_, s)| s.last_used)?;
    if now.saturating_duration_since(session.last_used) > MIN_EVICTION {
        return Some(least_recent);
    }
    let (worth, id) = sessions
        .iter()
        .filter(|(_, s)| now.saturating_duration_since(s.created) > MIN_EVICTION || (privileged && !s.privileged))
        .map(|(&id, s)| (s.worth(), id))
        .min()?;
    ((privileged, size) > worth).then_some(id)
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

/// A session partition's key among the partitions of one session (the
/// targets of a request are the session's, so names and ids agree).
fn key(target: &FetchTarget) -> PartitionKey {
    (if target.topic_id.is_nil() { target.topic.clone() } else { target.topic_id.to_string() }, target.partition)
}

/// The session epoch after `epoch`; after the largest comes 1 (0 would ask for a new session).
pub(crate) fn next_epoch(epoch: i32) -> i32 {
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
    /// A `privileged` request is a follower's.
    pub fn begin(
        &self,
        session_id: i32,
        session_epoch: i32,
        requested: Vec<FetchTarget>,
        forgotten: &[ForgottenPartition],
        privileged: bool,
    ) -> Result<(SessionContext, Vec<FetchTarget>), ErrorCode> {
        self.begin_at(Instant::now(), session_id, session_epoch, requested, forgotten, privileged)
    }

    fn begin_at(
        &self,
        now: Instant,
        session_id: i32,
        session_epoch: i32,
        requested: Vec<FetchTarget>,
        forgotten: &[ForgottenPartition],
        privileged: bool,
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
                    match slot_to_take(&sessions, privileged, requested.len(), now) {
                        Some(evicted) => {
                            sessions.remove(&evicted);
                        }
                        None => return Ok((SessionContext::Created { session_id: 0 }, requested)),
                    }
                }
                let id = loop {
                    let candidate = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
                    if candidate != 0 && !sessions.contains_key(&candidate) {
                        break candidate;
                    }
                };
                let partitions = requested.iter().map(|t| (t.clone(), None)).collect();
                sessions.insert(id, Session { next_epoch: 1, partitions, privileged, created: now, last_used: now });
                Ok((SessionContext::Created { session_id: id }, requested))
            }
            epoch => {
                let session = sessions.get_mut(&session_id).ok_or(ErrorCode::FetchSessionIdNotFound)?;
                if session.next_epoch != epoch {
                    return Err(ErrorCode::InvalidFetchSessionEpoch);
                }
                session.next_epoch = next_epoch(epoch);
                session.last_used = now;
                session.partitions.retain(|(t, _)| !forgotten.iter().any(|f| t.is(f.topic_id, &f.topic, f.partition)));
                for target in requested {
                    match session
                        .partitions
                        .iter_mut()
                        .find(|(t, _)| t.is(target.topic_id, &target.topic, target.partition))
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

    /// After the read: records the offsets sent, and for incremental sessions
    /// says which partitions go in the response (those with records, an
    /// answer that cannot wait, or offsets that moved) and, as Kafka, moves
    /// the partitions that returned records to the end of the session, so
    /// the next read serves the others first within the response's byte limit.
    pub fn complete(&self, context: &SessionContext, results: &[(FetchTarget, PartitionRead)]) -> Vec<bool> {
        let session_id = match context {
            SessionContext::Sessionless => return vec![true; results.len()],
            SessionContext::Created { session_id } | SessionContext::Incremental { session_id } => *session_id,
        };
        let incremental = matches!(context, SessionContext::Incremental { .. });
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(&session_id) else { return vec![true; results.len()] };
        let index: BTreeMap<PartitionKey, usize> =
            session.partitions.iter().enumerate().map(|(i, (t, _))| (key(t), i)).collect();
        let include = results
            .iter()
            .map(|(target, read)| {
                let Some(&i) = index.get(&key(target)) else { return true };
                let previous = session.partitions[i].1.replace(read.sent);
                !incremental || read.records || read.must_answer || previous != Some(read.sent)
            })
            .collect();
        if incremental {
            let served: std::collections::HashSet<PartitionKey> =
                results.iter().filter(|(_, read)| read.records).map(|(target, _)| key(target)).collect();
            if !served.is_empty() {
                session.partitions.sort_by_key(|(t, _)| served.contains(&key(t)));
            }
        }
        include
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
        let (ctx, targets) = cache.begin(0, 0, vec![target(0, 0), target(1, 0)], &[], false).unwrap();
        let SessionContext::Created { session_id } = ctx else { panic!("{ctx:?}") };
        assert_eq!(targets.len(), 2);
        let sent = SentOffsets { high_watermark: 5, last_stable_offset: 5, log_start_offset: 0 };
        let read = |sent: SentOffsets, records: bool| PartitionRead { sent, records, must_answer: false };
        assert_eq!(
            cache.complete(&ctx, &[(target(0, 0), read(sent, true)), (target(1, 0), read(sent, false))]),
            vec![true, true]
        );

        // Next epoch names only partition 0 with a new offset; partition 1 is still read.
        let (ctx, targets) = cache.begin(session_id, 1, vec![target(0, 5)], &[], false).unwrap();
        assert_eq!(targets, vec![target(0, 5), target(1, 0)]);
        // Partition 1 did not change: left out; partition 0 moved its high watermark: sent.
        let moved = SentOffsets { high_watermark: 7, ..sent };
        assert_eq!(
            cache.complete(&ctx, &[(target(0, 5), read(moved, false)), (target(1, 0), read(sent, false))]),
            vec![true, false]
        );
        // Partition 0 returns records: it goes to the end of the session, behind partition 1.
        let (ctx, targets) = cache.begin(session_id, 2, vec![], &[], false).unwrap();
        assert_eq!(targets, vec![target(0, 5), target(1, 0)]);
        assert_eq!(
            cache.complete(&ctx, &[(target(0, 5), read(moved, true)), (target(1, 0), read(sent, false))]),
            vec![true, false]
        );
        let (_, targets) = cache.begin(session_id, 3, vec![], &[], false).unwrap();
        assert_eq!(targets, vec![target(1, 0), target(0, 5)]);

        assert_eq!(cache.begin(session_id, 1, vec![], &[], false).unwrap_err(), ErrorCode::InvalidFetchSessionEpoch);
        let forget = ForgottenPartition { topic_id: Uuid::nil(), topic: "t".into(), partition: 0 };
        let (_, targets) = cache.begin(session_id, 4, vec![], &[forget], false).unwrap();
        assert_eq!(targets, vec![target(1, 0)]);
        assert_eq!(cache.begin(session_id, -1, vec![], &[], false).unwrap().0, SessionContext::Sessionless);
        assert_eq!(cache.begin(session_id, 5, vec![], &[], false).unwrap_err(), ErrorCode::FetchSessionIdNotFound);
    }

    #[test]
    fn a_deleted_topic_is_forgotten_by_its_id() {
        let cache = FetchSessionCache::new(10);
        let id = Uuid::from_u128(7);
        // The topic's name is gone from the metadata: the request names it by id only.
        let deleted = FetchTarget { topic_id: id, topic: String::new(), ..target(0, 0) };
        let kept = FetchTarget { topic_id: Uuid::from_u128(8), ..target(0, 0) };
        let (ctx, _) = cache.begin(0, 0, vec![deleted.clone(), kept.clone()], &[], false).unwrap();
        let SessionContext::Created { session_id } = ctx else { panic!("{ctx:?}") };
        let forget = ForgottenPartition { topic_id: id, topic: String::new(), partition: 0 };
        let (_, targets) = cache.begin(session_id, 1, vec![], &[forget], false).unwrap();
        assert_eq!(targets, vec![kept]);
    }

    #[test]
    fn a_full_cache_keeps_the_sessions_worth_more_than_a_newcomer() {
        let cache = FetchSessionCache::new(2);
        let t0 = Instant::now();
        let new_session = |at: Duration, partitions: usize, privileged: bool| {
            let targets = (0..partitions as i32).map(|p| target(p, 0)).collect();
            match cache.begin_at(t0 + at, 0, 0, targets, &[], privileged).unwrap().0 {
                SessionContext::Created { session_id } => session_id,
                other => panic!("{other:?}"),
            }
        };
        let alive = |id: i32| cache.lock().contains_key(&id);
        let consumer = new_session(Duration::ZERO, 1, false);
        let follower = new_session(Duration::ZERO, 1, true);
        // A consumer with more partitions cannot displace sessions younger than the eviction time.
        assert_eq!(new_session(Duration::from_secs(1), 5, false), 0);
        // A follower displaces a consumer at once.
        let second_follower = new_session(Duration::from_secs(2), 1, true);
        assert!(second_follower != 0 && !alive(consumer) && alive(follower));
        // A follower does not displace a follower of the same size younger than the eviction time.
        assert_eq!(new_session(Duration::from_secs(3), 1, true), 0);
        // Once both are older than the eviction time, only a newcomer worth more displaces one.
        let secs = |n: u64| Duration::from_secs(n);
        for id in [follower, second_follower] {
            assert!(cache.begin_at(t0 + secs(100), id, 1, vec![], &[], true).is_ok());
        }
        assert_eq!(new_session(secs(125), 1, true), 0, "as much worth: no slot");
        let bigger = new_session(secs(125), 3, true);
        assert!(bigger != 0 && alive(follower) != alive(second_follower), "one of the two small ones made room");
        let small = if alive(follower) { follower } else { second_follower };
        // A session unused for longer than the eviction time goes to whoever asks.
        let late = new_session(secs(100) + MIN_EVICTION + secs(2), 1, false);
        assert!(late != 0 && !alive(small) && alive(bigger));
    }
}
