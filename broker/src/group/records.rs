//! The records of `__consumer_offsets`, in Kafka's own key and value schemas,
//! so the topic holds what Kafka's tools expect to read.
//!
//! Keys start with an int16 version that says what the record is:
//! - 0 or 1: `OffsetCommitKey { group: string, topic: string, partition: int32 }`
//! - 2: `GroupMetadataKey { group: string }`
//! - 3-8: a KIP-848 consumer group's records (see [`ConsumerRecord`]); their
//!   values are flexible and live in [`super::consumer::records`].
//!
//! Values start with their own int16 version; a null value is a tombstone.
//! - `OffsetCommitValue` v3 (written): `offset: int64, leader_epoch: int32,
//!   metadata: string, commit_timestamp: int64`. Read: v0-v3 (v1 adds
//!   `expire_timestamp` after the commit timestamp; v2 drops it; v3 adds the
//!   leader epoch).
//! - `GroupMetadataValue` v3 (written): `protocol_type: string, generation:
//!   int32, protocol: nullable string, leader: nullable string,
//!   current_state_timestamp: int64, members: [member_id: string,
//!   group_instance_id: nullable string, client_id: string, client_host:
//!   string, rebalance_timeout: int32, session_timeout: int32, subscription:
//!   bytes, assignment: bytes]`. Read: v0-v3 (v1 adds the rebalance timeout,
//!   v2 the state timestamp, v3 the instance id).
//!
//! All integers are big-endian; strings are int16-length-prefixed (-1 =
//! null), bytes int32-length-prefixed. The flexible v4 encodings are not
//! written and not read (a v4 record is reported as unsupported).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A record that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct MalformedRecord(pub String);

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A committed offset of one partition.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership and assignment.
    GroupMetadata {
        /// Group id.
        group: String,
    },
    /// One of a KIP-848 consumer group's records.
    ConsumerGroup {
        /// Group id.
        group: String,
        /// Which record.
        record: ConsumerRecord,
    },
}

/// The records of a KIP-848 consumer group, by key version: the group
/// epoch, the subscribed topics' metadata, each member's subscription, the
/// target assignment (its epoch and each member's share) and each member's
/// current assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsumerRecord {
    /// 3: `ConsumerGroupMetadataKey`, the group epoch.
    GroupEpoch,
    /// 4: `ConsumerGroupPartitionMetadataKey`, the subscribed topics.
    SubscriptionMetadata,
    /// 5: `ConsumerGroupMemberMetadataKey`, a member's subscription.
    MemberSubscription(String),
    /// 6: `ConsumerGroupTargetAssignmentMetadataKey`, the assignment epoch.
    TargetAssignmentEpoch,
    /// 7: `ConsumerGroupTargetAssignmentMemberKey`, a member's target.
    TargetAssignment(String),
    /// 8: `ConsumerGroupCurrentMemberAssignmentKey`, a member's current assignment.
    CurrentAssignment(String),
}

impl ConsumerRecord {
    fn key_version(&self) -> i16 {
        match self {
            ConsumerRecord::GroupEpoch => 3,
            ConsumerRecord::SubscriptionMetadata => 4,
            ConsumerRecord::MemberSubscription(_) => 5,
            ConsumerRecord::TargetAssignmentEpoch => 6,
            ConsumerRecord::TargetAssignment(_) => 7,
            ConsumerRecord::CurrentAssignment(_) => 8,
        }
    }

