//! The catalog of Kafka topic configs (Kafka 4.0's `LogConfig`, plus
//! `message.timestamp.difference.max.ms` from 3.9 so older tooling keeps
//! working) and their validation.
//!
//! Each entry gives the name, the DescribeConfigs `ConfigType`, the default
//! (as Kafka prints it), the broker property that supplies the cluster-wide
//! default (the "synonym" DescribeConfigs reports), a one-line doc and the
//! validator. Values are validated as Kafka's `ConfigDef` does: parse by type
//! (trimmed), then range / valid-values checks, with Kafka's error wording
//! ("Invalid value X for configuration N: ..."). All failures are
//! INVALID_CONFIG.

use std::collections::BTreeMap;

use crate::error::ControllerError;

/// Kafka's DescribeConfigs `ConfigType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// `true` / `false` (case-insensitive).
    Boolean = 1,
    /// Free text.
    String = 2,
    /// 32-bit signed integer.
    Int = 3,
    /// 16-bit signed integer.
    Short = 4,
    /// 64-bit signed integer.
    Long = 5,
    /// Double-precision float.
    Double = 6,
    /// Comma-separated list.
    List = 7,
    /// Java class name.
    Class = 8,
    /// Secret text.
    Password = 9,
}

impl ConfigType {
    /// The numeric code used in DescribeConfigs responses.
    pub fn code(self) -> i8 {
        self as i8
    }

    fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// Range or valid-values check applied after parsing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    /// Any value of the right type.
    Any,
    /// Integer at least this.
    AtLeast(i64),
    /// Integer within `[min, max]`.
    Between(i64, i64),
    /// Integer within `[min, max]`, or exactly the given extra value.
    BetweenOr(i64, i64, i64),
    /// Double within `[min, max]`.
    DoubleBetween(f64, f64),
    /// String that must be one of these.
    OneOf(&'static [&'static str]),
    /// List whose every element must be one of these.
    ListOf(&'static [&'static str]),
    /// `*` or a list of `partition:broker` pairs.
    ThrottledReplicas,
}

/// One topic config in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfigDef {
    /// The topic-level config name, e.g. `retention.ms`.
    pub name: &'static str,
    /// Its type.
    pub config_type: ConfigType,
    /// Kafka's default value as text.
    pub default: &'static str,
    /// The broker property supplying the cluster default, if any.
    pub broker_synonym: Option<&'static str>,
    /// One-line description.
    pub doc: &'static str,
    /// Range / valid-values check.
    pub validator: Validator,
}

const MAX_LONG: &str = "9223372036854775807";

const fn def(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    broker_synonym: Option<&'static str>,
    validator: Validator,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef { name, config_type, default, broker_synonym, doc, validator }
}

use ConfigType as T;
use Validator as V;

