//! Producer ids for idempotent producers, handed out from blocks the
//! controller allocates (KIP-730), so ids stay unique across restarts and,
//! later, across brokers.

use weir_controller::{ControllerError, ControllerNode, ControllerOperations};

/// The broker's current block of producer ids.
#[derive(Default)]
pub struct ProducerIdManager {
    /// An async mutex: a caller that finds the block used up holds it while
    /// the controller commits the next one.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// The next producer id, asking the controller for a new block when the
    /// current one is used up.
    pub async fn next_id(&self, controller: &ControllerNode, broker_id: i32) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let (first, count) = controller.allocate_producer_ids(broker_id).await?;
            *block = (first, first + count);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
