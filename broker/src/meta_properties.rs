//! `meta.properties`: the identity of each data directory, as Kafka keeps it
//! (`version=1`, `cluster.id`, `node.id`, `directory.id`, Java properties).
//!
//! At start every log dir and the metadata dir is checked before anything is
//! opened: a directory written by another node (its `node.id` differs) or
//! belonging to another cluster (its `cluster.id` differs from the metadata
//! quorum's) stops the broker with Kafka's own messages, so data is never
//! mixed between nodes or clusters. A directory without the file is new (or
//! written by an older Weir) and gets one, written atomically, once the
//! cluster id is known. Kafka needs `kafka-storage.sh format` first; Weir
//! formats a directory on first use, as `weir --dev` and `make run` expect.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The file name, as Kafka names it.
pub const META_PROPERTIES: &str = "meta.properties";

/// What one directory's `meta.properties` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// The cluster the directory belongs to.
    pub cluster_id: String,
    /// The node that wrote it.
    pub node_id: i32,
    /// The directory's own id (Kafka's `directory.id`).
    pub directory_id: String,
}

/// Reads `dir/meta.properties`: `Ok(None)` when the file does not exist.
pub fn read(dir: &Path) -> anyhow::Result<Option<MetaProperties>> {
    let path = dir.join(META_PROPERTIES);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let properties: BTreeMap<&str, &str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| line.split_once(['=', ':']).map(|(k, v)| (k.trim(), v.trim())))
        .collect();
    let field = |key: &str| {
        properties.get(key).copied().with_context(|| format!("Unable to parse {}: no {key}", path.display()))
    };
    if field("version")? != "1" {
        bail!("Unable to parse {}: unsupported version {}", path.display(), field("version")?);
    }
    let node_id = field("node.id")?
        .parse()
        .with_context(|| format!("Unable to parse {}: node.id is not a number", path.display()))?;
    Ok(Some(MetaProperties {
        cluster_id: field("cluster.id")?.to_string(),
        node_id,
        directory_id: properties.get("directory.id").copied().unwrap_or_default().to_string(),
    }))
}

/// Refuses a directory whose `meta.properties` names another node.
pub fn check_node_id(dir: &Path, node_id: i32) -> anyhow::Result<Option<MetaProperties>> {
    let found = read(dir)?;
    if let Some(stored) = &found {
        if stored.node_id != node_id {
            bail!(
                "Configured node.id `{node_id}` doesn't match stored node.id `{}' in {}. If you moved your data, \
                 make sure your configured node.id matches. If you intend to create a new broker, you should \
                 remove all data in your data directories (log.dirs).",
                stored.node_id,
                dir.join(META_PROPERTIES).display()
            );
        }
    }
    Ok(found)
}

/// Checks every directory against this node and the quorum's cluster id, and
/// writes `meta.properties` where it is missing.
pub fn ensure(dirs: &[PathBuf], node_id: i32, cluster_id: &str) -> anyhow::Result<()> {
    for dir in dirs {
        match check_node_id(dir, node_id)? {
            Some(stored) if stored.cluster_id != cluster_id => bail!(
                "Invalid cluster.id in: {}. Expected {cluster_id}, but read {}",
                dir.join(META_PROPERTIES).display(),
                stored.cluster_id
            ),
            Some(_) => {}
            None => write(dir, node_id, cluster_id)?,
        }
    }
    Ok(())
}

fn write(dir: &Path, node_id: i32, cluster_id: &str) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let directory_id = weir_controller::kafka_uuid_string(weir_controller::random_kafka_uuid());
    let text = format!(
        "#\n#Written by Weir\ncluster.id={cluster_id}\ndirectory.id={directory_id}\nnode.id={node_id}\nversion=1\n"
    );
    let path = dir.join(META_PROPERTIES);
    let temporary = dir.join(format!("{META_PROPERTIES}.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        fs::File::open(dir)?.sync_all()
    })();
    written.with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), cluster_id, node_id, "wrote meta.properties");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_then_checked_for_node_and_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().join("a"), dir.path().join("b")];
        ensure(&dirs, 1, "Y2x1c3Rlci1pZC0xMjM0NQ").unwrap();
        let first = read(&dirs[0]).unwrap().unwrap();
        assert_eq!((first.node_id, first.cluster_id.as_str()), (1, "Y2x1c3Rlci1pZC0xMjM0NQ"));
        assert_eq!(first.directory_id.len(), 22);
        assert_ne!(read(&dirs[1]).unwrap().unwrap().directory_id, first.directory_id);
        // Idempotent: nothing is rewritten.
        ensure(&dirs, 1, "Y2x1c3Rlci1pZC0xMjM0NQ").unwrap();
        assert_eq!(read(&dirs[0]).unwrap().unwrap(), first);

        let err = ensure(&dirs, 2, "Y2x1c3Rlci1pZC0xMjM0NQ").unwrap_err().to_string();
        assert!(err.contains("Configured node.id `2` doesn't match stored node.id `1'"), "{err}");
        let err = ensure(&dirs, 1, "b3RoZXItY2x1c3Rlci0xMjM").unwrap_err().to_string();
        assert!(
            err.starts_with("Invalid cluster.id in: ") && err.contains("Expected b3RoZXItY2x1c3Rlci0xMjM"),
            "{err}"
        );
    }

    #[test]
    fn kafkas_own_file_is_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(META_PROPERTIES);
        fs::write(
            &path,
            "#\n#Thu Dec 05 07:00:00 UTC 2026\nnode.id=3\ndirectory.id=J8aAPcfLQt2bqs1JT_rMgQ\nversion=1\n\
             cluster.id=MkU3OEVBNTcwNTJENDM2Qk\n",
        )
        .unwrap();
        let stored = read(dir.path()).unwrap().unwrap();
        assert_eq!((stored.node_id, stored.cluster_id.as_str()), (3, "MkU3OEVBNTcwNTJENDM2Qk"));
        for garbage in
            ["", "version=0\nnode.id=1\ncluster.id=x\n", "version=1\nnode.id=one\ncluster.id=x\n", "\u{1}\u{2}"]
        {
            fs::write(&path, garbage).unwrap();
            assert!(read(dir.path()).is_err(), "{garbage:?}");
        }
    }
}
