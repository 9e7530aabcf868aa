//! The network layer: listeners, connections and shutdown.
//!
//! One task per connection. Requests on a connection are handled one at a
//! time and answered in order, as Kafka does (a parked Fetch or Produce holds
//! the connection until it completes).

pub mod connection;
pub mod server;
pub mod shutdown;
