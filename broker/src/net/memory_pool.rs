//! The request memory pool: Kafka's `queued.max.request.bytes` (KIP-72).
//!
//! It bounds the memory held by requests that have been read off sockets
//! and are not finished yet, broker-wide (every listener, every connection).
//! The rules are those of Kafka's `SimpleMemoryPool` in its non-strict mode,
//! as Kafka's socket server uses it:
//!
//! - A connection asks for a request's memory as soon as it knows the
//!   request's size (its 4-byte length prefix), before the buffer for the
//!   body exists.
//! - The grant succeeds while *any* memory is left, even when less is left
//!   than the request needs: the pool can be overdrawn, by less than one
//!   request (at most `queued.max.request.bytes + socket.request.max.bytes`
//!   bytes are held). So a request larger than what is left still proceeds,
//!   alone, whenever the pool is not already exhausted.
//! - Once nothing is left, every connection that wants to read a request
//!   waits once it has that request's length (Kafka's channel mutes itself,
//!   plain `MUTED`, when its receive cannot get a buffer, and is unmuted when
//!   the pool has memory again): it reads nothing more from its socket, so
//!   the client is held back by TCP flow control. It is back-pressure, not an error: no client gets an error
//!   response and no connection is closed. The waiting is asynchronous; a
//!   release that makes memory available again wakes every waiter, and they
//!   compete for it as Kafka's unmuted channels do.
//! - The memory returns to the pool when the request's [`MemoryGrant`] is
//!   dropped: after the request has been handled (whatever the outcome), or
//!   when its connection closes or fails before the request was whole.
//! - An empty frame (size 0) takes nothing from the pool, as in Kafka.
//!
//! `queued.max.request.bytes` of 0 or less (Kafka's default is -1) means no
//! bound: every grant succeeds at once and nothing is counted.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tracing::{debug, trace};

/// The broker-wide pool that request frames are granted memory from.
#[derive(Debug)]
pub struct RequestMemoryPool {
    /// `queued.max.request.bytes`; `None` when it is 0 or less (no bound).
    capacity: Option<i64>,
    /// Bytes not granted. Negative while a non-strict grant overdraws the pool.
    available: AtomicI64,
    /// Wakes the connections waiting for memory.
    released: Notify,
}

impl RequestMemoryPool {
    /// A pool of `queued_max_request_bytes`; 0 or less is no bound at all.
    pub fn new(queued_max_request_bytes: i64) -> Arc<RequestMemoryPool> {
        let capacity = (queued_max_request_bytes > 0).then_some(queued_max_request_bytes);
        Arc::new(RequestMemoryPool {
            capacity,
            available: AtomicI64::new(capacity.unwrap_or(0)),
            released: Notify::new(),
        })
    }

    /// The bound, or `None` when the pool does not bound anything.
    pub fn capacity(&self) -> Option<i64> {
        self.capacity
    }

    /// Bytes left to grant: the capacity minus what is granted, negative
    /// while the pool is overdrawn. Always 0 for an unbounded pool.
    pub fn available(&self) -> i64 {
        self.available.load(Ordering::Acquire)
    }

    /// Whether a request arriving now would have to wait.
    pub fn is_out_of_memory(&self) -> bool {
        self.capacity.is_some() && self.available() <= 0
    }

    /// Grants `size` bytes if any memory is left (non-strict), else `None`.
    pub fn try_allocate(self: &Arc<Self>, size: usize) -> Option<MemoryGrant> {
        if self.capacity.is_none() || size == 0 {
            return Some(MemoryGrant::untracked());
        }
        // A frame is at most i32::MAX bytes, far from i64's limit.
        let amount = i64::try_from(size).unwrap_or(i64::MAX);
        let granted = self
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| (left > 0).then(|| left - amount))
            .is_ok();
        if !granted {
            trace!(size, "request memory pool exhausted; refused a grant");
            return None;
        }
        Some(MemoryGrant { pool: Some(self.clone()), size: amount })
    }

    /// Grants `size` bytes, waiting (without spinning) while the pool is
    /// exhausted. Cancelling the wait takes nothing from the pool.
    pub async fn allocate(self: &Arc<Self>, size: usize) -> MemoryGrant {
        if let Some(grant) = self.try_allocate(size) {
            return grant;
        }
        debug!(
            size,
            available = self.available(),
            "queued.max.request.bytes exhausted; this connection reads nothing until request memory is released"
        );
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if let Some(grant) = self.try_allocate(size) {
                return grant;
            }
            released.await;
        }
    }

    fn release(&self, amount: i64) {
        let before = self.available.fetch_add(amount, Ordering::AcqRel);
        trace!(amount, available = before + amount, "request memory released");
        // Waiters exist only while nothing was left; wake them once memory is back.
        if before <= 0 && before + amount > 0 {
            self.released.notify_waiters();
        }
    }
}

