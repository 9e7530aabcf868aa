use std::time::{Duration, Instant};

use super::*;

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        heartbeat_interval: Duration::from_secs(5),
        session_timeout: Duration::from_secs(45),
        max_size: 3,
        assignors: vec!["uniform".into(), "range".into()],
    }
}

const TOPIC: Uuid = Uuid::from_u128(0xfeed);

fn topics() -> TopicCatalog {
    [("t".to_string(), (TOPIC, 6))].into_iter().collect()
}

fn join(member_id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        ..Default::default()
    }
}

fn beat(member_id: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Default::default()
    }
}

fn count(a: &Option<Assignment>) -> usize {
    a.as_ref().map(|a| a.values().map(|p| p.len()).sum()).unwrap_or(0)
}

#[test]
fn first_join_gets_every_partition_and_a_generated_member_id() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    let r = group.heartbeat(join(""), &topics(), &config(), now, 0).expect("join");
    assert!(!r.member_id.is_empty());
    assert_eq!(r.member_epoch, 1);
    assert_eq!(count(&r.assignment), 6);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(group.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_second_member_waits_for_the_first_to_revoke() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    let a = group.heartbeat(join("a"), &topics(), &config(), now, 0).expect("a joins");
    let a_owned = a.assignment.clone().expect("assignment");
    let b = group.heartbeat(join("b"), &topics(), &config(), now, 0).expect("b joins");
    // Epoch 2, but everything is still a's.
    assert_eq!(b.member_epoch, 2);
    assert_eq!(count(&b.assignment), 0);
    assert_eq!(group.state(), ConsumerGroupState::Reconciling);
    // a is asked to keep 3 and stays at epoch 1 until it confirms.
    let a2 = group.heartbeat(beat("a", 1, &a_owned), &topics(), &config(), now, 0).expect("a beats");
    assert_eq!((a2.member_epoch, count(&a2.assignment)), (1, 3));
    let kept = a2.assignment.expect("kept");
    let a3 = group.heartbeat(beat("a", 1, &kept), &topics(), &config(), now, 0).expect("a confirms");
    assert_eq!(a3.member_epoch, 2);
    let b2 = group.heartbeat(beat("b", 2, &Assignment::new()), &topics(), &config(), now, 0).expect("b beats");
    assert_eq!(count(&b2.assignment), 3);
    let b_parts = b2.assignment.expect("b's");
    assert!(b_parts[&TOPIC].is_disjoint(&kept[&TOPIC]));
    assert_eq!(group.state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_ahead_or_behind_are_fenced_and_unknown_members_refused() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    group.heartbeat(join("a"), &topics(), &config(), now, 0).expect("join");
    let ahead = group.heartbeat(beat("a", 5, &Assignment::new()), &topics(), &config(), now, 0);
    assert_eq!(ahead.expect_err("ahead").code, ErrorCode::FencedMemberEpoch);
    let unknown = group.heartbeat(beat("zz", 1, &Assignment::new()), &topics(), &config(), now, 0);
    assert_eq!(unknown.expect_err("unknown").code, ErrorCode::UnknownMemberId);
    // One behind with a subset of its partitions: the lost response case.
    let owned: Assignment = [(TOPIC, [0, 1].into_iter().collect())].into_iter().collect();
    let behind = group.heartbeat(beat("a", 0, &owned), &topics(), &config(), now, 0).expect("previous epoch");
    assert_eq!(behind.member_epoch, 1);
}

#[test]
fn leaving_and_session_expiry_hand_partitions_to_the_others() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    group.heartbeat(join("a"), &topics(), &config(), now, 0).expect("a");
    let later = now + Duration::from_secs(30);
    group.heartbeat(join("b"), &topics(), &config(), later, 0).expect("b");
    let left = group.heartbeat(beat("b", LEAVE_GROUP_MEMBER_EPOCH, &Assignment::new()), &topics(), &config(), later, 0);
    assert_eq!(left.expect("leave").member_epoch, -1);
    assert_eq!(group.members.len(), 1);
    // a never heartbeat again: fenced once its 45 s session is over.
    assert!(group.tick(now + Duration::from_secs(44), 1).is_empty());
    assert_eq!(group.tick(now + Duration::from_secs(46), 7), vec!["a".to_string()]);
    assert_eq!(group.state(), ConsumerGroupState::Empty);
    assert_eq!(group.state_timestamp_ms, 7);
}

