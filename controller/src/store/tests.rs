//! openraft's storage test suite against the RocksDB store, and the
//! properties of the contract the suite does not check.

use std::path::Path;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;
use tokio::sync::watch;

use super::*;
use crate::raft::{NodeId, TypeConfig};

struct RocksStoreBuilder;

impl StoreBuilder<TypeConfig, MetadataLogStore, MetadataStateMachine, TempDir> for RocksStoreBuilder {
    async fn build(&self) -> Result<(TempDir, MetadataLogStore, MetadataStateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
        let (log, state_machine) =
            open_store(dir.path(), images).map_err(|e| openraft::StorageIOError::write(&std::io::Error::other(e)))?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(RocksStoreBuilder)
}

mod one_node {
    //! A one-voter openraft quorum on the store: what it commits is there
    //! after a restart, from the log or from a snapshot once the log is purged.

    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
        VoteResponse,
    };
    use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
    use uuid::Uuid;

    use super::*;
    use crate::raft::MetadataEntry;
    use crate::records::MetadataRecord;

    /// One voter never calls its network; every call is an unreachable peer.
    struct NoPeers;

    fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no peers in a one-node quorum")))
    }

    impl RaftNetwork<TypeConfig> for NoPeers {
        async fn append_entries(
            &mut self,
            _: AppendEntriesRequest<TypeConfig>,
            _: RPCOption,
        ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
            Err(unreachable())
        }

        async fn install_snapshot(
            &mut self,
            _: InstallSnapshotRequest<TypeConfig>,
            _: RPCOption,
        ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
        {
            Err(unreachable())
        }

        async fn vote(
            &mut self,
            _: VoteRequest<NodeId>,
            _: RPCOption,
        ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
            Err(unreachable())
        }
    }

    impl RaftNetworkFactory<TypeConfig> for NoPeers {
        type Network = NoPeers;

        async fn new_client(&mut self, _: NodeId, _: &BasicNode) -> NoPeers {
            NoPeers
        }
    }

    struct Node {
        raft: Raft<TypeConfig>,
        images: watch::Receiver<Arc<MetadataImage>>,
    }

    /// Opens the store, waiting for a shut-down node's tasks to let go of it:
    /// openraft's state machine worker ends after `shutdown` returns.
    fn reopen(dir: &Path, images: watch::Sender<Arc<MetadataImage>>) -> (MetadataLogStore, MetadataStateMachine) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match open_store(dir, images.clone()) {
                Ok(store) => return store,
                Err(e) if Instant::now() < deadline && e.to_string().contains("LOCK") => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn start(dir: &Path) -> Node {
        let (images, receiver) = watch::channel(Arc::new(MetadataImage::default()));
        let (log, state_machine) = reopen(dir, images);
        let config = Config { snapshot_policy: SnapshotPolicy::Never, ..Default::default() };
        let raft = Raft::new(1, Arc::new(config.validate().unwrap()), NoPeers, log, state_machine).await.unwrap();
        Node { raft, images: receiver }
    }

    fn topic(name: &str) -> MetadataEntry {
        MetadataEntry { records: vec![MetadataRecord::Topic { name: name.into(), topic_id: Uuid::new_v4() }] }
    }

    /// Waits until the published image holds `topics` topics.
    async fn wait_for_topics(node: &mut Node, topics: usize) -> Arc<MetadataImage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let image = node.images.borrow_and_update().clone();
            if image.topics.len() == topics {
                return image;
            }
            assert!(Instant::now() < deadline, "image has {} topics, want {topics}", image.topics.len());
            let _ = tokio::time::timeout(Duration::from_millis(100), node.images.changed()).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_entries_survive_restarts_from_the_log_and_from_a_snapshot() {
        let dir = TempDir::new().unwrap();
        let mut node = start(dir.path()).await;
        node.raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:9093"))])).await.unwrap();
        // initialize returns before the election it starts is over.
        node.raft.wait(Some(Duration::from_secs(5))).state(openraft::ServerState::Leader, "leader").await.unwrap();
        for i in 0..20 {
            let applied = node.raft.client_write(topic(&format!("t{i}"))).await.unwrap();
            assert_eq!(applied.data.error, None);
        }
        // An entry that does not apply is committed, answered with its error and skipped whole.
        let bad = MetadataEntry {
            records: vec![
                MetadataRecord::Topic { name: "half".into(), topic_id: Uuid::new_v4() },
                MetadataRecord::RemoveTopic { topic_id: Uuid::from_u128(7) },
            ],
        };
        assert!(node.raft.client_write(bad).await.unwrap().data.error.is_some());
        let before = wait_for_topics(&mut node, 20).await;
        assert!(before.topic("half").is_none());
        node.raft.shutdown().await.unwrap();
        drop(node);

        // From the log alone: the restarted node re-applies up to its committed entry.
        let mut node = start(dir.path()).await;
        // A lone voter elects itself at once, without waiting for an election timeout.
        node.raft.wait(Some(Duration::from_secs(1))).state(openraft::ServerState::Leader, "leader").await.unwrap();
        let image = wait_for_topics(&mut node, 20).await;
        assert_eq!(image.topics.keys().collect::<Vec<_>>(), before.topics.keys().collect::<Vec<_>>());

        // Snapshot, purge the whole log, write more, restart: snapshot + the log after it.
        node.raft.trigger().snapshot().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.raft.metrics().borrow().snapshot.is_none() {
            assert!(Instant::now() < deadline, "no snapshot was built");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let snapshot_index = node.raft.metrics().borrow().snapshot.map(|s| s.index).unwrap_or_default();
        node.raft.trigger().purge_log(snapshot_index).await.unwrap();
        node.raft.client_write(topic("after-snapshot")).await.unwrap();
        let before = wait_for_topics(&mut node, 21).await;
        node.raft.shutdown().await.unwrap();
        drop(node);

        let mut node = start(dir.path()).await;
        let image = wait_for_topics(&mut node, 21).await;
        assert_eq!(image.topics.keys().collect::<Vec<_>>(), before.topics.keys().collect::<Vec<_>>());
        assert_eq!(image.last_offset, before.last_offset);
        let log_state = {
            let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
            node.raft.shutdown().await.unwrap();
            drop(node);
            let (mut log, _) = reopen(dir.path(), images);
            openraft::storage::RaftLogStorage::get_log_state(&mut log).await.unwrap()
        };
        assert!(log_state.last_purged_log_id.is_some_and(|id| id.index >= snapshot_index));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_metadata_log_is_imported_once_as_the_first_snapshot() {
        let dir = TempDir::new().unwrap();
        let old_topic = Uuid::new_v4();
        {
            let mut old = crate::log::MetadataLog::open(dir.path()).unwrap().log;
            old.append(&[MetadataRecord::ClusterId { cluster_id: "Y2x1c3Rlci1pZC0xMjM0NQ".into() }]).unwrap();
            old.append(&[
                MetadataRecord::Topic { name: "old".into(), topic_id: old_topic },
                MetadataRecord::Partition {
                    topic_id: old_topic,
                    partition_id: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ])
            .unwrap();
            old.append(&[MetadataRecord::ProducerIds { broker_id: 1, broker_epoch: 0, next_producer_id: 3000 }])
                .unwrap();
        }
        let node_info = BasicNode::new("127.0.0.1:9093");
        let imported = import_legacy_log(dir.path(), 1, node_info.clone()).unwrap();
        assert_eq!(imported, Some(Imported { entries: 3, last_index: 2 }));
        assert!(!dir.path().join(crate::log::METADATA_LOG_FILE).exists());
        assert!(dir.path().join(IMPORTED_LOG_FILE).exists());
        assert_eq!(import_legacy_log(dir.path(), 1, node_info).unwrap(), None);

        // No initialize(): the snapshot's membership makes this node the lone voter.
        let mut node = start(dir.path()).await;
        node.raft.wait(Some(Duration::from_secs(1))).state(openraft::ServerState::Leader, "leader").await.unwrap();
        let image = wait_for_topics(&mut node, 1).await;
        assert_eq!(image.cluster_id, "Y2x1c3Rlci1pZC0xMjM0NQ");
        assert_eq!(image.topic("old").map(|t| (t.id, t.partitions.len())), Some((old_topic, 1)));
        assert_eq!(image.next_producer_id, 3000);
        let applied = node.raft.client_write(topic("new")).await.unwrap();
        assert!(applied.data.offset > 2, "new entries follow the imported offsets: {}", applied.data.offset);
        node.raft.shutdown().await.unwrap();
        drop(node);

        let mut node = start(dir.path()).await;
        let image = wait_for_topics(&mut node, 2).await;
        assert!(image.topic("old").is_some() && image.topic("new").is_some());
        assert_eq!(image.next_producer_id, 3000);
        node.raft.shutdown().await.unwrap();
    }

    /// Rewrites a database of this build into format 1 (the first quorum
    /// build's leader ids, no format key), as that build left it.
    fn downgrade_to_format_1(dir: &Path) {
        let db = open_db_raw(dir);
        let to_old = |value: &[u8], path: &[&str], vote: bool| -> Vec<u8> {
            let mut json: serde_json::Value = serde_json::from_slice(value).unwrap();
            let mut at = &mut json;
            for key in path {
                at = at.get_mut(*key).unwrap();
            }
            *at = if vote {
                serde_json::json!({"term": at["term"], "node_id": at["voted_for"]})
            } else {
                serde_json::json!({"term": at.clone(), "node_id": 1})
            };
            serde_json::to_vec(&json).unwrap()
        };
        let state = column(&db, CF_STATE).unwrap();
        let vote = db.get_cf(state, KEY_VOTE).unwrap().unwrap();
        db.put_cf(state, KEY_VOTE, to_old(&vote, &["leader_id"], true)).unwrap();
        if let Some(committed) = db.get_cf(state, KEY_COMMITTED).unwrap() {
            db.put_cf(state, KEY_COMMITTED, to_old(&committed, &["leader_id"], false)).unwrap();
        }
        let log = column(&db, CF_LOG).unwrap();
        let entries: Vec<_> = db.iterator_cf(log, rocksdb::IteratorMode::Start).map(|i| i.unwrap()).collect();
        assert!(entries.len() >= 3);
        for (key, value) in entries {
            db.put_cf(log, key, to_old(&value, &["log_id", "leader_id"], false)).unwrap();
        }
        db.delete_cf(state, format::KEY_FORMAT).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_1_database_is_upgraded_and_keeps_every_entry() {
        let dir = TempDir::new().unwrap();
        let node = start(dir.path()).await;
        node.raft.initialize(BTreeMap::from([(1, BasicNode::new(""))])).await.unwrap();
        node.raft.wait(Some(Duration::from_secs(5))).state(openraft::ServerState::Leader, "leader").await.unwrap();
        node.raft.client_write(topic("a")).await.unwrap();
        node.raft.client_write(topic("b")).await.unwrap();
        node.raft.shutdown().await.unwrap();
        drop(node);
        downgrade_to_format_1(dir.path());

        let mut node = start(dir.path()).await;
        let image = wait_for_topics(&mut node, 2).await;
        assert!(image.topic("a").is_some() && image.topic("b").is_some());
        node.raft.wait(Some(Duration::from_secs(5))).state(openraft::ServerState::Leader, "leader").await.unwrap();
        node.raft.client_write(topic("c")).await.unwrap();
        node.raft.shutdown().await.unwrap();
    }
}

/// The database opened without the format upgrade, as a test fixture writer;
/// waits (up to 10 s) for a stopped quorum's tasks to let go of it.
fn open_db_raw(dir: &Path) -> DB {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let families =
            [CF_LOG, CF_STATE, CF_SNAPSHOT].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        match DB::open_cf_descriptors(&Options::default(), dir.join(RAFT_DB_DIR), families) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("LOCK") => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_newer_format_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open_db(dir.path()).unwrap());
    {
        let db = open_db_raw(dir.path());
        db.put_cf(column(&db, CF_STATE).unwrap(), format::KEY_FORMAT, b"3").unwrap();
    }
    let err = open_db(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format 3, written by a newer Weir"), "{err}");
}

#[test]
fn a_damaged_database_or_snapshot_is_refused_and_left_in_place() {
    let dir = TempDir::new().unwrap();
    let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
    drop(open_store(dir.path(), images.clone()).unwrap());

    // A snapshot that does not decode.
    {
        let db = open_db(dir.path()).unwrap();
        let cf = column(&db, CF_SNAPSHOT).unwrap();
        db.put_cf(cf, KEY_META, b"{}").unwrap();
        db.put_cf(cf, KEY_DATA, b"garbage").unwrap();
    }
    let err = open_store(dir.path(), images.clone()).unwrap_err().to_string();
    assert!(err.contains("snapshot"), "{err}");

    // RocksDB's own files damaged.
    let current = dir.path().join(RAFT_DB_DIR).join("CURRENT");
    std::fs::write(&current, b"MANIFEST-999999\n").unwrap();
    let err = open_store(dir.path(), images).unwrap_err().to_string();
    assert!(err.contains("cannot open the metadata quorum's database") && err.contains(RAFT_DB_DIR), "{err}");
    assert_eq!(std::fs::read(&current).unwrap(), b"MANIFEST-999999\n");
}
