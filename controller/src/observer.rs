//! A node that is only a broker (`process.roles=broker`) follows the metadata
//! quorum as an observer, as a KRaft broker does: it votes in no election and
//! keeps no Raft log, but fetches the committed metadata log from the voters'
//! controller listeners (`controller.quorum.voters` or
//! `controller.quorum.bootstrap.servers`), replays it into its own
//! [`MetadataImage`], and sends its controller operations (registration,
//! heartbeats, admin writes) to a voter, which runs them on the leader.
//!
//! The fetch loop long-polls one voter at a time: the leader once a voter has
//! named it, else the bootstrap addresses in turn; a voter that cannot be
//! reached or refuses is left for the next. Entries are applied strictly in
//! offset order, a snapshot replaces the image whole, and the image is
//! published on a watch channel exactly as a voter's state machine publishes
//! its own. Nothing is stored: a restarted observer fetches the image again,
//! and its broker is unfenced only once it has caught up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::controller::{
    ControllerOperations, FetchedData, MetadataFetch, Operation, Outcome, QuorumLeader, CATCH_UP_TIMEOUT,
    FORWARD_TIMEOUT, UNREACHABLE_RETRY,
};
use crate::error::ControllerError;
use crate::image::{ImageBuilder, MetadataImage};
use crate::rpc::client::{self, CallOnceError};
use crate::rpc::{ControllerRequest, ControllerResponse};

/// How long a voter may hold a fetch that has nothing new.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long a fetch may take in all before the voter is given up on.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed fetch before asking the next voter.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often a node without a reachable controller says so.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// A voter may hold a forwarded operation while it waits out an election and
/// forwards it to the leader.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(FORWARD_TIMEOUT.as_secs() + UNREACHABLE_RETRY.as_secs() + 5);

/// Where the observer reaches the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserverConfig {
    /// This broker's `node.id`; never a voter's.
    pub node_id: i32,
    /// The voters' controller listeners, `host:port`.
    pub bootstrap_servers: Vec<String>,
}

/// Which voter to ask next, shared by the fetch loop and the operations.
#[derive(Debug)]
struct Voters {
    bootstrap: Vec<String>,
    next: AtomicUsize,
    leader: Mutex<Option<QuorumLeader>>,
    /// The last (leader, epoch) logged.
    announced: Mutex<Option<(i32, i32)>>,
}

impl Voters {
    /// The leader's address when known, else the next bootstrap address.
    fn target(&self) -> String {
        if let Some(leader) = self.leader.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return leader.address.clone();
        }
        let next = self.next.load(Ordering::Relaxed);
        self.bootstrap[next % self.bootstrap.len()].clone()
    }

    /// Takes the leader a voter named unless a newer one is known, logging
    /// each epoch's leader once.
    fn set_leader(&self, leader: Option<QuorumLeader>) {
        let Some(leader) = leader else { return };
        let mut known = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if known.as_ref().is_some_and(|known| known.epoch > leader.epoch) {
            return;
        }
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if announced.is_none_or(|(_, epoch)| epoch < leader.epoch) {
            tracing::info!(leader = leader.id, epoch = leader.epoch, "metadata quorum leader");
            *announced = Some((leader.id, leader.epoch));
        }
        *known = Some(leader);
    }

    /// `address` failed: forget it as the leader and move on to the next voter.
    fn failed(&self, address: &str) {
        let mut known = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if known.as_ref().is_some_and(|leader| leader.address == address) {
            *known = None;
        }
        self.next.fetch_add(1, Ordering::Relaxed);
    }
}

/// A broker-only node's view of the metadata quorum. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetadataObserver {
    node_id: i32,
    voters: Arc<Voters>,
    images: watch::Receiver<Arc<MetadataImage>>,
    fetcher: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl MetadataObserver {
    /// Starts following the quorum and returns once the image holds the
    /// cluster id, however long the voters take to answer (as a Kafka broker
    /// waits for its controllers), saying so every [`REPORT_INTERVAL`].
    pub async fn open(config: ObserverConfig) -> Result<Self, ControllerError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ControllerError::InvalidConfig(
                "a broker-only node needs controller.quorum.voters or controller.quorum.bootstrap.servers".to_string(),
            ));
        }
        let voters = Arc::new(Voters {
            bootstrap: config.bootstrap_servers,
            next: AtomicUsize::new(0),
            leader: Mutex::new(None),
            announced: Mutex::new(None),
        });
        let (publish, images) = watch::channel(Arc::new(MetadataImage::default()));
        let fetcher = tokio::spawn(fetch_loop(config.node_id, voters.clone(), publish));
        let observer = MetadataObserver {
            node_id: config.node_id,
            voters,
            images,
            fetcher: Arc::new(Mutex::new(Some(fetcher.abort_handle()))),
        };
        let mut images = observer.images.clone();
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(REPORT_INTERVAL, images.wait_for(|image| !image.cluster_id.is_empty())).await {
                Ok(Ok(_)) => break,
                Ok(Err(_)) => return Err(ControllerError::Internal("the metadata fetcher stopped".to_string())),
                Err(_) => tracing::info!(
                    waited_s = started.elapsed().as_secs(),
                    voters = ?observer.voters.bootstrap,
                    "waiting for the controller quorum's metadata"
                ),
            }
        }
        let image = observer.image();
        tracing::info!(
            last_offset = image.last_offset,
            topics = image.topics.len(),
            cluster_id = %image.cluster_id,
            "metadata caught up as an observer"
        );
        Ok(observer)
    }

    /// The latest image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        let mut receiver = self.images.clone();
        receiver.borrow_and_update();
        receiver
    }

    /// Stops fetching.
    pub fn shutdown(&self) {
        if let Some(fetcher) = self.fetcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            fetcher.abort();
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }
}

