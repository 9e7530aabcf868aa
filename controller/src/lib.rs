//! Weir's metadata controller, following KRaft's design.
//!
//! The replicated state is a log of [`MetadataRecord`]s. Replaying it with
//! [`ImageBuilder::replay`] yields an immutable [`MetadataImage`] (shared as
//! `Arc<MetadataImage>`) that brokers serve Metadata from. The
//! [`QuorumController`] validates admin requests with Kafka's rules and error
//! codes, turns them into records, and commits them as one entry through an
//! openraft quorum whose log, vote and [`snapshot`]s live in RocksDB
//! ([`store`], with the types of [`raft`]); the state machine replays each
//! committed entry and publishes the new image on a `tokio::sync::watch`
//! channel. The voters are `controller.quorum.voters` (this node alone by
//! default); [`rpc`] carries Raft between them and the operations other
//! voters forward to the leader, and the leader keeps the brokers' sessions
//! (heartbeats, fencing). Nodes that are only brokers follow the quorum as
//! [`observer`]s, fetching the committed log from the voters; [`node`] is
//! either part as the broker sees it. A data dir written before the quorum (its
//! `metadata.log`, [`log`]) is imported once as the first snapshot.
//!
//! State changes only through replay, so restarting rebuilds exactly the
//! image that was live before.
//!
//! ```
//! use weir_controller::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ControllerError> {
//! # let dir = std::env::temp_dir().join(format!("weir-doc-{}", uuid::Uuid::new_v4()));
//! let controller = QuorumController::open(ControllerConfig::new(1, &dir)).await?;
//! controller.register_broker(BrokerRegistration {
//!     id: 1,
//!     incarnation_id: uuid::Uuid::new_v4(),
//!     listeners: vec![Endpoint { name: "PLAINTEXT".into(), host: "localhost".into(), port: 9092, security_protocol: 0 }],
//!     rack: None,
//!     fenced: false,
//!     epoch: 0,
//! }).await?;
//! let topic = CreateTopic { name: "orders".into(), num_partitions: 3, replication_factor: 1, ..Default::default() };
//! let created = controller.create_topics(vec![topic], false).await.remove(0)?;
//! assert_eq!(controller.image().topic_by_id(created.id).map(|t| t.partitions.len()), Some(3));
//! controller.shutdown().await;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`records`] (record enum), [`image`] (image + builder), [`node`]
//! (voter or observer), [`observer`] (a broker-only node's metadata), [`log`]
//! (the pre-quorum file format, read by the import), [`raft`] (openraft types), [`store`] (Raft log store and
//! state machine on RocksDB), [`snapshot`] (image as records), [`rpc`] (the
//! controller listener's protocol), [`controller`] (request handling), [`placement`] (replica
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
pub mod node;
pub mod observer;
pub mod placement;
pub mod raft;
pub mod records;
pub mod rpc;
pub mod snapshot;
pub mod store;
pub mod topic_config;
pub mod topic_name;

pub use configs::{AlterConfigOp, AlterOp, ConfigResource};
pub use controller::{
    AlterPartition, BrokerHeartbeat, ControllerConfig, ControllerOperations, CreateTopic, Election, ElectionResults,
    ElectionTargets, HeartbeatReply, QuorumController, QuorumDescription, QuorumReplica, ReassignmentResults,
    ReassignmentTargets, TopicRef, MAX_PARTITIONS_PER_REQUEST,
};
pub use error::ControllerError;
pub use ids::{kafka_uuid_string, parse_kafka_uuid, random_kafka_uuid};
pub use image::{BrokerRegistration, Endpoint, ImageBuilder, MetadataImage, PartitionRegistration, TopicImage};
pub use log::{MetadataLog, OpenedLog, METADATA_LOG_FILE};
pub use node::ControllerNode;
pub use observer::{MetadataObserver, ObserverConfig};
pub use records::{MetadataRecord, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
pub use topic_config::{
    topic_config_def, topic_config_defs, validate_topic_config, validate_topic_configs, ConfigType, TopicConfigDef,
    Validator,
};
pub use topic_name::{is_internal_topic, validate_topic_name};
