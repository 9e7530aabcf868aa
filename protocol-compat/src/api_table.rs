//! The advertised API table: for each API key, the versions Weir really
//! implements. ApiVersions is generated from it, and a request for a key or
//! version outside it is refused, never guessed at.
//!
//! Every range starts at the lowest version `kafka-protocol` decodes, as
//! Kafka 4 keeps them: librdkafka up to 2.10 enables a feature only if the
//! broker's range covers one exact old version (Produce 3, Fetch 4,
//! ListOffsets 1, InitProducerId 0, ...). Produce starts at v0 like Kafka 4
//! (KAFKA-18659: without v0-v2 librdkafka stops compressing); real v0-v2
//! Produce requests are answered with UNSUPPORTED_VERSION by
//! [`crate::legacy_produce`].

use kafka_protocol::messages::ApiKey;

/// The versions of one API that Weir serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub api_key: ApiKey,
    /// The oldest version served.
    pub min_version: i16,
    /// The newest version served.
    pub max_version: i16,
}

impl ApiRange {
    const fn new(api_key: ApiKey, min_version: i16, max_version: i16) -> Self {
        ApiRange { api_key, min_version, max_version }
    }

    /// Whether `version` is inside the range.
    pub fn contains(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }
}

/// Produce versions below this one are advertised but answered with
/// UNSUPPORTED_VERSION (they carry message format v0/v1).
pub const PRODUCE_MIN_SERVED_VERSION: i16 = 3;

/// Every API Weir serves, in API key order.
pub const ADVERTISED_APIS: &[ApiRange] = &[
    ApiRange::new(ApiKey::Produce, 0, 11),
    ApiRange::new(ApiKey::Fetch, 4, 17),
    ApiRange::new(ApiKey::ListOffsets, 1, 9),
    ApiRange::new(ApiKey::Metadata, 0, 12),
    ApiRange::new(ApiKey::OffsetCommit, 2, 9),
    ApiRange::new(ApiKey::OffsetFetch, 1, 9),
    ApiRange::new(ApiKey::FindCoordinator, 0, 6),
    ApiRange::new(ApiKey::JoinGroup, 0, 9),
    ApiRange::new(ApiKey::Heartbeat, 0, 4),
    ApiRange::new(ApiKey::LeaveGroup, 0, 5),
    ApiRange::new(ApiKey::SyncGroup, 0, 5),
    ApiRange::new(ApiKey::DescribeGroups, 0, 5),
    ApiRange::new(ApiKey::ListGroups, 0, 5),
    ApiRange::new(ApiKey::ApiVersions, 0, 4),
    ApiRange::new(ApiKey::CreateTopics, 2, 7),
    ApiRange::new(ApiKey::DeleteTopics, 1, 6),
    ApiRange::new(ApiKey::DeleteRecords, 0, 2),
    ApiRange::new(ApiKey::InitProducerId, 0, 5),
    ApiRange::new(ApiKey::OffsetForLeaderEpoch, 2, 4),
    ApiRange::new(ApiKey::DescribeConfigs, 1, 4),
    ApiRange::new(ApiKey::AlterConfigs, 0, 2),
    ApiRange::new(ApiKey::DescribeLogDirs, 1, 4),
    ApiRange::new(ApiKey::CreatePartitions, 0, 3),
    ApiRange::new(ApiKey::DeleteGroups, 0, 2),
    ApiRange::new(ApiKey::ElectLeaders, 0, 2),
    ApiRange::new(ApiKey::IncrementalAlterConfigs, 0, 1),
    ApiRange::new(ApiKey::AlterPartitionReassignments, 0, 1),
    ApiRange::new(ApiKey::ListPartitionReassignments, 0, 0),
    ApiRange::new(ApiKey::OffsetDelete, 0, 0),
    ApiRange::new(ApiKey::DescribeQuorum, 0, 2),
    ApiRange::new(ApiKey::DescribeCluster, 0, 1),
    ApiRange::new(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    ApiRange::new(ApiKey::ConsumerGroupDescribe, 0, 1),
    ApiRange::new(ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The advertised range of `api_key`, if Weir serves it at all.
pub fn advertised_range(api_key: ApiKey) -> Option<ApiRange> {
    ADVERTISED_APIS.iter().copied().find(|r| r.api_key == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka up to 2.10 turns features on only when these exact versions
    /// are inside the broker's range; Debian's kcat depends on it.
    #[test]
    fn ranges_cover_the_versions_librdkafka_probes() {
        for (key, version) in [
            (ApiKey::Produce, 3),
            (ApiKey::Produce, 7),
            (ApiKey::Fetch, 4),
            (ApiKey::Fetch, 10),
            (ApiKey::ListOffsets, 1),
            (ApiKey::InitProducerId, 0),
            (ApiKey::FindCoordinator, 0),
            (ApiKey::Metadata, 0),
        ] {
            let range = advertised_range(key).unwrap_or_else(|| panic!("{key:?} not advertised"));
            assert!(range.contains(version), "{key:?} v{version} outside {range:?}");
        }
        assert_eq!(advertised_range(ApiKey::Produce).unwrap().min_version, 0);
    }

    /// Every advertised version above the legacy Produce ones is one the
    /// message crate can decode and encode.
    #[test]
    fn ranges_are_within_what_the_codec_supports() {
        for range in ADVERTISED_APIS {
            let codec = range.api_key.valid_versions();
            let min = if range.api_key == ApiKey::Produce { PRODUCE_MIN_SERVED_VERSION } else { range.min_version };
            assert_eq!(min, codec.min, "{:?} must start at the lowest decodable version", range.api_key);
            assert!(range.max_version <= codec.max, "{:?}", range.api_key);
        }
    }
}
