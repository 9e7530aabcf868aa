//! Partition replicas on this broker, kept in step with the metadata image.
//!
//! [`ReplicaManager::reconcile`] opens a log for every partition the image
//! places on this broker, applies config and leadership changes, and deletes
//! the logs of partitions the image no longer has (including a topic that was
//! deleted and re-created under the same name: its id differs). Every
//! append wakes parked fetches through [`ReplicaManager::data_arrived`].

pub mod cleaner_codec;
pub mod partition;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tracing::{info, warn};
use uuid::Uuid;
use weir_controller::{ids, MetadataImage};

use crate::admin::configs::TopicSettings;
use crate::config::BrokerConfig;
pub use partition::{Leadership, Partition};

/// Name of the file in each partition directory that records its topic id,
/// in Kafka's format.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// All partition replicas hosted by this broker.
pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    log_dir: PathBuf,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    reconcile_lock: Mutex<()>,
    /// Notified after every append, so parked fetches re-check.
    pub data_arrived: Notify,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl ReplicaManager {
    /// A manager for the first log dir of `config`.
    pub fn new(config: Arc<BrokerConfig>) -> std::io::Result<ReplicaManager> {
        let log_dir = config.log_dirs[0].clone();
        std::fs::create_dir_all(&log_dir)?;
        Ok(ReplicaManager {
            config,
            log_dir,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
            data_arrived: Notify::new(),
        })
    }

    /// The log dir partitions live in.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// A hosted partition.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&(topic.to_string(), partition)).cloned()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Brings the hosted partitions in line with `image`.
    pub fn reconcile(&self, image: &MetadataImage) {
        let _serialized = self.reconcile_lock.lock().unwrap_or_else(|p| p.into_inner());
        let node_id = self.config.node_id;
        let now = now_ms();
        let mut wanted: HashMap<(String, i32), Uuid> = HashMap::new();
        for topic in image.topics.values() {
            let settings = TopicSettings::for_topic(&self.config, image, &topic.name);
            for (index, registration) in topic.partitions.iter().enumerate() {
                if !registration.replicas.contains(&node_id) {
                    continue;
                }
                let key = (topic.name.clone(), index as i32);
                let leadership =
                    Leadership { leader_epoch: registration.leader_epoch, isr_size: registration.isr.len() };
                wanted.insert(key.clone(), topic.id);
                match self.get(&topic.name, index as i32) {
                    Some(existing) if existing.topic_id == topic.id => {
                        existing.update(settings.clone(), leadership);
                    }
                    existing => {
                        if let Some(stale) = existing {
                            self.remove_and_delete(&key, stale.topic_id);
                        }
                        let dir = self.log_dir.join(format!("{}-{}", topic.name, index));
                        let opened = prepare_partition_dir(&dir, topic.id).map_err(|e| e.to_string()).and_then(|()| {
                            Partition::open(
                                &dir,
                                &topic.name,
                                topic.id,
                                index as i32,
                                settings.clone(),
                                leadership,
                                now,
                            )
                            .map_err(|e| e.to_string())
                        });
                        match opened {
                            Ok(partition) => {
                                self.partitions
                                    .write()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(key, Arc::new(partition));
                            }
                            Err(e) => {
                                warn!(topic = %topic.name, partition = index, error = %e, "could not open partition log")
                            }
                        }
                    }
                }
            }
        }
        let stale: Vec<((String, i32), Uuid)> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(key, p)| wanted.get(*key) != Some(&p.topic_id))
            .map(|(k, p)| (k.clone(), p.topic_id))
            .collect();
        for (key, topic_id) in stale {
            self.remove_and_delete(&key, topic_id);
        }
    }

    fn remove_and_delete(&self, key: &(String, i32), topic_id: Uuid) {
        let removed = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(current) if current.topic_id == topic_id => map.remove(key),
                _ => None,
            }
        };
        let Some(removed) = removed else { return };
        match removed.delete() {
            Ok(()) => info!(partition = %removed.name(), "deleted partition log"),
            Err(e) => warn!(partition = %removed.name(), error = %e, "could not delete partition log"),
        }
    }

    /// Removes partition directories that the image no longer places here
    /// (a topic deleted while this broker was down, or a crash in the middle
    /// of a deletion). Called once at start, after the first reconcile.
    pub fn delete_orphan_dirs(&self) {
        let wanted: HashMap<(String, i32), Uuid> =
            self.all().iter().map(|p| ((p.topic.clone(), p.index), p.topic_id)).collect();
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some((topic, index)) = name.rsplit_once('-') else { continue };
            let Ok(index) = index.parse::<i32>() else { continue };
            if topic.starts_with("__cluster_metadata") || !path.join(PARTITION_METADATA_FILE).exists() {
                continue;
            }
            if !wanted.contains_key(&(topic.to_string(), index)) {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => info!(dir = %path.display(), "removed the directory of a deleted partition"),
                    Err(e) => {
                        warn!(dir = %path.display(), error = %e, "could not remove an orphan partition directory")
                    }
                }
            }
        }
    }

    /// Retention, log compaction and time-based flushes for every partition.
    pub fn housekeeping(&self, retention_due: bool, cleaning_due: bool) {
        let now = now_ms();
        for partition in self.all() {
            partition.housekeeping(now, retention_due, cleaning_due);
        }
    }

    /// Closes every log cleanly (flush, producer snapshot, clean-shutdown marker).
    pub fn shutdown(&self) {
        let drained: Vec<Arc<Partition>> =
            self.partitions.write().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, p)| p).collect();
        for partition in drained {
            let name = partition.name();
            match Arc::try_unwrap(partition) {
                Ok(p) => {
                    if let Err(e) = p.close() {
                        warn!(partition = %name, error = %e, "unclean close");
                    }
                }
                Err(still_shared) => {
                    warn!(partition = %name, "still in use at shutdown; flushed, and recovered at the next start");
                    if let Err(e) = still_shared.flush() {
                        warn!(partition = %name, error = %e, "flush at shutdown failed");
                    }
                }
            }
        }
    }
}

/// Prepares a partition directory and writes Kafka's `partition.metadata`
/// (`version: 0`, `topic_id: <id>`), so the directory can be matched to its
/// topic id after a restart. A directory left by an earlier topic of the same
/// name (another id) is removed first: its data is not this topic's.
fn prepare_partition_dir(dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let content = format!("version: 0\ntopic_id: {}\n", ids::kafka_uuid_string(topic_id));
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == content => return Ok(()),
        Ok(_) => {
            info!(dir = %dir.display(), "removing the log of an earlier topic with the same name");
            std::fs::remove_dir_all(dir)?;
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, content)
}
