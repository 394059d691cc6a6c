//! The parsed message: a span index over one [`Bytes`] buffer (RFC 3261 §7).

use crate::framing::{
    leading_crlf, line_end, parse_content_length, scan_headers, MAX_HEADER_SECTION, MAX_MESSAGE,
};
use crate::header_name::{kind_of_at, HeaderName, OTHER_KIND};
use crate::index::{rel_offset, HeaderEntry, HeaderIndex, Rel, ScratchIndex, Span};
use crate::lex::{find_byte, is_token_char, parse_u32, trim_lws, unfold, CommaPieces};
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::uri::Uri;
use crate::via::{Via, ViaIndex};
use crate::{Editor, ParseError};
use bytes::Bytes;
use std::borrow::Cow;
use std::ops::ControlFlow;

/// Most header lines a message may have (indices are kept in `u16`).
pub const MAX_HEADERS: usize = 1024;

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A Request-Line.
    Request {
        /// The method.
        method: Method,
        /// The Request-URI text.
        uri: &'a str,
    },
    /// A Status-Line.
    Response {
        /// Status code (100–699).
        code: u16,
        /// Reason phrase (may be empty).
        reason: &'a str,
    },
}

#[derive(Debug, Clone)]
enum Start {
    Request { method: Method, uri: Rel },
    Response { code: u16, reason: Rel },
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value: `1*DIGIT LWS Method` (leading zeros allowed, number below 2^31).
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        const ERR: ParseError = ParseError::Header("CSeq");
        let s = trim_lws(s);
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let seq = parse_u32(&s[..digits])
            .filter(|n| *n < 1 << 31)
            .ok_or(ERR)?;
        let rest = &s[digits..];
        let method_text = trim_lws(rest);
        if method_text.len() == rest.len() {
            return Err(ERR); // no LWS between number and method
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method_text).ok_or(ERR)?,
        })
    }
}

/// One parsed SIP message: the bytes plus an index of spans into them. Cheap to clone and to move
/// (about 200 bytes; the bytes and the header index are refcounted).
#[derive(Debug, Clone)]
pub struct Message {
    buf: Bytes,
    /// Where the start line begins (after any leading CRLFs); header-section offsets count from here.
    origin: u32,
    start: Start,
    /// Length of the start line, without CRLF.
    start_line_len: u16,
    pub(crate) headers: HeaderIndex,
    body: Span,
    call_id: Rel,
    cseq: CSeq,
    max_forwards: Option<u32>,
    from: u16,
    to: u16,
    /// `tag` parameters of From and To (`Some` of an empty range for a valueless `;tag`).
    from_tag: Option<Rel>,
    to_tag: Option<Rel>,
    /// The first Via value, parsed once by `parse`.
    top_via: ViaIndex,
}

