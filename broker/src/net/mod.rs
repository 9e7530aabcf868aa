//! The network layer: listeners, connections and shutdown.
//!
//! One task per connection. Requests on a connection are handled one at a
//! time and answered in order, as Kafka does (a parked Fetch or Produce holds
//! the connection until it completes). [`quotas`] bounds how many
//! connections are open, broker-wide and per client address, as Kafka does;
//! [`memory_pool`] bounds the memory of requests read and not yet handled
//! (`queued.max.request.bytes`), holding back reads while it is exhausted.

pub mod connection;
pub mod memory_pool;
pub mod quotas;
pub mod server;
pub mod shutdown;