static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        T::List,
        "delete",
        Some("log.cleanup.policy"),
        V::ListOf(&["compact", "delete"]),
        "Retention policy for old log segments: delete, compact, or both.",
    ),
    def(
        "compression.gzip.level",
        T::Int,
        "-1",
        Some("compression.gzip.level"),
        V::BetweenOr(1, 9, -1),
        "Compression level used when compression.type is gzip.",
    ),
    def(
        "compression.lz4.level",
        T::Int,
        "9",
        Some("compression.lz4.level"),
        V::Between(1, 17),
        "Compression level used when compression.type is lz4.",
    ),
    def(
        "compression.type",
        T::String,
        "producer",
        Some("compression.type"),
        V::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "Final compression of the topic's data; producer keeps the producer's codec.",
    ),
    def(
        "compression.zstd.level",
        T::Int,
        "3",
        Some("compression.zstd.level"),
        V::Between(-131072, 22),
        "Compression level used when compression.type is zstd.",
    ),
    def(
        "delete.retention.ms",
        T::Long,
        "86400000",
        Some("log.cleaner.delete.retention.ms"),
        V::AtLeast(0),
        "How long tombstones are retained on compacted topics.",
    ),
    def(
        "file.delete.delay.ms",
        T::Long,
        "60000",
        Some("log.segment.delete.delay.ms"),
        V::AtLeast(0),
        "Time to wait before deleting a file from the filesystem.",
    ),
    def(
        "flush.messages",
        T::Long,
        MAX_LONG,
        Some("log.flush.interval.messages"),
        V::AtLeast(1),
        "Number of messages written to the log before forcing an fsync.",
    ),
    def(
        "flush.ms",
        T::Long,
        MAX_LONG,
        Some("log.flush.interval.ms"),
        V::AtLeast(0),
        "Time interval after which the log is forced to fsync.",
    ),
    def(
        "follower.replication.throttled.replicas",
        T::List,
        "",
        None,
        V::ThrottledReplicas,
        "Replicas (partition:broker, or *) whose follower-side replication is throttled.",
    ),
    def(
        "index.interval.bytes",
        T::Int,
        "4096",
        Some("log.index.interval.bytes"),
        V::AtLeast(0),
        "Bytes between offset index entries.",
    ),
    def(
        "leader.replication.throttled.replicas",
        T::List,
        "",
        None,
        V::ThrottledReplicas,
        "Replicas (partition:broker, or *) whose leader-side replication is throttled.",
    ),
    def(
        "local.retention.bytes",
        T::Long,
        "-2",
        Some("log.local.retention.bytes"),
        V::AtLeast(-2),
        "Maximum local size before eligible segments are deleted (tiered storage); -2 means retention.bytes.",
    ),
    def(
        "local.retention.ms",
        T::Long,
        "-2",
        Some("log.local.retention.ms"),
        V::AtLeast(-2),
        "Maximum local age before eligible segments are deleted (tiered storage); -2 means retention.ms.",
    ),
    def(
        "max.compaction.lag.ms",
        T::Long,
        MAX_LONG,
        Some("log.cleaner.max.compaction.lag.ms"),
        V::AtLeast(1),
        "Maximum time a message stays ineligible for compaction.",
    ),
    def(
        "max.message.bytes",
        T::Int,
        "1048588",
        Some("message.max.bytes"),
        V::AtLeast(0),
        "Largest record batch size allowed.",
    ),
    def(
        "message.timestamp.after.max.ms",
        T::Long,
        "3600000",
        Some("log.message.timestamp.after.max.ms"),
        V::AtLeast(0),
        "Allowed amount a record timestamp may be ahead of the broker's time.",
    ),
    def(
        "message.timestamp.before.max.ms",
        T::Long,
        MAX_LONG,
        Some("log.message.timestamp.before.max.ms"),
        V::AtLeast(0),
        "Allowed amount a record timestamp may be behind the broker's time.",
    ),
    def(
        "message.timestamp.difference.max.ms",
        T::Long,
        MAX_LONG,
        Some("log.message.timestamp.difference.max.ms"),
        V::AtLeast(0),
        "Deprecated (removed in Kafka 4.0): maximum difference between record and broker timestamps.",
    ),
    def(
        "message.timestamp.type",
        T::String,
        "CreateTime",
        Some("log.message.timestamp.type"),
        V::OneOf(&["CreateTime", "LogAppendTime"]),
        "Whether record timestamps are the producer's CreateTime or the broker's LogAppendTime.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        T::Double,
        "0.5",
        Some("log.cleaner.min.cleanable.ratio"),
        V::DoubleBetween(0.0, 1.0),
        "Minimum dirty/total ratio before the log is eligible for compaction.",
    ),
    def(
        "min.compaction.lag.ms",
        T::Long,
        "0",
        Some("log.cleaner.min.compaction.lag.ms"),
        V::AtLeast(0),
        "Minimum time a message stays uncompacted.",
    ),
    def(
        "min.insync.replicas",
        T::Int,
        "1",
        Some("min.insync.replicas"),
        V::AtLeast(1),
        "Minimum in-sync replicas needed for an acks=all write to succeed.",
    ),
    def(
        "preallocate",
        T::Boolean,
        "false",
        Some("log.preallocate"),
        V::Any,
        "Whether to preallocate the file on disk when creating a new segment.",
    ),
    def(
        "remote.log.copy.disable",
        T::Boolean,
        "false",
        None,
        V::Any,
        "Stops copying segments to remote storage while keeping remote reads (tiered storage).",
    ),
    def(
        "remote.log.delete.on.disable",
        T::Boolean,
        "false",
        None,
        V::Any,
        "Whether remote data is deleted when tiered storage is disabled for the topic.",
    ),
    def("remote.storage.enable", T::Boolean, "false", None, V::Any, "Whether tiered storage is enabled for the topic."),
    def(
        "retention.bytes",
        T::Long,
        "-1",
        Some("log.retention.bytes"),
        V::Any,
        "Maximum partition size before old segments are deleted; -1 means no limit.",
    ),
    def(
        "retention.ms",
        T::Long,
        "604800000",
        Some("log.retention.ms"),
        V::AtLeast(-1),
        "Maximum age of a segment before it is deleted; -1 means no limit.",
    ),
    def(
        "segment.bytes",
        T::Int,
        "1073741824",
        Some("log.segment.bytes"),
        V::AtLeast(14),
        "Segment file size of the log.",
    ),
    def(
        "segment.index.bytes",
        T::Int,
        "10485760",
        Some("log.index.size.max.bytes"),
        V::AtLeast(4),
        "Size of the index that maps offsets to file positions.",
    ),
    def(
        "segment.jitter.ms",
        T::Long,
        "0",
        Some("log.roll.jitter.ms"),
        V::AtLeast(0),
        "Maximum random jitter subtracted from segment.ms to avoid thundering herds of rolls.",
    ),
    def(
        "segment.ms",
        T::Long,
        "604800000",
        Some("log.roll.ms"),
        V::AtLeast(1),
        "Time after which the active segment is rolled even if not full.",
    ),
    def(
        "unclean.leader.election.enable",
        T::Boolean,
        "false",
        Some("unclean.leader.election.enable"),
        V::Any,
        "Whether replicas outside the ISR may be elected leader as a last resort.",
    ),
];

