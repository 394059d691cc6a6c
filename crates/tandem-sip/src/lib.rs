//! Tandem's SIP codec (RFC 3261 §7, §20, §25).
//!
//! * [`frame_stream`] / [`Message::parse`]: framing for TCP streams and UDP datagrams, telling an
//!   *incomplete* message from an *invalid* one.
//! * [`Message`]: a zero-copy index over one message held in [`bytes::Bytes`]: start line, header
//!   spans (compact forms and folded lines understood), body span.
//! * Typed, lazily parsed views borrowing from the message: [`Via`], [`NameAddr`], [`Uri`], [`CSeq`].
//! * [`Editor`]: byte-splicing edits (push/pop Via, replace or remove headers, new start line, body
//!   swap with a fixed Content-Length) that copy untouched bytes verbatim, in one allocation.
//! * [`ResponseBuilder`] / [`RequestBuilder`]: new messages (100 Trying, 483, OPTIONS probes, BYE, ACK).
//! * [`peek_status`] / [`peek_request`]: the status code, or the method and top-Via branch, of a
//!   message this process built, without parsing it again.
//!
//! API CONTRACT — other crates code against exactly these names and signatures.

// The implementation lives in modules; this file only declares and re-exports.

mod build;
mod edit;
mod framing;
mod header_name;
mod index;
mod inline_vec;
mod lex;
mod message;
mod method;
mod name_addr;
mod peek;
mod uri;
mod via;

#[doc(hidden)]
pub mod fuzz;

pub use build::{RequestBuilder, ResponseBuilder};
pub use edit::Editor;
pub use framing::{frame_stream, is_keepalive, FrameResult, MAX_HEADER_SECTION, MAX_MESSAGE};
pub use header_name::HeaderName;
pub use message::{CSeq, Message, StartLine, MAX_HEADERS};
pub use method::Method;
pub use name_addr::NameAddr;
pub use peek::{peek_request, peek_status, RequestHead};
pub use uri::{Host, Scheme, TransportKind, Uri};
pub use via::Via;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The start line is neither a valid Request-Line nor Status-Line.
    #[error("bad start line")]
    StartLine,
    /// A header line is malformed (no colon, bad name token, bare CR, ...).
    #[error("bad header line")]
    HeaderLine,
    /// A header that must appear exactly once is missing or repeated, or its value is malformed.
    #[error("bad or missing {0} header")]
    Header(&'static str),
    /// Content-Length is malformed or disagrees with the bytes present.
    #[error("bad Content-Length")]
    ContentLength,
    /// The message exceeds the codec's size limit.
    #[error("message too large")]
    TooLarge,
    /// Request-URI, or a URI inside a header, is malformed.
    #[error("bad URI")]
    Uri,
    /// The SIP-Version is not SIP/2.0.
    #[error("unsupported SIP version")]
    Version,
}

#[cfg(test)]
mod tests;
