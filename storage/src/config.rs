//! Per-partition configuration, with Kafka topic-config semantics and defaults.

/// Topic-level settings that govern one partition log (same meaning and defaults as Kafka's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment when the active one would grow past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is older than this.
    pub segment_ms: i64,
    /// `segment.index.bytes`: maximum size of an index file; the segment rolls when an index is full.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two sparse offset-index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: delete segments whose largest timestamp is older than this; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the partition is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync once this many offsets are not yet flushed.
    pub flush_messages: i64,
    /// `flush.ms`: fsync (via [`crate::Log::flush_if_due`]) when the last flush is older than this.
    pub flush_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            segment_index_bytes: 10_485_760,
            index_interval_bytes: 4096,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        }
    }
}
