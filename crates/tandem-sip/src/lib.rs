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
//!
//! API CONTRACT — other crates code against exactly these names and signatures.

// The implementation lives in modules; this file only declares and re-exports.

#![allow(clippy::todo, unused_variables, dead_code)] // STUB: removed when implemented

use bytes::Bytes;
use std::borrow::Cow;
use std::net::IpAddr;

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

/// Outcome of looking for one message at the start of a TCP stream buffer.
pub type FrameResult = Result<Option<usize>, ParseError>;

/// Looks for one complete message at the start of `buf` (a TCP/TLS stream, RFC 3261 §18.3).
/// Leading CRLFs (keep-alives) count as part of the frame only when followed by a message; a buffer of
/// only CRLFs returns `Ok(Some(n))` with n = number of CRLF bytes so the caller can skip them and
/// `Message::parse` is never called on them (callers check `is_keepalive`).
/// Returns `Ok(Some(len))` when `buf[..len]` is one message, `Ok(None)` when more bytes are needed,
/// `Err` when the stream can never become valid (no Content-Length on a stream, a bad value, header
/// section larger than the limit).
pub fn frame_stream(buf: &[u8]) -> FrameResult {
    todo!()
}

/// True when `buf` is only CR/LF bytes (RFC 5626 keep-alive), which is neither parsed nor counted.
pub fn is_keepalive(buf: &[u8]) -> bool {
    todo!()
}

/// A SIP method. Methods are open: any token is a legal method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token, kept verbatim (case-sensitive per RFC 3261 §7.1).
    Other(Box<str>),
}

impl Method {
    /// Parses a method token; `None` if `s` is not a valid token.
    pub fn from_token(s: &str) -> Option<Method> {
        todo!()
    }
    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        todo!()
    }
}

/// Well-known header names with their compact forms; anything else is `Other`.
/// Matching is case-insensitive; compact forms (`v f t i m l c k s e o r u`... per RFC 3261 §7.3.3 and
/// registered extensions) map to the same variant as the long form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName<'a> {
    Via,               // v
    From,              // f
    To,                // t
    CallId,            // i
    CSeq,
    MaxForwards,
    Contact,           // m
    ContentLength,     // l
    ContentType,       // c
    Supported,         // k
    Subject,           // s
    ContentEncoding,   // e
    Event,             // o
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Unsupported,
    Allow,
    Server,
    UserAgent,
    Expires,
    RSeq,
    RAck,
    SessionExpires,    // x
    ReferTo,           // r
    AllowEvents,       // u
    /// Any other name, as written in the message (compare case-insensitively with [`HeaderName::is`]).
    Other(&'a str),
}

