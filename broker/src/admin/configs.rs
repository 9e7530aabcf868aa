//! Effective topic configuration: what each topic config resolves to, and
//! where the value comes from, as DescribeConfigs reports it.
//!
//! Resolution order is Kafka's: a topic override (DYNAMIC_TOPIC_CONFIG),
//! else the broker property that is its synonym if the operator set it
//! (STATIC_BROKER_CONFIG), else Kafka's default (DEFAULT_CONFIG).

use std::collections::BTreeMap;

use weir_controller::topic_config::{topic_config_defs, ConfigType, TopicConfigDef};
use weir_controller::MetadataImage;
use weir_storage::LogConfig;

use crate::config::BrokerConfig;

/// DescribeConfigs `config_source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic = 1,
    /// Set in the broker's static configuration.
    StaticBroker = 4,
    /// Kafka's default.
    Default = 5,
}

/// One value a config could take, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The name at that level (topic config name or broker property).
    pub name: String,
    /// The value at that level.
    pub value: String,
    /// The level.
    pub source: ConfigSource,
}

/// A topic config as it is in force, with its synonyms from most to least specific.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The catalog entry.
    pub def: &'static TopicConfigDef,
    /// Effective value.
    pub value: String,
    /// Where the effective value comes from.
    pub source: ConfigSource,
    /// Every level that has a value, most specific first.
    pub synonyms: Vec<ConfigSynonym>,
}

/// Resolves every topic config in the catalog for `overrides` (the topic's
/// explicitly set configs).
pub fn resolve_topic_configs(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<ResolvedConfig> {
    topic_config_defs()
        .iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(ConfigSynonym {
                    name: def.name.to_string(),
                    value: v.clone(),
                    source: ConfigSource::DynamicTopic,
                });
            }
            if let Some((name, value)) = def.broker_synonym.and_then(|s| broker.broker_synonym_value(s)) {
                synonyms.push(ConfigSynonym { name, value, source: ConfigSource::StaticBroker });
            }
            synonyms.push(ConfigSynonym {
                name: def.broker_synonym.unwrap_or(def.name).to_string(),
                value: def.default.to_string(),
                source: ConfigSource::Default,
            });
            let first = &synonyms[0];
            ResolvedConfig { def, value: first.value.clone(), source: first.source, synonyms }
        })
        .collect()
}

/// A config as DescribeConfigs reports it, for topics and brokers alike.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    /// Config name.
    pub name: String,
    /// Effective value (None for a property with no value, such as an unset optional one).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it can be altered at run time.
    pub read_only: bool,
    /// Kafka's config type.
    pub config_type: ConfigType,
    /// Documentation line.
    pub doc: &'static str,
    /// Every level with a value, most specific first.
    pub synonyms: Vec<ConfigSynonym>,
}

impl From<ResolvedConfig> for DescribedConfig {
    fn from(r: ResolvedConfig) -> Self {
        DescribedConfig {
            name: r.def.name.to_string(),
            value: Some(r.value),
            source: r.source,
            read_only: false,
            config_type: r.def.config_type,
            doc: r.def.doc,
            synonyms: r.synonyms,
        }
    }
}

/// Broker properties Weir reads that are not topic-config synonyms:
/// (name, Kafka default, type, doc).
const BROKER_PROPERTIES: &[(&str, &str, ConfigType, &str)] = &[
    ("node.id", "-1", ConfigType::Int, "The node id of this server."),
    ("process.roles", "", ConfigType::List, "The roles this process plays: broker, controller, or both."),
    ("listeners", "PLAINTEXT://:9092", ConfigType::String, "Listener URIs to bind."),
    ("advertised.listeners", "", ConfigType::String, "Listener URIs clients are told to use."),
    ("log.dirs", "/tmp/kafka-logs", ConfigType::String, "Directories holding the partition logs."),
    ("metadata.log.dir", "", ConfigType::String, "Directory holding the metadata log."),
    ("num.partitions", "1", ConfigType::Int, "Default partition count of new topics."),
    ("default.replication.factor", "1", ConfigType::Int, "Default replication factor of new topics."),
    ("auto.create.topics.enable", "true", ConfigType::Boolean, "Create unknown topics on Metadata requests."),
    ("socket.request.max.bytes", "104857600", ConfigType::Int, "Largest request frame accepted."),
    (
        "queued.max.request.bytes",
        "-1",
        ConfigType::Long,
        "Memory for requests read and not yet handled; sockets are not read while it is used up (0 or less: no bound).",
    ),
    ("max.connections", "2147483647", ConfigType::Int, "Connections the broker accepts at a time."),
    ("max.connections.per.ip", "2147483647", ConfigType::Int, "Connections the broker accepts from one address."),
    (
        "max.connections.per.ip.overrides",
        "",
        ConfigType::String,
        "Per-address or per-host limits overriding max.connections.per.ip (host:count, comma-separated).",
    ),
    ("fetch.max.bytes", "57671680", ConfigType::Int, "The most record data one Fetch response carries."),
    ("log.retention.check.interval.ms", "300000", ConfigType::Long, "How often retention is enforced."),
    ("log.flush.scheduler.interval.ms", "9223372036854775807", ConfigType::Long, "How often flush.ms is checked."),
    (
        "log.flush.offset.checkpoint.interval.ms",
        "60000",
        ConfigType::Int,
        "How often the last flush point is checkpointed as the log recovery point.",
    ),
];

