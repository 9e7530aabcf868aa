//! A ConsumerGroupHeartbeat as the group sees it: the request decoded
//! from any version, its answers, Kafka's checks of its shape, and the
//! regular-expression subscriptions of v1.

use weir_protocol::ErrorCode;

use super::assignor::Assignment;
use super::{ConsumerGroupConfig, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH};

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// Member id; empty on a first join (the coordinator makes one).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for now.
    pub member_epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// None when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// v1: a regular expression (RE2 syntax, whole-name match) over topic
    /// names; None when unchanged, empty to drop it.
    pub subscribed_topic_regex: Option<String>,
    /// v1: the client makes its member id, so it may never be empty.
    pub require_member_id: bool,
    /// None when unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns; None when unchanged.
    pub owned: Option<Assignment>,
    /// Client id from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The member id (generated on a first join).
    pub member_id: String,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// When to send the next heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

/// A refused heartbeat: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    /// The error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

/// A refused heartbeat with Kafka's error code and message.
pub(crate) fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, HeartbeatError> {
    Err(HeartbeatError { code, message: message.into() })
}

/// Checks the request's shape before any group is looked at, as Kafka does.
pub fn validate(request: &HeartbeatRequest, config: &ConsumerGroupConfig) -> Result<(), HeartbeatError> {
    if request.require_member_id && request.member_id.is_empty() {
        return refuse(ErrorCode::InvalidRequest, "MemberId can't be empty.");
    }
    if request.instance_id.as_deref() == Some("") {
        return refuse(ErrorCode::InvalidRequest, "InstanceId can't be empty.");
    }
    if request.rack_id.as_deref() == Some("") {
        return refuse(ErrorCode::InvalidRequest, "RackId can't be empty.");
    }
    match request.member_epoch {
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return refuse(ErrorCode::InvalidRequest, "RebalanceTimeoutMs must be provided in first request.");
            }
            if !request.owned.as_ref().is_some_and(|owned| owned.is_empty()) {
                return refuse(ErrorCode::InvalidRequest, "TopicPartitions must be empty when (re-)joining.");
            }
            let names = request.subscribed_topic_names.as_deref().unwrap_or_default();
            let regex = request.subscribed_topic_regex.as_deref().unwrap_or_default();
            if names.is_empty() && regex.is_empty() {
                return refuse(
                    ErrorCode::InvalidRequest,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        epoch if epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH => {
            if request.member_id.is_empty() {
                return refuse(ErrorCode::InvalidRequest, "MemberId can't be empty.");
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            if request.member_id.is_empty() {
                return refuse(ErrorCode::InvalidRequest, "MemberId can't be empty.");
            }
            if request.instance_id.is_none() {
                return refuse(ErrorCode::InvalidRequest, "InstanceId can't be null.");
            }
        }
        _ => return refuse(ErrorCode::InvalidRequest, "MemberEpoch is invalid."),
    }
    if let Some(pattern) = request.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) {
        TopicRegex::new(pattern)?;
    }
    if let Some(name) = &request.server_assignor {
        if !config.assignors.iter().any(|a| a == name) {
            return refuse(
                ErrorCode::UnsupportedAssignor,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    config.assignors.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// A regular-expression subscription: matches whole topic names, never
/// internal topics.
#[derive(Debug, Clone)]
pub struct TopicRegex {
    /// As the client sent it.
    pub pattern: String,
    whole_name: regex::Regex,
}

impl TopicRegex {
    /// Compiles `pattern` (INVALID_REGULAR_EXPRESSION when it is not one).
    pub fn new(pattern: &str) -> Result<TopicRegex, HeartbeatError> {
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(whole_name) => Ok(TopicRegex { pattern: pattern.to_string(), whole_name }),
            Err(e) => refuse(
                ErrorCode::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {e}."),
            ),
        }
    }

    pub(super) fn matches(&self, topic: &str) -> bool {
        !topic.starts_with("__") && self.whole_name.is_match(topic)
    }
}
