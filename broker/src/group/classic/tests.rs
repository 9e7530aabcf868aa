//! Unit tests of the classic group state machine.

use super::*;

const SESSION: Duration = Duration::from_secs(10);

fn config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay: Duration::ZERO, ..GroupConfig::default() }
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("meta-{p}")))).collect(),
        require_known_member_id: true,
    }
}

fn sync_req(
    member_id: &str,
    instance: Option<&str>,
    generation_id: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        generation_id,
        assignments,
        ..Default::default()
    }
}

fn now_reply<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(r) => r,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn wait_reply<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Wait(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

/// Joins a new member the v4+ way: MEMBER_ID_REQUIRED, then a second join.
fn join_new(g: &mut ClassicGroup, protocols: &[&str], now: Instant) -> (String, oneshot::Receiver<JoinResponse>) {
    let first = now_reply(g.join(join_req("", protocols), &config(), now, 0));
    assert_eq!(first.error, Some(ErrorCode::MemberIdRequired));
    let rx = wait_reply(g.join(join_req(&first.member_id, protocols), &config(), now, 0));
    (first.member_id, rx)
}

#[test]
fn two_members_join_sync_and_get_their_assignments() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    let (a, mut rx_a) = join_new(&mut g, &["range", "roundrobin"], now);
    let (b, mut rx_b) = join_new(&mut g, &["roundrobin", "range"], now);
    assert_eq!(g.try_complete_join(now, 0), Effects::default());
    let ja = rx_a.try_recv().unwrap();
    let jb = rx_b.try_recv().unwrap();
    assert_eq!((ja.generation_id, jb.generation_id), (1, 1));
    assert_eq!(ja.leader, a, "the first joiner leads");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "followers get no member list");
    // One vote each: the tie goes to the first member's preference.
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(ja.members[1].2, Bytes::from("meta-range"));

    let (follower, effects) = g.sync(sync_req(&b, None, 1, vec![]), now);
    assert_eq!(effects, Effects::default());
    let mut follower = wait_reply(follower);
    let mut from_leader = sync_req(&a, None, 1, vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))]);
    from_leader.protocol_type = Some("consumer".into());
    from_leader.protocol_name = Some("range".into());
    let (leader, effects) = g.sync(from_leader, now);
    assert!(effects.persist_assignment);
    let mut leader = wait_reply(leader);
    g.complete_sync(None, &config(), now, 0);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(leader.try_recv().unwrap().assignment, Bytes::from("A"));
    assert_eq!(follower.try_recv().unwrap().assignment, Bytes::from("B"));
    assert_eq!(g.heartbeat(&b, None, 1, now), None);
    assert_eq!(g.heartbeat(&b, None, 0, now), Some(ErrorCode::IllegalGeneration));
    assert_eq!(g.heartbeat("nobody", None, 1, now), Some(ErrorCode::UnknownMemberId));
}

#[test]
fn a_new_member_triggers_a_rebalance_and_a_silent_one_is_dropped() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    let (a, _rx) = join_new(&mut g, &["range"], now);
    g.try_complete_join(now, 0);
    let (_, effects) = g.sync(sync_req(&a, None, 1, vec![(a.clone(), Bytes::from("x"))]), now);
    assert!(effects.persist_assignment);
    g.complete_sync(None, &config(), now, 0);
    // b arrives: a must rejoin; heartbeats say so.
    let (_b, _rx_b) = join_new(&mut g, &["range"], now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, None, 1, now), Some(ErrorCode::RebalanceInProgress));
    // a never rejoins: at the rebalance deadline it is dropped and b completes alone.
    let later = now + Duration::from_secs(31);
    g.try_complete_join(later, 0);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.members.len(), 1);
    assert!(!g.members.contains_key(&a));
    assert_eq!(g.generation_id, 2);
}

#[test]
fn sessions_expire_and_the_last_member_leaving_empties_the_group() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    let (a, _rx) = join_new(&mut g, &["range"], now);
    g.try_complete_join(now, 0);
    g.sync(sync_req(&a, None, 1, vec![]), now);
    g.complete_sync(None, &config(), now, 0);
    assert_eq!(g.tick(&config(), now + Duration::from_secs(5), 0), Effects::default());
    let effects = g.tick(&config(), now + SESSION + Duration::from_millis(1), 0);
    assert!(effects.persist_state);
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.members.is_empty());
}

#[test]
fn protocol_mismatch_and_bad_timeouts_are_refused() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    let _ = join_new(&mut g, &["range"], now);
    let r = now_reply(g.join(join_req("", &["sticky"]), &config(), now, 0));
    assert_eq!(r.error, Some(ErrorCode::InconsistentGroupProtocol));
    let mut short = join_req("", &["range"]);
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(now_reply(g.join(short, &config(), now, 0)).error, Some(ErrorCode::InvalidSessionTimeout));
    assert_eq!(
        now_reply(g.join(join_req("made-up", &["range"]), &config(), now, 0)).error,
        Some(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn a_restarted_static_member_keeps_its_assignment_and_fences_the_old_id() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    let mut req = join_req("", &["range"]);
    req.group_instance_id = Some("i-1".into());
    let _rx = wait_reply(g.join(req.clone(), &config(), now, 0));
    g.try_complete_join(now, 0);
    let old = g.leader_id.clone().unwrap();
    g.sync(sync_req(&old, Some("i-1"), 1, vec![(old.clone(), Bytes::from("mine"))]), now);
    g.complete_sync(None, &config(), now, 0);

    let again = now_reply(g.join(req, &config(), now, 0));
    assert_eq!(again.error, None);
    assert_ne!(again.member_id, old);
    assert_eq!(g.state, GroupState::Stable, "no rebalance for a returning static member");
    assert_eq!(g.generation_id, 1);
    assert_eq!(g.heartbeat(&old, Some("i-1"), 1, now), Some(ErrorCode::FencedInstanceId));
    let (sync, _) = g.sync(sync_req(&again.member_id, Some("i-1"), 1, vec![]), now);
    assert_eq!(now_reply(sync).assignment, Bytes::from("mine"));
}

#[test]
fn standalone_commits_only_while_the_group_has_no_members() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    assert_eq!(g.check_commit("", None, -1), Ok(()));
    let _ = join_new(&mut g, &["range"], now);
    assert_eq!(g.check_commit("", None, -1), Err(ErrorCode::UnknownMemberId));
}

#[test]
fn a_negative_generation_commits_to_an_empty_group_whatever_the_member_id() {
    let now = Instant::now();
    let mut g = ClassicGroup::new("g", 0);
    // A KIP-848 client that assigns its partitions itself sends its own member id with epoch -1.
    assert_eq!(g.check_commit("client-made-id", None, -1), Ok(()));
    assert_eq!(g.check_commit("client-made-id", Some("i-1"), -1), Ok(()));
    assert_eq!(g.check_commit("client-made-id", None, 0), Err(ErrorCode::UnknownMemberId));
    let (a, _rx) = join_new(&mut g, &["range"], now);
    assert_eq!(g.check_commit("client-made-id", None, -1), Err(ErrorCode::UnknownMemberId));
    assert_eq!(g.check_commit(&a, None, -1), Err(ErrorCode::IllegalGeneration));
}