/// The whole catalog, sorted by name.
pub fn topic_config_defs() -> &'static [TopicConfigDef] {
    TOPIC_CONFIGS
}

/// The definition of one topic config, if it exists.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The topic config whose cluster default comes from this broker property.
pub fn topic_config_def_for_broker_property(property: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(property))
}

/// Checks that `name` is a known topic config and `value` is valid for it.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ControllerError> {
    let def = topic_config_def(name)
        .ok_or_else(|| ControllerError::InvalidConfig(format!("Unknown topic config name: {name}")))?;
    def.validate(value)
}

/// Validates a complete set of explicit topic configs, including the
/// cross-config rule `min.compaction.lag.ms <= max.compaction.lag.ms`.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    for (name, value) in configs {
        validate_topic_config(name, value)?;
    }
    let lag =
        |name: &str, default: i64| configs.get(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default);
    let min = lag("min.compaction.lag.ms", 0);
    let max = lag("max.compaction.lag.ms", i64::MAX);
    if min > max {
        return Err(ControllerError::InvalidConfig(format!(
            "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
        )));
    }
    Ok(())
}

/// Splits a LIST value as Kafka does: trimmed, comma separated, empty -> no items.
pub fn split_list(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split(',').map(|s| s.trim().to_string()).collect()
}

impl TopicConfigDef {
    fn invalid(&self, value: &str, why: &str) -> ControllerError {
        ControllerError::InvalidConfig(format!("Invalid value {value} for configuration {}: {why}", self.name))
    }

    /// Validates a value for this config (type parse, then range / valid values).
    pub fn validate(&self, value: &str) -> Result<(), ControllerError> {
        let trimmed = value.trim();
        let not_a_number = || self.invalid(value, &format!("Not a number of type {}", self.config_type.kafka_name()));
        let integer = match self.config_type {
            ConfigType::Boolean => {
                if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
                    return Ok(());
                }
                return Err(self.invalid(value, "Expected value to be either true or false"));
            }
            ConfigType::Int => Some(trimmed.parse::<i32>().map_err(|_| not_a_number())? as i64),
            ConfigType::Short => Some(trimmed.parse::<i16>().map_err(|_| not_a_number())? as i64),
            ConfigType::Long => Some(trimmed.parse::<i64>().map_err(|_| not_a_number())?),
            ConfigType::Double => {
                let d = trimmed.parse::<f64>().map_err(|_| not_a_number())?;
                if d.is_nan() {
                    return Err(not_a_number());
                }
                if let Validator::DoubleBetween(min, max) = self.validator {
                    if d < min {
                        return Err(self.invalid(value, &format!("Value must be at least {min:?}")));
                    }
                    if d > max {
                        return Err(self.invalid(value, &format!("Value must be no more than {max:?}")));
                    }
                }
                return Ok(());
            }
            ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => None,
        };
        match (self.validator, integer) {
            (Validator::AtLeast(min), Some(n)) if n < min => {
                Err(self.invalid(value, &format!("Value must be at least {min}")))
            }
            (Validator::Between(min, max), Some(n)) if n < min || n > max => {
                Err(self.invalid(value, &format!("Value must be between {min} and {max}")))
            }
            (Validator::BetweenOr(min, max, extra), Some(n)) if n != extra && (n < min || n > max) => {
                Err(self.invalid(value, &format!("Value must be between {min} and {max} or {extra}")))
            }
            (Validator::OneOf(valid), _) => {
                if valid.contains(&trimmed) {
                    Ok(())
                } else {
                    Err(self.invalid(trimmed, &format!("String must be one of: {}", valid.join(", "))))
                }
            }
            (Validator::ListOf(valid), _) => {
                for item in split_list(value) {
                    if !valid.contains(&item.as_str()) {
                        return Err(self.invalid(&item, &format!("String must be one of: {}", valid.join(", "))));
                    }
                }
                Ok(())
            }
            (Validator::ThrottledReplicas, _) => validate_throttled_replicas(self, value),
            _ => Ok(()),
        }
    }
}

