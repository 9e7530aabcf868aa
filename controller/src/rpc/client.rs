//! openraft's network to the other voters: one TCP connection per peer and
//! replication stream, opened on first use and reopened after any failure.
//!
//! Every call is bounded by openraft's `hard_ttl`. A peer that cannot be
//! connected to is `Unreachable` (openraft backs off from it); a connection
//! that fails mid-call is a `NetworkError` and is dropped, so the next call
//! starts on a fresh connection and never reads a late answer to an old
//! request.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::{read_frame, write_frame, ControllerRequest, ControllerResponse};
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

async fn connect(address: &str) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(address).await?;
    let _ = stream.set_nodelay(true);
    Ok(BufReader::new(stream))
}

/// Writes `request` on `connection` and reads the answer.
async fn round_trip(
    connection: &mut BufReader<TcpStream>,
    request: &ControllerRequest,
) -> std::io::Result<ControllerResponse> {
    write_frame(connection.get_mut(), request).await?;
    read_frame(connection)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the controller closed the connection"))
}

/// Creates a [`VoterClient`] per peer; peers are reached at their
/// `BasicNode::addr` (`host:port` of their controller listener).
#[derive(Debug, Clone, Default)]
pub struct VoterNetwork;

impl RaftNetworkFactory<TypeConfig> for VoterNetwork {
    type Network = VoterClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> VoterClient {
        VoterClient { target, node: node.clone(), connection: None }
    }
}

/// A client of one peer's controller listener.
#[derive(Debug)]
pub struct VoterClient {
    target: NodeId,
    node: BasicNode,
    connection: Option<BufReader<TcpStream>>,
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
        self.rpc(ControllerRequest::AppendEntries(rpc), option, |response| match response {
            ControllerResponse::AppendEntries(answer) => Some(answer),
            _ => None,
        })
        .await
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
