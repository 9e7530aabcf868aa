//! A group's committed offsets, and the commits not yet replicated.
//!
//! A commit is appended to `__consumer_offsets` and is *pending* until the
//! partition's high watermark passes its record: only then may OffsetFetch
//! return it, as Kafka's coordinator keeps `pendingOffsetCommits` apart
//! from the offsets it serves. Were a pending commit served and its leader
//! then lost before a follower copied it, the committed offset a consumer
//! read would go backwards under the new coordinator. The same holds for
//! the records a new coordinator loads past the high watermark: they are
//! pending until it has replicated them. Within one leader epoch the
//! leader's log is never truncated, so a pending commit either becomes
//! visible or is dropped with the whole group when leadership moves.

use std::collections::BTreeMap;

use super::records::OffsetValue;

/// A topic partition a group committed an offset for.
pub(super) type OffsetKey = (String, i32);

/// One group's offsets: those replicated, served by OffsetFetch, and those
/// written but not yet replicated, by the offset of their record in
/// `__consumer_offsets`.
#[derive(Debug, Default)]
pub(super) struct GroupOffsets {
    committed: BTreeMap<OffsetKey, OffsetValue>,
    /// Per partition, in the order they were written (record offset, value).
    pending: BTreeMap<OffsetKey, Vec<(i64, OffsetValue)>>,
}

impl GroupOffsets {
    /// Records a commit written at `record_offset`: visible once the high
    /// watermark passes it ([`GroupOffsets::replicated_up_to`]).
    pub(super) fn insert_pending(&mut self, key: OffsetKey, record_offset: i64, value: OffsetValue) {
        self.pending.entry(key).or_default().push((record_offset, value));
    }

    /// Makes every pending commit whose record is below `high_watermark`
    /// visible; of several for one partition, the last one written wins.
    pub(super) fn replicated_up_to(&mut self, high_watermark: i64) {
        if self.pending.is_empty() {
            return;
        }
        let committed = &mut self.committed;
        self.pending.retain(|key, writes| {
            let replicated = writes.partition_point(|(record_offset, _)| *record_offset < high_watermark);
            if let Some((_, value)) = writes.drain(..replicated).next_back() {
                committed.insert(key.clone(), value);
            }
            !writes.is_empty()
        });
    }

    /// Removes a partition's offset, pending commits included (a tombstone
    /// is written after them, so it supersedes them).
    pub(super) fn remove(&mut self, key: &OffsetKey) {
        self.committed.remove(key);
        self.pending.remove(key);
    }

    /// The replicated offset of a partition.
    pub(super) fn get(&self, key: &OffsetKey) -> Option<&OffsetValue> {
        self.committed.get(key)
    }

    /// The replicated offsets.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&OffsetKey, &OffsetValue)> {
        self.committed.iter()
    }

    /// Every partition with an offset, replicated or pending.
    pub(super) fn keys(&self) -> Vec<OffsetKey> {
        let mut keys: Vec<OffsetKey> = self.committed.keys().chain(self.pending.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether the partition has an offset, replicated or pending.
    pub(super) fn contains(&self, key: &OffsetKey) -> bool {
        self.committed.contains_key(key) || self.pending.contains_key(key)
    }

    /// Whether there is no offset at all, replicated or pending.
    pub(super) fn is_empty(&self) -> bool {
        self.committed.is_empty() && self.pending.is_empty()
    }

    /// How many partitions have an offset, replicated or pending.
    pub(super) fn len(&self) -> usize {
        self.committed.len() + self.pending.keys().filter(|k| !self.committed.contains_key(*k)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: i64) -> OffsetValue {
        OffsetValue { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 }
    }

    fn key() -> OffsetKey {
        ("t".to_string(), 0)
    }

    #[test]
    fn a_commit_is_served_only_once_the_high_watermark_passes_its_record() {
        let mut offsets = GroupOffsets::default();
        offsets.insert_pending(key(), 10, value(5));
        offsets.replicated_up_to(10);
        assert_eq!(offsets.get(&key()), None);
        assert!(offsets.contains(&key()));
        assert_eq!(offsets.len(), 1);
        offsets.replicated_up_to(11);
        assert_eq!(offsets.get(&key()).map(|v| v.offset), Some(5));
        assert_eq!(offsets.len(), 1);
    }

    #[test]
    fn the_last_replicated_commit_wins_and_later_ones_stay_pending() {
        let mut offsets = GroupOffsets::default();
        offsets.insert_pending(key(), 10, value(5));
        offsets.insert_pending(key(), 11, value(7));
        offsets.insert_pending(key(), 12, value(9));
        offsets.replicated_up_to(12);
        assert_eq!(offsets.get(&key()).map(|v| v.offset), Some(7));
        offsets.replicated_up_to(13);
        assert_eq!(offsets.get(&key()).map(|v| v.offset), Some(9));
        assert_eq!(offsets.keys(), vec![key()]);
    }

    #[test]
    fn a_removal_drops_pending_commits_too() {
        let mut offsets = GroupOffsets::default();
        offsets.insert_pending(key(), 1, value(5));
        offsets.replicated_up_to(2);
        offsets.insert_pending(key(), 3, value(6));
        offsets.remove(&key());
        offsets.replicated_up_to(10);
        assert!(offsets.is_empty());
        assert_eq!(offsets.get(&key()), None);
    }
}
