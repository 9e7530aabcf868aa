//! Config change requests (IncrementalAlterConfigs and legacy AlterConfigs)
//! turned into the new explicit config set of one resource, validated, and
//! diffed into `Config` records.
//!
//! Semantics follow Kafka's `ConfigurationControlManager`: SET replaces a
//! value (a SET without a value deletes), DELETE removes the explicit value,
//! APPEND / SUBTRACT only apply to LIST configs and start from the current
//! explicit value or, if none, the default. Legacy AlterConfigs replaces the
//! whole explicit set. Broker resources accept any property name; properties
//! that are a topic config's broker synonym are validated like that config.

use std::collections::{BTreeMap, HashSet};

use crate::error::ControllerError;
use crate::records::{MetadataRecord, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use crate::topic_config::{
    split_list, topic_config_def, topic_config_def_for_broker_property, validate_topic_configs, ConfigType,
    TopicConfigDef,
};

/// A config resource: a topic by name, or a broker by id ("" = cluster default).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by id as text; "" is the cluster-wide default.
    Broker(String),
}

impl ConfigResource {
    /// Kafka's resource type code (2 = topic, 4 = broker).
    pub fn resource_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => CONFIG_RESOURCE_TOPIC,
            ConfigResource::Broker(_) => CONFIG_RESOURCE_BROKER,
        }
    }

    /// The resource name.
    pub fn name(&self) -> &str {
        match self {
            ConfigResource::Topic(n) | ConfigResource::Broker(n) => n,
        }
    }
}

/// IncrementalAlterConfigs operation type (Kafka's codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(i8)]
pub enum AlterOp {
    /// Set the value.
    Set = 0,
    /// Remove the explicit value.
    Delete = 1,
    /// Add list items (LIST configs only).
    Append = 2,
    /// Remove list items (LIST configs only).
    Subtract = 3,
}

impl AlterOp {
    /// Decodes Kafka's operation code.
    pub fn from_code(code: i8) -> Option<AlterOp> {
        match code {
            0 => Some(AlterOp::Set),
            1 => Some(AlterOp::Delete),
            2 => Some(AlterOp::Append),
            3 => Some(AlterOp::Subtract),
            _ => None,
        }
    }
}

/// One IncrementalAlterConfigs operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterConfigOp {
    /// Config name.
    pub name: String,
    /// What to do.
    pub op: AlterOp,
    /// The operand (value to set, items to append or subtract).
    pub value: Option<String>,
}

fn def_for(resource: &ConfigResource, name: &str) -> Option<&'static TopicConfigDef> {
    match resource {
        ConfigResource::Topic(_) => topic_config_def(name),
        ConfigResource::Broker(_) => topic_config_def_for_broker_property(name),
    }
}

