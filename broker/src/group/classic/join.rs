//! The join phase of a rebalance: JoinGroup handling, member ids,
//! static members taking over their place, the initial delay, and
//! completing the join with a new generation, a leader and a protocol
//! chosen by vote.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use weir_protocol::ErrorCode;

use super::{
    new_member_id, ClassicGroup, Effects, GroupConfig, GroupState, JoinRequest, JoinResponse, Member, Reply,
    SyncResponse,
};

impl ClassicGroup {
    /// Handles a JoinGroup.
    pub fn join(&mut self, req: JoinRequest, config: &GroupConfig, now: Instant, now_ms: i64) -> Reply<JoinResponse> {
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResponse::error(ErrorCode::CoordinatorNotAvailable, &req.member_id));
        }
        if req.session_timeout < config.min_session_timeout || req.session_timeout > config.max_session_timeout {
            return Reply::Now(JoinResponse::error(ErrorCode::InvalidSessionTimeout, &req.member_id));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResponse::error(ErrorCode::InconsistentGroupProtocol, &req.member_id));
        }
        if req.member_id.is_empty() {
            return self.join_new_member(req, config, now, now_ms);
        }
        // A known member id.
        if let Some(instance) = &req.group_instance_id {
            if self.static_members.get(instance).is_some_and(|current| *current != req.member_id) {
                return Reply::Now(JoinResponse::error(ErrorCode::FencedInstanceId, &req.member_id));
            }
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            if self.members.len() >= config.max_size {
                return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, &req.member_id));
            }
            return self.add_member_and_rebalance(req.member_id.clone(), req, now, now_ms, config);
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return Reply::Now(JoinResponse::error(ErrorCode::UnknownMemberId, &req.member_id));
        };
        member.session_deadline = now + req.session_timeout;
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader_id.as_deref() == Some(req.member_id.as_str());
        // A member that lost its join response, or a follower checking in,
        // gets the current generation again; anything else rebalances.
        let resend = match self.state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !is_leader,
            _ => false,
        };
        if resend {
            return Reply::Now(self.join_response_for(&req.member_id));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = &mut self.members[&req.member_id];
                member.protocols = req.protocols;
                member.session_timeout = req.session_timeout;
                member.rebalance_timeout = req.rebalance_timeout;
                member.join_waiter = Some(tx);
                Reply::Wait(rx)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                let member = &mut self.members[&req.member_id];
                member.protocols = req.protocols;
                member.join_waiter = Some(tx);
                self.prepare_rebalance(config, now, now_ms);
                Reply::Wait(rx)
            }
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let member_id = new_member_id(&req.client_id);
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, member_id, req, config, now, now_ms);
            }
            if self.members.len() >= config.max_size {
                return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
            }
            self.static_members.insert(instance, member_id.clone());
            return self.add_member_and_rebalance(member_id, req, now, now_ms, config);
        }
        if req.require_known_member_id {
            self.pending_members.insert(member_id.clone(), now + req.session_timeout);
            return Reply::Now(JoinResponse::error(ErrorCode::MemberIdRequired, &member_id));
        }
        if self.members.len() >= config.max_size {
            return Reply::Now(JoinResponse::error(ErrorCode::GroupMaxSizeReached, ""));
        }
        self.add_member_and_rebalance(member_id, req, now, now_ms, config)
    }

    /// A static member restarted: it takes over its old member's place; in a
    /// stable group with unchanged protocols it keeps the assignment without
    /// a rebalance.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let Some(mut old) = self.members.shift_remove(&old_id) else {
            return self.add_member_and_rebalance(new_id, req, now, now_ms, config);
        };
        if let Some(waiter) = old.join_waiter.take() {
            let _ = waiter.send(JoinResponse::error(ErrorCode::FencedInstanceId, &old_id));
        }
        if let Some(waiter) = old.sync_waiter.take() {
            let _ = waiter.send(SyncResponse::error(ErrorCode::FencedInstanceId));
        }
        let unchanged = old.protocols == req.protocols;
        old.member_id = new_id.clone();
        old.session_deadline = now + req.session_timeout;
        old.session_timeout = req.session_timeout;
        old.rebalance_timeout = req.rebalance_timeout;
        old.client_id = req.client_id.clone();
        old.client_host = req.client_host.clone();
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader_id.as_deref() == Some(&old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            self.members.insert(new_id.clone(), old);
            let mut response = self.join_response_for(&new_id);
            // Only the leader computes assignments; a returning static leader
            // gets the member list, as Kafka sends it, but need not reassign.
            if self.leader_id.as_deref() != Some(&new_id) {
                response.members.clear();
            }
            return Reply::Now(response);
        }
        old.protocols = req.protocols;
        let (tx, rx) = oneshot::channel();
        old.join_waiter = Some(tx);
        self.members.insert(new_id, old);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(config, now, now_ms);
        }
        Reply::Wait(rx)
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now: Instant,
        now_ms: i64,
        config: &GroupConfig,
    ) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                session_deadline: now + req.session_timeout,
            },
        );
        match (self.state, self.initial_delay_cap) {
            // A new member during the initial delay extends it, up to the rebalance timeout.
            (GroupState::PreparingRebalance, Some(cap)) => {
                self.initial_delay_until = Some((now + config.initial_rebalance_delay).min(cap));
            }
            (GroupState::PreparingRebalance, None) => {}
            _ => self.prepare_rebalance(config, now, now_ms),
        }
        Reply::Wait(rx)
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(60))
    }

    /// Starts a rebalance: pending syncs are told REBALANCE_IN_PROGRESS.
    pub(in crate::group) fn prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, now_ms: i64) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ErrorCode::RebalanceInProgress));
            }
        }
        let from_empty = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, now_ms);
        let deadline = now + self.max_rebalance_timeout();
        self.rebalance_deadline = Some(deadline);
        if from_empty && !config.initial_rebalance_delay.is_zero() {
            self.initial_delay_until = Some((now + config.initial_rebalance_delay).min(deadline));
            self.initial_delay_cap = Some(deadline);
        } else {
            self.initial_delay_until = None;
            self.initial_delay_cap = None;
        }
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase if it can: when everyone has rejoined (and
    /// any initial delay is over), or at the rebalance deadline.
    pub fn try_complete_join(&mut self, now: Instant, now_ms: i64) -> Effects {
        if self.state != GroupState::PreparingRebalance {
            return Effects::default();
        }
        let deadline_passed = self.rebalance_deadline.is_none_or(|d| now >= d);
        let in_initial_delay = self.initial_delay_until.is_some_and(|until| now < until);
        if !(deadline_passed || (self.all_joined() && !in_initial_delay)) {
            return Effects::default();
        }
        self.initial_delay_until = None;
        self.initial_delay_cap = None;
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.member_id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending_members.clear();
        self.rebalance_deadline = None;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.transition(GroupState::Empty, now_ms);
            return Effects { persist_assignment: false, persist_state: true };
        }
        self.protocol_name = self.select_protocol();
        if self.leader_id.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response_for(&id);
            if let Some(waiter) = self.members[&id].join_waiter.take() {
                let _ = waiter.send(response);
            }
            self.members[&id].session_deadline = now + self.members[&id].session_timeout;
        }
        Effects::default()
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in self.members.values() {
            if let Some(choice) = member.protocols.iter().map(|(n, _)| n).find(|n| candidates.contains(n)) {
                if let Some(entry) = votes.iter_mut().find(|(c, _)| *c == choice) {
                    entry.1 += 1;
                }
            }
        }
        // Most votes wins; ties go to the first member's preference.
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c.clone())
    }

    fn join_response_for(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let is_leader = self.leader_id.as_deref() == Some(member_id);
        JoinResponse {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| (m.member_id.clone(), m.group_instance_id.clone(), m.metadata_for(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}
