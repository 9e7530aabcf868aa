use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        heartbeat_interval: Duration::from_secs(5),
        session_timeout: Duration::from_secs(45),
        max_size: 3,
        assignors: vec!["uniform".into(), "range".into()],
        upgrade: true,
        downgrade: true,
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

/// Replays `changes` into a fresh group, as loading does.
fn replayed(changes: &[records::Change], now: Instant) -> Option<ConsumerGroup> {
    let mut group: Option<ConsumerGroup> = None;
    for (key, value) in changes {
        let Some(crate::group::records::RecordKey::ConsumerGroup { group: id, record }) =
            crate::group::records::RecordKey::decode(key.clone()).expect("key")
        else {
            panic!("not a consumer group record");
        };
        if record == crate::group::records::ConsumerRecord::GroupEpoch && value.is_none() {
            group = None;
            continue;
        }
        let g = group.get_or_insert_with(|| ConsumerGroup::new(&id, 0));
        g.replay(record, value.clone(), now).expect("replay");
    }
    if let Some(g) = &mut group {
        g.loaded(&config(), now, 0);
    }
    group
}

fn assert_same_group(loaded: &ConsumerGroup, live: &ConsumerGroup) {
    assert_eq!((loaded.group_epoch, loaded.assignment_epoch), (live.group_epoch, live.assignment_epoch));
    assert_eq!(loaded.target, live.target);
    assert_eq!(loaded.subscription_metadata, live.subscription_metadata);
    assert_eq!(loaded.static_members, live.static_members);
    assert_eq!(loaded.owners, live.owners);
    assert_eq!(loaded.members.keys().collect::<Vec<_>>(), live.members.keys().collect::<Vec<_>>());
    for (id, member) in &live.members {
        let restored = &loaded.members[id];
        assert!(records::same_subscription(restored, member), "{id}'s subscription");
        assert_eq!(restored.current, member.current, "{id}'s current assignment");
    }
    assert_eq!(loaded.state(), live.state());
}

#[test]
fn replaying_the_written_records_restores_the_group_at_every_step() {
    let now = Instant::now();
    let mut live = ConsumerGroup::new("g", 0);
    let mut log: Vec<records::Change> = Vec::new();
    let mut step = |live: &mut ConsumerGroup, request: HeartbeatRequest| -> HeartbeatResponse {
        let before = live.clone();
        let response = live.heartbeat(request, &topics(), &config(), now, 0).expect("heartbeat");
        log.extend(live.changes_since(&before));
        let loaded = replayed(&log, now).expect("a group");
        assert_same_group(&loaded, live);
        response
    };
    let mut a_join = join("a");
    a_join.instance_id = Some("static-a".into());
    a_join.server_assignor = Some("range".into());
    a_join.rack_id = Some("r1".into());
    let a = step(&mut live, a_join);
    let mut b_join = join("b");
    b_join.subscribed_topic_names = None;
    b_join.subscribed_topic_regex = Some("t|u".into());
    step(&mut live, b_join);
    // a revokes half (a record with partitions pending revocation), then confirms.
    let a_owned = a.assignment.expect("a's");
    let a2 = step(&mut live, beat("a", 1, &a_owned));
    let kept = a2.assignment.unwrap_or(a_owned);
    step(&mut live, beat("a", 1, &kept));
    step(&mut live, beat("b", 2, &Assignment::new()));
    assert_eq!(live.state(), ConsumerGroupState::Stable);
    // b leaves: tombstones for it, a new epoch.
    step(&mut live, beat("b", LEAVE_GROUP_MEMBER_EPOCH, &Assignment::new()));
    // a leaves for now (static): epoch -2 is written.
    let mut leave = beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &Assignment::new());
    leave.instance_id = Some("static-a".into());
    step(&mut live, leave);
    assert_eq!(live.members["a"].current.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);

    // Session expiry on a loaded group: restored members get a new session.
    let loaded = replayed(&log, now).expect("a group");
    assert!(loaded.expired_members(now + Duration::from_secs(44)).is_empty());
    assert_eq!(loaded.expired_members(now + Duration::from_secs(46)).len(), 1);

    // Fencing writes the departure; the tombstones delete the group.
    let before = live.clone();
    live.tick(now + Duration::from_secs(46), 0);
    log.extend(live.changes_since(&before));
    let loaded = replayed(&log, now).expect("an empty group");
    assert_same_group(&loaded, &live);
    assert_eq!(loaded.state(), ConsumerGroupState::Empty);
    log.extend(live.tombstones());
    assert!(replayed(&log, now).is_none());
}

