//! A replica fetcher's side of its KIP-227 fetch session with a leader, after
//! Kafka's `FetchSessionHandler`.
//!
//! The first request is full (epoch 0): it names every partition and asks
//! the leader for a session. Once the leader answers with a session id, each
//! request names only the partitions added or changed since the last one
//! (a new fetch offset after an append, a new leader epoch, log start offset
//! or last fetched epoch) and lists the ones dropped in `forgotten_topics_data`;
//! the leader answers only for partitions whose records, offsets or errors
//! changed. A steady follower of many partitions thus sends and receives
//! little more than the partitions that moved. A top-level error or a failed
//! connection makes the next request full again (epoch 0 with the old id,
//! which closes that session on the leader); an unknown session id makes it
//! full without one. A leader with no room for a session answers id 0, and
//! every request stays full.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use uuid::Uuid;
use weir_protocol::ErrorCode;

use crate::fetch_session::next_epoch;

/// A partition of a session: its topic id and index.
pub(super) type SessionPartition = (Uuid, i32);

/// The fields of the next request that depend on the session.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SessionRequest {
    pub session_id: i32,
    pub session_epoch: i32,
    /// The partitions to name: all of them in a full request, else those added or changed.
    pub topics: Vec<FetchTopic>,
    pub forgotten: Vec<ForgottenTopic>,
}

impl SessionRequest {
    /// Whether the request names every partition (it creates a session).
    pub fn is_full(&self) -> bool {
        self.session_epoch == 0
    }
}

/// What becomes of a response, as far as the session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionOutcome {
    /// Apply the partitions the response carries.
    Apply,
    /// Apply them; the session was (re)created with this id.
    Established(i32),
    /// The session is gone: apply nothing, start over with a full request.
    Lost(ErrorCode),
}

/// The follower's record of one session with one leader.
#[derive(Debug, Default)]
pub(super) struct FetchSessionHandler {
    /// 0 while there is none.
    session_id: i32,
    /// The epoch of the next request: 0 asks for a new session (closing `session_id`'s).
    next_epoch: i32,
    /// What the leader holds for each partition, as last sent.
    partitions: HashMap<SessionPartition, FetchPartition>,
}

impl FetchSessionHandler {
    /// The session's side of a request fetching `wanted` (each partition
    /// once), recorded as what the leader will hold once it is answered.
    pub fn build(&mut self, wanted: Vec<(Uuid, FetchPartition)>) -> SessionRequest {
        let full = self.next_epoch == 0;
        let mut named: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
        let mut next = HashMap::with_capacity(wanted.len());
        for (topic_id, partition) in wanted {
            let key = (topic_id, partition.partition);
            if full || self.partitions.get(&key) != Some(&partition) {
                named.entry(topic_id).or_default().push(partition.clone());
            }
            next.insert(key, partition);
        }
        let mut forgotten: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        if !full {
            for (topic_id, index) in self.partitions.keys().filter(|key| !next.contains_key(key)) {
                forgotten.entry(*topic_id).or_default().push(*index);
            }
        }
        self.partitions = next;
        SessionRequest {
            session_id: self.session_id,
            session_epoch: self.next_epoch,
            topics: named
                .into_iter()
                .map(|(topic_id, partitions)| FetchTopic::default().with_topic_id(topic_id).with_partitions(partitions))
                .collect(),
            forgotten: forgotten
                .into_iter()
                .map(|(topic_id, mut partitions)| {
                    partitions.sort_unstable();
                    ForgottenTopic::default().with_topic_id(topic_id).with_partitions(partitions)
                })
                .collect(),
        }
    }

    /// Takes the leader's answer to `request`: its top-level error and session id.
    pub fn handle_response(&mut self, request: &SessionRequest, error_code: i16, session_id: i32) -> SessionOutcome {
        if error_code != 0 {
            let code = ErrorCode::try_from_code(error_code).unwrap_or(ErrorCode::UnknownServerError);
            if code == ErrorCode::FetchSessionIdNotFound {
                self.session_id = 0;
            }
            self.next_epoch = 0;
            return SessionOutcome::Lost(code);
        }
        if session_id == 0 {
            // The leader keeps no session: every request is full.
            self.session_id = 0;
            self.next_epoch = 0;
            return SessionOutcome::Apply;
        }
        let established = request.is_full() || session_id != self.session_id;
        self.session_id = session_id;
        self.next_epoch = if request.is_full() { 1 } else { next_epoch(request.session_epoch) };
        if established {
            SessionOutcome::Established(session_id)
        } else {
            SessionOutcome::Apply
        }
    }

