//! Producer ids for idempotent producers, handed out from blocks the
//! controller allocates (KIP-730), so ids stay unique across restarts and,
//! later, across brokers.

use std::sync::Mutex;

use weir_controller::{ControllerError, QuorumController};

/// The broker's current block of producer ids.
#[derive(Default)]
pub struct ProducerIdManager {
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// The next producer id, asking the controller for a new block when the
    /// current one is used up.
    pub fn next_id(&self, controller: &QuorumController, broker_id: i32) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if block.0 >= block.1 {
            let (first, count) = controller.allocate_producer_ids(broker_id)?;
            *block = (first, first + count);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
