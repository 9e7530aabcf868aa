//! Consumer groups: the classic rebalance protocol, KIP-848 consumer groups
//! (with online migration between the two), and committed offsets, all kept
//! in `__consumer_offsets`.

pub mod classic;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
mod deletion;
mod load;
#[cfg(test)]
mod load_tests;
mod offsets;
#[cfg(test)]
mod offsets_tests;
pub mod records;

pub use coordinator::{GroupCoordinator, OFFSETS_TOPIC};