impl<'a> HeaderName<'a> {
    /// Classifies a header name as written (long or compact form, any case).
    pub fn parse(name: &'a str) -> HeaderName<'a> {
        todo!()
    }
    /// Canonical long form used when Tandem writes this header.
    pub fn as_str(&self) -> &'a str {
        todo!()
    }
    /// Case-insensitive equality that treats compact and long forms as equal.
    pub fn is(&self, other: HeaderName<'_>) -> bool {
        todo!()
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: Method, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

/// One parsed SIP message: the bytes plus an index of spans into them. Cheap to clone (refcounted).
#[derive(Debug, Clone)]
pub struct Message {
    buf: Bytes,
}

impl Message {
    /// Parses one whole message: a UDP datagram, or a frame cut by [`frame_stream`].
    /// For datagrams a missing Content-Length means "body = rest of datagram"; a Content-Length smaller
    /// than the bytes present truncates the body (extra bytes dropped, §18.3); larger is an error.
    /// Validates what every element needs to act: start line and version, and that Via (≥1), From, To,
    /// Call-ID, CSeq (number + method, and for requests the CSeq method equals the request method except
    /// for ACK/CANCEL semantics which the caller checks) are present and well-formed, Max-Forwards numeric
    /// when present, Content-Length numeric when present.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        todo!()
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }
    pub fn start_line(&self) -> StartLine<'_> {
        todo!()
    }
    pub fn is_request(&self) -> bool {
        todo!()
    }
    /// Request method (`None` for responses).
    pub fn method(&self) -> Option<&Method> {
        todo!()
    }
    /// Status code (`None` for requests).
    pub fn status(&self) -> Option<u16> {
        todo!()
    }
    /// Request-URI text (`None` for responses).
    pub fn request_uri(&self) -> Option<&str> {
        todo!()
    }
    /// Value of the first header with this name (raw text between colon and CRLF, trimmed; folded
    /// continuation lines replaced by one space, which borrows when there is no folding).
    pub fn header(&self, name: HeaderName<'_>) -> Option<Cow<'_, str>> {
        todo!()
    }
    /// Every header line with this name, in order (one item per header line, not split at commas).
    pub fn headers<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = Cow<'s, str>> + 's {
        std::iter::empty()
    }
    /// Every value of a comma-list header (Via, Route, Record-Route, Contact...), split at top-level
    /// commas (not inside quotes or <>), across all header lines, in order.
    pub fn header_values<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = Cow<'s, str>> + 's {
        std::iter::empty()
    }
    /// Number of header lines (for tests and limits).
    pub fn header_count(&self) -> usize {
        todo!()
    }
    pub fn call_id(&self) -> &str {
        todo!()
    }
    pub fn cseq(&self) -> CSeq {
        todo!()
    }
    /// The first Via value (validated by `parse`).
    pub fn top_via(&self) -> Via<'_> {
        todo!()
    }
    /// All Via values, top first.
    pub fn vias(&self) -> Vec<Via<'_>> {
        todo!()
    }
    pub fn from_hdr(&self) -> NameAddr<'_> {
        todo!()
    }
    pub fn to_hdr(&self) -> NameAddr<'_> {
        todo!()
    }
    pub fn max_forwards(&self) -> Option<u32> {
        todo!()
    }
    /// Contact values (empty for `*` or absent).
    pub fn contacts(&self) -> Vec<NameAddr<'_>> {
        todo!()
    }
    pub fn routes(&self) -> Vec<NameAddr<'_>> {
        todo!()
    }
    pub fn record_routes(&self) -> Vec<NameAddr<'_>> {
        todo!()
    }
    pub fn content_type(&self) -> Option<Cow<'_, str>> {
        todo!()
    }
    /// The body (zero-copy slice of the message).
    pub fn body(&self) -> Bytes {
        todo!()
    }
    /// Starts a byte-splicing edit of this message.
    pub fn edit(&self) -> Editor<'_> {
        Editor { msg: self }
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// Transport token of a Via or a `transport=` URI parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other,
}

/// Host part of a Via or URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host<'a> {
    /// IPv4 or IPv6 literal (brackets removed).
    Ip(IpAddr),
    /// A domain name, as written.
    Name(&'a str),
}

/// One Via value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: TransportKind,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// `branch` parameter, if present.
    pub branch: Option<&'a str>,
    /// `received` parameter, if present.
    pub received: Option<&'a str>,
    /// `rport`: None = absent, Some(None) = present without value, Some(Some(p)) = with value.
    pub rport: Option<Option<u16>>,
    /// The raw parameter text after sent-by (starting at the first ';'), for anything else.
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma-list).
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        todo!()
    }
    /// True when the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn is_rfc3261(&self) -> bool {
        todo!()
    }
}

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absolute URI scheme (kept opaque).
    Other,
}

/// A parsed URI (RFC 3261 §19.1, RFC 3966 tel, RFC 5118 IPv6 references). Borrowed; nothing decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The whole URI text.
    pub raw: &'a str,
    /// user part (sip/sips), or the number (tel); without the password.
    pub user: Option<&'a str>,
    /// host for sip/sips; `None` for tel and other schemes.
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    /// Raw `;param` text (starting at the first ';'), empty when none.
    pub params: &'a str,
    /// Raw `?headers` text (after '?'), empty when none.
    pub headers: &'a str,
}

