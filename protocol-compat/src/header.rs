//! Request header parsing (header v0, v1 and the flexible v2) and response
//! header encoding.
//!
//! The header version depends on the API key and version, so the first four
//! bytes are peeked before the header is decoded. An unknown API key cannot be
//! parsed further; Kafka closes such a connection, and so does Weir.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// A request header that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than the fixed part of a header.
    #[error("request of {0} bytes is too short for a header")]
    TooShort(usize),
    /// An API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// The header bytes do not decode.
    #[error("malformed request header for {api_key:?} v{api_version}: {reason}")]
    Malformed {
        /// The request's API key.
        api_key: ApiKey,
        /// The request's API version.
        api_version: i16,
        /// What the decoder said.
        reason: String,
    },
}

/// A decoded request header and the body that follows it.
#[derive(Debug)]
pub struct Request {
    /// The API this request is for.
    pub api_key: ApiKey,
    /// The decoded header (version, correlation id, client id).
    pub header: RequestHeader,
    /// The request body, not yet decoded.
    pub body: Bytes,
}

/// Splits a frame into its header and body.
pub fn parse_request(frame: BytesMut) -> Result<Request, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(key).map_err(|_| HeaderError::UnknownApiKey(key))?;
    let header_version = api_key.request_header_version(api_version);
    let mut body = frame.freeze();
    let header = RequestHeader::decode(&mut body, header_version).map_err(|e| HeaderError::Malformed {
        api_key,
        api_version,
        reason: e.to_string(),
    })?;
    Ok(Request { api_key, header, body })
}

/// The correlation id of a frame, if it is long enough to have one; used to
/// log requests whose header does not parse.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame.get(4..8).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes a response header: v0 is the correlation id alone; v1 (flexible
/// responses) adds an empty tagged-field section.
pub fn write_response_header(buf: &mut BytesMut, correlation_id: i32, header_version: i16) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};

    fn frame_for(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &header).unwrap();
        buf.extend_from_slice(body);
        buf
    }

    #[test]
    fn parses_v1_and_flexible_headers() {
        for (key, version) in [(ApiKey::Metadata, 1), (ApiKey::Metadata, 12), (ApiKey::ApiVersions, 3)] {
            let req = parse_request(frame_for(key, version, 77, &[9, 9])).unwrap();
            assert_eq!(req.api_key, key);
            assert_eq!(req.header.request_api_version, version);
            assert_eq!(req.header.correlation_id, 77);
            assert_eq!(req.header.client_id.as_deref(), Some("t"));
            assert_eq!(&req.body[..], &[9, 9]);
        }
    }

    #[test]
    fn unknown_key_and_short_frames_are_errors() {
        let mut f = frame_for(ApiKey::Metadata, 1, 1, &[]);
        f[0] = 0x7f;
        assert!(matches!(parse_request(f), Err(HeaderError::UnknownApiKey(_))));
        assert!(matches!(parse_request(BytesMut::from(&[0u8; 5][..])), Err(HeaderError::TooShort(5))));
    }
}