/// Memory granted to one request frame; it returns to its pool when dropped.
///
/// It travels with the request's bytes and is dropped once the request has
/// been handled, or with the connection that was reading it.
#[derive(Debug)]
#[must_use = "the memory returns to the pool as soon as the grant is dropped"]
pub struct MemoryGrant {
    pool: Option<Arc<RequestMemoryPool>>,
    size: i64,
}

impl MemoryGrant {
    /// A grant that counts nothing (an empty frame, or an unbounded pool).
    pub fn untracked() -> MemoryGrant {
        MemoryGrant { pool: None, size: 0 }
    }

    /// Bytes this grant holds in its pool (0 when untracked).
    pub fn size(&self) -> usize {
        usize::try_from(self.size).unwrap_or(0)
    }
}

impl Drop for MemoryGrant {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release(self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[test]
    fn grants_and_releases_are_counted() {
        let pool = RequestMemoryPool::new(100);
        assert_eq!((pool.capacity(), pool.available()), (Some(100), 100));
        let a = pool.try_allocate(30).unwrap();
        let b = pool.try_allocate(50).unwrap();
        assert_eq!((a.size(), b.size(), pool.available()), (30, 50, 20));
        drop(a);
        assert_eq!(pool.available(), 50);
        drop(b);
        assert_eq!(pool.available(), 100);
        assert!(!pool.is_out_of_memory());
    }

    #[test]
    fn non_strict_grants_overdraw_by_less_than_one_request_then_refuse() {
        let pool = RequestMemoryPool::new(100);
        let a = pool.try_allocate(99).unwrap();
        // One byte left: enough for any request, which overdraws the pool.
        let b = pool.try_allocate(60).unwrap();
        assert_eq!(pool.available(), -59);
        assert!(pool.is_out_of_memory());
        assert!(pool.try_allocate(1).is_none());
        drop(a);
        // 40 left, less than this request, which still gets it (non-strict).
        let c = pool.try_allocate(60).unwrap();
        assert_eq!(pool.available(), -20);
        drop((b, c));
        assert_eq!(pool.available(), 100);
    }

    #[test]
    fn a_request_larger_than_the_pool_proceeds_alone() {
        let pool = RequestMemoryPool::new(100);
        let big = pool.try_allocate(250).unwrap();
        assert_eq!(pool.available(), -150);
        assert!(pool.try_allocate(1).is_none());
        drop(big);
        assert_eq!(pool.available(), 100);
    }

    #[test]
    fn empty_frames_and_unbounded_pools_count_nothing() {
        let pool = RequestMemoryPool::new(10);
        let _all = pool.try_allocate(10).unwrap();
        assert!(pool.is_out_of_memory());
        let empty = pool.try_allocate(0).unwrap();
        assert_eq!(empty.size(), 0);
        for unbounded in [0, -1] {
            let pool = RequestMemoryPool::new(unbounded);
            assert_eq!(pool.capacity(), None);
            let grants: Vec<_> = (0..3).map(|_| pool.try_allocate(1 << 30).unwrap()).collect();
            assert!(grants.iter().all(|g| g.size() == 0));
            assert!(!pool.is_out_of_memory());
            assert_eq!(pool.available(), 0);
        }
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_release() {
        let pool = RequestMemoryPool::new(100);
        let held = pool.try_allocate(100).unwrap();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.allocate(70).await })
        };
        settle().await;
        assert!(!waiter.is_finished(), "granted while the pool was exhausted");
        drop(held);
        let grant = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!((grant.size(), pool.available()), (70, 30));
    }

    #[tokio::test]
    async fn every_waiter_gets_memory_in_turn() {
        let pool = RequestMemoryPool::new(100);
        let held = pool.try_allocate(100).unwrap();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..8 {
            let pool = pool.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let grant = pool.allocate(60).await;
                // Each request holds its memory for a while, as a handler does.
                tokio::time::sleep(Duration::from_millis(5)).await;
                done_tx.send((i, pool.available())).unwrap();
                drop(grant);
            });
        }
        settle().await;
        drop(held);
        let mut finished = Vec::new();
        for _ in 0..8 {
            let (i, available) = tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await.unwrap().unwrap();
            // At most two 60-byte requests at once in a 100-byte pool: one overdraws it.
            assert!(available >= -20, "{available}");
            finished.push(i);
        }
        finished.sort_unstable();
        assert_eq!(finished, (0..8).collect::<Vec<_>>());
        assert_eq!(pool.available(), 100);
    }

    #[tokio::test]
    async fn a_cancelled_wait_takes_nothing() {
        let pool = RequestMemoryPool::new(100);
        let held = pool.try_allocate(100).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), pool.allocate(10)).await.is_err());
        drop(held);
        assert_eq!(pool.available(), 100);
        // A waiter that went away does not hold back the next one.
        let _next = tokio::time::timeout(Duration::from_secs(5), pool.allocate(10)).await.unwrap();
        assert_eq!(pool.available(), 90);
    }
}
