//! What the broker's unit tests share: a broker on a temporary directory
//! with a loopback listener, and a topic created through its controller.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use weir_controller::ControllerOperations;

/// A started broker keeping its data in `dir`, with `overrides` (Kafka
/// property names) on top of the defaults.
pub async fn test_broker(dir: &Path, overrides: &[(&str, &str)]) -> Arc<Broker> {
    let mut raw = BTreeMap::new();
    raw.insert("log.dirs".to_string(), dir.display().to_string());
    raw.insert("listeners".to_string(), "PLAINTEXT://127.0.0.1:0".to_string());
    for (key, value) in overrides {
        raw.insert(key.to_string(), value.to_string());
    }
    Broker::start(BrokerConfig::from_raw(raw).expect("config"), None).await.expect("broker starts")
}

/// Creates `name` with `partitions` partitions and opens them on `broker`.
pub async fn create_topic(broker: &Broker, name: &str, partitions: i32) {
    let topic = weir_controller::CreateTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: -1,
        ..Default::default()
    };
    let created = broker.controller.create_topics(vec![topic], false).await;
    assert!(created[0].is_ok(), "{created:?}");
    broker.metadata_changed();
}
