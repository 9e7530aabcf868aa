//! The controller listener: accepts voters' and brokers' connections and
//! answers Raft RPCs from the local `Raft`, forwarded operations and
//! observers' fetches from the local controller, one task per connection.

use std::net::SocketAddr;

use openraft::Raft;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{read_frame, write_frame, ControllerRequest, ControllerResponse};
use crate::controller::{ControllerOperations, Forwarded, QuorumController};
use crate::error::ControllerError;
use crate::raft::TypeConfig;

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
/// Without a `controller`, forwarded operations are refused.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    controller: Option<QuorumController>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, peer, raft.clone(), controller.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "controller listener cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
    }
}

fn no_controller() -> ControllerError {
    ControllerError::NotController("this listener runs no controller".to_string())
}

async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    raft: Raft<TypeConfig>,
    controller: Option<QuorumController>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let request = tokio::select! {
            request = read_frame::<_, ControllerRequest>(&mut reader) => request,
            _ = wait_for_shutdown(&mut shutdown) => return,
        };
        let request = match request {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing a controller connection after a bad frame");
                return;
            }
        };
        let response = match request {
            ControllerRequest::AppendEntries(rpc) => ControllerResponse::AppendEntries(raft.append_entries(rpc).await),
            ControllerRequest::Vote(rpc) => ControllerResponse::Vote(raft.vote(rpc).await),
            ControllerRequest::InstallSnapshot(rpc) => {
                ControllerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            ControllerRequest::Forward(operation) => ControllerResponse::Forwarded(match &controller {
                Some(controller) => Ok(controller.execute_local(operation).await),
                None => Err(no_controller()),
            }),
            ControllerRequest::ForwardFromBroker(operation) => ControllerResponse::Forwarded(match &controller {
                Some(controller) => controller
                    .on_leader(operation)
                    .await
                    .map(|outcome| Forwarded { outcome, offset: controller.image().last_offset }),
                None => Err(no_controller()),
            }),
            ControllerRequest::FetchMetadata(fetch) => ControllerResponse::MetadataFetched(match &controller {
                Some(controller) => controller.fetch_metadata(fetch).await,
                None => Err(no_controller()),
            }),
        };
        if let Err(e) = write_frame(&mut writer, &response).await {
            tracing::debug!(%peer, error = %e, "controller connection closed while answering");
            return;
        }
    }
}
