//! The Weir broker: a Kafka-protocol server over Weir's segment store and
//! metadata quorum.
//!
//! - [`net`]: listeners and connections.
//! - [`handlers`]: one module per Kafka API and the dispatch table.
//! - [`replica`]: the partitions this broker hosts, their append and read paths.
//! - [`admin`]: topic configuration resolution shared by the admin APIs.
//! - [`group`]: the group coordinator and `__consumer_offsets`.
//! - [`txn`]: producer ids.
//! - [`broker`]: the shared state tying them together; [`config`]: its configuration;
//!   [`meta_properties`]: the identity of its data directories.

pub mod admin;
pub mod broker;
pub mod config;
pub mod dedicated_controller;
pub mod fetch_session;
pub mod fetcher;
pub mod group;
pub mod handlers;
pub mod lifecycle;
pub mod meta_properties;
pub mod net;
pub mod replica;
pub mod server;
#[cfg(test)]
pub(crate) mod test_support;
pub mod txn;