#[test]
fn a_static_member_gets_its_partitions_back_after_a_temporary_leave() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    let mut first = join("m1");
    first.instance_id = Some("i".into());
    let r = group.heartbeat(first.clone(), &topics(), &config(), now, 0).expect("join");
    let mut other = join("m2");
    other.instance_id = Some("i".into());
    let held = group.heartbeat(other.clone(), &topics(), &config(), now, 0);
    assert_eq!(held.expect_err("held").code, ErrorCode::UnreleasedInstanceId);
    let mut leave = beat("m1", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &Assignment::new());
    leave.instance_id = Some("i".into());
    assert_eq!(group.heartbeat(leave, &topics(), &config(), now, 0).expect("leave").member_epoch, -2);
    let back = group.heartbeat(other, &topics(), &config(), now, 0).expect("rejoin");
    assert_eq!(back.assignment, r.assignment);
    assert_eq!(group.members.len(), 1);
}

#[test]
fn requests_are_validated_like_kafka() {
    let c = config();
    let mut bad = join("");
    bad.subscribed_topic_names = Some(vec![]);
    assert_eq!(validate(&bad, &c).expect_err("no topics").code, ErrorCode::InvalidRequest);
    let mut bad = join("");
    bad.server_assignor = Some("sticky".into());
    assert_eq!(validate(&bad, &c).expect_err("assignor").code, ErrorCode::UnsupportedAssignor);
    assert_eq!(validate(&beat("", 3, &Assignment::new()), &c).expect_err("no id").code, ErrorCode::InvalidRequest);
    assert_eq!(validate(&beat("a", -3, &Assignment::new()), &c).expect_err("epoch").code, ErrorCode::InvalidRequest);
    assert!(validate(&join(""), &c).is_ok());
}

#[test]
fn the_group_is_capped_at_its_max_size() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    for id in ["a", "b", "c"] {
        group.heartbeat(join(id), &topics(), &config(), now, 0).expect("join");
    }
    let full = group.heartbeat(join("d"), &topics(), &config(), now, 0);
    assert_eq!(full.expect_err("full").code, ErrorCode::GroupMaxSizeReached);
}

#[test]
fn commits_need_the_current_member_epoch() {
    let mut group = ConsumerGroup::new("g", 0);
    assert_eq!(group.check_commit("", -1, 9), Ok(()));
    let r = group.heartbeat(join("a"), &topics(), &config(), Instant::now(), 0).expect("join");
    assert_eq!(group.check_commit("", -1, 9), Err(ErrorCode::UnknownMemberId));
    assert_eq!(group.check_commit("a", r.member_epoch, 9), Ok(()));
    assert_eq!(group.check_commit("a", r.member_epoch + 1, 9), Err(ErrorCode::StaleMemberEpoch));
    assert_eq!(group.check_commit("a", r.member_epoch, 8), Err(ErrorCode::UnsupportedVersion));
    assert_eq!(group.check_fetch(Some("a"), r.member_epoch), Ok(()));
    assert_eq!(group.check_fetch(Some("a"), 0), Err(ErrorCode::StaleMemberEpoch));
    assert_eq!(group.check_fetch(None, -1), Ok(()));
}

#[test]
fn a_regex_subscription_follows_the_topics_that_match() {
    let mut group = ConsumerGroup::new("g", 0);
    let now = Instant::now();
    let mut request = join("a");
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("orders-.*".into());
    let mut catalog: TopicCatalog =
        [("orders-eu".to_string(), (Uuid::from_u128(1), 2)), ("payments".to_string(), (Uuid::from_u128(2), 3))]
            .into_iter()
            .collect();
    catalog.insert("__consumer_offsets".into(), (Uuid::from_u128(3), 50));
    let r = group.heartbeat(request, &catalog, &config(), now, 0).expect("join");
    assert_eq!(count(&r.assignment), 2);
    // A new matching topic moves the group epoch and is assigned on the next heartbeat.
    catalog.insert("orders-us".into(), (Uuid::from_u128(4), 4));
    let owned = r.assignment.expect("owned");
    let r2 = group.heartbeat(beat("a", r.member_epoch, &owned), &catalog, &config(), now, 0).expect("beat");
    assert_eq!((r2.member_epoch, count(&r2.assignment)), (r.member_epoch + 1, 6));
    let mut bad = join("b");
    bad.subscribed_topic_regex = Some("(".into());
    assert_eq!(validate(&bad, &config()).expect_err("bad regex").code, ErrorCode::InvalidRegularExpression);
    let mut v1 = join("");
    v1.require_member_id = true;
    assert_eq!(validate(&v1, &config()).expect_err("v1 id").code, ErrorCode::InvalidRequest);
}
