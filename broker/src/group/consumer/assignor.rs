//! Server-side partition assignors of KIP-848 consumer groups (`group.consumer.assignors`).
//!
//! Follows Apache Kafka's group coordinator: `uniform` (balanced and sticky, the default) and
//! `range` (classic contiguous ranges per topic, not sticky).

use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct MemberSubscription {
    /// The member's id.
    pub member_id: String,
    /// Ids of the subscribed topics that exist (the caller resolves names to ids).
    pub topics: BTreeSet<Uuid>,
    /// The member's assignment in the current target assignment (empty for a new member); assignors keep what they
    /// can of it (stickiness).
    pub current: Assignment,
}

/// A server-side assignor (group.consumer.assignors).
pub trait ServerAssignor: Send + Sync {
    /// The name clients and `group.consumer.assignors` use for this assignor.
    fn name(&self) -> &'static str;
    /// The new target assignment: an entry for every member (possibly empty). `partitions` gives each existing topic
    /// id its partition count. Every partition of a topic that at least one member subscribes to is assigned to
    /// exactly one member subscribed to that topic; no partition of an unsubscribed or unknown topic is assigned.
    fn assign(&self, members: &[MemberSubscription], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment>;
}

/// Names of the assignors, default first: ["uniform", "range"].
pub const ASSIGNOR_NAMES: [&str; 2] = ["uniform", "range"];

/// The assignor named `name`, if this broker has it.
pub fn by_name(name: &str) -> Option<&'static dyn ServerAssignor> {
    match name {
        "uniform" => Some(&UniformAssignor),
        "range" => Some(&RangeAssignor),
        _ => None,
    }
}

/// Balanced, sticky assignment: members keep what they own where balance allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformAssignor;

/// Kafka's classic range assignment, per topic, over the members subscribed to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

type TopicPartition = (Uuid, i32);

/// A member with its subscription narrowed to topics that exist.
struct Member<'a> {
    id: &'a str,
    topics: BTreeSet<Uuid>,
    current: &'a Assignment,
}

/// Members sorted by id, so results never depend on input order; a repeated id keeps its first occurrence.
fn normalize<'a>(members: &'a [MemberSubscription], partitions: &BTreeMap<Uuid, i32>) -> Vec<Member<'a>> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<Member<'a>> = members
        .iter()
        .filter(|m| seen.insert(m.member_id.as_str()))
        .map(|m| Member {
            id: &m.member_id,
            topics: m.topics.iter().filter(|t| partitions.contains_key(t)).copied().collect(),
            current: &m.current,
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(b.id));
    out
}

/// Partition count of a topic; unknown topics and nonsense negative counts have none.
fn count(partitions: &BTreeMap<Uuid, i32>, topic: &Uuid) -> i32 {
    partitions.get(topic).copied().unwrap_or(0).max(0)
}

/// Each member's current partitions that are still valid (subscribed, in range), in sorted order. A partition that
/// several members claim stays with the first, so it can never end up assigned twice.
fn valid_current(members: &[Member], partitions: &BTreeMap<Uuid, i32>) -> Vec<Vec<TopicPartition>> {
    let mut claimed = BTreeSet::new();
    members
        .iter()
        .map(|m| {
            m.current
                .iter()
                .filter(|(t, _)| m.topics.contains(t))
                .flat_map(|(&t, ps)| {
                    let n = count(partitions, &t);
                    ps.iter().filter(move |&&p| (0..n).contains(&p)).map(move |&p| (t, p))
                })
                .filter(|tp| claimed.insert(*tp))
                .collect()
        })
        .collect()
}

fn to_assignment(tps: impl IntoIterator<Item = TopicPartition>) -> Assignment {
    let mut out = Assignment::new();
    for (t, p) in tps {
        out.entry(t).or_default().insert(p);
    }
    out
}

fn collect_result<I: IntoIterator<Item = TopicPartition>>(
    members: &[Member],
    owned: impl IntoIterator<Item = I>,
) -> BTreeMap<String, Assignment> {
    members.iter().zip(owned).map(|(m, tps)| (m.id.to_string(), to_assignment(tps))).collect()
}

impl ServerAssignor for UniformAssignor {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn assign(&self, members: &[MemberSubscription], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
        let members = normalize(members, partitions);
        match members.first() {
            None => BTreeMap::new(),
            Some(first) if members.iter().all(|m| m.topics == first.topics) => homogeneous(&members, partitions),
            Some(_) => heterogeneous(&members, partitions),
        }
    }
}