    /// After a failed request (no answer, a broken connection): the next one
    /// is full, and closes the session the leader may still hold.
    pub fn reset(&mut self) {
        self.next_epoch = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: i32, offset: i64) -> FetchPartition {
        FetchPartition::default()
            .with_partition(index)
            .with_fetch_offset(offset)
            .with_current_leader_epoch(3)
            .with_partition_max_bytes(1 << 20)
    }

    fn named(request: &SessionRequest) -> Vec<(Uuid, i32, i64)> {
        request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition, p.fetch_offset)))
            .collect()
    }

    fn forgotten(request: &SessionRequest) -> Vec<(Uuid, i32)> {
        request.forgotten.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, *p))).collect()
    }

    #[test]
    fn after_a_full_request_only_changes_are_sent() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut handler = FetchSessionHandler::default();
        let first = handler.build(vec![(a, at(0, 10)), (a, at(1, 20)), (b, at(0, 5))]);
        assert_eq!((first.session_id, first.session_epoch), (0, 0));
        assert_eq!(named(&first), vec![(a, 0, 10), (a, 1, 20), (b, 0, 5)]);
        assert_eq!(handler.handle_response(&first, 0, 77), SessionOutcome::Established(77));

        // Nothing moved: an empty incremental request.
        let idle = handler.build(vec![(a, at(0, 10)), (a, at(1, 20)), (b, at(0, 5))]);
        assert_eq!((idle.session_id, idle.session_epoch), (77, 1));
        assert!(named(&idle).is_empty() && forgotten(&idle).is_empty(), "{idle:?}");
        assert_eq!(handler.handle_response(&idle, 0, 77), SessionOutcome::Apply);

        // One appended, one removed, one added, one with a new leader epoch.
        let moved = handler.build(vec![(a, at(0, 15)), (b, at(0, 5).with_current_leader_epoch(4)), (b, at(1, 0))]);
        assert_eq!(moved.session_epoch, 2);
        assert_eq!(named(&moved), vec![(a, 0, 15), (b, 0, 5), (b, 1, 0)]);
        assert_eq!(forgotten(&moved), vec![(a, 1)]);
        assert_eq!(handler.handle_response(&moved, 0, 77), SessionOutcome::Apply);
    }

    #[test]
    fn errors_and_lost_connections_start_over_with_a_full_request() {
        let a = Uuid::from_u128(1);
        let mut handler = FetchSessionHandler::default();
        let wanted = || vec![(a, at(0, 10)), (a, at(1, 20))];
        let first = handler.build(wanted());
        handler.handle_response(&first, 0, 9);
        let second = handler.build(wanted());
        assert_eq!(
            handler.handle_response(&second, ErrorCode::InvalidFetchSessionEpoch.code(), 0),
            SessionOutcome::Lost(ErrorCode::InvalidFetchSessionEpoch)
        );
        // Full, closing session 9 on the leader.
        let again = handler.build(wanted());
        assert_eq!((again.session_id, again.session_epoch, named(&again).len()), (9, 0, 2));
        assert_eq!(handler.handle_response(&again, 0, 12), SessionOutcome::Established(12));

        let next = handler.build(wanted());
        handler.reset();
        let after_reset = handler.build(wanted());
        assert_eq!((after_reset.session_id, after_reset.session_epoch, named(&after_reset).len()), (12, 0, 2));
        assert!(forgotten(&next).is_empty());

        assert_eq!(
            handler.handle_response(&after_reset, ErrorCode::FetchSessionIdNotFound.code(), 0),
            SessionOutcome::Lost(ErrorCode::FetchSessionIdNotFound)
        );
        let fresh = handler.build(wanted());
        assert_eq!((fresh.session_id, fresh.session_epoch), (0, 0));
    }

    #[test]
    fn a_leader_without_room_for_a_session_gets_full_requests() {
        let a = Uuid::from_u128(1);
        let mut handler = FetchSessionHandler::default();
        let first = handler.build(vec![(a, at(0, 10))]);
        assert_eq!(handler.handle_response(&first, 0, 0), SessionOutcome::Apply);
        let second = handler.build(vec![(a, at(0, 10))]);
        assert!(second.is_full() && named(&second).len() == 1);
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(5), 6);
    }
}