fn validate_throttled_replicas(def: &TopicConfigDef, value: &str) -> Result<(), ControllerError> {
    let items = split_list(value);
    if items.len() == 1 && items[0] == "*" {
        return Ok(());
    }
    let ok = items.iter().all(|item| {
        let mut parts = item.split(':');
        matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(p), Some(b), None) if p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
        )
    });
    if ok {
        Ok(())
    } else {
        Err(def.invalid(
            value,
            &format!(
                "{} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                def.name
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_unique_and_defaults_valid() {
        let defs = topic_config_defs();
        assert!(defs.len() >= 33);
        for w in defs.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
        for d in defs {
            d.validate(d.default).unwrap_or_else(|e| panic!("{}: {e}", d.name));
        }
        assert!(topic_config_def("message.downconversion.enable").is_none());
        assert_eq!(topic_config_def("retention.ms").map(|d| d.broker_synonym), Some(Some("log.retention.ms")));
        assert_eq!(
            topic_config_def_for_broker_property("message.max.bytes").map(|d| d.name),
            Some("max.message.bytes")
        );
        assert_eq!(ConfigType::Long.code(), 5);
    }

    #[test]
    fn validation() {
        let bad = |n: &str, v: &str| validate_topic_config(n, v).unwrap_err();
        assert_eq!(bad("foo.bar", "1").message(), "Unknown topic config name: foo.bar");
        assert_eq!(
            bad("retention.ms", "abc").message(),
            "Invalid value abc for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            bad("retention.ms", "-2").message(),
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        assert_eq!(bad("cleanup.policy", "delete,foo").error_code(), 40);
        assert_eq!(bad("compression.type", "brotli").message(),
            "Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer");
        assert_eq!(bad("message.timestamp.type", "Now").error_code(), 40);
        assert_eq!(bad("min.insync.replicas", "0").error_code(), 40);
        assert_eq!(bad("segment.bytes", "13").error_code(), 40);
        assert_eq!(bad("segment.bytes", "3000000000").error_code(), 40);
        assert_eq!(bad("preallocate", "yes").error_code(), 40);
        assert_eq!(bad("min.cleanable.dirty.ratio", "1.5").error_code(), 40);
        assert_eq!(bad("compression.gzip.level", "0").error_code(), 40);
        assert_eq!(bad("leader.replication.throttled.replicas", "0:1,x").error_code(), 40);
        for (n, v) in [
            ("cleanup.policy", "compact, delete"),
            ("cleanup.policy", ""),
            ("retention.ms", "-1"),
            ("retention.bytes", "-5"),
            ("segment.bytes", "14"),
            ("preallocate", "TRUE"),
            ("compression.gzip.level", "-1"),
            ("compression.zstd.level", "-5"),
            ("min.cleanable.dirty.ratio", "0.9"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:2"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.insync.replicas", " 2 "),
        ] {
            validate_topic_config(n, v).unwrap_or_else(|e| panic!("{n}={v}: {e}"));
        }
        let mut m = BTreeMap::new();
        m.insert("min.compaction.lag.ms".to_string(), "10".to_string());
        m.insert("max.compaction.lag.ms".to_string(), "5".to_string());
        assert_eq!(validate_topic_configs(&m).unwrap_err().error_code(), 40);
    }
}
