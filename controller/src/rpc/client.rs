//! openraft's network to the other voters: one TCP connection per peer and
//! replication stream, opened on first use and reopened after any failure.
//! On the leader it also notes when each voter last answered an
//! AppendEntries and last held the leader's whole log ([`VoterFetchTimes`]),
//! which DescribeQuorum reports as Kafka's fetch and caught-up timestamps.
//!
//! Every call is bounded by openraft's `hard_ttl`. A peer that cannot be
//! connected to is `Unreachable` (openraft backs off from it); a connection
//! that fails mid-call is a `NetworkError` and is dropped, so the next call
//! starts on a fresh connection and never reads a late answer to an old
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftMetrics};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{now_ms, read_frame, write_frame, ControllerRequest, ControllerResponse};
use crate::raft::{NodeId, TypeConfig};

/// Why a one-off call failed.
#[derive(Debug)]
pub enum CallOnceError {
    /// No connection could be made: the request never left this node.
    Unreachable(std::io::Error),
    /// The request may have been delivered, but no answer came.
    Unanswered(std::io::Error),
}

impl std::fmt::Display for CallOnceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallOnceError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallOnceError::Unanswered(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// Sends one request to the controller listener at `address` on a new
/// connection and reads its answer, all within `timeout`.
pub async fn call_once(
    address: &str,
    request: &ControllerRequest,
    timeout: Duration,
) -> Result<ControllerResponse, CallOnceError> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"));
    let started = tokio::time::Instant::now();
    let mut connection = match tokio::time::timeout(timeout, connect(address)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Err(CallOnceError::Unreachable(e)),
        Err(_) => return Err(CallOnceError::Unreachable(timed_out())),
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, round_trip(&mut connection, request)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(CallOnceError::Unanswered(e)),
        Err(_) => Err(CallOnceError::Unanswered(timed_out())),
    }
}

pub(crate) async fn connect(address: &str) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(address).await?;
    let _ = stream.set_nodelay(true);
    Ok(BufReader::new(stream))
}

/// Writes `request` on `connection` and reads the answer.
pub(crate) async fn round_trip(
    connection: &mut BufReader<TcpStream>,
    request: &ControllerRequest,
) -> std::io::Result<ControllerResponse> {
    write_frame(connection.get_mut(), request).await?;
    read_frame(connection)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the controller closed the connection"))
}

/// When a voter last answered this leader, and last held all of its log,
/// in milliseconds since the epoch (-1: not in this term).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterFetch {
    /// The leader's term the times were taken in.
    pub term: u64,
    /// The last answer to an AppendEntries (Kafka: the follower's last fetch).
    pub last_fetch_timestamp: i64,
    /// The last answer that acknowledged the leader's last log entry.
    pub last_caught_up_timestamp: i64,
}

/// The leader's [`VoterFetch`] of each voter, shared by its replication
/// streams and read by DescribeQuorum.
#[derive(Debug, Default)]
pub struct VoterFetchTimes {
    by_voter: Mutex<HashMap<NodeId, VoterFetch>>,
    /// This node's Raft metrics, for its last log index; set once the Raft
    /// that uses the network exists.
    metrics: OnceLock<watch::Receiver<RaftMetrics<NodeId, BasicNode>>>,
}

impl VoterFetchTimes {
    /// Gives the times the Raft whose last log index decides "caught up".
    pub(crate) fn watch(&self, metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>) {
        let _ = self.metrics.set(metrics);
    }

    /// `voter`'s times in `term`, when it answered in that term.
    pub fn get(&self, voter: NodeId, term: u64) -> Option<VoterFetch> {
        let by_voter = self.by_voter.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        by_voter.get(&voter).copied().filter(|fetch| fetch.term == term)
    }

