//! Kafka's per-log-dir offset checkpoint files, such as `recovery-point-offset-checkpoint`.
//!
//! Format (text, as Kafka's `OffsetCheckpointFile`): a version line `0`, a line with the entry
//! count, then one `<topic> <partition> <offset>` line per partition. The file is replaced
//! atomically (temporary file, fsync, rename, directory fsync), so a crash leaves the old or the
//! new contents, never a mix.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError};
use crate::file_system::fs;
use crate::fsutil::write_atomic;

/// Name of the file at the root of a log dir holding every log's recovery point.
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";

const VERSION: &str = "0";

/// Per-partition offsets keyed by `(topic, partition)`.
pub type OffsetMap = HashMap<(String, i32), i64>;

/// Reads the checkpoint `dir/name`: `Ok(None)` if it does not exist, `Corruption` if it is not a
/// well-formed version 0 checkpoint (the caller then treats every offset as unknown).
pub fn read_offset_checkpoint(dir: &Path, name: &str) -> Result<Option<OffsetMap>> {
    let path = dir.join(name);
    let bytes = match fs().read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
    };
    parse(&bytes).map(Some).map_err(|reason| StorageError::Corruption(format!("{}: {reason}", path.display())))
}

fn parse(bytes: &[u8]) -> std::result::Result<OffsetMap, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        Some(v) if v.trim() == VERSION => {}
        Some(v) => return Err(format!("unsupported version line {v:?}")),
        None => return Err("empty file".into()),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| "missing or malformed entry count".to_string())?;
    let mut out = HashMap::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let entry = match fields[..] {
            [topic, partition, offset] if !topic.is_empty() => {
                partition.parse::<i32>().ok().zip(offset.parse::<i64>().ok()).map(|(p, o)| (topic, p, o))
            }
            _ => None,
        };
        let Some((topic, partition, offset)) = entry.filter(|&(_, p, o)| p >= 0 && o >= 0) else {
            return Err(format!("malformed entry line {}: {line:?}", i + 3));
        };
        out.insert((topic.to_string(), partition), offset);
    }
    if out.len() != count {
        return Err(format!("expected {count} entries, found {}", out.len()));
    }
    Ok(out)
}

/// Atomically replaces the checkpoint `dir/name` with `entries` (written sorted, for stable files).
pub fn write_offset_checkpoint(dir: &Path, name: &str, entries: &OffsetMap) -> Result<()> {
    let mut sorted: Vec<(&(String, i32), &i64)> = entries.iter().collect();
    sorted.sort();
    let mut text = format!("{VERSION}\n{}\n", sorted.len());
    for ((topic, partition), offset) in sorted {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomic(dir, name, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn round_trip_and_format() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap().is_none());
        let mut m = OffsetMap::new();
        m.insert(("b".into(), 1), 7);
        m.insert(("a.x_y-z".into(), 0), 123);
        write_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE, &m).unwrap();
        let text = fs::read_to_string(d.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\na.x_y-z 0 123\nb 1 7\n");
        assert_eq!(read_offset_checkpoint(d.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap(), Some(m));
        assert!(!d.path().join(format!("{RECOVERY_POINT_CHECKPOINT_FILE}.tmp")).exists());
    }

    #[test]
    fn garbled_files_are_corruption() {
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n",
            b"0\n2\nt 0 5\n",
            b"0\n1\nt 0\n",
            b"0\n1\nt x 5\n",
            b"0\n1\nt 0 -5\n",
            b"0\n1\nt 0 5 9\n",
            b"\xff\xfe",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(b"0\n0\n").unwrap().len(), 0);
    }
}
