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
/// A `None` default is Kafka's null (DescribeConfigs then has no value).
const BROKER_PROPERTIES: &[(&str, Option<&str>, ConfigType, &str)] = &[
    ("node.id", Some("-1"), ConfigType::Int, "The node id of this server."),
    ("process.roles", Some(""), ConfigType::List, "The roles this process plays: broker, controller, or both."),
    ("listeners", Some("PLAINTEXT://:9092"), ConfigType::String, "Listener URIs to bind."),
    ("advertised.listeners", Some(""), ConfigType::String, "Listener URIs clients are told to use."),
    ("log.dirs", Some("/tmp/kafka-logs"), ConfigType::String, "Directories holding the partition logs."),
    ("metadata.log.dir", Some(""), ConfigType::String, "Directory holding the metadata log."),
    ("num.partitions", Some("1"), ConfigType::Int, "Default partition count of new topics."),
    ("default.replication.factor", Some("1"), ConfigType::Int, "Default replication factor of new topics."),
    ("auto.create.topics.enable", Some("true"), ConfigType::Boolean, "Create unknown topics on Metadata requests."),
    ("socket.request.max.bytes", Some("104857600"), ConfigType::Int, "Largest request frame accepted."),
    (
        "queued.max.request.bytes",
        Some("-1"),
        ConfigType::Long,
        "Memory for requests read and not yet handled; sockets are not read while it is used up (0 or less: no bound).",
    ),
    ("max.connections", Some("2147483647"), ConfigType::Int, "Connections the broker accepts at a time."),
    ("max.connections.per.ip", Some("2147483647"), ConfigType::Int, "Connections the broker accepts from one address."),
    (
        "max.connections.per.ip.overrides",
        Some(""),
        ConfigType::String,
        "Per-address or per-host limits overriding max.connections.per.ip (host:count, comma-separated).",
    ),
    ("fetch.max.bytes", Some("57671680"), ConfigType::Int, "The most record data one Fetch response carries."),
    ("log.retention.check.interval.ms", Some("300000"), ConfigType::Long, "How often retention is enforced."),
    (
        "log.flush.scheduler.interval.ms",
        Some("9223372036854775807"),
        ConfigType::Long,
        "How often flush.ms is checked.",
    ),
    (
        "log.flush.offset.checkpoint.interval.ms",
        Some("60000"),
        ConfigType::Int,
        "How often the last flush point is checkpointed as the log recovery point.",
    ),
    (
        "broker.rack",
        None,
        ConfigType::String,
        "Rack of the broker, for rack-aware replica placement and follower fetching.",
    ),
    (
        "replica.selector.class",
        None,
        ConfigType::String,
        "The replica selector that picks the replica a consumer fetches from (KIP-392).",
    ),
    ("num.replica.fetchers", Some("1"), ConfigType::Int, "Fetcher tasks per source broker."),
    (
        "replica.lag.time.max.ms",
        Some("30000"),
        ConfigType::Long,
        "An in-sync follower that has not caught up for this long leaves the ISR.",
    ),
    ("replica.fetch.max.bytes", Some("1048576"), ConfigType::Int, "Bytes per partition of a replica fetch."),
    ("replica.fetch.wait.max.ms", Some("500"), ConfigType::Int, "How long a replica fetch waits for data."),
    ("auto.leader.rebalance.enable", Some("true"), ConfigType::Boolean, "Move leadership back to preferred replicas."),
    (
        "leader.imbalance.check.interval.seconds",
        Some("300"),
        ConfigType::Long,
        "How often the controller checks for partitions not led by their preferred replica.",
    ),
    (
        "max.request.partition.size.limit",
        Some("2000"),
        ConfigType::Int,
        "The most partitions one DescribeTopicPartitions answer carries.",
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
                value: set.cloned().or_else(|| default.map(str::to_string)),
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
