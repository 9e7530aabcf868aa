//! Replication on one partition, leader and followers driven directly: the
//! high watermark over the ISR, ISR expansion and shrinking, divergence
//! detection, and a follower copying, truncating and restarting its log.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use uuid::Uuid;

use super::leader::{FollowerFetch, FollowerRead, IsrProposal};
use super::{plain_record, Leadership, LogDirFailure, Partition};
use crate::admin::configs::TopicSettings;

fn settings(min_isr: i32) -> TopicSettings {
    let mut s = TopicSettings::from_resolved(&[]);
    s.min_insync_replicas = min_isr;
    s.delete = true;
    s
}

fn leadership(node: i32, leader: i32, epoch: i32, isr: &[i32]) -> Leadership {
    Leadership {
        is_leader: node == leader,
        leader,
        leader_epoch: epoch,
        partition_epoch: epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

fn open(dir: &Path, node: i32, lead: Leadership) -> Partition {
    Partition::open(dir, "t", Uuid::nil(), 0, settings(2), lead, 0, None, None, node, Arc::new(LogDirFailure::new(dir)))
        .expect("opens")
}

fn batch(count: usize) -> Bytes {
    let records: Vec<Record> =
        (0..count).map(|i| plain_record(i, 1000, None, Some(Bytes::from_static(b"v")))).collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encodes");
    buf.freeze()
}

/// A fetch from follower `replica_id`, registered at broker epoch 100 + its id and unfenced.
fn from(replica_id: i32) -> FollowerFetch {
    FollowerFetch {
        replica_id,
        broker_epoch: 100 + i64::from(replica_id),
        log_start_offset: 0,
        isr_eligible: true,
        record_progress: true,
    }
}

fn follower_fetch(p: &Partition, replica: i32, offset: i64, epoch: i32) -> (Bytes, i64, Option<IsrProposal>) {
    match p.read_for_follower(from(replica), offset, epoch, 1 << 20, true, 1_000).expect("reads") {
        FollowerRead::Records { records, high_watermark, proposal, .. } => (records, high_watermark, proposal),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_high_watermark_follows_the_isr_and_followers_join_it() {
    let d = tempfile::tempdir().unwrap();
    let leader = open(d.path(), 1, leadership(1, 1, 0, &[1]));
    leader.append(&batch(3), 1, 1_000).unwrap();
    assert_eq!(leader.high_watermark(), 3, "alone in the ISR, the leader commits at once");
    // acks=all needs min.insync.replicas = 2.
    assert_eq!(leader.append(&batch(1), -1, 1_000).unwrap_err().code, weir_protocol::ErrorCode::NotEnoughReplicas);

    // Follower 2 fetches from 0: behind, it does not join; it then fetches from the log end.
    let (records, _, proposal) = follower_fetch(&leader, 2, 0, -1);
    assert_eq!(record_count(&records), 3);
    assert!(proposal.is_none());
    let (_, _, proposal) = follower_fetch(&leader, 2, 3, 0);
    let proposal = proposal.expect("caught up: joins the ISR");
    assert_eq!(proposal.new_isr, vec![1, 2]);
    assert_eq!(proposal.joining_broker_epochs.get(&2), Some(&102), "KIP-903: the epoch it fetched with");
    // While the expansion is pending, follower 2 counts for the high watermark.
    leader.append(&batch(2), 1, 1_000).unwrap();
    assert_eq!(leader.high_watermark(), 3);
    let (_, high_watermark, again) = follower_fetch(&leader, 2, 5, 0);
    assert_eq!(high_watermark, 5);
    assert!(again.is_none(), "one change in flight at a time");
    leader.isr_change_completed(&proposal, Some((0, 1, vec![1, 2])));
    assert_eq!(leader.isr_size(), 2);
    // acks=all now allowed; committed when follower 2 has it.
    let appended = leader.append(&batch(1), -1, 1_000).unwrap();
    assert_eq!(appended.last_offset, 5);
    assert_eq!(leader.high_watermark(), 5);
    follower_fetch(&leader, 2, 6, 0);
    assert_eq!(leader.high_watermark(), 6);

    // A follower outside the replicas is refused; one that stops catching up leaves the ISR.
    assert!(leader.read_for_follower(from(7), 0, -1, 1 << 20, true, 1_000).is_err());
    assert!(leader.read_for_follower(from(1), 0, -1, 1 << 20, true, 1_000).is_err(), "the leader is no follower");
    assert!(leader.shrink_isr_if_due(20_000, 30_000).is_none());
    let shrink = leader.shrink_isr_if_due(40_000, 30_000).expect("follower 2 lagged for 39 s");
    assert_eq!(shrink.new_isr, vec![1]);
}

#[test]
fn a_fenced_follower_fetches_but_does_not_join_and_only_a_requests_first_read_counts() {
    let d = tempfile::tempdir().unwrap();
    let leader = open(d.path(), 1, leadership(1, 1, 0, &[1]));
    leader.append(&batch(3), 1, 1_000).unwrap();
    let fenced = FollowerFetch { isr_eligible: false, ..from(2) };
    let read = leader.read_for_follower(fenced, 3, 0, 1 << 20, true, 1_000).expect("a fenced follower still reads");
    let FollowerRead::Records { proposal, .. } = read else { panic!("expected records, got {read:?}") };
    assert!(proposal.is_none(), "a fenced follower is not proposed for the ISR");

    // Follower 3 in the ISR: its parked re-reads do not move its progress.
    leader.update(settings(2), leadership(1, 1, 1, &[1, 3]), 2_000);
    leader.append(&batch(2), 1, 2_000).unwrap();
    let parked = FollowerFetch { record_progress: false, ..from(3) };
    leader.read_for_follower(parked, 5, 1, 1 << 20, true, 2_000).expect("reads");
    assert_eq!(leader.high_watermark(), 3, "a re-read of a parked fetch records nothing");
    leader.read_for_follower(from(3), 5, 1, 1 << 20, true, 2_000).expect("reads");
    assert_eq!(leader.high_watermark(), 5);
}

#[test]
fn a_diverged_follower_is_told_where_to_truncate_and_catches_up() {
    let (dl, df) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The old leader (now follower) wrote offsets 0..5 in epoch 0; only 0..3 reached the new leader.
    let follower = open(df.path(), 2, leadership(2, 2, 0, &[2]));
    follower.append(&batch(3), 1, 1_000).unwrap();
    follower.append(&batch(2), 1, 1_000).unwrap();
    let leader = open(dl.path(), 1, leadership(1, 1, 0, &[1]));
    leader.append(&batch(3), 1, 1_000).unwrap();
    // New epoch 1: 1 leads, 2 follows; the leader writes offsets 3..7 in epoch 1.
    leader.update(settings(2), leadership(1, 1, 1, &[1, 2]), 2_000);
    follower.update(settings(2), leadership(2, 1, 1, &[1, 2]), 2_000);
    leader.append(&batch(4), 1, 2_000).unwrap();

    let (log_end, last_epoch, _) = follower.follower_fetch_state();
    assert_eq!((log_end, last_epoch), (5, 0));
    let read = leader.read_for_follower(from(2), log_end, last_epoch, 1 << 20, true, 2_000).unwrap();
    let FollowerRead::Diverging { epoch, end_offset, .. } = read else { panic!("expected a divergence, got {read:?}") };
    assert_eq!((epoch, end_offset), (0, 3), "epoch 0 ends at 3 on the leader");
    let offset = follower.divergence_truncation_offset(epoch, end_offset);
    assert_eq!(offset, 3);
    follower.truncate_as_follower(1, offset).unwrap();
    // Now it fetches from 3 with epoch 0, which the leader accepts, and copies epoch 1's batch as it is.
    let (log_end, last_epoch, _) = follower.follower_fetch_state();
    let (records, high_watermark, _) = follower_fetch(&leader, 2, log_end, last_epoch);
    follower.append_as_follower(1, &records, high_watermark, 0, 2_000).unwrap();
    assert_eq!(follower.offsets().1, 7);
    assert_eq!(follower.follower_fetch_state().1, 1, "the leader's epoch came with its batch");
    // A response fetched in an older epoch is dropped.
    assert!(follower.append_as_follower(0, &records, high_watermark, 0, 2_000).is_err());
    // The follower's high watermark is the leader's, capped at its own log end.
    let (_, high_watermark, _) = follower_fetch(&leader, 2, 7, 1);
    follower.append_as_follower(1, &Bytes::new(), high_watermark, 0, 2_000).unwrap();
    assert_eq!(follower.high_watermark(), 7);
}

#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let d = tempfile::tempdir().unwrap();
    let follower = open(d.path(), 2, leadership(2, 1, 0, &[1, 2]));
    follower.restart_as_follower_at(0, 40).unwrap();
    assert_eq!(follower.offsets(), (40, 40));
    assert_eq!(follower.high_watermark(), 40);
}

fn record_count(records: &[u8]) -> i32 {
    weir_protocol::batch::batches(records).map(|b| b.expect("whole batches").0.records_count).sum()
}

#[test]
fn a_consumer_in_a_followers_rack_is_sent_to_the_most_caught_up_in_sync_follower() {
    let d = tempfile::tempdir().unwrap();
    let leader = open(d.path(), 1, leadership(1, 1, 0, &[1, 2, 3]));
    leader.append(&batch(5), 1, 1_000).unwrap();
    follower_fetch(&leader, 2, 5, 0);
    follower_fetch(&leader, 3, 3, 0);
    let rack_of = |id: i32| Some(if id == 1 { "a" } else { "b" }.to_string());
    let pick = |offset: i64, rack: &str| leader.preferred_read_replica(offset, rack, rack_of, 2_000);
    assert_eq!(pick(2, "b"), Some(2), "both hold offset 2; broker 2 has more");
    assert_eq!(pick(4, "b"), Some(2));
    assert_eq!(pick(6, "b"), None, "no follower holds offset 6 yet");
    assert_eq!(pick(2, "a"), None, "the leader is in the consumer's rack");
    assert_eq!(pick(2, "c"), None, "no replica in the consumer's rack");
    assert_eq!(pick(2, ""), None, "no client.rack");
    // A follower outside the ISR is never chosen.
    leader.update(settings(2), Leadership { partition_epoch: 1, ..leadership(1, 1, 0, &[1, 3]) }, 2_000);
    assert_eq!(pick(2, "b"), Some(3));
}

#[test]
fn a_new_leader_gives_no_offsets_until_its_high_watermark_reaches_its_epoch() {
    let d = tempfile::tempdir().unwrap();
    let leader = open(d.path(), 1, leadership(1, 1, 0, &[1, 2]));
    leader.append(&batch(5), 1, 1_000).unwrap();
    follower_fetch(&leader, 2, 3, 0);
    assert_eq!(leader.high_watermark(), 3);
    assert!(leader.check_high_watermark_caught_up().is_ok());
    // Re-elected in epoch 1 with its log ending at 5: the high watermark (3) lags the epoch's start.
    leader.update(settings(2), leadership(1, 1, 1, &[1, 2]), 2_000);
    assert_eq!(leader.check_high_watermark_caught_up(), Err(weir_protocol::ErrorCode::OffsetNotAvailable));
    follower_fetch(&leader, 2, 5, 0);
    assert_eq!(leader.high_watermark(), 5);
    assert!(leader.check_high_watermark_caught_up().is_ok());
}
