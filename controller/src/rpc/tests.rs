use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use super::*;
use crate::image::MetadataImage;
use crate::raft::MetadataEntry;
use crate::records::MetadataRecord;
use crate::store::open_store;

#[tokio::test]
async fn frames_round_trip_and_bad_frames_are_errors() {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    let request = ControllerRequest::Vote(VoteRequest::new(openraft::Vote::new(3, 1), None));
    write_frame(&mut a, &request).await.unwrap();
    let back: ControllerRequest = read_frame(&mut b).await.unwrap().unwrap();
    assert!(matches!(back, ControllerRequest::Vote(v) if v.vote == openraft::Vote::new(3, 1)));

    // A claimed length over the limit is refused before anything is read or allocated.
    a.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes()).await.unwrap();
    assert!(read_frame::<_, ControllerRequest>(&mut b).await.is_err());

    // Garbage of the stated length.
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    a.write_all(&5u32.to_be_bytes()).await.unwrap();
    a.write_all(b"{nope").await.unwrap();
    assert!(read_frame::<_, ControllerRequest>(&mut b).await.is_err());

    // A frame cut short by a closed connection, and a clean close between frames.
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    a.write_all(&100u32.to_be_bytes()).await.unwrap();
    a.write_all(b"{}").await.unwrap();
    drop(a);
    assert!(read_frame::<_, ControllerRequest>(&mut b).await.is_err());
    let (a, mut b) = tokio::io::duplex(16);
    drop(a);
    assert!(read_frame::<_, ControllerRequest>(&mut b).await.unwrap().is_none());
}

/// One voter of an in-process three-voter quorum, on its own data dir and
/// loopback port.
struct Voter {
    id: NodeId,
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn start_voter(id: NodeId, dir: &Path, listener: TcpListener) -> Voter {
    let (images, receiver) = watch::channel(Arc::new(MetadataImage::default()));
    let deadline = Instant::now() + Duration::from_secs(10);
    // A stopped voter's tasks let go of its database shortly after shutdown.
    let (log, state_machine) = loop {
        match open_store(dir, images.clone()) {
            Ok(store) => break store,
            Err(e) if Instant::now() < deadline && e.to_string().contains("LOCK") => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let config = Config { snapshot_policy: SnapshotPolicy::Never, ..Default::default() };
    let raft = Raft::new(id, Arc::new(config.validate().unwrap()), client::VoterNetwork::default(), log, state_machine)
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(server::serve(listener, raft.clone(), None, stopped));
    Voter { id, raft, images: receiver, stop, server }
}

impl Voter {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.raft.shutdown().await.unwrap();
    }

    async fn wait_for_topics(&mut self, topics: usize) -> Arc<MetadataImage> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let image = self.images.borrow_and_update().clone();
            if image.topics.len() == topics {
                return image;
            }
            assert!(Instant::now() < deadline, "voter {} has {} topics, want {topics}", self.id, image.topics.len());
            let _ = tokio::time::timeout(Duration::from_millis(100), self.images.changed()).await;
        }
    }

    /// Waits until this voter knows a leader other than `not`; returns it.
    async fn wait_for_leader(&self, not: Option<NodeId>) -> NodeId {
        crate::raft::wait_for_leader(&self.raft, not).await
    }
}

async fn create_topics(leader: &Voter, names: impl IntoIterator<Item = String>) {
    for name in names {
        let entry = MetadataEntry { records: vec![MetadataRecord::Topic { name, topic_id: Uuid::new_v4() }] };
        let applied = leader.raft.client_write(entry).await.unwrap();
        assert_eq!(applied.data.error, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_elect_a_new_leader_and_catch_up_from_a_snapshot() {
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let members: BTreeMap<NodeId, BasicNode> =
        addrs.iter().enumerate().map(|(i, a)| (i as NodeId + 1, BasicNode::new(a.to_string()))).collect();
    let mut voters = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        voters.push(Some(start_voter(i as NodeId + 1, dirs[i].path(), listener).await));
    }
    let voter = |voters: &Vec<Option<Voter>>, id: NodeId| -> usize {
        assert!(voters[(id - 1) as usize].is_some(), "voter {id} is stopped");
        (id - 1) as usize
    };
    voters[0].as_ref().unwrap().raft.initialize(members).await.unwrap();

    let leader = voters[0].as_ref().unwrap().wait_for_leader(None).await;
    create_topics(voters[voter(&voters, leader)].as_ref().unwrap(), (0..10).map(|i| format!("a{i}"))).await;
    for v in voters.iter_mut().flatten() {
        v.wait_for_topics(10).await;
    }

    // The leader stops: the other two elect one of themselves and go on.
    let old_leader = leader;
    let stopped_at = Instant::now();
    let index = voter(&voters, old_leader);
    voters[index].take().unwrap().stop().await;
    let survivor = voters.iter().flatten().next().unwrap();
    let leader = survivor.wait_for_leader(Some(old_leader)).await;
    let failover = stopped_at.elapsed();
    assert!(failover < Duration::from_secs(10), "failover took {failover:?}");
    create_topics(voters[voter(&voters, leader)].as_ref().unwrap(), (0..5).map(|i| format!("b{i}"))).await;
    for v in voters.iter_mut().flatten() {
        v.wait_for_topics(15).await;
    }

    // While the old leader is down the new one snapshots and purges its log,
    // so the old leader can only catch up through the snapshot.
    let new_leader = voters[voter(&voters, leader)].as_ref().unwrap();
    new_leader.raft.trigger().snapshot().await.unwrap();
    let metrics = new_leader
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some(), "snapshot built")
        .await
        .unwrap();
    let snapshot_index = metrics.snapshot.map(|s| s.index).unwrap_or_default();
    new_leader.raft.trigger().purge_log(snapshot_index).await.unwrap();
    new_leader
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= snapshot_index), "log purged")
        .await
        .unwrap();
    create_topics(new_leader, ["c0".to_string()]).await;

    let index = (old_leader - 1) as usize;
    let listener = TcpListener::bind(addrs[index]).await.unwrap();
    voters[index] = Some(start_voter(old_leader, dirs[index].path(), listener).await);
    let image = voters[index].as_mut().unwrap().wait_for_topics(16).await;
    assert!(image.topic("c0").is_some() && image.topic("a0").is_some() && image.topic("b4").is_some());
    let rejoined = voters[index].as_ref().unwrap();
    rejoined
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= snapshot_index), "snapshot installed")
        .await
        .unwrap();

    for v in voters.into_iter().flatten() {
        v.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_controller_listener_closes_that_connection_only() {
    use tokio::io::AsyncReadExt;

    let dir = TempDir::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let voter = start_voter(1, dir.path(), listener).await;
    voter.raft.initialize(BTreeMap::from([(1, BasicNode::new(addr.to_string()))])).await.unwrap();

    for garbage in [&b"\xff\xff\xff\xffjunk"[..], &b"\x00\x00\x00\x03abc"[..], &b"GET / HTTP/1.1\r\n\r\n"[..]] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "connection after {garbage:?} was not closed: {closed:?}");
    }

    // The listener still answers a well-formed request.
    let mut client = client::VoterNetwork::default().new_client(1, &BasicNode::new(addr.to_string())).await;
    let option = RPCOption::new(Duration::from_secs(5));
    let answer = client.vote(VoteRequest::new(openraft::Vote::new(0, 2), None), option).await.unwrap();
    assert!(!answer.vote_granted);
    voter.stop().await;
}
