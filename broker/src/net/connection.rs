//! Frame I/O over one client socket.
//!
//! Memory per connection is kept small, and nothing of it outlives the
//! connection:
//! - No buffer is held while the connection is idle: the socket is awaited
//!   for readability first, and the read buffer is allocated only to read
//!   what has arrived, then released once every whole frame in it is taken.
//! - Every request frame gets an allocation of its own, of its exact size:
//!   small frames are copied out of the read buffer, larger ones are read
//!   straight into theirs. A handler that keeps a piece of a request (a
//!   client id, a group member id, decoded zero-copy) pins only that
//!   request's bytes, never the connection's read buffer.
//! - Responses are written from the handler's chunks (a Fetch response's
//!   record batches as they were read from the log) with vectored writes;
//!   there is no write buffer.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use weir_protocol::frame::{frame_length_prefix, parse_frame_size, FrameError};

use super::memory_pool::{MemoryGrant, RequestMemoryPool};

/// How much the read buffer takes from the socket at a time. Frames that fit
/// (with their length prefix) are read through it, so a client pipelining
/// small requests costs one read for several of them.
pub const READ_CHUNK: usize = 8 * 1024;

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

/// One request frame (without its length prefix) and the pool memory it
/// was granted. Keep `memory` until the request has been handled; dropping
/// it gives the memory back to the pool.
#[derive(Debug)]
pub struct RequestFrame {
    /// The frame's bytes.
    pub bytes: BytesMut,
    /// Its share of `queued.max.request.bytes`.
    pub memory: MemoryGrant,
}

/// A client connection: reads whole request frames, writes response frames.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet taken as frames; no allocation while empty.
    buffer: BytesMut,
    max_frame: usize,
    pool: Arc<RequestMemoryPool>,
    /// The memory granted to the frame at the front of `buffer` while the
    /// rest of it is read (a frame that fits in [`READ_CHUNK`]).
    granted: Option<MemoryGrant>,
}

impl Connection {
    /// Wraps an accepted socket; its request frames take their memory from `pool`.
    pub fn new(socket: TcpStream, max_frame: usize, pool: Arc<RequestMemoryPool>) -> Connection {
        let _ = socket.set_nodelay(true);
        Connection { stream: socket, buffer: BytesMut::new(), max_frame, pool, granted: None }
    }

    /// Bytes of the read buffer's allocation (0 while idle).
    pub fn read_buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The next request frame, or `None` when the peer closed cleanly.
    ///
    /// Once a frame's size is known it waits for the frame's memory from the
    /// pool, reading nothing more from the socket meanwhile. A frame larger
    /// than `socket.request.max.bytes` is refused before anything is granted.
    ///
    /// Cancelling it (the server does so only to close the connection) may
    /// lose a partly read frame; memory granted to it returns to the pool
    /// when the connection is dropped, or at once for a large frame.
    pub async fn read_frame(&mut self) -> Result<Option<RequestFrame>, ConnectionError> {
        loop {
            if let Some(size) = parse_frame_size(&self.buffer, self.max_frame)? {
                let memory = match self.granted.take() {
                    Some(memory) => memory,
                    None => self.pool.allocate(size).await,
                };
                if self.buffer.len() >= 4 + size {
                    self.buffer.advance(4);
                    let bytes = BytesMut::from(&self.buffer[..size]);
                    self.buffer.advance(size);
                    self.release_if_empty();
                    return Ok(Some(RequestFrame { bytes, memory }));
                }
                if 4 + size > READ_CHUNK {
                    let bytes = self.read_large_frame(size).await?;
                    return Ok(Some(RequestFrame { bytes, memory }));
                }
                self.granted = Some(memory);
            }
            if self.fill().await? == 0 {
                return if self.buffer.is_empty() { Ok(None) } else { Err(ConnectionError::ResetMidFrame) };
            }
        }
    }

