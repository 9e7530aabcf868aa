//! Topic name rules, as in Kafka's `org.apache.kafka.common.internals.Topic`.
//!
//! A legal name is 1..=249 ASCII characters from `[a-zA-Z0-9._-]` and is not
//! `.` or `..`. Because metric names replace `.` with `_`, two topics whose
//! names differ only in `.` versus `_` collide; the controller refuses the
//! second one.

use crate::error::ControllerError;

/// Longest legal topic name.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// The group coordinator's internal topic.
pub const GROUP_METADATA_TOPIC_NAME: &str = "__consumer_offsets";

/// The transaction coordinator's internal topic.
pub const TRANSACTION_STATE_TOPIC_NAME: &str = "__transaction_state";

/// Checks a topic name; the error is INVALID_TOPIC_EXCEPTION with Kafka's text.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic("Topic name is illegal, it can't be empty".to_string()));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic("Topic name cannot be \".\" or \"..\"".to_string()));
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// True for Kafka's internal topics (`__consumer_offsets`, `__transaction_state`).
pub fn is_internal_topic(name: &str) -> bool {
    name == GROUP_METADATA_TOPIC_NAME || name == TRANSACTION_STATE_TOPIC_NAME
}

/// True if the name contains `.` or `_`, the characters that may collide.
pub fn has_collision_chars(name: &str) -> bool {
    name.contains(['.', '_'])
}

/// The name with every `.` replaced by `_`; two names collide when these are equal.
pub fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

/// True if two distinct names collide only by `.` versus `_`.
pub fn has_collision(a: &str, b: &str) -> bool {
    a != b && unify_collision_chars(a) == unify_collision_chars(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_and_illegal_names() {
        for ok in ["a", "A-b_c.d", "__consumer_offsets", "__transaction_state", "...", "x".repeat(249).as_str()] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", "x".repeat(250).as_str()] {
            let e = validate_topic_name(bad).unwrap_err();
            assert_eq!(e.error_code(), 17, "{bad}");
        }
        assert!(validate_topic_name("a b").unwrap_err().message().contains("ASCII alphanumerics"));
    }

    #[test]
    fn collisions() {
        assert!(has_collision("a.b", "a_b"));
        assert!(!has_collision("a.b", "a.b"));
        assert!(!has_collision("ab", "a_b"));
        assert!(has_collision_chars("a.b") && !has_collision_chars("ab"));
        assert!(is_internal_topic("__consumer_offsets"));
    }
}
