//! Kafka-style identifiers: random UUIDs and their 22-character base64url
//! text form (`org.apache.kafka.common.Uuid#toString`).
//!
//! Invariant: ids produced here are never the zero UUID, never Kafka's
//! reserved metadata topic id (`0..01`), and their text form never starts
//! with `-` (Kafka avoids ids that look like command-line flags).

use uuid::Uuid;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's text form of a UUID: URL-safe base64 without padding (22 chars).
pub fn kafka_uuid_string(id: Uuid) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0] as u32;
        let b1 = chunk.get(1).copied().unwrap_or(0) as u32;
        let b2 = chunk.get(2).copied().unwrap_or(0) as u32;
        let n = (b0 << 16) | (b1 << 8) | b2;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(ALPHABET[idx as usize] as char);
        }
    }
    out
}

/// Parses Kafka's 22-character base64url form back into a UUID.
pub fn parse_kafka_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(16);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    if bits != 0 {
        return None;
    }
    let arr: [u8; 16] = out.try_into().ok()?;
    Some(Uuid::from_bytes(arr))
}

/// A fresh random id, as Kafka's `Uuid.randomUuid()` generates them.
pub fn random_kafka_uuid() -> Uuid {
    let reserved = Uuid::from_u128(1);
    loop {
        let id = Uuid::new_v4();
        if id.is_nil() || id == reserved || kafka_uuid_string(id).starts_with('-') {
            continue;
        }
        return id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for _ in 0..100 {
            let id = random_kafka_uuid();
            let s = kafka_uuid_string(id);
            assert_eq!(s.len(), 22);
            assert!(!s.starts_with('-'));
            assert_eq!(parse_kafka_uuid(&s), Some(id));
        }
        assert_eq!(kafka_uuid_string(Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid_string(Uuid::from_u128(1)), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
