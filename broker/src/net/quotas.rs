//! Connection limits, as Kafka's `ConnectionQuotas`.
//!
//! - `max.connections` (broker-wide, all listeners): at the limit the
//!   acceptor stops accepting until a connection closes. New clients wait in
//!   the kernel's accept backlog; none is accepted and closed.
//! - `max.connections.per.ip`, with `max.connections.per.ip.overrides`
//!   (`host:count,...`): a connection from an address that already holds its
//!   maximum is accepted and closed at once.
//!
//! Every admitted connection holds a [`ConnectionGuard`]; dropping it (on any
//! exit path of the connection's task) frees the slot and wakes a waiting
//! acceptor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The limits, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `max.connections`.
    pub max_connections: usize,
    /// `max.connections.per.ip`.
    pub max_per_ip: usize,
    /// `max.connections.per.ip.overrides`, by address.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    /// No limit at all (Kafka's defaults, `Int.MaxValue`).
    pub fn unlimited() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: i32::MAX as usize,
            max_per_ip: i32::MAX as usize,
            per_ip_overrides: HashMap::new(),
        }
    }

    fn max_for(&self, ip: &IpAddr) -> usize {
        self.per_ip_overrides.get(ip).copied().unwrap_or(self.max_per_ip)
    }
}

/// An address that already holds its maximum number of connections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {ip} already has the configured maximum of {max} connections")]
pub struct TooManyConnections {
    /// The client's address.
    pub ip: IpAddr,
    /// Its limit.
    pub max: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The connection counts of the whole broker, shared by every listener.
#[derive(Debug)]
pub struct ConnectionQuotas {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    slot_freed: Notify,
}

impl ConnectionQuotas {
    /// Quotas with no connection counted yet.
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas { limits, counts: Mutex::new(Counts::default()), slot_freed: Notify::new() })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is one statement.
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.counts().total
    }

    /// Connections open now from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts().per_ip.get(&canonical(ip)).copied().unwrap_or(0)
    }

    /// Returns once the broker is below `max.connections` (at once if it is).
    pub async fn wait_for_slot(&self) {
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if self.counts().total < self.limits.max_connections {
                return;
            }
            freed.await;
        }
    }

    /// Counts a new connection from `ip`, waiting first for a broker-wide
    /// slot; refuses it if the address is at its own limit.
    pub async fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionGuard, TooManyConnections> {
        let ip = canonical(ip);
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_acquire(ip) {
                Ok(Some(guard)) => return Ok(guard),
                Ok(None) => freed.await,
                Err(e) => return Err(e),
            }
        }
    }

    /// `Ok(None)` when the broker is at `max.connections`.
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Option<ConnectionGuard>, TooManyConnections> {
        let mut counts = self.counts();
        if counts.total >= self.limits.max_connections {
            return Ok(None);
        }
        let max = self.limits.max_for(&ip);
        if counts.per_ip.get(&ip).copied().unwrap_or(0) >= max {
            return Err(TooManyConnections { ip, max });
        }
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        counts.total += 1;
        Ok(Some(ConnectionGuard { quotas: self.clone(), ip }))
    }

    fn release(&self, ip: IpAddr) {
        {
            let mut counts = self.counts();
            counts.total = counts.total.saturating_sub(1);
            if let Some(count) = counts.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
        self.slot_freed.notify_waiters();
    }
}

/// One counted connection; its slot is freed when this is dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.quotas.release(self.ip);
    }
}

/// An IPv4 client seen on an IPv6 wildcard listener (`::ffff:a.b.c.d`) is
/// counted as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max_connections: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections, max_per_ip, per_ip_overrides: HashMap::new() }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test]
    async fn per_ip_limit_refuses_and_a_closed_connection_frees_its_slot() {
        let mut l = limits(100, 2);
        l.per_ip_overrides.insert(B, 3);
        let q = ConnectionQuotas::new(l);
        let a1 = q.acquire(A).await.unwrap();
        let _a2 = q.acquire(A).await.unwrap();
        assert_eq!(q.acquire(A).await.unwrap_err(), TooManyConnections { ip: A, max: 2 });
        let _b: Vec<_> = futures_join(&q, B, 3).await;
        assert_eq!(q.acquire(B).await.unwrap_err().max, 3);
        assert_eq!((q.total(), q.count(A), q.count(B)), (5, 2, 3));
        drop(a1);
        assert_eq!(q.count(A), 1);
        let _a3 = q.acquire(A).await.unwrap();
        // An IPv4-mapped IPv6 address is the same client.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(q.acquire(mapped).await.is_err());
    }

    async fn futures_join(q: &Arc<ConnectionQuotas>, ip: IpAddr, n: usize) -> Vec<ConnectionGuard> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(q.acquire(ip).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn broker_limit_waits_until_a_connection_closes() {
        let q = ConnectionQuotas::new(limits(2, 100));
        let first = q.acquire(A).await.unwrap();
        let _second = q.acquire(B).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(50), q.wait_for_slot()).await.is_err());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.acquire(A).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(q.total(), 2);
        drop(third);
        tokio::time::timeout(Duration::from_secs(5), q.wait_for_slot()).await.unwrap();
        assert_eq!(q.total(), 1);
    }

    #[tokio::test]
    async fn zero_per_ip_refuses_all_but_overridden_addresses() {
        let mut l = limits(100, 0);
        l.per_ip_overrides.insert(B, 1);
        let q = ConnectionQuotas::new(l);
        assert!(q.acquire(A).await.is_err());
        let _b = q.acquire(B).await.unwrap();
        assert_eq!((q.total(), q.count(A)), (1, 0));
    }
}
