//! Weir's segment store: Kafka-layout partition logs.
//!
//! Synchronous, single writer per partition; knows nothing of the network. The broker hands in
//! record batches whose offsets it already assigned and reads whole batches back.
//!
//! # On-disk layout
//!
//! A partition is a directory (conventionally `<topic>-<partition>`) holding:
//!
//! * `<base>.log` — segments named by their base offset (20 digits, zero padded) holding Kafka v2
//!   record batches exactly as on the wire (see [`batch`]);
//! * `<base>.index` — sparse offset index, 8-byte entries: relative offset `u32` + file position `u32`;
//! * `<base>.timeindex` — sparse time index, 12-byte entries: timestamp `i64` + relative offset `u32`;
//! * `leader-epoch-checkpoint` — Kafka's text checkpoint: `0`, entry count, then `epoch startOffset` lines;
//! * `<offset>.snapshot` — producer-state snapshots (own binary format with a CRC32C);
//! * `log-start-offset` — text, present only when the log start offset is above the first segment's base;
//! * `clean-shutdown` — empty marker written by [`Log::close`] and removed by [`Log::open`];
//! * `cleaner-offset-checkpoint` — text, the offset below which a compacted log was cleaned
//!   (`<base>.log.cleaned` files are cleanings in progress; see [`Log::clean`]).
//!
//! The recovery point (offsets below it are fsynced) is not stored in the partition directory: the
//! caller keeps every log's in Kafka's per-log-dir `recovery-point-offset-checkpoint` (see
//! [`checkpoint`]), reads it with [`Log::recovery_point`] and hands it back at
//! [`Log::open_with_recovery_point`].
//!
//! All integers in binary files are big-endian. Small metadata files are replaced atomically
//! (temporary file, fsync, rename, directory fsync).
//!
//! # Invariants
//!
//! * Offsets increase strictly across batches and segments; a segment holds offsets in
//!   `[base, next base)` with `last - base <= i32::MAX`.
//! * Only the last (active) segment is appended to; segments are deleted only whole, oldest first,
//!   except that compaction ([`Log::clean`]) rewrites non-active segments (offsets never change, gaps
//!   appear) and deletes those it leaves empty.
//! * Every file operation goes through [`file_system::fs`] (tests inject faults there). After the
//!   first I/O error a [`Log`] is failed and takes no more operations ([`Log::failure`]); its
//!   directory is recovered by the next open.
//! * After any crash, the next open truncates the log at the first invalid byte and rebuilds indexes,
//!   so a prefix of what was appended survives and everything below the recovery point survives.

#![warn(missing_docs)]

pub mod batch;
pub mod checkpoint;
mod compaction;
mod config;
mod epoch;
mod error;
mod failure;
pub mod file_system;
mod fsutil;
mod index;
mod log;
mod producer_state;
mod recovery;
mod retention;
mod segment;

pub use checkpoint::{read_offset_checkpoint, write_offset_checkpoint, OffsetMap, RECOVERY_POINT_CHECKPOINT_FILE};
pub use compaction::{
    remove_leftovers, CleanOptions, CleanStats, NoCompression, RecordCodec, CLEANER_CHECKPOINT_FILE,
    DELETE_HORIZON_FLAG,
};
pub use config::LogConfig;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, Log, PendingFlush, RecoveryStats, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE};
pub use producer_state::SequenceCheck;

#[cfg(test)]
mod log_tests;
