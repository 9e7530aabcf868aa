//! The requests parked on one partition (Kafka's delayed-operation purgatory,
//! keyed by partition): a parked Fetch registers its waker with every
//! partition it reads, and a change to one partition wakes only the requests
//! watching it, not every parked request of the broker.
//!
//! A waker is a `tokio::sync::Notify` owned by the parked request; the
//! partition keeps a weak reference, so a request that finished (answered,
//! timed out, connection gone) needs no unregistering. `notify_one` stores a
//! permit when its owner is not waiting yet, so a change between the
//! request's read and its wait is never missed.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Wakers of the requests parked on one partition.
#[derive(Default)]
pub struct Watchers {
    inner: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    wakers: Vec<Weak<Notify>>,
    /// When the list reaches this length, wakers whose request is gone are
    /// dropped (a partition that never changes would otherwise collect one
    /// per long poll).
    prune_at: usize,
}

impl Watchers {
    /// Registers `waker` until the next [`Watchers::wake`].
    pub fn watch(&self, waker: &Arc<Notify>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.wakers.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(waker))) {
            return;
        }
        if inner.wakers.len() >= inner.prune_at {
            inner.wakers.retain(|w| w.strong_count() > 0);
            inner.prune_at = (inner.wakers.len() * 2).max(16);
        }
        inner.wakers.push(Arc::downgrade(waker));
    }

    /// Wakes every registered request and forgets them (a woken request
    /// registers again if it parks again).
    pub fn wake(&self) {
        let wakers = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.wakers.is_empty() {
                return;
            }
            std::mem::take(&mut inner.wakers)
        };
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.notify_one();
        }
    }

    /// How many wakers are registered (dead ones included until pruned).
    #[cfg(test)]
    pub fn registered(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_reaches_registered_wakers_once_and_before_they_wait() {
        let watchers = Watchers::default();
        let (a, b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        watchers.watch(&a);
        watchers.watch(&a);
        watchers.watch(&b);
        assert_eq!(watchers.registered(), 2, "a waker registers once");
        watchers.wake();
        assert_eq!(watchers.registered(), 0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            // The permit stored by the wake is there when the owner waits.
            for waker in [&a, &b] {
                tokio::time::timeout(std::time::Duration::from_secs(1), waker.notified()).await.unwrap();
            }
            // And nothing more: the next wait times out.
            assert!(tokio::time::timeout(std::time::Duration::from_millis(20), a.notified()).await.is_err());
        });
    }

    #[test]
    fn wakers_of_finished_requests_are_pruned() {
        let watchers = Watchers::default();
        let live = Arc::new(Notify::new());
        watchers.watch(&live);
        for _ in 0..1000 {
            let gone = Arc::new(Notify::new());
            watchers.watch(&gone);
        }
        assert!(watchers.registered() <= 32, "{} wakers kept", watchers.registered());
        watchers.wake();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), live.notified()).await.unwrap();
        });
    }
}
