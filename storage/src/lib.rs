//! Weir's segment store: Kafka-layout partition logs.
//!
//! Synchronous, single writer per partition (see "Concurrency" below); knows nothing of the network. The broker hands in
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

//!
//! # Concurrency, and why this design
//!
//! The store is synchronous: every call may block on the disk, so the broker makes them from
//! tokio's blocking pool, never from an async runtime worker (a worker blocked on a slow disk would
//! stall every connection it serves). Each [`Log`] has one writer at a time (the caller's lock):
//! appends, rolls, retention and truncation take `&mut Log`. Two kinds of work do not wait for it:
//!
//! * **Reads of sealed segments** ([`read`]): sealed segments are shared (`Arc`) and immutable
//!   while the log holds them, so a reader keeps a [`SealedSegments`] view and reads it without a
//!   lock, as Kafka's fetch path reads segments without the log's lock. Retention and cleaning
//!   unlink files instead of shortening them under a reader; a truncation reopens a shared segment
//!   before writing to it. Reads of the active segment take the lock, since appends change it.
//! * **Log cleaning** ([`Log::plan_clean`], [`CleanPlan::run`], [`Log::finish_clean`]): planned
//!   and swapped in under the lock, run (the long part: the key map and the cleaned copies)
//!   without it, as Kafka's cleaner holds the log's lock only to replace segments.
//!
//! Alternatives considered: a task per partition owning its log (Redpanda's shape) would
//! serialise reads behind appends again unless reads bypassed it the same way, and costs a
//! message round trip per operation; an I/O thread pool of our own would duplicate tokio's
//! blocking pool. Sharing immutable sealed segments is the part that makes reads independent of
//! the writer; where the synchronous calls run is the caller's choice.

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
pub mod read;
mod recovery;
mod retention;
mod segment;

pub use checkpoint::{read_offset_checkpoint, write_offset_checkpoint, OffsetMap, RECOVERY_POINT_CHECKPOINT_FILE};
pub use compaction::{
    remove_leftovers, CleanOptions, CleanPlan, CleanRun, CleanStats, NoCompression, RecordCodec,
    CLEANER_CHECKPOINT_FILE, DELETE_HORIZON_FLAG,
};
pub use config::LogConfig;
pub use epoch::end_offset_for_epoch;
pub use error::{Result, StorageError};
pub use log::{AppendInfo, Log, PendingFlush, RecoveryStats, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE};
pub use producer_state::SequenceCheck;
pub use read::SealedSegments;

#[cfg(test)]
mod log_tests;
