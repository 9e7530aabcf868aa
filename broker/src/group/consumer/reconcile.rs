//! Moving one member from its current assignment towards its target
//! assignment (KIP-848), as Kafka's `CurrentAssignmentBuilder` does.
//!
//! A partition changes owner in two steps: the old owner is asked to revoke
//! it and keeps its member epoch until it reports (in the owned partitions
//! of a heartbeat) that it no longer holds it; only then is the partition
//! free and given to its new owner. So no partition is ever consumed by two
//! members at once, and a member's epoch only moves forward once it has let
//! go of everything it must release.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::assignor::Assignment;

/// Where a member is in its reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Has its whole target assignment.
    Stable,
    /// Was asked to revoke partitions and has not confirmed yet.
    UnrevokedPartitions,
    /// Waits for partitions that other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// The value Kafka's `ConsumerGroupCurrentMemberAssignmentValue.State` uses.
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }
}

/// A member's current assignment and epochs: what reconciliation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAssignment {
    /// The member epoch.
    pub member_epoch: i32,
    /// The epoch before the last bump (accepted once more, in case the
    /// response carrying the bump was lost).
    pub previous_member_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// Partitions the member owns (or is being given).
    pub assigned: Assignment,
    /// Partitions the member must give up before its epoch moves on.
    pub pending_revocation: Assignment,
}

impl CurrentAssignment {
    /// A member that just joined: epoch 0, nothing assigned.
    pub fn new() -> CurrentAssignment {
        CurrentAssignment {
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    /// Whether the member has the whole target assignment of `epoch`.
    pub fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    fn with_epoch(&self, epoch: i32, state: MemberState, assigned: Assignment, revoking: Assignment) -> Self {
        CurrentAssignment {
            member_epoch: epoch,
            previous_member_epoch: self.member_epoch,
            state,
            assigned,
            pending_revocation: revoking,
        }
    }
}

impl Default for CurrentAssignment {
    fn default() -> Self {
        CurrentAssignment::new()
    }
}

/// Whether any partition of `partitions` is still in `owned` (the member's
/// report). A request without owned partitions counts as still owning them.
fn still_owns(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(topic, owned)| partitions.get(topic).is_some_and(|p| !p.is_disjoint(owned)))
}

/// The next current assignment of a member.
///
/// `target_epoch`/`target`: the group's target assignment epoch and this
/// member's share of it. `owner_epoch(topic, partition)` is the epoch of the
/// member that holds a partition now (assigned or pending revocation), or
/// `None` when it is free. `owned`: the partitions the member reported.
pub fn reconcile(
    current: &CurrentAssignment,
    target_epoch: i32,
    target: &Assignment,
    owner_epoch: &dyn Fn(Uuid, i32) -> Option<i32>,
    owned: Option<&Assignment>,
) -> CurrentAssignment {
    match current.state {
        MemberState::Stable if current.member_epoch == target_epoch => current.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => {
            next(current, current.member_epoch, target_epoch, target, owner_epoch, owned)
        }
        MemberState::UnrevokedPartitions => {
            if still_owns(owned, &current.pending_revocation) {
                current.clone()
            } else {
                next(current, current.member_epoch + 1, target_epoch, target, owner_epoch, owned)
            }
        }
    }
}

fn next(
    current: &CurrentAssignment,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owner_epoch: &dyn Fn(Uuid, i32) -> Option<i32>,
    owned: Option<&Assignment>,
) -> CurrentAssignment {
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut to_assign = Assignment::new();
    let mut unreleased = false;
    let topics: BTreeSet<Uuid> = target.keys().chain(current.assigned.keys()).copied().collect();
    let none = BTreeSet::new();
    for topic in topics {
        let wanted = target.get(&topic).unwrap_or(&none);
        let had = current.assigned.get(&topic).unwrap_or(&none);
        let kept: BTreeSet<i32> = had.intersection(wanted).copied().collect();
        let lost: BTreeSet<i32> = had.difference(&kept).copied().collect();
        let mut gained = BTreeSet::new();
        for &p in wanted.difference(&kept) {
            if owner_epoch(topic, p).is_some() {
                unreleased = true;
            } else {
                gained.insert(p);
            }
        }
        if !kept.is_empty() {
            assigned.insert(topic, kept);
        }
        if !lost.is_empty() {
            revoking.insert(topic, lost);
        }
        if !gained.is_empty() {
            to_assign.insert(topic, gained);
        }
    }
    if !revoking.is_empty() && still_owns(owned, &revoking) {
        // Revoke first; the epoch waits until the member confirms.
        return current.with_epoch(member_epoch, MemberState::UnrevokedPartitions, assigned, revoking);
    }
    for (topic, partitions) in to_assign {
        assigned.entry(topic).or_default().extend(partitions);
    }
    let state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    current.with_epoch(target_epoch, state, assigned, Assignment::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Uuid {
        Uuid::from_u128(7)
    }

    fn parts(p: &[i32]) -> Assignment {
        let mut a = Assignment::new();
        if !p.is_empty() {
            a.insert(topic(), p.iter().copied().collect());
        }
        a
    }

    fn free(_: Uuid, _: i32) -> Option<i32> {
        None
    }

    #[test]
    fn a_new_member_gets_free_partitions_at_the_target_epoch() {
        let next = reconcile(&CurrentAssignment::new(), 3, &parts(&[0, 1]), &free, Some(&parts(&[])));
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.previous_member_epoch, 0);
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!(next.assigned, parts(&[0, 1]));
    }

    #[test]
    fn partitions_held_by_another_member_wait() {
        let held = |_: Uuid, p: i32| (p == 1).then_some(2);
        let next = reconcile(&CurrentAssignment::new(), 3, &parts(&[0, 1]), &held, Some(&parts(&[])));
        assert_eq!(next.state, MemberState::UnreleasedPartitions);
        assert_eq!(next.assigned, parts(&[0]));
        // Once released, the next heartbeat completes it.
        let done = reconcile(&next, 3, &parts(&[0, 1]), &free, Some(&parts(&[0])));
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.assigned, parts(&[0, 1]));
    }

