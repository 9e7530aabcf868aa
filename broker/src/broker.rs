//! The broker's shared state: configuration, the controller (a quorum of one
//! for now), the partition replicas and the producer-id allocator. Every
//! request handler gets an `Arc<Broker>`.

use std::sync::Arc;

use anyhow::Context;
use tracing::info;
use uuid::Uuid;
use weir_controller::{BrokerRegistration, ControllerConfig, Endpoint, MetadataImage, QuorumController};

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::meta_properties;
use crate::replica::ReplicaManager;
use crate::txn::producer_ids::ProducerIdManager;

/// The shared state of one broker.
pub struct Broker {
    /// Configuration.
    pub config: Arc<BrokerConfig>,
    /// The metadata quorum (this node alone for now).
    pub controller: QuorumController,
    /// Partition replicas hosted here.
    pub replicas: ReplicaManager,
    /// Producer id allocation.
    pub producer_ids: ProducerIdManager,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessionCache,
    /// Consumer groups.
    pub groups: GroupCoordinator,
}

/// Directory of the metadata log under `metadata.log.dir`, named as KRaft names it.
const METADATA_DIR: &str = "__cluster_metadata-0";

impl Broker {
    /// Opens the metadata log, registers this broker, and opens its partitions.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let config = Arc::new(config);
        // Another node's directories are refused before anything in them is opened.
        let mut data_dirs = config.log_dirs.clone();
        if !data_dirs.contains(&config.metadata_log_dir) {
            data_dirs.push(config.metadata_log_dir.clone());
        }
        for dir in &data_dirs {
            meta_properties::check_node_id(dir, config.node_id)?;
        }
        let controller = QuorumController::open(ControllerConfig {
            node_id: config.node_id,
            metadata_dir: config.metadata_log_dir.join(METADATA_DIR),
            default_num_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            producer_id_block_size: 1000,
            snapshot_max_bytes: config.metadata_snapshot_max_bytes,
            controller_address: String::new(),
            voters: Default::default(),
        })
        .await
        .context("opening the metadata quorum")?;
        if let Err(e) = meta_properties::ensure(&data_dirs, config.node_id, &controller.image().cluster_id) {
            controller.shutdown().await;
            return Err(e);
        }
        controller
            .register_broker(BrokerRegistration {
                id: config.node_id,
                incarnation_id: Uuid::new_v4(),
                listeners: config
                    .advertised_listeners
                    .iter()
                    .map(|l| Endpoint {
                        name: l.name.clone(),
                        host: l.host.clone(),
                        port: l.port,
                        security_protocol: 0,
                    })
                    .collect(),
                rack: config.raw.get("broker.rack").cloned(),
                fenced: false,
                epoch: 0,
            })
            .await
            .context("registering the broker")?;
        let replicas = ReplicaManager::new(config.clone()).context("creating the log dir")?;
        let groups = GroupCoordinator::new(&config);
        let broker = Arc::new(Broker {
            config,
            controller,
            replicas,
            producer_ids: ProducerIdManager::default(),
            fetch_sessions: FetchSessionCache::default(),
            groups,
        });
        let image = broker.image();
        broker.replicas.reconcile(&image);
        broker.replicas.delete_orphan_dirs();
        broker.groups.load(&broker);
        info!(cluster_id = %image.cluster_id, topics = image.topics.len(), partitions = broker.replicas.all().len(), "metadata loaded");
        Ok(broker)
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Applies the controller's latest image to the local replicas. Called
    /// after every metadata change this broker made, so its answer already
    /// reflects the change.
    pub fn metadata_changed(&self) {
        self.replicas.reconcile(&self.image());
    }
}