    fn member(&self) -> Option<&str> {
        match self {
            ConsumerRecord::MemberSubscription(m) | ConsumerRecord::TargetAssignment(m) => Some(m),
            ConsumerRecord::CurrentAssignment(m) => Some(m),
            _ => None,
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When the commit was made (ms).
    pub commit_timestamp: i64,
}

/// A member as stored in the group metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// Session timeout (ms).
    pub session_timeout_ms: i32,
    /// The member's subscription (its metadata for the chosen protocol).
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group's state as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Generation id.
    pub generation: i32,
    /// The chosen protocol (assignor), if any.
    pub protocol: Option<String>,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// When the group last changed state (ms).
    pub current_state_timestamp: i64,
    /// Members.
    pub members: Vec<MemberValue>,
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// An unsigned varint, as the flexible encodings write lengths and tags.
pub(super) fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A compact array's or string's length: n + 1, 0 meaning null.
pub(super) fn put_compact_len(buf: &mut BytesMut, len: Option<usize>) {
    put_uvarint(buf, len.map_or(0, |n| n as u64 + 1));
}

/// A compact nullable string.
pub(super) fn put_compact_string(buf: &mut BytesMut, s: Option<&str>) {
    put_compact_len(buf, s.map(str::len));
    if let Some(s) = s {
        buf.put_slice(s.as_bytes());
    }
}

/// The end of a flexible struct: no tagged fields.
pub(super) fn put_no_tagged_fields(buf: &mut BytesMut) {
    put_uvarint(buf, 0);
}

impl RecordKey {
    /// Encodes the key (offset keys as version 1, group keys as version 2).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset { group, topic, partition } => {
                buf.put_i16(1);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::GroupMetadata { group } => {
                buf.put_i16(2);
                put_string(&mut buf, group);
            }
            RecordKey::ConsumerGroup { group, record } => {
                buf.put_i16(record.key_version());
                put_string(&mut buf, group);
                if let Some(member) = record.member() {
                    put_string(&mut buf, member);
                }
            }
        }
        buf.freeze()
    }

    /// Decodes a key. Other versions are coordinator records this broker
    /// does not use (share groups, transactions' are elsewhere): `Ok(None)`.
    pub fn decode(mut buf: Bytes) -> Result<Option<RecordKey>, MalformedRecord> {
        let mut r = Reader(&mut buf);
        let version = r.i16()?;
        let record = match version {
            0 | 1 => {
                return Ok(Some(RecordKey::Offset { group: r.string()?, topic: r.string()?, partition: r.i32()? }))
            }
            2 => return Ok(Some(RecordKey::GroupMetadata { group: r.string()? })),
            3 => ConsumerRecord::GroupEpoch,
            4 => ConsumerRecord::SubscriptionMetadata,
            6 => ConsumerRecord::TargetAssignmentEpoch,
            5 | 7 | 8 => {
                let group = r.string()?;
                let member = r.string()?;
                let record = match version {
                    5 => ConsumerRecord::MemberSubscription(member),
                    7 => ConsumerRecord::TargetAssignment(member),
                    _ => ConsumerRecord::CurrentAssignment(member),
                };
                return Ok(Some(RecordKey::ConsumerGroup { group, record }));
            }
            _ => return Ok(None),
        };
        Ok(Some(RecordKey::ConsumerGroup { group: r.string()?, record }))
    }
}

impl OffsetValue {
    /// Encodes as version 3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    /// Decodes versions 0-3.
    pub fn decode(mut buf: Bytes) -> Result<OffsetValue, MalformedRecord> {
        let mut r = Reader(&mut buf);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(MalformedRecord(format!("offset commit value version {version}")));
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp = r.i64()?;
        if version == 1 {
            let _expire_timestamp = r.i64()?;
        }
        Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
    }
}

impl GroupMetadataValue {
    /// Encodes as version 3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_string(&mut buf, self.protocol.as_deref());
        put_nullable_string(&mut buf, self.leader.as_deref());
        buf.put_i64(self.current_state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable_string(&mut buf, m.group_instance_id.as_deref());
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Decodes versions 0-3.
    pub fn decode(mut buf: Bytes) -> Result<GroupMetadataValue, MalformedRecord> {
        let mut r = Reader(&mut buf);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(MalformedRecord(format!("group metadata value version {version}")));
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 { r.nullable_string()? } else { None };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
            let session_timeout_ms = r.i32()?;
            let subscription = r.bytes()?;
            let assignment = r.bytes()?;
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms: if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms },
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
    }
}

/// Bounds-checked reads over a record's bytes.
pub(super) struct Reader<'a>(pub(super) &'a mut Bytes);

