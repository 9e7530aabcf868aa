//! Weir's metadata controller, following KRaft's design.
//!
//! The replicated state is a log of [`MetadataRecord`]s. Replaying it with
//! [`ImageBuilder::replay`] yields an immutable [`MetadataImage`] (shared as
//! `Arc<MetadataImage>`) that brokers serve Metadata from. The
//! [`QuorumController`] validates admin requests with Kafka's rules and error
//! codes, turns them into records, appends them to the [`MetadataLog`]
//! (`metadata.log`: length + CRC32C framed JSON batches, fsynced), replays
//! them and publishes the new image on a `tokio::sync::watch` channel.
//!
//! State changes only through replay, so loading the log after a restart
//! rebuilds exactly the image that was live before. Today one node appends
//! to a local file. The quorum that replaces it is being built beside it:
//! [`store`] holds openraft's log store and state machine on RocksDB (the
//! Raft log, vote and [`snapshot`]s, and the import of an old
//! `metadata.log`), with the types of [`raft`]; the broker does not use it
//! yet.
//!
//! ```
//! use weir_controller::*;
//! # fn main() -> Result<(), ControllerError> {
//! # let dir = std::env::temp_dir().join(format!("weir-doc-{}", uuid::Uuid::new_v4()));
//! let controller = QuorumController::open(ControllerConfig::new(1, &dir))?;
//! controller.register_broker(BrokerRegistration {
//!     id: 1,
//!     incarnation_id: uuid::Uuid::new_v4(),
//!     listeners: vec![Endpoint { name: "PLAINTEXT".into(), host: "localhost".into(), port: 9092, security_protocol: 0 }],
//!     rack: None,
//!     fenced: false,
//!     epoch: 0,
//! })?;
//! let topic = CreateTopic { name: "orders".into(), num_partitions: 3, replication_factor: 1, ..Default::default() };
//! let created = controller.create_topics(vec![topic], false).remove(0)?;
//! assert_eq!(controller.image().topic_by_id(created.id).map(|t| t.partitions.len()), Some(3));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`records`] (record enum), [`image`] (image + builder), [`log`]
//! (file format), [`raft`] (openraft types), [`store`] (Raft log store and
//! state machine on RocksDB), [`snapshot`] (image as records), [`controller`]
//! (request handling), [`placement`] (replica
//! placement), [`configs`] (config change semantics), [`topic_config`]
//! (topic config catalog and validation), [`topic_name`] (name rules),
//! [`ids`] (Kafka-style UUIDs), [`error`] (errors and Kafka codes).

#![deny(missing_docs)]

pub mod configs;
pub mod controller;
pub mod error;
pub mod ids;
pub mod image;
pub mod log;
pub mod placement;
pub mod raft;
pub mod records;
pub mod rpc;
pub mod snapshot;
pub mod store;
pub mod topic_config;
pub mod topic_name;

pub use configs::{AlterConfigOp, AlterOp, ConfigResource};
pub use controller::{ControllerConfig, CreateTopic, QuorumController, TopicRef, MAX_PARTITIONS_PER_REQUEST};
pub use error::ControllerError;
pub use ids::{kafka_uuid_string, parse_kafka_uuid, random_kafka_uuid};
pub use image::{BrokerRegistration, Endpoint, ImageBuilder, MetadataImage, PartitionRegistration, TopicImage};
pub use log::{MetadataLog, OpenedLog, METADATA_LOG_FILE};
pub use records::{MetadataRecord, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
pub use topic_config::{
    topic_config_def, topic_config_defs, validate_topic_config, validate_topic_configs, ConfigType, TopicConfigDef,
    Validator,
};
pub use topic_name::{is_internal_topic, validate_topic_name};
