//! KIP-951 leader hints. A Produce (v10+) or Fetch (v16+) partition refused
//! with NOT_LEADER_OR_FOLLOWER (or, for Fetch, FENCED_LEADER_EPOCH) carries the
//! leader and leader epoch this broker's metadata image names, and the
//! response carries that leader's endpoint, so the client sends its next
//! request there without waiting for a metadata refresh, as Kafka's
//! `KafkaApis` adds them. A partition without a live leader gets leader -1,
//! epoch -1 and no endpoint.

use std::collections::BTreeMap;

use weir_controller::MetadataImage;
use weir_protocol::ErrorCode;

use super::metadata::{advertised_brokers, AdvertisedBroker};

/// The hints of one response: the leader of each refused partition, and
/// the endpoints of those leaders.
pub struct LeaderHints {
    image: std::sync::Arc<MetadataImage>,
    endpoints: BTreeMap<i32, AdvertisedBroker>,
}

impl LeaderHints {
    /// Hints from `image`.
    pub fn new(image: std::sync::Arc<MetadataImage>) -> Self {
        LeaderHints { image, endpoints: BTreeMap::new() }
    }

    /// Whether a partition answered with `error_code` carries a hint.
    pub fn wanted(error_code: i16, fenced_epoch_too: bool) -> bool {
        error_code == ErrorCode::NotLeaderOrFollower.code()
            || (fenced_epoch_too && error_code == ErrorCode::FencedLeaderEpoch.code())
    }

    /// The leader id and leader epoch of `topic`'s `partition`, (-1, -1)
    /// when unknown; a live leader's endpoint joins the response's.
    pub fn leader(&mut self, topic: &str, partition: i32) -> (i32, i32) {
        let Some(registration) = self.image.topic(topic).and_then(|t| t.partition(partition)) else {
            return (-1, -1);
        };
        let leader = registration.leader;
        if leader < 0 {
            return (-1, -1);
        }
        if !self.endpoints.contains_key(&leader) {
            match advertised_brokers(&self.image).find(|b| b.id.0 == leader) {
                Some(endpoint) => {
                    self.endpoints.insert(leader, endpoint);
                }
                // Fenced or gone: no leader a client could reach.
                None => return (-1, -1),
            }
        }
        (leader, registration.leader_epoch)
    }

    /// The endpoints of the leaders hinted at, by id.
    pub fn into_endpoints(self) -> impl Iterator<Item = AdvertisedBroker> {
        self.endpoints.into_values()
    }
}
