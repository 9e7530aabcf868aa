//! The listener accept loop and the per-connection request loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use super::connection::{Connection, ConnectionError};
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
pub async fn run_listener(
    listener: TcpListener,
    broker: Arc<Broker>,
    notify_shutdown: broadcast::Sender<()>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = Shutdown::new(notify_shutdown.subscribe());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => return,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let broker = broker.clone();
        let shutdown = Shutdown::new(notify_shutdown.subscribe());
        let done = done.clone();
        tokio::spawn(async move {
            serve_connection(Connection::new(socket, broker.config.socket_request_max_bytes), peer, broker, shutdown)
                .await;
            drop(done);
        });
    }
}

async fn serve_connection(mut conn: Connection, peer: SocketAddr, broker: Arc<Broker>, mut shutdown: Shutdown) {
    debug!(%peer, "connection opened");
    let client_host = format!("/{}", peer.ip());
    while !shutdown.is_stopped() {
        let frame = tokio::select! {
            frame = conn.read_frame() => frame,
            _ = shutdown.recv() => break,
        };
        let frame = match frame {
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
        match Box::pin(handlers::handle_frame(&broker, frame, &client_host)).await {
            Ok(Some(response)) => {
                if let Err(e) = conn.write_frame(&response).await {
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
