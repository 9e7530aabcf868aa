//! A Kafka-protocol connection from this broker to another, for replica
//! fetches: the request encoded with `kafka-protocol` behind its header and
//! length prefix, one request in flight, the answer matched by correlation id.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Fetch version replica fetchers send: `replica_state` (v15), topic
/// ids (v13), `last_fetched_epoch` and diverging epochs (v12).
pub const REPLICA_FETCH_VERSION: i16 = 15;

/// The largest response a fetcher accepts (a response is bounded by
/// `replica.fetch.response.max.bytes` plus one batch per partition).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// How much the response buffer grows by at most per read.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Why a request got no usable answer; the fetcher drops the connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer could not be encoded or decoded.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// One connection to a broker.
pub struct BrokerClient {
    stream: TcpStream,
    client_id: String,
    next_correlation_id: i32,
}

impl BrokerClient {
    /// Connects to `address` (host:port) within `timeout`.
    pub async fn connect(address: &str, client_id: &str, timeout: Duration) -> Result<BrokerClient, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        Ok(BrokerClient { stream, client_id: client_id.to_string(), next_correlation_id: 0 })
    }

    /// Sends a Fetch at [`REPLICA_FETCH_VERSION`] and waits up to `timeout` for its answer.
    pub async fn fetch(&mut self, request: &FetchRequest, timeout: Duration) -> Result<FetchResponse, ClientError> {
        let version = REPLICA_FETCH_VERSION;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let protocol = |e: anyhow::Error| ClientError::Protocol(e.to_string());
        header.encode(&mut buf, ApiKey::Fetch.request_header_version(version)).map_err(protocol)?;
        request.encode(&mut buf, version).map_err(protocol)?;
        let length = i32::try_from(buf.len() - 4).map_err(|_| ClientError::Protocol("request too large".into()))?;
        buf[..4].copy_from_slice(&length.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&buf).await?;
            let length = self.stream.read_i32().await?;
            let length = usize::try_from(length)
                .ok()
                .filter(|&l| l <= MAX_RESPONSE_BYTES)
                .ok_or_else(|| ClientError::Protocol(format!("response of {length} bytes")))?;
            // The buffer grows with the bytes that arrive, not with what the
            // length prefix claims.
            let mut frame = BytesMut::with_capacity(length.min(READ_CHUNK_BYTES));
            while frame.len() < length {
                frame.reserve((length - frame.len()).min(READ_CHUNK_BYTES));
                let wanted = length - frame.len();
                let read = (&mut self.stream).take(wanted as u64).read_buf(&mut frame).await?;
                if read == 0 {
                    return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Ok::<BytesMut, ClientError>(frame)
        };
        let mut frame =
            tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout(timeout))??.freeze();
        let header =
            ResponseHeader::decode(&mut frame, ApiKey::Fetch.response_header_version(version)).map_err(protocol)?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "answer to request {} while waiting for {correlation_id}",
                header.correlation_id
            )));
        }
        let response = FetchResponse::decode(&mut frame, version).map_err(protocol)?;
        if frame.has_remaining() {
            return Err(ClientError::Protocol(format!("{} bytes after the response", frame.remaining())));
        }
        Ok(response)
    }
}
