//! Cutting a TCP byte stream into SIP messages (RFC 3261 §18.3: Content-Length frames a stream).
//!
//! Bytes are read into one [`BytesMut`] per connection and every message leaves it as
//! `split_to(len).freeze()`: a zero-copy [`Bytes`] the core can keep as long as it likes.

use bytes::{Bytes, BytesMut};
use tandem_sip::ParseError;

/// The most bytes held for one connection while no complete message is in them. The codec rejects
/// oversized messages itself; this only bounds what a peer can make Tandem buffer.
pub const MAX_BUFFERED: usize = 256 * 1024;

/// Free space guaranteed before each read.
const MIN_READ_SPACE: usize = 4 * 1024;
/// Space added when less than `MIN_READ_SPACE` is free.
const READ_CHUNK: usize = 16 * 1024;

/// What the next bytes of a stream hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole SIP message, leading CRLFs removed.
    Message(Bytes),
    /// A double-CRLF keep-alive ping (RFC 5626 §4.4.1); the answer is one CRLF.
    Ping,
}

/// Why a stream can never yield another message; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The codec found the bytes invalid (no Content-Length, a bad value, headers too long...).
    #[error("invalid SIP stream: {0}")]
    Invalid(#[from] ParseError),
    /// More than [`MAX_BUFFERED`] bytes arrived without a complete message.
    #[error("no complete message within {MAX_BUFFERED} bytes")]
    TooLarge,
    /// The codec reported a frame length outside the buffered bytes.
    #[error("codec returned frame length {0} for {1} buffered bytes")]
    BadLength(usize, usize),
}

/// Per-connection stream buffer and framer.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
}

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// The buffer to read into (`AsyncReadExt::read_buf`), with room for at least 4 KiB.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < MIN_READ_SPACE {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Appends bytes (for callers that do not read into [`StreamFramer::read_buffer`]).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. Lone CRLFs between messages
    /// are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        while !self.buf.is_empty() {
            let Some(len) = tandem_sip::frame_stream(&self.buf)? else {
                if self.buf.len() > MAX_BUFFERED {
                    return Err(FramingError::TooLarge);
                }
                return Ok(None);
            };
            if len == 0 || len > self.buf.len() {
                return Err(FramingError::BadLength(len, self.buf.len()));
            }
            let frame = self.buf.split_to(len).freeze();
            if tandem_sip::is_keepalive(&frame) {
                if frame.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(Some(Frame::Ping));
                }
                continue;
            }
            return Ok(Some(Frame::Message(strip_leading_crlf(frame))));
        }
        Ok(None)
    }
}

/// RFC 3261 §7.5: CRLFs before a start line are ignored.
fn strip_leading_crlf(mut frame: Bytes) -> Bytes {
    let start = frame
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(frame.len());
    let _ = frame.split_to(start);
    frame
}
