//! Removing what groups left behind: DeleteGroups, OffsetDelete and the
//! expiry of committed offsets (`offsets.retention.minutes`, KIP-211). Each
//! writes tombstones to `__consumer_offsets` first, like every other change.

use bytes::Bytes;
use tracing::info;
use weir_protocol::ErrorCode;

use super::classic::GroupState;
use super::coordinator::{GroupCoordinator, GroupEntry};
use super::records::RecordKey;
use crate::broker::Broker;
use crate::replica::now_ms;

impl GroupCoordinator {
    /// DeleteGroups: only empty groups; tombstones for the group and its offsets.
    pub fn delete_group(&self, broker: &Broker, group_id: &str) -> Option<ErrorCode> {
        if let Err(e) = self.gate(group_id) {
            return Some(e);
        }
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else { return Some(ErrorCode::GroupIdNotFound) };
        match (&entry.consumer, entry.group.state) {
            (Some(consumer), _) if !consumer.members.is_empty() => return Some(ErrorCode::NonEmptyGroup),
            (Some(_), _) => {}
            (None, GroupState::Dead) => return Some(ErrorCode::GroupIdNotFound),
            (None, GroupState::Empty) => {}
            (None, _) => return Some(ErrorCode::NonEmptyGroup),
        }
        let mut records: Vec<(Bytes, Option<Bytes>)> = entry
            .offsets
            .keys()
            .into_iter()
            .map(|(topic, partition)| {
                (RecordKey::Offset { group: group_id.to_string(), topic, partition }.encode(), None)
            })
            .collect();
        records.extend(Self::group_tombstones(group_id, entry));
        if let Err(e) = self.write(broker, group_id, records) {
            return Some(e);
        }
        entry.group.mark_dead(now_ms());
        groups.remove(group_id);
        None
    }

    /// OffsetDelete: removes committed offsets of topics the group does not
    /// subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).
    pub fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        self.gate(group_id)?;
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else { return Err(ErrorCode::GroupIdNotFound) };
        let subscribed = match &entry.consumer {
            Some(consumer) => consumer.subscribed_topics().into_iter().collect(),
            None => {
                if entry.group.state == GroupState::Dead {
                    return Err(ErrorCode::GroupIdNotFound);
                }
                if !entry.group.is_empty() && entry.group.subscribed_topics().is_none() {
                    return Err(ErrorCode::NonEmptyGroup);
                }
                entry.group.subscribed_topics().unwrap_or_default()
            }
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        let mut removed = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                results.push(Some(ErrorCode::GroupSubscribedToTopic));
                continue;
            }
            results.push(None);
            if entry.offsets.contains(&(topic.clone(), *partition)) {
                let key =
                    RecordKey::Offset { group: group_id.to_string(), topic: topic.clone(), partition: *partition };
                records.push((key.encode(), None));
                removed.push((topic.clone(), *partition));
            }
        }
        if !records.is_empty() {
            self.write(broker, group_id, records)?;
            for key in removed {
                entry.offsets.remove(&key);
            }
        }
        Ok(results)
    }

    /// The records that delete a group (its offsets aside): the classic
    /// group's metadata tombstone, or a consumer group's tombstones.
    fn group_tombstones(group_id: &str, entry: &GroupEntry) -> Vec<(Bytes, Option<Bytes>)> {
        match &entry.consumer {
            Some(consumer) => consumer.tombstones(),
            None => vec![(RecordKey::GroupMetadata { group: group_id.to_string() }.encode(), None)],
        }
    }

    /// Expires committed offsets past `offsets.retention.minutes` (KIP-211):
    /// a group's offsets only once it has had no members for that long; a
    /// standalone group's (no protocol type) offsets each by its own commit
    /// time. Expired offsets get tombstones, and a group left with neither
    /// members nor offsets is deleted. Returns how many offsets expired.
    pub fn expire_offsets(&self, broker: &Broker, retention_ms: i64) -> usize {
        let now = now_ms();
        let mut groups = self.lock();
        let mut expired_total = 0;
        let mut dead = Vec::new();
        for (group_id, entry) in groups.iter_mut() {
            let (standalone, empty_since) = match &entry.consumer {
                Some(consumer) if consumer.members.is_empty() => (false, consumer.state_timestamp_ms),
                Some(_) => continue,
                None if entry.group.state != GroupState::Empty => continue,
                None => (entry.group.protocol_type.is_none(), entry.group.state_timestamp_ms),
            };
            let expired: Vec<(String, i32)> = entry
                .offsets
                .iter()
                .filter(|(_, v)| {
                    let base = if standalone { v.commit_timestamp } else { empty_since };
                    now.saturating_sub(base) >= retention_ms
                })
                .map(|(k, _)| k.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut records: Vec<(Bytes, Option<Bytes>)> = expired
                .iter()
                .map(|(t, p)| {
                    (RecordKey::Offset { group: group_id.clone(), topic: t.clone(), partition: *p }.encode(), None)
                })
                .collect();
            let group_gone = expired.len() == entry.offsets.len();
            if group_gone {
                records.extend(Self::group_tombstones(group_id, entry));
            }
            if self.write(broker, group_id, records).is_err() {
                continue;
            }
            for key in &expired {
                entry.offsets.remove(key);
            }
            expired_total += expired.len();
            if group_gone {
                entry.group.mark_dead(now);
                dead.push(group_id.clone());
            }
        }
        for group_id in dead {
            groups.remove(&group_id);
        }
        if expired_total > 0 {
            info!(offsets = expired_total, "expired committed offsets past offsets.retention.minutes");
        }
        expired_total
    }
}