#[test]
fn an_unchanged_heartbeat_writes_nothing_and_values_have_kafkas_layout() {
    let now = Instant::now();
    let mut live = ConsumerGroup::new("g", 0);
    let r = live.heartbeat(join("a"), &topics(), &config(), now, 0).expect("join");
    let owned = r.assignment.expect("all six");
    let before = live.clone();
    live.heartbeat(beat("a", 1, &owned), &topics(), &config(), now, 0).expect("beat");
    assert!(live.changes_since(&before).is_empty());
    let changes = live.changes_since(&ConsumerGroup::new("g", 0));
    let find = |version: i16| {
        changes.iter().find(|(k, _)| k[..2] == version.to_be_bytes()).cloned().expect("record").1.expect("value")
    };
    // ConsumerGroupMetadataValue v0: epoch 1, no tagged fields.
    assert_eq!(&find(3)[..], &[0, 0, 0, 0, 0, 1, 0]);
    // ConsumerGroupTargetAssignmentMetadataValue v0: epoch 1.
    assert_eq!(&find(6)[..], &[0, 0, 0, 0, 0, 1, 0]);
    // ConsumerGroupCurrentMemberAssignmentValue v0: epochs 1 and 0, STABLE,
    // one topic with partitions 0-5, nothing pending.
    let mut expected = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
    expected.extend_from_slice(TOPIC.as_bytes());
    expected.push(7);
    for p in 0..6u8 {
        expected.extend_from_slice(&[0, 0, 0, p]);
    }
    expected.extend_from_slice(&[0, 1, 0]);
    assert_eq!(&find(8)[..], &expected[..]);
    let member_key = changes.iter().find(|(k, _)| k[..2] == [0, 5]).expect("member").0.clone();
    assert_eq!(&member_key[..], &[0, 5, 0, 1, b'g', 0, 1, b'a']);
    // Truncated values are refused, not misread.
    let current = find(8);
    for cut in 0..current.len() {
        let mut g = ConsumerGroup::new("g", 0);
        let record = crate::group::records::ConsumerRecord::CurrentAssignment("a".into());
        assert!(g.replay(record, Some(current.slice(..cut)), now).is_err(), "cut at {cut}");
    }
}

/// A `ConsumerProtocolSubscription` v1 of topic "t" owning `owned`.
fn classic_subscription(owned: &[i32]) -> bytes::Bytes {
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut subscription = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
    if !owned.is_empty() {
        subscription.owned_partitions = vec![TopicPartition::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(owned.to_vec())];
    }
    let mut buf = bytes::BytesMut::new();
    buf.put_i16(1);
    subscription.encode(&mut buf, 1).expect("encode");
    buf.freeze()
}

/// The partitions of topic "t" in a `ConsumerProtocolAssignment`.
fn classic_partitions(assignment: &bytes::Bytes) -> Vec<i32> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    let version = i16::from_be_bytes([assignment[0], assignment[1]]);
    let decoded = ConsumerProtocolAssignment::decode(&mut assignment.slice(2..), version).expect("assignment");
    let mut partitions: Vec<i32> = decoded.assigned_partitions.into_iter().flat_map(|tp| tp.partitions).collect();
    partitions.sort();
    partitions
}

fn classic_join_request(member_id: &str, owned: &[i32]) -> crate::group::classic::JoinRequest {
    crate::group::classic::JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), classic_subscription(owned))],
        require_known_member_id: true,
    }
}

/// A classic member rejoins and syncs: its generation and partitions.
fn classic_round(group: &mut ConsumerGroup, member_id: &str, owned: &[i32], now: Instant) -> (i32, Vec<i32>) {
    let joined = group.classic_join(&classic_join_request(member_id, owned), &topics(), &config(), now).expect("join");
    assert_eq!((joined.leader.as_str(), joined.members.len()), ("", 0), "no client-side assignment");
    let sync = crate::group::classic::SyncRequest {
        member_id: member_id.into(),
        generation_id: joined.generation_id,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        ..Default::default()
    };
    match group.classic_sync(&sync, &topics(), now) {
        Ok(response) => (joined.generation_id, classic_partitions(&response.assignment)),
        Err(code) => {
            assert_eq!(code, ErrorCode::RebalanceInProgress);
            (joined.generation_id, owned.to_vec())
        }
    }
}