impl<'a> Uri<'a> {
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        todo!()
    }
    /// Value of a URI parameter (`Some("")` for a flag such as `;lr`), case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        todo!()
    }
    /// `transport=` parameter as a kind.
    pub fn transport(&self) -> Option<TransportKind> {
        todo!()
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name without quotes, if any.
    pub display: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Raw header-parameter text after the URI (`;tag=..;expires=..`), starting at ';' or empty.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        todo!()
    }
    /// Header parameter value (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        todo!()
    }
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag")
    }
}

/// Byte-splicing editor. Operations are recorded, then `finish` writes the new message in one pass and
/// one allocation: every byte not touched by an operation is copied verbatim, header order is kept.
/// Content-Length is always rewritten to the final body length (long form `Content-Length`, replacing a
/// compact `l:` in place).
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
}

impl<'m> Editor<'m> {
    /// Replaces the start line (without CRLF), e.g. `INVITE sip:100@10.0.0.5:5080 SIP/2.0`.
    pub fn set_start_line(&mut self, line: &str) -> &mut Self {
        todo!()
    }
    /// Inserts a header line before all others of the same name (or at the top of the header section
    /// when there is none) — e.g. push Via.
    pub fn push_front(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        todo!()
    }
    /// Appends a header line after the last header (before Content-Length if Tandem writes it).
    pub fn append(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        todo!()
    }
    /// Removes the first *value* of a (possibly comma-list) header — e.g. pop Via: if the top Via line
    /// holds `a, b`, only `a` is removed.
    pub fn pop_first_value(&mut self, name: HeaderName<'_>) -> &mut Self {
        todo!()
    }
    /// Removes every line of this header.
    pub fn remove_all(&mut self, name: HeaderName<'_>) -> &mut Self {
        todo!()
    }
    /// Replaces every line of this header by a single line with `value` at the first one's position
    /// (appended when absent).
    pub fn set(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        todo!()
    }
    /// Max-Forwards − 1 (70 when absent, appended). Caller answers 483 itself when it was 0.
    pub fn decrement_max_forwards(&mut self) -> &mut Self {
        todo!()
    }
    /// Replaces the body; `content_type` replaces Content-Type when `Some`, and an empty body with
    /// `None` removes Content-Type.
    pub fn set_body(&mut self, content_type: Option<&str>, body: &[u8]) -> &mut Self {
        todo!()
    }
    /// Writes the edited message.
    pub fn finish(&self) -> Bytes {
        todo!()
    }
}

/// Builds a response to a request (RFC 3261 §8.2.6): copies every Via, From, To, Call-ID and CSeq;
/// adds a To tag when given and the To has none.
#[derive(Debug)]
pub struct ResponseBuilder<'m> {
    req: &'m Message,
}

impl<'m> ResponseBuilder<'m> {
    pub fn new(req: &'m Message, code: u16, reason: &str) -> ResponseBuilder<'m> {
        todo!()
    }
    pub fn to_tag(&mut self, tag: &str) -> &mut Self {
        todo!()
    }
    pub fn header(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        todo!()
    }
    pub fn body(&mut self, content_type: &str, body: &[u8]) -> &mut Self {
        todo!()
    }
    pub fn build(&self) -> Bytes {
        todo!()
    }
}

/// Builds a request from scratch (probes, BYE, ACK for 2xx, CANCEL). Headers are written in the order
/// added; Content-Length is always written last.
#[derive(Debug)]
pub struct RequestBuilder {
    _p: (),
}

impl RequestBuilder {
    pub fn new(method: &Method, uri: &str) -> RequestBuilder {
        todo!()
    }
    pub fn header(&mut self, name: HeaderName<'_>, value: &str) -> &mut Self {
        todo!()
    }
    pub fn body(&mut self, content_type: &str, body: &[u8]) -> &mut Self {
        todo!()
    }
    pub fn build(&self) -> Bytes {
        todo!()
    }
}