    /// Reads once from the socket into the read buffer, allocating it only
    /// once there is something to read. 0 means the peer closed.
    async fn fill(&mut self) -> std::io::Result<usize> {
        loop {
            self.stream.readable().await?;
            if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 2 {
                self.buffer.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.buffer) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.release_if_empty(),
                Err(e) => return Err(e),
            }
        }
    }

    /// A frame larger than [`READ_CHUNK`]: read into an allocation of its
    /// own, exactly its size, starting with what the read buffer holds of it.
    async fn read_large_frame(&mut self, size: usize) -> Result<BytesMut, ConnectionError> {
        self.buffer.advance(4);
        let mut frame = BytesMut::with_capacity(size);
        // The buffer holds less than the whole frame, so all of it is this frame's.
        frame.extend_from_slice(&self.buffer);
        self.buffer = BytesMut::new();
        while frame.len() < size {
            let left = (size - frame.len()) as u64;
            if (&mut self.stream).take(left).read_buf(&mut frame).await? == 0 {
                return Err(ConnectionError::ResetMidFrame);
            }
        }
        Ok(frame)
    }

    fn release_if_empty(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = BytesMut::new();
        }
    }

    /// Writes one response frame (header and body already encoded, in
    /// chunks whose total is `len`) with vectored writes: a Fetch response's
    /// record batches go to the socket from where they were read.
    pub async fn write_frame(&mut self, chunks: &[Bytes], len: usize) -> Result<(), ConnectionError> {
        let mut frame = FrameBuf::new(frame_length_prefix(len), chunks);
        self.stream.write_all_buf(&mut frame).await?;
        Ok(())
    }
}

/// A response frame as one [`Buf`]: its length prefix, then its chunks.
struct FrameBuf<'a> {
    prefix: [u8; 4],
    prefix_sent: usize,
    chunks: &'a [Bytes],
    /// The chunk being sent and how much of it is sent.
    index: usize,
    offset: usize,
    remaining: usize,
}

impl<'a> FrameBuf<'a> {
    fn new(prefix: [u8; 4], chunks: &'a [Bytes]) -> FrameBuf<'a> {
        let remaining = prefix.len() + chunks.iter().map(Bytes::len).sum::<usize>();
        let mut buf = FrameBuf { prefix, prefix_sent: 0, chunks, index: 0, offset: 0, remaining };
        buf.skip_empty_chunks();
        buf
    }

    fn skip_empty_chunks(&mut self) {
        while self.index < self.chunks.len() && self.offset == self.chunks[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }
}

impl Buf for FrameBuf<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        if self.prefix_sent < self.prefix.len() {
            &self.prefix[self.prefix_sent..]
        } else if let Some(chunk) = self.chunks.get(self.index) {
            &chunk[self.offset..]
        } else {
            &[]
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        let from_prefix = cnt.min(self.prefix.len() - self.prefix_sent);
        self.prefix_sent += from_prefix;
        cnt -= from_prefix;
        while cnt > 0 && self.index < self.chunks.len() {
            let step = cnt.min(self.chunks[self.index].len() - self.offset);
            self.offset += step;
            cnt -= step;
            self.skip_empty_chunks();
        }
    }

    fn chunks_vectored<'b>(&'b self, dst: &mut [IoSlice<'b>]) -> usize {
        let mut n = 0;
        if self.prefix_sent < self.prefix.len() && n < dst.len() {
            dst[n] = IoSlice::new(&self.prefix[self.prefix_sent..]);
            n += 1;
        }
        let mut offset = self.offset;
        for chunk in self.chunks.iter().skip(self.index) {
            if n == dst.len() {
                break;
            }
            if offset < chunk.len() {
                dst[n] = IoSlice::new(&chunk[offset..]);
                n += 1;
            }
            offset = 0;
        }
        n
    }
}

#[cfg(test)]
mod frame_buf_tests {
    use super::*;