    /// Notes that `voter` answered an AppendEntries of `term` now, holding
    /// the leader's log up to `acknowledged` (None: a conflict).
    fn answered(&self, voter: NodeId, term: u64, acknowledged: Option<u64>) {
        let last_log_index = self.metrics.get().and_then(|metrics| metrics.borrow().last_log_index);
        let caught_up = acknowledged.is_some() && acknowledged >= last_log_index;
        let now = now_ms();
        let mut by_voter = self.by_voter.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let fetch = by_voter.entry(voter).or_insert(VoterFetch {
            term,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        });
        if fetch.term != term {
            *fetch = VoterFetch { term, last_fetch_timestamp: -1, last_caught_up_timestamp: -1 };
        }
        fetch.last_fetch_timestamp = now;
        if caught_up {
            fetch.last_caught_up_timestamp = now;
        }
    }
}

/// Creates a [`VoterClient`] per peer; peers are reached at their
/// `BasicNode::addr` (`host:port` of their controller listener).
#[derive(Debug, Clone, Default)]
pub struct VoterNetwork {
    fetch_times: Arc<VoterFetchTimes>,
}

impl VoterNetwork {
    /// A network whose clients note their peers' answers in `fetch_times`.
    pub fn new(fetch_times: Arc<VoterFetchTimes>) -> Self {
        VoterNetwork { fetch_times }
    }
}

impl RaftNetworkFactory<TypeConfig> for VoterNetwork {
    type Network = VoterClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> VoterClient {
        VoterClient { target, node: node.clone(), connection: None, fetch_times: self.fetch_times.clone() }
    }
}

/// A client of one peer's controller listener.
#[derive(Debug)]
pub struct VoterClient {
    target: NodeId,
    node: BasicNode,
    connection: Option<BufReader<TcpStream>>,
    fetch_times: Arc<VoterFetchTimes>,
}

enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl VoterClient {
    async fn call(&mut self, request: ControllerRequest, ttl: Duration) -> Result<ControllerResponse, CallError> {
        let result = tokio::time::timeout(ttl, self.exchange(request)).await.unwrap_or_else(|_| {
            Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from controller {} within {ttl:?}", self.target),
            )))
        });
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn exchange(&mut self, request: ControllerRequest) -> Result<ControllerResponse, CallError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(connect(&self.node.addr).await.map_err(CallError::Unreachable)?),
        };
        round_trip(connection, &request).await.map_err(CallError::Network)
    }

    /// One Raft RPC: `pick` takes the answer out of the response of the
    /// request's own kind.
    async fn rpc<T, E: std::error::Error>(
        &mut self,
        request: ControllerRequest,
        option: RPCOption,
        pick: fn(ControllerResponse) -> Option<Result<T, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>> {
        match self.call(request, option.hard_ttl()).await.map(pick) {
            Ok(Some(answer)) => answer.map_err(|e| self.remote(e)),
            Ok(None) => Err(self.mismatch()),
            Err(e) => Err(e.into_rpc()),
        }
    }

    fn mismatch<E: std::error::Error>(&mut self) -> RPCError<NodeId, BasicNode, E> {
        self.connection = None;
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "controller {} answered with another kind of response",
            self.target
        ))))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e))
    }
}

impl RaftNetwork<TypeConfig> for VoterClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let term = rpc.vote.leader_id().get_term();
        let sent_up_to = rpc.entries.last().map(|entry| entry.log_id.index).or(rpc.prev_log_id.map(|id| id.index));
        let answer = self
            .rpc(ControllerRequest::AppendEntries(rpc), option, |response| match response {
                ControllerResponse::AppendEntries(answer) => Some(answer),
                _ => None,
            })
            .await?;
        let acknowledged = match &answer {
            AppendEntriesResponse::Success => sent_up_to,
            AppendEntriesResponse::PartialSuccess(matched) => matched.map(|id| id.index),
            AppendEntriesResponse::Conflict | AppendEntriesResponse::HigherVote(_) => None,
        };
        self.fetch_times.answered(self.target, term, acknowledged);
        Ok(answer)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.rpc(ControllerRequest::InstallSnapshot(rpc), option, |response| match response {
            ControllerResponse::InstallSnapshot(answer) => Some(answer),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(ControllerRequest::Vote(rpc), option, |response| match response {
            ControllerResponse::Vote(answer) => Some(answer),
            _ => None,
        })
        .await
    }
}