impl ControllerOperations for MetadataObserver {
    /// Sends `operation` to a voter (the leader when known), which runs it on
    /// the leader; voters that cannot be connected to are skipped until
    /// [`UNREACHABLE_RETRY`] has passed. Returns once this node's image holds
    /// the change.
    async fn on_leader(&self, operation: Operation) -> Result<Outcome, ControllerError> {
        let deadline = tokio::time::Instant::now() + UNREACHABLE_RETRY;
        let request = ControllerRequest::ForwardFromBroker(operation);
        loop {
            let address = self.voters.target();
            let answer = match client::call_once(&address, &request, OPERATION_TIMEOUT).await {
                Ok(answer) => answer,
                Err(CallOnceError::Unreachable(e)) => {
                    self.voters.failed(&address);
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ControllerError::NotController(format!(
                            "cannot reach a controller (last tried {address}: {e})"
                        )));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(CallOnceError::Unanswered(e)) => {
                    self.voters.failed(&address);
                    return Err(ControllerError::NotController(format!(
                        "no answer from the controller at {address}: {e}"
                    )));
                }
            };
            let ControllerResponse::Forwarded(forwarded) = answer else {
                return Err(ControllerError::Internal(format!("the controller at {address} answered another request")));
            };
            let forwarded = forwarded?;
            let mut images = self.images.clone();
            let caught_up =
                tokio::time::timeout(CATCH_UP_TIMEOUT, images.wait_for(|image| image.last_offset >= forwarded.offset))
                    .await;
            if !matches!(caught_up, Ok(Ok(_))) {
                tracing::warn!(
                    offset = forwarded.offset,
                    "this observer's metadata image is behind a forwarded change"
                );
            }
            return Ok(forwarded.outcome);
        }
    }
}

/// Fetches from the voters until aborted, publishing every new image.
async fn fetch_loop(node_id: i32, voters: Arc<Voters>, publish: watch::Sender<Arc<MetadataImage>>) {
    let mut connection: Option<(String, BufReader<TcpStream>)> = None;
    let mut last_report: Option<tokio::time::Instant> = None;
    loop {
        let address = voters.target();
        let image = publish.borrow().clone();
        let fetch = ControllerRequest::FetchMetadata(MetadataFetch {
            observer_id: node_id,
            cluster_id: image.cluster_id.clone(),
            after_offset: image.last_offset,
            max_wait_ms: u64::try_from(FETCH_WAIT.as_millis()).unwrap_or(u64::MAX),
        });
        let answer = tokio::time::timeout(FETCH_TIMEOUT, async {
            if connection.as_ref().is_none_or(|(connected, _)| *connected != address) {
                connection = Some((address.clone(), client::connect(&address).await?));
            }
            match connection.as_mut() {
                Some((_, stream)) => client::round_trip(stream, &fetch).await,
                None => Err(std::io::Error::other("no connection")),
            }
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to a metadata fetch")));
        let failure = match answer {
            Ok(ControllerResponse::MetadataFetched(Ok(fetched))) => {
                voters.set_leader(fetched.leader);
                if let Some(next) = apply(&image, fetched.data) {
                    publish.send_replace(Arc::new(next));
                }
                continue;
            }
            Ok(ControllerResponse::MetadataFetched(Err(e))) => e.to_string(),
            Ok(_) => "the controller answered another request".to_string(),
            Err(e) => e.to_string(),
        };
        connection = None;
        voters.failed(&address);
        if last_report.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
            tracing::warn!(%address, error = %failure, "cannot fetch metadata from this controller; trying the next");
            last_report = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The image after `data`, or `None` when it changes nothing. Entries must
/// follow the image's offset without a gap; any that do not are left for the
/// next fetch.
fn apply(image: &MetadataImage, data: FetchedData) -> Option<MetadataImage> {
    match data {
        FetchedData::Entries(entries) => {
            let mut builder = ImageBuilder::from_image(image.clone());
            let mut applied = false;
            for entry in entries {
                if entry.offset != builder.image().last_offset + 1 {
                    tracing::warn!(
                        offset = entry.offset,
                        expected = builder.image().last_offset + 1,
                        "a metadata fetch answered out of order"
                    );
                    break;
                }
                if let Err(e) = builder.apply_committed(entry.offset, &entry.records) {
                    tracing::error!(offset = entry.offset, error = %e, "skipping a metadata log entry that does not apply");
                }
                applied = true;
            }
            applied.then(|| builder.build())
        }
        FetchedData::Snapshot { last_offset, records } => {
            let mut builder = ImageBuilder::new();
            match builder.replay_entry(last_offset, &records) {
                Ok(()) => {
                    tracing::info!(last_offset, topics = builder.image().topics.len(), "metadata snapshot loaded");
                    Some(builder.build())
                }
                Err(e) => {
                    tracing::error!(last_offset, error = %e, "a fetched metadata snapshot does not apply");
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