/// True for the characters of `word` (RFC 3261 §25.1), the Call-ID alphabet.
fn is_word_char(b: u8) -> bool {
    is_token_char(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// `SIP/` in any case (so byte 4 is a char boundary).
fn starts_with_sip_slash(v: &str) -> bool {
    v.len() >= 4 && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
}

fn parse_version(v: &str) -> Result<(), ParseError> {
    let ok_grammar = starts_with_sip_slash(v)
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if !ok_grammar {
        return Err(ParseError::StartLine);
    }
    if &v[4..] != "2.0" {
        return Err(ParseError::Version);
    }
    Ok(())
}

/// Parses the start line `line`, which begins at the origin (spans are relative to it).
fn parse_start(line: &str) -> Result<Start, ParseError> {
    let sp = find_byte(line, 0, b' ').ok_or(ParseError::StartLine)?;
    let first = &line[..sp];
    let rest = &line[sp + 1..];
    if starts_with_sip_slash(first) {
        parse_version(first)?;
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::StartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..=699).contains(&code) || reason.bytes().any(|c| c < b' ' && c != b'\t') {
            return Err(ParseError::StartLine);
        }
        return Ok(Start::Response {
            code,
            reason: Rel::new(line.len() - reason.len(), line.len(), 0)?,
        });
    }
    let method = Method::from_token(first).ok_or(ParseError::StartLine)?;
    let (uri, version) = rest
        .split_once(' ')
        .filter(|(u, _)| !u.is_empty())
        .ok_or(ParseError::StartLine)?;
    parse_version(version)?;
    // Headers are not allowed in a Request-URI (RFC 3261 §19.1.1; RFC 4475 §3.1.2.11).
    if !Uri::parse(uri)?.headers.is_empty() {
        return Err(ParseError::Uri);
    }
    let us = sp + 1;
    Ok(Start::Request {
        method,
        uri: Rel::new(us, us + uri.len(), 0)?,
    })
}

impl Message {
    /// Parses one whole message: a UDP datagram, or a frame cut by [`crate::frame_stream`].
    /// For datagrams a missing Content-Length means "body = rest of datagram"; a Content-Length smaller
    /// than the bytes present truncates the body (extra bytes dropped, §18.3); larger is an error.
    /// Validates what every element needs to act: start line and version, and that Via (≥1), From, To,
    /// Call-ID, CSeq (number + method, and for requests the CSeq method equals the request method except
    /// for ACK/CANCEL semantics which the caller checks) are present and well-formed, Max-Forwards numeric
    /// when present, Content-Length numeric when present.
    ///
    /// Leading CRLFs are skipped, and a datagram that ends right after a header line's CRLF (no
    /// empty line) is read as having an empty body. Also rejected: bare CR or LF in the header
    /// section, header text that is not UTF-8, a Request-URI with `?headers`, repeated From/To/
    /// Call-ID/CSeq/Max-Forwards/Content-Length, and every Via value that does not parse (not only
    /// the top one). Other headers (Contact, Route...) are checked only by their typed accessors.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        let b: &[u8] = &buf;
        let start_at = leading_crlf(b);
        let sl_end = line_end(b, start_at).map_err(|_| ParseError::StartLine)?;
        let mut headers = ScratchIndex::new();
        let body_start = scan_headers(b, sl_end + 2, |raw| {
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::TooLarge);
            }
            let line_start = rel_offset(raw.name_start, start_at)?;
            let value_start = rel_offset(raw.value_start, start_at)?;
            // The line end may sit exactly at 64 KiB (a datagram with no empty line): lengths fit.
            let line_len =
                u16::try_from(raw.line_end - raw.name_start).map_err(|_| ParseError::TooLarge)?;
            // Filled in place: building the entry in a temporary made the copy stall on
            // store forwarding.
            let e = headers.push_slot();
            e.kind = kind_of_at(b, raw.name_start, raw.name_end);
            e.folded = raw.folded;
            e.line_start = line_start;
            // Name and value are inside the line, so their lengths fit as well.
            e.name_len = (raw.name_end - raw.name_start) as u16;
            e.value_start = value_start;
            e.value_len = (raw.value_end - raw.value_start) as u16;
            e.line_len = line_len;
            Ok(ControlFlow::Continue(()))
        })?;
        if body_start - start_at > MAX_HEADER_SECTION {
            return Err(ParseError::TooLarge);
        }
        let head =
            std::str::from_utf8(&b[start_at..body_start]).map_err(|_| ParseError::HeaderLine)?;
        let start = parse_start(&head[..sl_end - start_at])?;
        let value = |e: &HeaderEntry| {
            let v = e.value_span(0);
            &head[v.start as usize..v.end as usize]
        };

        let mut first = [u16::MAX; 8];
        let mut count = [0u8; 8];
        let mut top_via = None;
        for (i, e) in headers.as_slice().iter().enumerate() {
            let k = usize::from(e.kind);
            // Via, From, To, Call-ID, CSeq, Max-Forwards, (Contact), Content-Length have ids 0..=7.
            if k < first.len() {
                if first[k] == u16::MAX {
                    first[k] = i as u16;
                }
                count[k] = count[k].saturating_add(1);
            }
            if e.kind == HeaderName::Via.kind_id() {
                let text = value(e);
                let mut any = false;
                for (a, z) in CommaPieces::new(text) {
                    let via = Via::parse(&text[a..z]).map_err(|_| ParseError::Header("Via"))?;
                    if top_via.is_none() {
                        top_via = Some(ViaIndex::new(text, &via, e.value_start));
                    }
                    any = true;
                }
                if !any {
                    return Err(ParseError::Header("Via"));
                }
            }
        }
        let once =
            |name: HeaderName<'static>, label: &'static str| -> Result<&HeaderEntry, ParseError> {
                let k = usize::from(name.kind_id());
                if count[k] != 1 {
                    return Err(ParseError::Header(label));
                }
                Ok(&headers.as_slice()[usize::from(first[k])])
            };
        let Some(top_via) = top_via else {
            return Err(ParseError::Header("Via"));
        };
        // Validates a From or To value and finds its tag.
        let addr_tag = |e: &HeaderEntry, label: &'static str| -> Result<Option<Rel>, ParseError> {
            let text = value(e);
            match NameAddr::parse_tagged(text) {
                Ok((_, tag)) => Ok(tag.map(|tag| Rel::of_part(text, tag, e.value_start))),
                Err(ParseError::Uri) => Err(ParseError::Uri),
                Err(_) => Err(ParseError::Header(label)),
            }
        };
        let from_tag = addr_tag(once(HeaderName::From, "From")?, "From")?;
        let to_tag = addr_tag(once(HeaderName::To, "To")?, "To")?;
        let call_id_entry = once(HeaderName::CallId, "Call-ID")?;
        let cid = value(call_id_entry);
        let valid_cid = cid.split_once('@').map_or(
            !cid.is_empty() && cid.bytes().all(is_word_char),
            |(l, r)| {
                !l.is_empty()
                    && !r.is_empty()
                    && l.bytes().all(is_word_char)
                    && r.bytes().all(is_word_char)
            },
        );
        if !valid_cid {
            return Err(ParseError::Header("Call-ID"));
        }
        let cseq = CSeq::parse(value(once(HeaderName::CSeq, "CSeq")?))?;
        if let Start::Request { method, .. } = &start {
            if *method != cseq.method {
                return Err(ParseError::Header("CSeq"));
            }
        }
        let mf_kind = usize::from(HeaderName::MaxForwards.kind_id());
        let max_forwards = match count[mf_kind] {
            0 => None,
            1 => Some(
                parse_u32(value(&headers.as_slice()[usize::from(first[mf_kind])]))
                    .ok_or(ParseError::Header("Max-Forwards"))?,
            ),
            _ => return Err(ParseError::Header("Max-Forwards")),
        };
        let cl_kind = usize::from(HeaderName::ContentLength.kind_id());
        let body = match count[cl_kind] {
            0 => Span::new(body_start, b.len()),
            1 => {
                let cl = parse_content_length(
                    value(&headers.as_slice()[usize::from(first[cl_kind])]).as_bytes(),
                )
                .map_err(|_| ParseError::ContentLength)?;
                if body_start + cl > b.len() {
                    return Err(ParseError::ContentLength);
                }
                Span::new(body_start, body_start + cl)
            }
            _ => return Err(ParseError::ContentLength),
        };
        let call_id = call_id_entry.value();
        let from = first[usize::from(HeaderName::From.kind_id())];
        let to = first[usize::from(HeaderName::To.kind_id())];
        Ok(Message {
            origin: start_at as u32,
            start,
            start_line_len: rel_offset(sl_end, start_at)?,
            headers: HeaderIndex::from_scratch(&headers),
            body,
            call_id,
            cseq,
            max_forwards,
            from,
            to,
            from_tag,
            to_tag,
            top_via,
            buf,
        })
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Text of a span of the (UTF-8 validated) header section.
    pub(crate) fn text(&self, s: Span) -> &str {
        std::str::from_utf8(&self.buf[s.range()]).unwrap_or_default()
    }

    /// Text of a header-section range.
    pub(crate) fn rel_text(&self, r: Rel) -> &str {
        self.text(r.at(self.origin))
    }

    /// The raw bytes of a span.
    pub(crate) fn bytes_of(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    /// The name of one indexed line, as written.
    pub(crate) fn name_of(&self, e: &HeaderEntry) -> &str {
        self.text(e.name_span(self.origin))
    }

    /// The whole of one indexed line, CRLF and continuation lines included.
    pub(crate) fn line_bytes(&self, e: &HeaderEntry) -> &[u8] {
        self.bytes_of(e.line_span(self.origin))
    }

    /// The start line, without CRLF.
    pub(crate) fn start_line_bytes(&self) -> &[u8] {
        let origin = self.origin as usize;
        &self.buf[origin..origin + usize::from(self.start_line_len)]
    }

    /// The first line, parsed.
    pub fn start_line(&self) -> StartLine<'_> {
        match &self.start {
            Start::Request { method, uri } => StartLine::Request {
                method: method.clone(),
                uri: self.rel_text(*uri),
            },
            Start::Response { code, reason } => StartLine::Response {
                code: *code,
                reason: self.rel_text(*reason),
            },
        }
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// Request method (`None` for responses).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// Status code (`None` for requests).
    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Response { code, .. } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// Request-URI text (`None` for responses).
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            Start::Request { uri, .. } => Some(self.rel_text(uri)),
            Start::Response { .. } => None,
        }
    }

    /// Reason phrase (`None` for requests).
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            Start::Response { reason, .. } => Some(self.rel_text(reason)),
            Start::Request { .. } => None,
        }
    }

    /// True when indexed line `e` has the (classified) name `name`.
    fn entry_is(&self, e: &HeaderEntry, name: HeaderName<'_>) -> bool {
        e.kind == name.kind_id()
            && (e.kind != OTHER_KIND || HeaderName::Other(self.name_of(e)).is(name))
    }

    /// Indexed lines whose name matches `name` (any form, any case).
    pub(crate) fn entries<'s>(
        &'s self,
        name: HeaderName<'s>,
    ) -> impl Iterator<Item = &'s HeaderEntry> + 's {
        let name = name.classified();
        self.headers
            .as_slice()
            .iter()
            .filter(move |e| self.entry_is(e, name))
    }

    /// Raw value text of one line: trimmed, folded line breaks kept.
    pub(crate) fn raw_value(&self, e: &HeaderEntry) -> &str {
        self.text(e.value_span(self.origin))
    }

    fn value_cow(&self, e: &HeaderEntry) -> Cow<'_, str> {
        let raw = self.raw_value(e);
        if e.folded {
            Cow::Owned(unfold(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// Value of the first header with this name (raw text between colon and CRLF, trimmed; folded
    /// continuation lines replaced by one space, which borrows when there is no folding).
    pub fn header(&self, name: HeaderName<'_>) -> Option<Cow<'_, str>> {
        let name = name.classified();
        self.headers
            .as_slice()
            .iter()
            .find(|e| self.entry_is(e, name))
            .map(|e| self.value_cow(e))
    }

    /// Every header line with this name, in order (one item per header line, not split at commas).
    pub fn headers<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = Cow<'s, str>> + 's {
        self.entries(name).map(|e| self.value_cow(e))
    }

    /// Every value of a comma-list header (Via, Route, Record-Route, Contact...), split at top-level
    /// commas (not inside quotes or <>), across all header lines, in order.
    pub fn header_values<'s>(
        &'s self,
        name: HeaderName<'s>,
    ) -> impl Iterator<Item = Cow<'s, str>> + 's {
        self.headers(name).flat_map(CowPieces::new)
    }

    /// Raw values (folded line breaks kept) of a comma-list header, split at top-level commas.
    pub fn raw_values<'s>(&'s self, name: HeaderName<'s>) -> impl Iterator<Item = &'s str> + 's {
        self.entries(name).flat_map(move |e| {
            let v = self.raw_value(e);
            CommaPieces::new(v).map(move |(a, z)| &v[a..z])
        })
    }

    /// Every header line in order as (name as written, value with folding replaced by one space).
    pub fn iter_headers(&self) -> impl Iterator<Item = (HeaderName<'_>, Cow<'_, str>)> + '_ {
        self.headers
            .as_slice()
            .iter()
            .map(|e| (HeaderName::parse(self.name_of(e)), self.value_cow(e)))
    }

    /// Byte range of the whole `n`-th header line in [`Message::as_bytes`] (CRLF and continuation
    /// lines included).
    pub fn header_span(&self, n: usize) -> Option<std::ops::Range<usize>> {
        self.headers
            .as_slice()
            .get(n)
            .map(|e| e.line_span(self.origin).range())
    }

    /// Number of header lines (for tests and limits).
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.rel_text(self.call_id)
    }

    /// The CSeq.
    pub fn cseq(&self) -> CSeq {
        self.cseq.clone()
    }

    /// The first Via value (parsed once, by `parse`).
    pub fn top_via(&self) -> Via<'_> {
        self.top_via.get(|r| self.rel_text(r))
    }

    /// All Via values, top first.
    pub fn vias(&self) -> Vec<Via<'_>> {
        self.raw_values(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
            .collect()
    }

    fn addr_at(&self, idx: u16) -> NameAddr<'_> {
        self.headers
            .as_slice()
            .get(usize::from(idx))
            .and_then(|e| NameAddr::parse(self.raw_value(e)).ok())
            .unwrap_or_else(|| NameAddr::empty())
    }

    /// The From header (validated by `parse`).
    pub fn from_hdr(&self) -> NameAddr<'_> {
        self.addr_at(self.from)
    }

    /// The To header (validated by `parse`).
    pub fn to_hdr(&self) -> NameAddr<'_> {
        self.addr_at(self.to)
    }

    /// The From `tag` parameter (`Some("")` for a valueless `;tag`), without parsing From again.
    pub fn from_tag(&self) -> Option<&str> {
        self.from_tag.map(|r| self.rel_text(r))
    }

    /// The To `tag` parameter (`Some("")` for a valueless `;tag`), without parsing To again.
    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.map(|r| self.rel_text(r))
    }

    /// Max-Forwards, when present (validated by `parse`).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    fn addr_list(&self, name: HeaderName<'static>) -> Result<Vec<NameAddr<'_>>, ParseError> {
        let mut out = Vec::new();
        for v in self.raw_values(name) {
            if name == HeaderName::Contact && v == "*" {
                continue;
            }
            out.push(NameAddr::parse(v)?);
        }
        Ok(out)
    }

    /// Contact values (empty for `*` or absent). Values that do not parse are skipped; see
    /// [`Message::try_contacts`].
    pub fn contacts(&self) -> Vec<NameAddr<'_>> {
        self.raw_values(HeaderName::Contact)
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// Contact values, or the first parse error (`*` gives an empty list).
    pub fn try_contacts(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addr_list(HeaderName::Contact)
    }

    /// True when the Contact is the wildcard `*` (REGISTER removing all bindings).
    pub fn contact_is_star(&self) -> bool {
        self.raw_values(HeaderName::Contact).any(|v| v == "*")
    }

    /// Route values, top first (values that do not parse are skipped; see [`Message::try_routes`]).
    pub fn routes(&self) -> Vec<NameAddr<'_>> {
        self.raw_values(HeaderName::Route)
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// Route values, or the first parse error.
    pub fn try_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addr_list(HeaderName::Route)
    }

    /// Record-Route values, top first (values that do not parse are skipped).
    pub fn record_routes(&self) -> Vec<NameAddr<'_>> {
        self.raw_values(HeaderName::RecordRoute)
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }

    /// Record-Route values, or the first parse error.
    pub fn try_record_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addr_list(HeaderName::RecordRoute)
    }

    /// The Request-URI, parsed (validated by `parse`; `None` for responses).
    pub fn request_uri_parsed(&self) -> Option<Uri<'_>> {
        self.request_uri().and_then(|u| Uri::parse(u).ok())
    }

    /// Content-Type value.
    pub fn content_type(&self) -> Option<Cow<'_, str>> {
        self.header(HeaderName::ContentType)
    }

    /// The body (zero-copy slice of the message).
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// The body as a byte slice.
    pub(crate) fn body_bytes(&self) -> &[u8] {
        &self.buf[self.body.range()]
    }

    /// Starts a byte-splicing edit of this message.
    pub fn edit(&self) -> Editor<'_> {
        Editor::new(self)
    }
}

/// Comma pieces of a header value that may be borrowed or owned.
struct CowPieces<'s> {
    src: Cow<'s, str>,
    pos: usize,
}

impl<'s> CowPieces<'s> {
    fn new(src: Cow<'s, str>) -> Self {
        CowPieces { src, pos: 0 }
    }
}

impl<'s> Iterator for CowPieces<'s> {
    type Item = Cow<'s, str>;

    fn next(&mut self) -> Option<Cow<'s, str>> {
        let s: &str = &self.src;
        let (a, z) = CommaPieces::starting_at(s, self.pos).next()?;
        self.pos = z;
        Some(match &self.src {
            Cow::Borrowed(b) => Cow::Borrowed(&b[a..z]),
            Cow::Owned(o) => Cow::Owned(o[a..z].to_string()),
        })
    }
}
