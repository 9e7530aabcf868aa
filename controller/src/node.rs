//! How this node takes part in the metadata quorum: a voter runs the
//! controller ([`QuorumController`]); a node that is only a broker observes
//! it ([`MetadataObserver`]). The broker uses either through [`ControllerNode`]
//! alike: the latest image, its changes, and the controller operations.

use std::sync::Arc;

use tokio::sync::watch;

use crate::controller::{ControllerOperations, Operation, Outcome, QuorumController};
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::observer::MetadataObserver;

/// This node's part in the metadata quorum. Cheap to clone.
#[derive(Debug, Clone)]
pub enum ControllerNode {
    /// A voter (`process.roles` with `controller`): it runs the controller.
    Voter(QuorumController),
    /// A broker-only node (`process.roles=broker`): it follows the quorum.
    Observer(MetadataObserver),
}

impl ControllerNode {
    /// The latest image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            ControllerNode::Voter(controller) => controller.image(),
            ControllerNode::Observer(observer) => observer.image(),
        }
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        match self {
            ControllerNode::Voter(controller) => controller.subscribe(),
            ControllerNode::Observer(observer) => observer.subscribe(),
        }
    }

    /// Resolves when a voter's quorum stops on its own (see
    /// [`QuorumController::failed`]); never for an observer, which keeps
    /// asking the voters.
    pub async fn failed(&self) -> String {
        match self {
            ControllerNode::Voter(controller) => controller.failed().await,
            ControllerNode::Observer(_) => std::future::pending().await,
        }
    }

    /// Stops the quorum (a voter) or the fetching (an observer).
    pub async fn shutdown(&self) {
        match self {
            ControllerNode::Voter(controller) => controller.shutdown().await,
            ControllerNode::Observer(observer) => observer.shutdown(),
        }
    }
}

impl ControllerOperations for ControllerNode {
    async fn on_leader(&self, operation: Operation) -> Result<Outcome, ControllerError> {
        match self {
            ControllerNode::Voter(controller) => controller.on_leader(operation).await,
            ControllerNode::Observer(observer) => observer.on_leader(operation).await,
        }
    }
}