/// Everyone subscribes to the same topics: exact floor/ceil quotas with the fewest possible moves.
fn homogeneous(members: &[Member], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let topics = &members[0].topics;
    let total: usize = topics.iter().map(|t| count(partitions, t) as usize).sum();
    let (floor, mut extras) = (total / members.len(), total % members.len());
    let mut owned = valid_current(members, partitions);
    // The ceil quotas go first to members already holding more than the floor: they keep a partition instead of
    // moving it, which is what makes the number of moves minimal.
    let mut quota = vec![floor; members.len()];
    for (q, cur) in quota.iter_mut().zip(&owned) {
        if extras > 0 && cur.len() > floor {
            *q += 1;
            extras -= 1;
        }
    }
    for q in quota.iter_mut().filter(|q| **q == floor).take(extras) {
        *q += 1;
    }
    let mut kept = BTreeSet::new();
    for (cur, &q) in owned.iter_mut().zip(&quota) {
        cur.truncate(q);
        kept.extend(cur.iter().copied());
    }
    let mut free =
        topics.iter().flat_map(|&t| (0..count(partitions, &t)).map(move |p| (t, p))).filter(|tp| !kept.contains(tp));
    for (cur, &q) in owned.iter_mut().zip(&quota) {
        let missing = q - cur.len();
        cur.extend(free.by_ref().take(missing));
    }
    collect_result(members, owned)
}

