//! Typed errors returned by the storage layer.

use std::io;

/// Everything that can go wrong in the segment store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O call failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing (usually includes a file path).
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Data on disk is not what the store wrote (and could not be repaired automatically).
    #[error("corruption: {0}")]
    Corruption(String),
    /// A read or DeleteRecords asked for an offset outside `[log_start, log_end]`.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The log start offset at the time.
        log_start: i64,
        /// The log end offset at the time.
        log_end: i64,
    },
    /// An earlier I/O error failed the log: it takes no more operations until it is opened again.
    #[error("the log failed earlier and takes no more operations: {0}")]
    LogFailed(String),
    /// The records handed to `append` were malformed or not contiguous with the log.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Attaches a context string to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Converts an I/O error into [`StorageError::Io`] with a lazily built context.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| StorageError::Io { context: f(), source })
    }
}
