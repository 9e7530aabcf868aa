//! The leader's side of replication, after Kafka's `Partition`: what each
//! follower has fetched, the high watermark over the ISR, and the ISR
//! changes the leader asks the controller for (AlterPartition).
//!
//! * A follower's fetch offset is its log end offset (it fetches from its
//!   log end). Its last caught-up time moves when it fetches from the
//!   leader's log end, or from the log end the leader had at its previous
//!   fetch (Kafka's `lastCaughtUpTimeMs`).
//! * The high watermark is the smallest log end offset among the leader and
//!   the *maximal* ISR: the committed ISR plus a member being added (whose
//!   addition is not committed yet), so the high watermark never counts on
//!   fewer replicas than the committed ISR holds, and a follower whose
//!   progress is unknown (none since this broker became leader) holds it
//!   back. It only moves forward, and every move wakes the requests parked
//!   on the partition (acks=all produces, fetches).
//! * A follower outside the ISR joins when it has caught up to the high
//!   watermark and to the start of the leader's epoch; a member that has
//!   not caught up for `replica.lag.time.max.ms` leaves. One change is in
//!   flight at a time; the committed ISR arrives with the metadata image.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use weir_protocol::ErrorCode;

use super::partition::{Leadership, Partition};

/// What the leader knows of one follower (Kafka's `Replica`).
#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// The follower's log end offset (-1: unknown since this broker became leader).
    log_end_offset: i64,
    /// The follower's log start offset, as its last fetch said (-1: unknown).
    log_start_offset: i64,
    /// When the follower was last caught up with the leader's log end.
    last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch, and when that was.
    previous_fetch_leader_log_end: i64,
    previous_fetch_ms: i64,
}

impl FollowerProgress {
    /// A follower whose progress is not known yet, counted as caught up at `last_caught_up_ms`.
    fn unknown(last_caught_up_ms: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: -1,
            log_start_offset: -1,
            last_caught_up_ms,
            previous_fetch_leader_log_end: -1,
            previous_fetch_ms: 0,
        }
    }
}

/// Who sends a follower's fetch, as the fetch handler verified it against
/// the metadata: the broker is registered at the epoch its fetch carries.
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica_id: i32,
    /// Its registration epoch, sent with the fetch (KIP-903).
    pub broker_epoch: i64,
    /// The follower's log start offset, sent with the fetch of this partition.
    pub log_start_offset: i64,
    /// Whether it may join the ISR: registered and not fenced (Kafka's
    /// `isReplicaIsrEligible`). A fenced follower still fetches.
    pub isr_eligible: bool,
    /// Whether this read records the follower's progress: the first read of
    /// a request does; a parked request's later reads do not (as Kafka's
    /// delayed fetch reads without updating the follower's state).
    pub record_progress: bool,
}

/// The leader's replication state of one partition.
#[derive(Debug, Default)]
pub(super) struct ReplicationState {
    /// This broker's id.
    node_id: i32,
    /// The leader epoch this state belongs to (-1: not leader).
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR.
    isr: Vec<i32>,
    /// An ISR change sent to the controller and not answered yet.
    pending_isr: Option<Vec<i32>>,
    /// The leader's log end offset when it became leader in this epoch.
    leader_epoch_start_offset: i64,
    followers: HashMap<i32, FollowerProgress>,
}

impl ReplicationState {
    pub(super) fn new(node_id: i32) -> ReplicationState {
        ReplicationState { node_id, leader_epoch: -1, ..ReplicationState::default() }
    }

    /// The committed ISR plus a member being added.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            isr.extend(pending.iter().copied().filter(|r| !self.isr.contains(r)));
        }
        isr
    }
}

/// An ISR change for the controller: the partition's state it is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch.
    pub partition_epoch: i32,
    /// The ISR wanted.
    pub new_isr: Vec<i32>,
    /// The broker epoch of each member joining the ISR, from its fetches:
    /// the controller refuses a member no longer registered at that epoch.
    pub joining_broker_epochs: BTreeMap<i32, i64>,
}

/// What a follower's fetch gets from the leader.
#[derive(Debug, Clone)]
pub enum FollowerRead {
    /// Records from the fetch offset (possibly none).
    Records {
        /// Whole batches.
        records: Bytes,
        /// The high watermark after the fetch was recorded.
        high_watermark: i64,
        /// The log start offset.
        log_start_offset: i64,
        /// An ISR change the fetch made due, for the caller to send.
        proposal: Option<IsrProposal>,
    },
    /// The follower's log diverged: it must truncate to `end_offset` (the end
    /// of `epoch` on the leader) before fetching again.
    Diverging {
        /// The largest epoch on the leader not above the follower's.
        epoch: i32,
        /// Where that epoch ends on the leader.
        end_offset: i64,
        /// The high watermark.
        high_watermark: i64,
        /// The log start offset.
        log_start_offset: i64,
    },
}