    #[test]
    fn a_frame_buf_yields_the_prefix_then_every_chunk_whatever_the_steps() {
        let chunks =
            vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde"), Bytes::from_static(b"f")];
        for step in 1..8 {
            let mut buf = FrameBuf::new([0, 0, 0, 6], &chunks);
            let mut out = Vec::new();
            while buf.has_remaining() {
                let take = step.min(buf.chunk().len());
                out.extend_from_slice(&buf.chunk()[..take]);
                buf.advance(take);
            }
            assert_eq!(out, b"\0\0\0\x06abcdef", "step {step}");
        }
        let mut buf = FrameBuf::new([0, 0, 0, 6], &chunks);
        buf.advance(5);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = buf.chunks_vectored(&mut slices);
        let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, b"bcdef");
    }
}

#[cfg(test)]
mod pool_tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the broker's side as a [`Connection`] over `pool`, and the client's socket.
    async fn pair(pool: &Arc<RequestMemoryPool>, max_frame: usize) -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Connection::new(server, max_frame, pool.clone()), client)
    }

    fn frame(size: usize) -> Vec<u8> {
        let mut out = (size as u32).to_be_bytes().to_vec();
        out.resize(4 + size, 7);
        out
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_frame_holds_its_size_until_its_grant_is_dropped() {
        let pool = RequestMemoryPool::new(1 << 20);
        let (mut conn, mut client) = pair(&pool, 1 << 20).await;
        // One small frame (through the read buffer) and one large (read on its own).
        client.write_all(&frame(100)).await.unwrap();
        client.write_all(&frame(50_000)).await.unwrap();
        let small = conn.read_frame().await.unwrap().unwrap();
        assert_eq!((small.bytes.len(), small.memory.size()), (100, 100));
        assert_eq!(pool.available(), (1 << 20) - 100);
        let large = conn.read_frame().await.unwrap().unwrap();
        assert_eq!((large.bytes.len(), large.memory.size()), (50_000, 50_000));
        assert_eq!(pool.available(), (1 << 20) - 50_100);
        drop((small, large));
        assert_eq!(pool.available(), 1 << 20);
    }

    #[tokio::test]
    async fn an_exhausted_pool_holds_back_reading_until_memory_is_released() {
        let pool = RequestMemoryPool::new(1000);
        let held = pool.try_allocate(1000).unwrap();
        let (mut conn, mut client) = pair(&pool, 1000).await;
        client.write_all(&frame(10)).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(50), conn.read_frame()).await.is_err());
        drop(held);
        let got = tokio::time::timeout(WAIT, conn.read_frame()).await.unwrap().unwrap().unwrap();
        assert_eq!((got.bytes.len(), pool.available()), (10, 990));
    }

    #[tokio::test]
    async fn a_peer_closing_mid_frame_returns_the_memory() {
        let pool = RequestMemoryPool::new(1 << 20);
        for size in [1000, 100_000] {
            let (mut conn, mut client) = pair(&pool, 1 << 20).await;
            client.write_all(&frame(size)[..4 + size / 2]).await.unwrap();
            drop(client);
            assert!(matches!(conn.read_frame().await, Err(ConnectionError::ResetMidFrame)));
            drop(conn);
            assert_eq!(pool.available(), 1 << 20, "frame of {size}");
        }
    }

    #[tokio::test]
    async fn a_read_cancelled_mid_frame_returns_the_memory() {
        let pool = RequestMemoryPool::new(1 << 20);
        for size in [1000, 100_000] {
            let (mut conn, mut client) = pair(&pool, 1 << 20).await;
            client.write_all(&frame(size)[..4 + size / 2]).await.unwrap();
            assert!(tokio::time::timeout(Duration::from_millis(50), conn.read_frame()).await.is_err());
            drop(conn);
            assert_eq!(pool.available(), 1 << 20, "frame of {size}");
        }
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_before_any_memory_is_granted() {
        let pool = RequestMemoryPool::new(1000);
        let (mut conn, mut client) = pair(&pool, 1000).await;
        client.write_all(&frame(1001)[..8]).await.unwrap();
        assert!(matches!(conn.read_frame().await, Err(ConnectionError::Frame(FrameError::TooLarge { .. }))));
        assert_eq!(pool.available(), 1000);
    }
}
