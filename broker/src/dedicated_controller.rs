//! A controller-only node (`process.roles=controller`, KRaft's dedicated
//! controller): a voter of the metadata quorum that serves the quorum's RPCs,
//! forwarded operations and observers' fetches on its controller listener,
//! and no clients. It registers no broker, so no partition is placed on it;
//! the brokers (`process.roles=broker`) follow it as observers, and the
//! active controller among the voters fences and unfences them.

use anyhow::Context;
use tracing::info;
use weir_controller::QuorumController;

use crate::broker::controller_config;
use crate::config::BrokerConfig;
use crate::meta_properties;
use crate::net::server::bind;

/// A running controller-only node.
pub struct RunningController {
    controller: QuorumController,
}

/// Binds the controller listener, checks the metadata dir belongs to this
/// node, and opens the quorum; returns once it has a leader.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningController> {
    let listener = config.controller_listener.clone().context("a controller-only node needs a controller listener")?;
    let tcp = bind(&listener.host, listener.port).map_err(|e| {
        anyhow::anyhow!("binding the controller listener {}://{}:{}: {e}", listener.name, listener.host, listener.port)
    })?;
    info!(listener = %listener.name, addr = %tcp.local_addr()?, "controller listener bound");
    let dirs = [config.metadata_log_dir.clone()];
    meta_properties::check_node_id(&dirs[0], config.node_id)?;
    let controller = QuorumController::open_with_listener(controller_config(&config, Some(&tcp))?, Some(tcp))
        .await
        .context("opening the metadata quorum")?;
    let cluster_id = controller.image().cluster_id.clone();
    if let Err(e) = meta_properties::ensure(&dirs, config.node_id, &cluster_id) {
        controller.shutdown().await;
        return Err(e);
    }
    info!(node_id = config.node_id, %cluster_id, roles = "controller", "Weir started");
    Ok(RunningController { controller })
}

impl RunningController {
    /// Resolves if this node's part in the quorum stops (its metadata store
    /// failed), with the reason.
    pub async fn failed(&self) -> String {
        self.controller.failed().await
    }

    /// Leaves the quorum: stops serving and closes the metadata store.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.controller.shutdown().await;
        info!("stopped");
    }
}