/// Subscriptions differ: keep current owners, place the rest greedily, then even out counts by direct moves.
fn heterogeneous(members: &[Member], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut owned: Vec<BTreeSet<TopicPartition>> =
        valid_current(members, partitions).into_iter().map(|v| v.into_iter().collect()).collect();
    let mut owner: BTreeMap<TopicPartition, usize> =
        owned.iter().enumerate().flat_map(|(i, tps)| tps.iter().map(move |&tp| (tp, i))).collect();
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for &t in &m.topics {
            subscribers.entry(t).or_default().push(i);
        }
    }
    // Ties go to the lowest index, i.e. the smallest member id.
    let least_loaded =
        |owned: &[BTreeSet<TopicPartition>], subs: &[usize]| subs.iter().copied().min_by_key(|&i| (owned[i].len(), i));

    // Topics with the fewest subscribers have the fewest places to go, so they are placed first.
    let mut topics: Vec<(&Uuid, &Vec<usize>)> = subscribers.iter().collect();
    topics.sort_by_key(|(t, subs)| (subs.len(), **t));
    for (&t, subs) in topics {
        for p in 0..count(partitions, &t) {
            if owner.contains_key(&(t, p)) {
                continue;
            }
            if let Some(i) = least_loaded(&owned, subs) {
                owned[i].insert((t, p));
                owner.insert((t, p), i);
            }
        }
    }

    // Every move lowers the sum of squared member sizes, so this terminates.
    loop {
        let mut moved = false;
        for (tp, from) in owner.iter_mut() {
            let Some(to) = subscribers.get(&tp.0).and_then(|subs| least_loaded(&owned, subs)) else { continue };
            if owned[*from].len() > owned[to].len() + 1 {
                owned[*from].remove(tp);
                owned[to].insert(*tp);
                *from = to;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    collect_result(members, owned)
}

impl ServerAssignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(&self, members: &[MemberSubscription], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
        let members = normalize(members, partitions);
        let mut result: BTreeMap<String, Assignment> =
            members.iter().map(|m| (m.id.to_string(), Assignment::new())).collect();
        for &topic in partitions.keys() {
            // Members are sorted by id, so co-partitioned topics line up member by member.
            let subs: Vec<&str> = members.iter().filter(|m| m.topics.contains(&topic)).map(|m| m.id).collect();
            let n = count(partitions, &topic) as usize;
            if subs.is_empty() || n == 0 {
                continue;
            }
            let (base, extra) = (n / subs.len(), n % subs.len());
            let mut start = 0;
            for (k, id) in subs.into_iter().enumerate() {
                let len = base + usize::from(k < extra);
                if len > 0 {
                    result
                        .entry(id.to_string())
                        .or_default()
                        .insert(topic, (start..start + len).map(|p| p as i32).collect());
                }
                start += len;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn member(id: &str, topics: &[Uuid], current: Assignment) -> MemberSubscription {
        MemberSubscription { member_id: id.to_string(), topics: topics.iter().copied().collect(), current }
    }

    /// `members` again, each with its share of `result` as its current assignment.
    fn with_current(members: &[MemberSubscription], result: &BTreeMap<String, Assignment>) -> Vec<MemberSubscription> {
        members.iter().map(|m| MemberSubscription { current: result[&m.member_id].clone(), ..m.clone() }).collect()
    }

    fn sizes(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result.values().map(|a| a.values().map(BTreeSet::len).sum()).collect()
    }

    /// Every member has an entry; every partition of a subscribed, known topic is assigned exactly once, to a
    /// subscriber; nothing else is assigned.
    fn check_valid(members: &[MemberSubscription], partitions: &BTreeMap<Uuid, i32>, r: &BTreeMap<String, Assignment>) {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(r.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
        let mut seen = BTreeSet::new();
        for (id, a) in r {
            let m = members.iter().find(|m| &m.member_id == id).expect("member");
            for (t, ps) in a {
                assert!(m.topics.contains(t), "{id} got unsubscribed topic {t}");
                assert!(!ps.is_empty(), "empty topic entry");
                for &p in ps {
                    assert!(p >= 0 && p < partitions[t], "{t}-{p} out of range");
                    assert!(seen.insert((*t, p)), "{t}-{p} assigned twice");
                }
            }
        }
        let subscribed: BTreeSet<Uuid> = members.iter().flat_map(|m| m.topics.iter().copied()).collect();
        let expected: usize = subscribed.iter().map(|t| partitions.get(t).copied().unwrap_or(0).max(0) as usize).sum();
        assert_eq!(seen.len(), expected, "some partition left unassigned");
    }

    fn uniform() -> &'static dyn ServerAssignor {
        by_name("uniform").expect("uniform")
    }

    #[test]
    fn names_resolve() {
        for name in ASSIGNOR_NAMES {
            assert_eq!(by_name(name).map(|a| a.name()), Some(name));
        }
        assert!(by_name("sticky").is_none());
    }

    #[test]
    fn uniform_homogeneous_balance() {
        let partitions = BTreeMap::from([(tid(1), 4), (tid(2), 2)]);
        for m in [1usize, 2, 3, 4, 7] {
            let members: Vec<_> =
                (0..m).map(|i| member(&format!("m{i}"), &[tid(1), tid(2)], Assignment::new())).collect();
            let r = uniform().assign(&members, &partitions);
            check_valid(&members, &partitions, &r);
            let s = sizes(&r);
            assert_eq!((s.iter().min(), s.iter().max()), (Some(&(6 / m)), Some(&6usize.div_ceil(m))), "{m} members");
        }
    }

    #[test]
    fn uniform_member_joining_moves_minimum() {
        let partitions = BTreeMap::from([(tid(1), 6)]);
        let two = vec![member("a", &[tid(1)], Assignment::new()), member("b", &[tid(1)], Assignment::new())];
        let before = uniform().assign(&two, &partitions);
        let mut three = with_current(&two, &before);
        three.push(member("c", &[tid(1)], Assignment::new()));
        let after = uniform().assign(&three, &partitions);
        check_valid(&three, &partitions, &after);
        assert_eq!(sizes(&after), vec![2, 2, 2]);
        let moved: usize =
            ["a", "b"].iter().map(|id| before[*id][&tid(1)].difference(&after[*id][&tid(1)]).count()).sum();
        assert_eq!(moved, 2);
    }

    #[test]
    fn uniform_member_leaving_survivors_keep_theirs() {
        let partitions = BTreeMap::from([(tid(1), 6)]);
        let three: Vec<_> = ["a", "b", "c"].iter().map(|id| member(id, &[tid(1)], Assignment::new())).collect();
        let before = uniform().assign(&three, &partitions);
        let two: Vec<_> = with_current(&three, &before).into_iter().filter(|m| m.member_id != "b").collect();
        let after = uniform().assign(&two, &partitions);
        check_valid(&two, &partitions, &after);
        for id in ["a", "c"] {
            assert!(before[id][&tid(1)].is_subset(&after[id][&tid(1)]), "{id} lost a partition");
        }
        assert_eq!(sizes(&after), vec![3, 3]);
    }

    #[test]
    fn uniform_heterogeneous_assigns_only_to_subscribers() {
        let partitions = BTreeMap::from([(tid(1), 3), (tid(2), 3), (tid(3), 3), (tid(4), 5)]);
        let members = vec![
            member("a", &[tid(1)], Assignment::new()),
            member("b", &[tid(1), tid(2)], Assignment::new()),
            member("c", &[tid(2), tid(3)], Assignment::new()),
        ];
        let r = uniform().assign(&members, &partitions);
        check_valid(&members, &partitions, &r);
        assert_eq!(sizes(&r), vec![3, 3, 3]);
        // A member's stale topic is dropped, and an unchanged group keeps its assignment.
        let mut again = with_current(&members, &r);
        again[0].current.insert(tid(4), BTreeSet::from([0, 1]));
        assert_eq!(uniform().assign(&again, &partitions), r);
    }

    #[test]
    fn range_layout_two_topics() {
        let partitions = BTreeMap::from([(tid(1), 3), (tid(2), 3)]);
        let members =
            vec![member("b", &[tid(1), tid(2)], Assignment::new()), member("a", &[tid(1), tid(2)], Assignment::new())];
        let r = by_name("range").expect("range").assign(&members, &partitions);
        check_valid(&members, &partitions, &r);
        let a = Assignment::from([(tid(1), BTreeSet::from([0, 1])), (tid(2), BTreeSet::from([0, 1]))]);
        let b = Assignment::from([(tid(1), BTreeSet::from([2])), (tid(2), BTreeSet::from([2]))]);
        assert_eq!(r, BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]));
    }

    #[test]
    fn empty_and_odd_inputs() {
        for name in ASSIGNOR_NAMES {
            let assignor = by_name(name).expect("assignor");
            assert!(assignor.assign(&[], &BTreeMap::new()).is_empty());
            let partitions = BTreeMap::from([(tid(1), 0), (tid(2), 2)]);
            // Unknown topic 9, out-of-range and negative partitions, and a partition claimed twice.
            let bogus = Assignment::from([(tid(9), BTreeSet::from([0])), (tid(2), BTreeSet::from([-1, 1, 7]))]);
            let members = vec![
                member("x", &[], Assignment::new()),
                member("y", &[tid(1), tid(9)], bogus.clone()),
                member("z", &[tid(1), tid(2), tid(9)], bogus.clone()),
                member("w", &[tid(2)], bogus),
            ];
            let r = assignor.assign(&members, &partitions);
            check_valid(&members, &partitions, &r);
            assert!(r["x"].is_empty() && r["y"].is_empty(), "{name}");
        }
    }

    #[test]
    fn deterministic_regardless_of_order() {
        let partitions = BTreeMap::from([(tid(1), 5), (tid(2), 3)]);
        let mut members = vec![
            member("c", &[tid(1)], Assignment::new()),
            member("a", &[tid(1), tid(2)], Assignment::new()),
            member("b", &[tid(2)], Assignment::new()),
        ];
        for name in ASSIGNOR_NAMES {
            let assignor = by_name(name).expect("assignor");
            let first = assignor.assign(&members, &partitions);
            assert_eq!(assignor.assign(&members, &partitions), first);
            members.reverse();
            assert_eq!(assignor.assign(&members, &partitions), first);
        }
    }

    #[test]
    fn random_sizes_property() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % bound
        };
        for round in 0..400 {
            let partitions: BTreeMap<Uuid, i32> = (0..next(5) as u128).map(|t| (tid(t), next(9) as i32)).collect();
            let homogeneous = round % 2 == 0;
            let common: Vec<Uuid> = (0..6).filter(|_| next(2) == 0).map(tid).collect();
            let members: Vec<_> = (0..next(8))
                .map(|i| {
                    let topics =
                        if homogeneous { common.clone() } else { (0..6).filter(|_| next(2) == 0).map(tid).collect() };
                    // Garbage current assignments: stale topics, overlaps, out-of-range partitions.
                    let current = to_assignment((0..next(6)).map(|_| (tid(next(6) as u128), next(10) as i32 - 1)));
                    member(&format!("m{i}"), &topics, current)
                })
                .collect();
            for name in ASSIGNOR_NAMES {
                let assignor = by_name(name).expect("assignor");
                let r = assignor.assign(&members, &partitions);
                check_valid(&members, &partitions, &r);
                if name == "uniform" {
                    let s = sizes(&r);
                    if homogeneous && !s.is_empty() {
                        assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1, "round {round}: {s:?}");
                    }
                    assert_eq!(assignor.assign(&with_current(&members, &r), &partitions), r, "round {round} unstable");
                }
            }
        }
    }
}
