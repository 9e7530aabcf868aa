//! The listener accept loop and the per-connection request loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use super::connection::{Connection, ConnectionError, RequestFrame};
use super::memory_pool::RequestMemoryPool;
use super::quotas::{ConnectionGuard, ConnectionQuotas};
use super::shutdown::Shutdown;
use crate::broker::Broker;
use crate::handlers;

/// Binds a listener. An empty host binds every interface, IPv6 and IPv4
/// (librdkafka may resolve `localhost` to ::1).
pub fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let bind_v6_any = host.is_empty() || host == "::";
    let addr: SocketAddr = if bind_v6_any {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))
    } else {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
                .next()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("cannot resolve {host}")))?,
        }
    };
    let socket = if addr.is_ipv6() { TcpSocket::new_v6()? } else { TcpSocket::new_v4()? };
    socket.set_reuseaddr(true)?;
    // On the IPv6 wildcard Linux accepts IPv4 clients too (IPV6_V6ONLY is off
    // unless net.ipv6.bindv6only says otherwise).
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until shutdown, one task per connection.
///
/// At `max.connections` (counted over every listener) it stops accepting
/// until a connection closes, as Kafka's acceptor blocks: new clients wait in
/// the kernel's backlog. A connection from an address at its
/// `max.connections.per.ip` is accepted and closed at once. Every
/// connection's requests take their memory from `pool`
/// (`queued.max.request.bytes`, shared by every listener).
pub async fn run_listener(
    listener: TcpListener,
    broker: Arc<Broker>,
    quotas: Arc<ConnectionQuotas>,
    pool: Arc<RequestMemoryPool>,
    notify_shutdown: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = Shutdown::new(notify_shutdown.subscribe());
    let mut rejected_log = RateLimitedLog::new();
    let mut blocked_log = RateLimitedLog::new();
    loop {
        if quotas.total() >= broker.config.connection_limits.max_connections && blocked_log.admit().is_some() {
            info!(
                max_connections = broker.config.connection_limits.max_connections,
                "max.connections reached; not accepting connections until one closes"
            );
        }
        // Subscribed before accepting: a stop sent from here on reaches the
        // connection; one sent earlier is seen by the biased selects below,
        // which look at the stop signal first.
        let conn_shutdown = Shutdown::new(notify_shutdown.subscribe());
        tokio::select! {
            biased;
            _ = shutdown.recv() => return,
            _ = quotas.wait_for_slot() => {}
        }
        let accepted = tokio::select! {
            biased;
            _ = shutdown.recv() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Another listener may have taken the last slot since: wait for one, holding the socket.
        let guard = tokio::select! {
            biased;
            _ = shutdown.recv() => return,
            guard = quotas.acquire(peer.ip()) => guard,
        };
        let guard = match guard {
            Ok(guard) => guard,
            Err(e) => {
                drop(socket);
                if let Some(suppressed) = rejected_log.admit() {
                    if suppressed > 0 {
                        info!(
                            "Rejected connection from /{}, address already has the configured maximum of {} connections \
                             ({suppressed} more rejections not logged)",
                            e.ip, e.max
                        );
                    } else {
                        info!(
                            "Rejected connection from /{}, address already has the configured maximum of {} connections",
                            e.ip, e.max
                        );
                    }
                }
                continue;
            }
        };
        let broker = broker.clone();
        let done = done.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let conn = Connection::new(socket, broker.config.socket_request_max_bytes, pool);
            serve_connection(conn, peer, broker, conn_shutdown, guard).await;
            drop(done);
        });
    }
}

/// At most [`RateLimitedLog::BURST`] lines per [`RateLimitedLog::WINDOW`],
/// so a flood of events cannot flood the log; the next line logged says how
/// many were left out.
struct RateLimitedLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RateLimitedLog {
    const BURST: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(10);

    fn new() -> RateLimitedLog {
        RateLimitedLog { window_start: Instant::now(), logged: 0, suppressed: 0 }
    }

    /// `Some(events left out since the last line)` when this event may be logged.
    fn admit(&mut self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window_start) >= Self::WINDOW {
            self.window_start = now;
            self.logged = 0;
        }
        if self.logged >= Self::BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Serves one connection until the client closes it, it fails, or shutdown.
/// `_slot` is its place in the connection quotas, freed when this returns.
async fn serve_connection(
    mut conn: Connection,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: Shutdown,
    _slot: ConnectionGuard,
) {
    debug!(%peer, "connection opened");
    let client_host = format!("/{}", super::quotas::canonical(peer.ip()));
    while !shutdown.is_stopped() {
        let frame = tokio::select! {
            frame = conn.read_frame() => frame,
            _ = shutdown.recv() => break,
        };
        let RequestFrame { bytes, memory } = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(ConnectionError::Io(e)) => {
                debug!(%peer, error = %e, "connection closed by socket error");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        // Boxed: the request's state machine (as large as the largest
        // handler's) is allocated while a request is served, not kept in
        // every idle connection's task.
        let handled = Box::pin(handlers::handle_frame(&broker, bytes, &client_host)).await;
        // The request is done with, whatever the outcome: its memory goes back
        // to the pool before the response is written (as Kafka releases a
        // request's buffer once handled): a client slow to read its response holds none of it.
        drop(memory);
        match handled {
            Ok(Some(response)) => {
                if let Err(e) = conn.write_frame(response.chunks(), response.len()).await {
                    debug!(%peer, error = %e, "could not write response");
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(%peer, error = %e, "closing connection after a request that cannot be served");
                break;
            }
        }
    }
    debug!(%peer, "connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_log_lets_a_burst_through_then_counts() {
        let mut log = RateLimitedLog::new();
        let start = log.window_start;
        for _ in 0..RateLimitedLog::BURST {
            assert_eq!(log.admit_at(start), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(log.admit_at(start + Duration::from_secs(1)), None);
        }
        let next_window = start + RateLimitedLog::WINDOW;
        assert_eq!(log.admit_at(next_window), Some(5));
        assert_eq!(log.admit_at(next_window), Some(0));
    }
}