    #[test]
    fn revocation_holds_the_epoch_until_confirmed() {
        let stable = CurrentAssignment {
            member_epoch: 2,
            previous_member_epoch: 1,
            state: MemberState::Stable,
            assigned: parts(&[0, 1, 2]),
            pending_revocation: Assignment::new(),
        };
        let revoking = reconcile(&stable, 3, &parts(&[0]), &free, Some(&parts(&[0, 1, 2])));
        assert_eq!(revoking.state, MemberState::UnrevokedPartitions);
        assert_eq!(revoking.member_epoch, 2);
        assert_eq!(revoking.assigned, parts(&[0]));
        assert_eq!(revoking.pending_revocation, parts(&[1, 2]));
        // Still owning one of them: no progress. No owned list: no progress.
        assert_eq!(reconcile(&revoking, 3, &parts(&[0]), &free, Some(&parts(&[0, 2]))), revoking);
        assert_eq!(reconcile(&revoking, 3, &parts(&[0]), &free, None), revoking);
        let done = reconcile(&revoking, 3, &parts(&[0]), &free, Some(&parts(&[0])));
        assert_eq!((done.member_epoch, done.previous_member_epoch, done.state), (3, 2, MemberState::Stable));
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn a_member_that_already_dropped_partitions_moves_on_at_once() {
        let stable = CurrentAssignment { member_epoch: 2, assigned: parts(&[0, 1]), ..CurrentAssignment::new() };
        let next = reconcile(&stable, 4, &parts(&[0]), &free, Some(&parts(&[0])));
        assert_eq!((next.member_epoch, next.state), (4, MemberState::Stable));
        assert_eq!(next.assigned, parts(&[0]));
    }
}
