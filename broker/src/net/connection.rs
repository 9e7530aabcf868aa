//! Frame I/O over one client socket.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use weir_protocol::frame::{frame_length_prefix, parse_frame, FrameError};

/// Why a connection stopped reading.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that can never be valid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed the socket in the middle of a frame.
    #[error("connection reset by peer mid-frame")]
    ResetMidFrame,
}

/// A client connection: reads whole request frames, writes response frames.
pub struct Connection {
    stream: BufWriter<TcpStream>,
    buffer: BytesMut,
    max_frame: usize,
}

impl Connection {
    /// Wraps an accepted socket.
    pub fn new(socket: TcpStream, max_frame: usize) -> Connection {
        let _ = socket.set_nodelay(true);
        Connection { stream: BufWriter::new(socket), buffer: BytesMut::with_capacity(64 * 1024), max_frame }
    }

    /// The next request frame, or `None` when the peer closed cleanly.
    pub async fn read_frame(&mut self) -> Result<Option<BytesMut>, ConnectionError> {
        loop {
            if let Some(frame) = parse_frame(&mut self.buffer, self.max_frame)? {
                return Ok(Some(frame));
            }
            if self.buffer.capacity() - self.buffer.len() < 4096 {
                self.buffer.reserve(64 * 1024);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return if self.buffer.is_empty() { Ok(None) } else { Err(ConnectionError::ResetMidFrame) };
            }
        }
    }

    /// Writes one response frame (header and body already encoded, in
    /// chunks whose total is `len`) and flushes it. Small chunks are
    /// coalesced by the write buffer; large ones go to the socket as they are.
    pub async fn write_frame(&mut self, chunks: &[Bytes], len: usize) -> Result<(), ConnectionError> {
        self.stream.write_all(&frame_length_prefix(len)).await?;
        for chunk in chunks {
            self.stream.write_all(chunk).await?;
        }
        self.stream.flush().await?;
        Ok(())
    }
}