impl Partition {
    /// Applies leadership from the image to the replication state: becoming
    /// leader (or a new leader epoch) starts afresh with every follower's
    /// progress unknown; the same epoch takes the committed ISR.
    pub(super) fn leadership_changed(&self, leadership: &Leadership, now_ms: i64) {
        let mut replication = self.replication();
        if !leadership.is_leader {
            replication.leader_epoch = -1;
            replication.followers.clear();
            replication.pending_isr = None;
            return;
        }
        if replication.leader_epoch != leadership.leader_epoch {
            replication.leader_epoch = leadership.leader_epoch;
            replication.leader_epoch_start_offset = self.offsets().1;
            // As Kafka: ISR members start as caught up now, so none is dropped
            // before it had a chance to fetch from the new leader.
            replication.followers = leadership
                .replicas
                .iter()
                .filter(|&&r| r != replication.node_id)
                .map(|&r| (r, FollowerProgress::unknown(if leadership.isr.contains(&r) { now_ms } else { 0 })))
                .collect();
            replication.pending_isr = None;
        }
        if replication.partition_epoch != leadership.partition_epoch {
            // A committed change (ours or the controller's) supersedes the one in flight.
            replication.pending_isr = None;
        }
        replication.partition_epoch = leadership.partition_epoch;
        replication.replicas = leadership.replicas.clone();
        replication.isr = leadership.isr.clone();
        for &r in &leadership.replicas {
            if r != replication.node_id {
                replication.followers.entry(r).or_insert(FollowerProgress::unknown(0));
            }
        }
        replication.followers.retain(|r, _| leadership.replicas.contains(r));
        drop(replication);
        self.maybe_advance_high_watermark();
    }

    /// Raises the high watermark to the smallest log end offset of the
    /// leader and the maximal ISR, if that is higher; wakes the parked
    /// requests when it moves.
    pub(super) fn maybe_advance_high_watermark(&self) {
        if !self.is_leader() {
            return;
        }
        let (_, log_end) = self.offsets();
        let candidate = {
            let replication = self.replication();
            let mut candidate = log_end;
            for replica in replication.maximal_isr() {
                if replica == replication.node_id {
                    continue;
                }
                match replication.followers.get(&replica) {
                    Some(p) if p.log_end_offset >= 0 => candidate = candidate.min(p.log_end_offset),
                    _ => return,
                }
            }
            candidate
        };
        if self.high_watermark.fetch_max(candidate, Ordering::AcqRel) < candidate {
            self.watchers.wake();
        }
    }