impl Reader<'_> {
    pub(super) fn i8(&mut self) -> Result<i8, MalformedRecord> {
        self.need(1)?;
        Ok(self.0.get_i8())
    }
    pub(super) fn uvarint(&mut self) -> Result<u64, MalformedRecord> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            self.need(1)?;
            let byte = self.0.get_u8();
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MalformedRecord("varint longer than 64 bits".into()))
    }
    /// A compact array's or string's length; None for null.
    pub(super) fn compact_len(&mut self) -> Result<Option<usize>, MalformedRecord> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Ok(None);
        }
        let len = usize::try_from(raw - 1).map_err(|_| MalformedRecord("length out of range".into()))?;
        // Every element takes at least one byte: a longer length is a lie.
        self.need(len)?;
        Ok(Some(len))
    }
    pub(super) fn compact_nullable_string(&mut self) -> Result<Option<String>, MalformedRecord> {
        let Some(len) = self.compact_len()? else { return Ok(None) };
        let raw = self.0.split_to(len);
        String::from_utf8(raw.to_vec()).map(Some).map_err(|_| MalformedRecord("string is not UTF-8".into()))
    }
    pub(super) fn compact_string(&mut self) -> Result<String, MalformedRecord> {
        self.compact_nullable_string()?.ok_or_else(|| MalformedRecord("null where a string is required".into()))
    }
    pub(super) fn uuid(&mut self) -> Result<uuid::Uuid, MalformedRecord> {
        self.need(16)?;
        let mut raw = [0u8; 16];
        self.0.copy_to_slice(&mut raw);
        Ok(uuid::Uuid::from_bytes(raw))
    }
    /// A flexible struct's tagged fields: (tag, bytes).
    pub(super) fn tagged_fields(&mut self) -> Result<Vec<(u64, Bytes)>, MalformedRecord> {
        let count = self.uvarint()?;
        let mut fields = Vec::new();
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).map_err(|_| MalformedRecord("tag size out of range".into()))?;
            self.need(size)?;
            fields.push((tag, self.0.split_to(size)));
        }
        Ok(fields)
    }

    /// Skips a flexible struct's tagged fields.
    pub(super) fn skip_tagged_fields(&mut self) -> Result<(), MalformedRecord> {
        self.tagged_fields().map(drop)
    }
    fn need(&self, n: usize) -> Result<(), MalformedRecord> {
        if self.0.remaining() < n {
            return Err(MalformedRecord(format!("needs {n} more bytes, has {}", self.0.remaining())));
        }
        Ok(())
    }
    pub(super) fn i16(&mut self) -> Result<i16, MalformedRecord> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    pub(super) fn i32(&mut self) -> Result<i32, MalformedRecord> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, MalformedRecord> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_string(&mut self) -> Result<Option<String>, MalformedRecord> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize)?;
        let raw = self.0.split_to(len as usize);
        String::from_utf8(raw.to_vec()).map(Some).map_err(|_| MalformedRecord("string is not UTF-8".into()))
    }
    fn string(&mut self) -> Result<String, MalformedRecord> {
        self.nullable_string()?.ok_or_else(|| MalformedRecord("null where a string is required".into()))
    }
    fn bytes(&mut self) -> Result<Bytes, MalformedRecord> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        self.need(len as usize)?;
        Ok(self.0.split_to(len as usize))
    }
}

/// The `__consumer_offsets` partition of a group: Kafka's
/// `abs(groupId.hashCode()) % partitions`, with Java's String hash over
/// UTF-16 code units and Kafka's `Utils.abs` (which maps i32::MIN to 0).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_have_kafkas_layout() {
        let key = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        assert_eq!(&key.encode()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
        assert_eq!(RecordKey::decode(key.encode()).unwrap(), Some(key));
        let value = OffsetValue { offset: 42, leader_epoch: 5, metadata: "m".into(), commit_timestamp: 1000 };
        let bytes = value.encode();
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(bytes.len(), 2 + 8 + 4 + 3 + 8);
        assert_eq!(OffsetValue::decode(bytes).unwrap(), value);
    }

    #[test]
    fn older_offset_values_decode() {
        // v1: offset, metadata, commit timestamp, expire timestamp.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(7);
        b.put_i16(0);
        b.put_i64(100);
        b.put_i64(200);
        let v = OffsetValue::decode(b.freeze()).unwrap();
        assert_eq!((v.offset, v.leader_epoch, v.commit_timestamp), (7, -1, 100));
    }

    #[test]
    fn group_metadata_round_trips_and_rejects_truncation() {
        let value = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 123,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let bytes = value.encode();
        assert_eq!(GroupMetadataValue::decode(bytes.clone()).unwrap(), value);
        for cut in 0..bytes.len() {
            assert!(GroupMetadataValue::decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let key = RecordKey::GroupMetadata { group: "g".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn partition_matches_javas_string_hash() {
        // "".hashCode() == 0; "a".hashCode() == 97; "group".hashCode() == 98629247.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }
}
