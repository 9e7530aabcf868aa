//! The broker's shared state: configuration, the controller (this node's
//! voter of the metadata quorum, or its observer on a broker-only node), the partition replicas and the producer-id
//! allocator. Every request handler gets an `Arc<Broker>`.

use std::sync::Arc;

use anyhow::Context;
use tracing::info;
use weir_controller::{
    ControllerConfig, ControllerNode, MetadataImage, MetadataObserver, ObserverConfig, QuorumController,
};

use crate::config::{BrokerConfig, ProcessRoles};
use crate::fetch_session::FetchSessionCache;
use crate::fetcher::ReplicaFetchers;
use crate::group::GroupCoordinator;
use crate::lifecycle::{self, Membership};
use crate::meta_properties;
use crate::replica::{off_runtime, ReplicaManager};
use crate::txn::producer_ids::ProducerIdManager;

/// The shared state of one broker.
pub struct Broker {
    /// Configuration.
    pub config: Arc<BrokerConfig>,
    /// This node's part in the metadata quorum: a voter, or an observer on a
    /// broker-only node.
    pub controller: ControllerNode,
    /// Partition replicas hosted here.
    pub replicas: ReplicaManager,
    /// Producer id allocation.
    pub producer_ids: ProducerIdManager,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessionCache,
    /// Consumer groups.
    pub groups: GroupCoordinator,
    /// This broker's registration with the controller.
    pub membership: Membership,
    /// Fetchers copying the partitions this broker follows from their leaders.
    pub fetchers: ReplicaFetchers,
}

/// Directory of the metadata log under `metadata.log.dir`, named as KRaft names it.
const METADATA_DIR: &str = "__cluster_metadata-0";

impl Broker {
    /// Opens the metadata quorum (serving its RPCs on `controller_listener`
    /// when the quorum has several voters), or, on a broker-only node,
    /// follows it as an observer; registers this broker, opens its
    /// partitions, and returns once the controller unfenced it.
    pub async fn start(
        config: BrokerConfig,
        controller_listener: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Arc<Broker>> {
        let config = Arc::new(config);
        // Another node's directories are refused before anything in them is opened.
        let mut data_dirs = config.log_dirs.clone();
        if !data_dirs.contains(&config.metadata_log_dir) {
            data_dirs.push(config.metadata_log_dir.clone());
        }
        for dir in &data_dirs {
            meta_properties::check_node_id(dir, config.node_id)?;
        }
        let controller = match config.process_roles {
            ProcessRoles::Combined => ControllerNode::Voter(
                QuorumController::open_with_listener(
                    controller_config(&config, controller_listener.as_ref())?,
                    controller_listener,
                )
                .await
                .context("opening the metadata quorum")?,
            ),
            ProcessRoles::Controller => anyhow::bail!("a controller-only node runs no broker"),
            ProcessRoles::Broker => ControllerNode::Observer(
                MetadataObserver::open(ObserverConfig {
                    node_id: config.node_id,
                    bootstrap_servers: config.controller_bootstrap.clone(),
                })
                .await
                .context("following the metadata quorum")?,
            ),
        };
        if let Err(e) = meta_properties::ensure(&data_dirs, config.node_id, &controller.image().cluster_id) {
            controller.shutdown().await;
            return Err(e);
        }
        let wait_for_quorum = config.quorum_voters.len() > 1 || config.process_roles == ProcessRoles::Broker;
        let membership = match lifecycle::register(&controller, &config, wait_for_quorum).await {
            Ok(membership) => membership,
            Err(e) => {
                controller.shutdown().await;
                return Err(anyhow::Error::new(e).context("registering the broker"));
            }
        };
        let replicas = ReplicaManager::new(config.clone()).context("creating the log dir")?;
        let groups = GroupCoordinator::new(&config, controller.subscribe());
        let broker = Arc::new(Broker {
            config,
            controller,
            replicas,
            producer_ids: ProducerIdManager::default(),
            fetch_sessions: FetchSessionCache::default(),
            groups,
            membership,
            fetchers: ReplicaFetchers::default(),
        });
        let image = broker.image();
        // Opening the logs (recovery after a crash) and replaying the groups read the disk.
        off_runtime(|| {
            broker.replicas.reconcile(&image);
            broker.replicas.delete_orphan_dirs();
            broker.groups.follow_leadership(&broker, &image);
        });
        broker.fetchers.attach(&broker);
        broker.fetchers.reconcile(&broker, &image);
        follow_metadata(&broker);
        info!(cluster_id = %image.cluster_id, topics = image.topics.len(), partitions = broker.replicas.all().len(), "metadata loaded");
        // Serving starts once the controller unfenced this broker, with its logs open.
        if let Err(e) = lifecycle::wait_until_unfenced(&broker).await {
            broker.replicas.shutdown();
            broker.controller.shutdown().await;
            return Err(anyhow::Error::new(e).context("unfencing the broker"));
        }
        // The unfencing gave this broker back its leaderships: serve with them.
        broker.metadata_changed();
        Ok(broker)
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Applies the controller's latest image to the local replicas. Called
    /// after every metadata change this broker made, so its answer already
    /// reflects the change; [`follow_metadata`] applies everyone else's.
    pub fn metadata_changed(&self) {
        let image = self.image();
        off_runtime(|| {
            self.replicas.reconcile(&image);
            self.groups.follow_leadership(self, &image);
        });
        self.fetchers.reconcile(self, &image);
    }
}

/// The controller settings of a node with the controller role.
pub(crate) fn controller_config(
    config: &BrokerConfig,
    controller_listener: Option<&tokio::net::TcpListener>,
) -> anyhow::Result<ControllerConfig> {
    let controller_address = match (config.quorum_voters.get(&config.node_id), controller_listener) {
        (Some(address), _) => address.clone(),
        (None, Some(listener)) => listener.local_addr()?.to_string(),
        (None, None) => String::new(),
    };
    Ok(ControllerConfig {
        node_id: config.node_id,
        metadata_dir: config.metadata_log_dir.join(METADATA_DIR),
        default_num_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        producer_id_block_size: 1000,
        snapshot_max_bytes: config.metadata_snapshot_max_bytes,
        controller_address,
        voters: config.quorum_voters.clone(),
        broker_session_timeout_ms: config.broker_session_timeout_ms,
        unclean_leader_election_enable: config.unclean_leader_election_enable,
        auto_leader_rebalance_enable: config.auto_leader_rebalance_enable,
        leader_imbalance_check_interval: std::time::Duration::from_secs(config.leader_imbalance_check_interval_seconds),
    })
}

/// Applies every image the quorum publishes to the local replicas, whichever
/// node's operation committed it: a topic created through another broker
/// gets its partitions here as soon as this node applies the entry. Ends
/// when the quorum stops or the broker is dropped.
fn follow_metadata(broker: &Arc<Broker>) {
    let mut images = broker.controller.subscribe();
    let broker = Arc::downgrade(broker);
    tokio::spawn(async move {
        while images.changed().await.is_ok() {
            let Some(broker) = broker.upgrade() else { return };
            let image = images.borrow_and_update().clone();
            // The broker that made the change has already applied it.
            if broker.replicas.has_reconciled(&image) {
                continue;
            }
            let reconciled = {
                let (broker, image) = (broker.clone(), image.clone());
                tokio::task::spawn_blocking(move || {
                    broker.replicas.reconcile(&image);
                    broker.groups.follow_leadership(&broker, &image);
                })
                .await
            };
            if reconciled.is_ok() {
                broker.fetchers.reconcile(&broker, &image);
            }
        }
    });
}