#[test]
fn an_online_upgrade_keeps_the_classic_members_and_a_downgrade_gives_them_back() {
    use crate::group::classic::ClassicGroup;
    use crate::group::records::{GroupMetadataValue, MemberValue};
    let now = Instant::now();
    let member = |id: &str, owned: &[i32]| MemberValue {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscription: classic_subscription(&[]),
        assignment: {
            let names: std::collections::BTreeMap<Uuid, String> = [(TOPIC, "t".to_string())].into_iter().collect();
            let assigned: Assignment = [(TOPIC, owned.iter().copied().collect())].into_iter().collect();
            classic_members::encode_assignment(&assigned, &names, 1)
        },
    };
    let stored = GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation: 5,
        protocol: Some("range".into()),
        leader: Some("c1".into()),
        current_state_timestamp: 0,
        members: vec![member("c1", &[0, 1, 2]), member("c2", &[3, 4, 5])],
    };
    let classic = ClassicGroup::restore("g", stored, now);
    let mut group = ConsumerGroup::from_classic(&classic, &topics(), &config(), now, 0).expect("upgrade");
    assert_eq!((group.group_epoch, group.assignment_epoch), (5, 5));
    assert_eq!(group.members["c1"].current.member_epoch, 5);
    assert_eq!(group.state(), ConsumerGroupState::Stable);
    // Its records replay to the same group, classic metadata included.
    let created = group.changes_since(&ConsumerGroup::new("g", 0));
    assert_same_group(&replayed(&created, now).expect("a group"), &group);

    // A member on the consumer protocol joins: the epoch moves, classic members must rejoin.
    let k = group.heartbeat(join("k"), &topics(), &config(), now, 0).expect("k joins");
    assert_eq!(k.member_epoch, 6);
    assert_eq!(group.classic_heartbeat("c1", None, 5, &config(), now), Err(ErrorCode::RebalanceInProgress));
    assert_eq!(group.classic_heartbeat("c1", None, 4, &config(), now), Err(ErrorCode::IllegalGeneration));
    assert_eq!(group.classic_heartbeat("k", None, 6, &config(), now), Err(ErrorCode::UnknownMemberId));
    // Cooperative-style rounds: each classic member reports what it still owns.
    let mut owned: BTreeMap<&str, Vec<i32>> = [("c1", vec![0, 1, 2]), ("c2", vec![3, 4, 5])].into_iter().collect();
    let mut k_owned = Assignment::new();
    for _ in 0..4 {
        for id in ["c1", "c2"] {
            let (_, partitions) = classic_round(&mut group, id, &owned[id], now);
            owned.insert(id, partitions);
        }
        let epoch = group.members["k"].current.member_epoch;
        let r = group.heartbeat(beat("k", epoch, &k_owned), &topics(), &config(), now, 0).expect("k beats");
        if let Some(a) = r.assignment {
            k_owned = a;
        }
    }
    assert_eq!(group.state(), ConsumerGroupState::Stable);
    let mut sizes: Vec<usize> = owned.values().map(Vec::len).collect();
    sizes.push(k_owned.values().map(|p| p.len()).sum());
    sizes.sort();
    assert_eq!(sizes, vec![2, 2, 2]);
    assert_eq!(group.classic_heartbeat("c1", None, group.members["c1"].current.member_epoch, &config(), now), Ok(()));
    // Commits from a classic member use its generation, at any version.
    assert_eq!(group.check_commit("c1", group.members["c1"].current.member_epoch, 2), Ok(()));
    assert_eq!(group.check_commit("c1", 1, 2), Err(ErrorCode::IllegalGeneration));

    // The consumer-protocol member leaves: what is left is a classic group again.
    assert!(group.classic_group_value(&topics(), 0).is_none(), "k is still there");
    let leave = beat("k", LEAVE_GROUP_MEMBER_EPOCH, &Assignment::new());
    group.heartbeat(leave, &topics(), &config(), now, 0).expect("k leaves");
    let value = group.classic_group_value(&topics(), 0).expect("only classic members");
    assert_eq!(
        (value.generation, value.protocol.as_deref(), value.members.len()),
        (group.group_epoch, Some("range"), 2)
    );
    for m in &value.members {
        assert_eq!(classic_partitions(&m.assignment), owned[m.member_id.as_str()]);
    }
}