    /// Serves a follower's fetch: checks the follower's last fetched epoch
    /// against the leader's epoch cache (a divergence is answered without
    /// records), records its progress if `follower` says so (which may
    /// advance the high watermark and make an ISR expansion due), then reads
    /// up to the log end.
    pub fn read_for_follower(
        &self,
        follower: FollowerFetch,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        max_bytes: usize,
        min_one_batch: bool,
        now_ms: i64,
    ) -> Result<FollowerRead, ErrorCode> {
        if !self.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let known = {
            let replication = self.replication();
            follower.replica_id != replication.node_id && replication.replicas.contains(&follower.replica_id)
        };
        if !known {
            // As Kafka: only the partition's other replicas fetch as followers.
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let (log_start, log_end) = self.offsets();
        if last_fetched_epoch >= 0 {
            let (epoch, end_offset) = self.end_offset_for_epoch(last_fetched_epoch);
            if epoch < 0 {
                // The follower has an epoch newer than any here: this broker's
                // leadership is stale; the follower retries after the metadata moves.
                return Err(ErrorCode::UnknownLeaderEpoch);
            }
            if epoch < last_fetched_epoch || end_offset < fetch_offset {
                return Ok(FollowerRead::Diverging {
                    epoch,
                    end_offset,
                    high_watermark: self.high_watermark(),
                    log_start_offset: log_start,
                });
            }
        }
        if fetch_offset < log_start || fetch_offset > log_end {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let proposal = if follower.record_progress {
            self.record_follower_fetch(follower, fetch_offset, log_end, now_ms)
        } else {
            None
        };
        let read = self.read_up_to(fetch_offset, max_bytes, i64::MAX, min_one_batch)?;
        Ok(FollowerRead::Records {
            records: read.records,
            high_watermark: self.high_watermark(),
            log_start_offset: read.log_start_offset,
            proposal,
        })
    }

    /// Records a follower's fetch from `fetch_offset` while the leader's log
    /// ends at `leader_log_end`; returns an ISR expansion if it became due.
    fn record_follower_fetch(
        &self,
        follower: FollowerFetch,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) -> Option<IsrProposal> {
        let replica_id = follower.replica_id;
        {
            let mut replication = self.replication();
            let progress = replication.followers.entry(replica_id).or_insert(FollowerProgress::unknown(0));
            progress.log_start_offset = follower.log_start_offset;
            if fetch_offset >= leader_log_end {
                progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
            } else if fetch_offset >= progress.previous_fetch_leader_log_end
                && progress.previous_fetch_leader_log_end >= 0
            {
                progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.previous_fetch_ms);
            }
            progress.previous_fetch_leader_log_end = leader_log_end;
            progress.previous_fetch_ms = now_ms;
            progress.log_end_offset = fetch_offset;
        }
        self.maybe_advance_high_watermark();
        let mut replication = self.replication();
        let joins = follower.isr_eligible
            && !replication.isr.contains(&replica_id)
            && replication.pending_isr.is_none()
            && fetch_offset >= self.high_watermark()
            && fetch_offset >= replication.leader_epoch_start_offset;
        if !joins {
            return None;
        }
        let mut new_isr = replication.isr.clone();
        new_isr.push(replica_id);
        replication.pending_isr = Some(new_isr.clone());
        Some(IsrProposal {
            leader_epoch: replication.leader_epoch,
            partition_epoch: replication.partition_epoch,
            new_isr,
            joining_broker_epochs: BTreeMap::from([(replica_id, follower.broker_epoch)]),
        })
    }

    /// An ISR shrink if members have not caught up for `lag_time_max_ms`
    /// (and no change is in flight); marks it in flight.
    pub fn shrink_isr_if_due(&self, now_ms: i64, lag_time_max_ms: i64) -> Option<IsrProposal> {
        if !self.is_leader() {
            return None;
        }
        let mut replication = self.replication();
        if replication.pending_isr.is_some() || replication.leader_epoch < 0 {
            return None;
        }
        let node_id = replication.node_id;
        let lagging: Vec<i32> = replication
            .isr
            .iter()
            .copied()
            .filter(|&r| r != node_id)
            .filter(|r| replication.followers.get(r).is_none_or(|p| now_ms - p.last_caught_up_ms > lag_time_max_ms))
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = replication.isr.iter().copied().filter(|r| !lagging.contains(r)).collect();
        tracing::info!(partition = %self.name(), ?lagging, isr = ?replication.isr, "shrinking the ISR: followers not caught up for replica.lag.time.max.ms");
        replication.pending_isr = Some(new_isr.clone());
        Some(IsrProposal {
            leader_epoch: replication.leader_epoch,
            partition_epoch: replication.partition_epoch,
            new_isr,
            joining_broker_epochs: BTreeMap::new(),
        })
    }

    /// The controller's answer to an ISR change: on success its committed
    /// state (the image brings it too), on failure the change is dropped and
    /// may be proposed again.
    pub fn isr_change_completed(&self, proposal: &IsrProposal, committed: Option<(i32, i32, Vec<i32>)>) {
        let mut replication = self.replication();
        if replication.pending_isr.as_ref() != Some(&proposal.new_isr) {
            return;
        }
        replication.pending_isr = None;
        if let Some((leader_epoch, partition_epoch, isr)) = committed {
            if leader_epoch == replication.leader_epoch && partition_epoch > replication.partition_epoch {
                replication.partition_epoch = partition_epoch;
                replication.isr = isr;
            }
        }
        drop(replication);
        self.maybe_advance_high_watermark();
    }

    /// KIP-392, as Kafka's `RackAwareReplicaSelector`: the follower a
    /// consumer in `client_rack` reading from `fetch_offset` should fetch
    /// from, if any. `rack_of` gives a live broker's rack (`None` for a
    /// broker that is not live or has none). The leader keeps the consumer
    /// when it is in that rack itself or no in-sync follower there holds the
    /// offset; among those that do, the one with the most records wins, then
    /// the one caught up most recently.
    pub fn preferred_read_replica(
        &self,
        fetch_offset: i64,
        client_rack: &str,
        rack_of: impl Fn(i32) -> Option<String>,
        now_ms: i64,
    ) -> Option<i32> {
        if client_rack.is_empty() || !self.is_leader() {
            return None;
        }
        let replication = self.replication();
        if rack_of(replication.node_id).as_deref() == Some(client_rack) {
            return None;
        }
        replication
            .isr
            .iter()
            .filter(|&&r| r != replication.node_id && rack_of(r).as_deref() == Some(client_rack))
            .filter_map(|r| replication.followers.get(r).map(|p| (*r, p)))
            .filter(|(_, p)| p.log_end_offset >= fetch_offset && (0..=fetch_offset).contains(&p.log_start_offset))
            .max_by_key(|(_, p)| (p.log_end_offset, -(now_ms - p.last_caught_up_ms)))
            .map(|(r, _)| r)
    }

    /// As Kafka: a new leader whose high watermark has not reached the start
    /// of its leader epoch yet (until the followers fetch from it, it only has
    /// the high watermark it had as a follower) answers ListOffsets with
    /// OFFSET_NOT_AVAILABLE, so the offsets clients are given never go back.
    pub fn check_high_watermark_caught_up(&self) -> Result<(), ErrorCode> {
        let epoch_start = self.replication().leader_epoch_start_offset;
        if self.is_leader() && epoch_start > self.high_watermark() {
            return Err(ErrorCode::OffsetNotAvailable);
        }
        Ok(())
    }

    /// The committed ISR size as the leader knows it.
    pub fn isr_size(&self) -> usize {
        self.replication().isr.len()
    }
}