/// Applies incremental operations to `current`, returning the new explicit set.
pub fn apply_incremental(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    ops: &[AlterConfigOp],
) -> Result<BTreeMap<String, String>, ControllerError> {
    let mut seen = HashSet::new();
    for op in ops {
        if !seen.insert(op.name.as_str()) {
            return Err(ControllerError::InvalidRequest("Error due to duplicate config keys".to_string()));
        }
    }
    let mut next = current.clone();
    for op in ops {
        match (op.op, &op.value) {
            (AlterOp::Set, Some(v)) => {
                next.insert(op.name.clone(), v.clone());
            }
            (AlterOp::Set, None) | (AlterOp::Delete, _) => {
                next.remove(&op.name);
            }
            (AlterOp::Append | AlterOp::Subtract, operand) => {
                let verb = if op.op == AlterOp::Append { "APPEND" } else { "SUBTRACT" };
                let def = def_for(resource, &op.name);
                if matches!(resource, ConfigResource::Topic(_)) && def.is_none() {
                    return Err(ControllerError::InvalidConfig(format!("Unknown topic config name: {}", op.name)));
                }
                let Some(def) = def.filter(|d| d.config_type == ConfigType::List) else {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Can't {verb} to key {} because its type is not LIST.",
                        op.name
                    )));
                };
                let base = next.get(&op.name).map(String::as_str).unwrap_or(def.default);
                let mut items: Vec<String> = split_list(base).into_iter().filter(|s| !s.is_empty()).collect();
                let operand = split_list(operand.as_deref().unwrap_or(""));
                if op.op == AlterOp::Append {
                    for item in operand {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|i| !operand.contains(i));
                }
                next.insert(op.name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

/// The new explicit set for legacy AlterConfigs (entries without a value are ignored).
pub fn apply_replacement(configs: &[(String, Option<String>)]) -> Result<BTreeMap<String, String>, ControllerError> {
    let mut next = BTreeMap::new();
    let mut seen = HashSet::new();
    for (name, value) in configs {
        if !seen.insert(name.as_str()) {
            return Err(ControllerError::InvalidRequest("Error due to duplicate config keys".to_string()));
        }
        if let Some(v) = value {
            next.insert(name.clone(), v.clone());
        }
    }
    Ok(next)
}

/// Validates the full explicit set of a resource after a change.
pub fn validate_configs(resource: &ConfigResource, configs: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    match resource {
        ConfigResource::Topic(_) => validate_topic_configs(configs),
        ConfigResource::Broker(_) => {
            for (name, value) in configs {
                if name.is_empty() {
                    return Err(ControllerError::InvalidRequest("Config name must not be empty.".to_string()));
                }
                if let Some(def) = topic_config_def_for_broker_property(name) {
                    def.validate(value).map_err(|e| match e {
                        ControllerError::InvalidConfig(m) => {
                            ControllerError::InvalidConfig(m.replacen(def.name, name, 1))
                        }
                        other => other,
                    })?;
                }
            }
            Ok(())
        }
    }
}

/// `Config` records that turn `current` into `next`.
pub fn diff_records(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let record = |name: &str, value: Option<String>| MetadataRecord::Config {
        resource_type: resource.resource_type(),
        resource_name: resource.name().to_string(),
        name: name.to_string(),
        value,
    };
    let mut records: Vec<MetadataRecord> =
        current.keys().filter(|k| !next.contains_key(*k)).map(|k| record(k, None)).collect();
    records.extend(next.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| record(k, Some(v.clone()))));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, op: AlterOp, value: Option<&str>) -> AlterConfigOp {
        AlterConfigOp { name: name.into(), op, value: value.map(String::from) }
    }

    #[test]
    fn incremental_ops() {
        let t = ConfigResource::Topic("t".into());
        let cur = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        let next = apply_incremental(&t, &cur, &[op("cleanup.policy", AlterOp::Append, Some("compact"))]).unwrap();
        assert_eq!(next.get("cleanup.policy").map(String::as_str), Some("delete,compact"));
        let next = apply_incremental(&t, &next, &[op("cleanup.policy", AlterOp::Subtract, Some("delete"))]).unwrap();
        assert_eq!(next.get("cleanup.policy").map(String::as_str), Some("compact"));
        let next = apply_incremental(&t, &next, &[op("retention.ms", AlterOp::Delete, None)]).unwrap();
        assert!(!next.contains_key("retention.ms"));
        assert_eq!(
            apply_incremental(&t, &cur, &[op("retention.ms", AlterOp::Append, Some("1"))]).unwrap_err().error_code(),
            40
        );
        assert_eq!(apply_incremental(&t, &cur, &[op("x", AlterOp::Append, Some("1"))]).unwrap_err().error_code(), 40);
        let dup = [op("a", AlterOp::Set, Some("1")), op("a", AlterOp::Delete, None)];
        assert_eq!(apply_incremental(&t, &cur, &dup).unwrap_err().error_code(), 42);
        let recs = diff_records(&t, &cur, &BTreeMap::from([("segment.ms".to_string(), "9".to_string())]));
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn broker_validation_uses_synonyms() {
        let b = ConfigResource::Broker(String::new());
        let bad = BTreeMap::from([("log.retention.ms".to_string(), "x".to_string())]);
        let e = validate_configs(&b, &bad).unwrap_err();
        assert_eq!(e.message(), "Invalid value x for configuration log.retention.ms: Not a number of type LONG");
        let ok = BTreeMap::from([("some.broker.prop".to_string(), "x".to_string())]);
        assert!(validate_configs(&b, &ok).is_ok());
    }
}
