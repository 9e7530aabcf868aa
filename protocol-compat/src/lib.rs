//! Everything Weir puts on or reads from the Kafka wire.
//!
//! - [`frame`]: the 4-byte length-prefixed frame codec with the
//!   `socket.request.max.bytes` limit.
//! - [`header`]: request header parsing for every header version and
//!   response header encoding.
//! - [`api_table`]: the advertised API table, the single source of truth for
//!   ApiVersions and for which requests are served at all.
//! - [`batch`]: a zero-copy view over a v2 record batch: header fields, CRC
//!   check, and the in-place rewrites the leader makes on append.
//! - [`chunked`]: an encoding buffer that references the record batches of a
//!   Fetch response instead of copying them.
//! - [`records`]: a streaming walk over the records inside a batch (any
//!   codec, bounded memory) that checks their framing as Kafka's validator does.
//! - [`legacy_produce`]: Produce v0-v2, advertised only so that old clients
//!   keep compressing, and answered with UNSUPPORTED_VERSION.
//! - [`ErrorCode`]: Kafka's error codes.
//!
//! Message bodies themselves are the `kafka-protocol` crate's generated types.

pub mod api_table;
pub mod batch;
pub mod chunked;
pub mod frame;
pub mod header;
pub mod legacy_produce;
pub mod records;

/// Kafka's error codes, with their numeric values and retriability.
pub use kafka_protocol::ResponseError as ErrorCode;

/// The numeric value of an optional error: 0 (NONE) when there is none.
pub fn error_code(error: Option<ErrorCode>) -> i16 {
    error.map_or(0, |e| e.code())
}
