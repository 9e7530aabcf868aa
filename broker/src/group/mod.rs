//! Consumer groups: the classic rebalance protocol and committed offsets,
//! kept in `__consumer_offsets`.

pub mod classic;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
mod load;
pub mod records;

pub use coordinator::{GroupCoordinator, OFFSETS_TOPIC};