/// The broker's configuration as DescribeConfigs lists it: the properties
/// above and the broker synonyms of every topic config. All are static
/// (read-only) until dynamic broker configs exist.
pub fn broker_configs(broker: &BrokerConfig) -> Vec<DescribedConfig> {
    let mut out: Vec<DescribedConfig> = BROKER_PROPERTIES
        .iter()
        .map(|(name, default, config_type, doc)| {
            let set = broker.raw.get(*name);
            DescribedConfig {
                name: name.to_string(),
                value: Some(set.cloned().unwrap_or_else(|| default.to_string())),
                source: if set.is_some() { ConfigSource::StaticBroker } else { ConfigSource::Default },
                read_only: true,
                config_type: *config_type,
                doc,
                synonyms: Vec::new(),
            }
        })
        .collect();
    for def in topic_config_defs() {
        let Some(synonym) = def.broker_synonym else { continue };
        let (value, source) = match broker.raw.get(synonym) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (def.default.to_string(), ConfigSource::Default),
        };
        out.push(DescribedConfig {
            name: synonym.to_string(),
            value: Some(value),
            source,
            read_only: true,
            config_type: def.config_type,
            doc: def.doc,
            synonyms: Vec::new(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The settings a partition enforces, parsed from a topic's effective configs.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    /// The segment store's share of the configs.
    pub log: LogConfig,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `cleanup.policy` contains `compact`: records need keys, and the log cleaner compacts it.
    pub compact: bool,
    /// `cleanup.policy` contains `delete`: time and size retention apply.
    pub delete: bool,
    /// `delete.retention.ms`: how long a tombstone survives after its first cleaning.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean when the dirty share of the log is above it.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records newer than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
}

impl TopicSettings {
    /// Parses the effective configs of a topic. Values were validated when
    /// set, so an unparsable one falls back to Kafka's default.
    pub fn from_resolved(resolved: &[ResolvedConfig]) -> TopicSettings {
        let values: BTreeMap<&str, &str> = resolved.iter().map(|r| (r.def.name, r.value.as_str())).collect();
        let int =
            |name: &str, default: i64| values.get(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default);
        let policy = |p: &str| values.get("cleanup.policy").is_some_and(|v| v.split(',').any(|x| x.trim() == p));
        let defaults = LogConfig::default();
        let log = LogConfig {
            segment_bytes: int("segment.bytes", defaults.segment_bytes as i64).max(1) as u64,
            segment_ms: int("segment.ms", defaults.segment_ms),
            segment_index_bytes: int("segment.index.bytes", defaults.segment_index_bytes as i64).max(8) as u64,
            index_interval_bytes: int("index.interval.bytes", defaults.index_interval_bytes as i64).max(0) as u64,
            retention_ms: int("retention.ms", defaults.retention_ms),
            retention_bytes: int("retention.bytes", defaults.retention_bytes),
            flush_messages: int("flush.messages", defaults.flush_messages),
            flush_ms: int("flush.ms", defaults.flush_ms),
        };
        TopicSettings {
            log,
            max_message_bytes: int("max.message.bytes", 1_048_588).max(0) as usize,
            log_append_time: values.get("message.timestamp.type").is_some_and(|v| *v == "LogAppendTime"),
            compact: policy("compact"),
            delete: policy("delete"),
            delete_retention_ms: int("delete.retention.ms", 86_400_000),
            min_cleanable_dirty_ratio: values
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
            min_compaction_lag_ms: int("min.compaction.lag.ms", 0).max(0),
            min_insync_replicas: int("min.insync.replicas", 1) as i32,
            timestamp_before_max_ms: int("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: int("message.timestamp.after.max.ms", i64::MAX),
        }
    }

    /// The settings of a topic in `image`.
    pub fn for_topic(broker: &BrokerConfig, image: &MetadataImage, topic: &str) -> TopicSettings {
        TopicSettings::from_resolved(&resolve_topic_configs(broker, &image.topic_config_overrides(topic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_beats_broker_beats_default() {
        let mut raw = BTreeMap::new();
        raw.insert("log.retention.hours".to_string(), "1".to_string());
        raw.insert("log.segment.bytes".to_string(), "2048".to_string());
        let broker = BrokerConfig::from_raw(raw).unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert("segment.bytes".to_string(), "4096".to_string());
        let resolved = resolve_topic_configs(&broker, &overrides);
        let get = |n: &str| resolved.iter().find(|r| r.def.name == n).unwrap().clone();
        let seg = get("segment.bytes");
        assert_eq!((seg.value.as_str(), seg.source), ("4096", ConfigSource::DynamicTopic));
        assert_eq!(seg.synonyms.len(), 3);
        let ret = get("retention.ms");
        assert_eq!((ret.value.as_str(), ret.source), ("3600000", ConfigSource::StaticBroker));
        let policy = get("cleanup.policy");
        assert_eq!((policy.value.as_str(), policy.source), ("delete", ConfigSource::Default));
        let settings = TopicSettings::from_resolved(&resolved);
        assert_eq!(settings.log.segment_bytes, 4096);
        assert_eq!(settings.log.retention_ms, 3_600_000);
        assert!(!settings.compact);
        assert!(settings.delete);
        assert_eq!(settings.delete_retention_ms, 86_400_000);
        assert_eq!(settings.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(settings.min_compaction_lag_ms, 0);
        overrides.insert("cleanup.policy".to_string(), "compact, delete".to_string());
        overrides.insert("min.cleanable.dirty.ratio".to_string(), "0.1".to_string());
        overrides.insert("delete.retention.ms".to_string(), "5".to_string());
        let settings = TopicSettings::from_resolved(&resolve_topic_configs(&broker, &overrides));
        assert!(settings.compact && settings.delete);
        assert_eq!((settings.min_cleanable_dirty_ratio, settings.delete_retention_ms), (0.1, 5));
        assert_eq!(settings.max_message_bytes, 1_048_588);
    }
}
