//! The controller listener's protocol: the quorum's Raft RPCs between
//! voters, controller operations forwarded to the leader, and observers'
//! metadata fetches, over plain TCP.
//!
//! A connection carries requests and their responses strictly in turn: the
//! client writes one frame, the server answers with one frame. A frame is a
//! 4-byte big-endian length followed by that many bytes of JSON: a
//! [`ControllerRequest`] one way, a [`ControllerResponse`] the other. A frame
//! longer than [`MAX_FRAME_BYTES`], or one that does not decode, closes the
//! connection (as a Kafka listener treats a bad frame); the peer reconnects.
//!
//! [`server`] answers on a listener for a local `Raft`; [`client`] is
//! openraft's network for reaching the other voters.

pub mod client;
pub mod server;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::controller::{FetchedMetadata, Forwarded, MetadataFetch, Operation};
use crate::error::ControllerError;
use crate::raft::{NodeId, TypeConfig};

/// Milliseconds since the epoch, as Kafka's timestamps.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Largest frame either side accepts (64 MiB): a snapshot chunk is at most
/// openraft's `snapshot_max_chunk_size` (3 MiB) before JSON encoding.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// A request on the controller listener.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Raft AppendEntries from the leader.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote from a candidate.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot from the leader.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A controller operation another voter forwards to the leader.
    Forward(Operation),
    /// A controller operation from a node that is only a broker: the voter
    /// runs it where the leader is, forwarding it there itself if need be.
    ForwardFromBroker(Operation),
    /// An observer fetches the committed metadata log.
    FetchMetadata(MetadataFetch),
}

/// The answer to a [`ControllerRequest`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Answer to AppendEntries.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to RequestVote.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to InstallSnapshot.
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The answer to a forwarded operation.
    Forwarded(Result<Forwarded, ControllerError>),
    /// The answer to an observer's fetch.
    MetadataFetched(Result<FetchedMetadata, ControllerError>),
}

/// Writes `message` as one frame.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> std::io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    let payload = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::other(format!("controller frame of {} bytes is too large", payload.len())))?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` when the peer closed the connection between
/// frames.
pub async fn read_frame<R, T>(reader: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncReadExt + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(prefix);
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    // Read through `take` so memory grows with the bytes that really arrive,
    // not with the length a peer claims.
    let mut payload = Vec::new();
    let read = (&mut *reader).take(u64::from(len)).read_to_end(&mut payload).await?;
    if read < len as usize {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "controller frame is truncated"));
    }
    serde_json::from_slice(&payload).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests;
