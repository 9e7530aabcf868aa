//! The frame codec: every Kafka request and response is a 4-byte big-endian
//! length followed by that many bytes.
//!
//! Decoding is split like mini-redis does it: [`parse_frame`] answers
//! `Ok(None)` while a frame is incomplete, so the caller reads more, and an
//! error only for a frame that can never be valid (a negative or oversized
//! length). An error closes that connection and nothing else.

use bytes::{Buf, BytesMut};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 104_857_600;

/// A frame that can never be valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The announced size is negative.
    #[error("invalid frame size {0}")]
    InvalidSize(i32),
    /// The announced size is over `socket.request.max.bytes`.
    #[error("frame of {size} bytes is larger than socket.request.max.bytes ({max})")]
    TooLarge {
        /// The size the frame announced.
        size: usize,
        /// The configured limit.
        max: usize,
    },
}

/// The size of the frame at the front of `buf` (without its 4-byte length
/// prefix), or `Ok(None)` while fewer than 4 bytes are there. Checks the
/// size only; reserves nothing, so a length read off the wire costs no memory
/// until its bytes arrive.
pub fn parse_frame_size(buf: &[u8], max_size: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < 0 {
        return Err(FrameError::InvalidSize(size));
    }
    let size = size as usize;
    if size > max_size {
        return Err(FrameError::TooLarge { size, max: max_size });
    }
    Ok(Some(size))
}

/// Takes one whole frame (without its length prefix) off the front of `buf`,
/// or returns `Ok(None)` when `buf` does not hold a whole frame yet.
///
/// The frame shares `buf`'s allocation; a reader that must not let a kept
/// frame pin its buffer copies frames out instead (the broker's connections do).
pub fn parse_frame(buf: &mut BytesMut, max_size: usize) -> Result<Option<BytesMut>, FrameError> {
    let Some(size) = parse_frame_size(buf, max_size)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size)))
}

/// Writes the length prefix for a frame whose body follows.
pub fn frame_length_prefix(body_len: usize) -> [u8; 4] {
    (body_len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_then_whole() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert_eq!(parse_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[3, 9]);
        let frame = parse_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn oversized_and_negative_are_errors() {
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert!(matches!(parse_frame(&mut buf, 255), Err(FrameError::TooLarge { size: 256, .. })));
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(parse_frame(&mut buf, 255), Err(FrameError::InvalidSize(-1)));
    }

    #[test]
    fn size_is_read_without_reserving() {
        assert_eq!(parse_frame_size(&[0, 0, 1], 100), Ok(None));
        assert_eq!(parse_frame_size(&[0, 0, 0, 100], 100), Ok(Some(100)));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 100, 7][..]);
        let capacity = buf.capacity();
        assert_eq!(parse_frame(&mut buf, 100), Ok(None));
        assert_eq!(buf.capacity(), capacity);
    }
}
