//! Line scanning and stream framing (RFC 3261 §7.3.1, §7.5, §18.3).

use crate::header_name::HeaderName;
use crate::lex::{is_token_char, trim_span};
use crate::ParseError;
use memchr::{memchr, memchr2, memmem};
use std::ops::ControlFlow;

/// Largest header section (start line through the empty line) the codec accepts.
pub const MAX_HEADER_SECTION: usize = 64 * 1024;
/// Largest whole message (headers and body) the codec accepts.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Finds the CRLF CRLF that ends a header section (built once: building a finder per search costs
/// more than the search).
static EMPTY_LINE: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// One logical header line: offsets into the message buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLine {
    pub(crate) name_start: usize,
    pub(crate) name_end: usize,
    /// Trimmed value (may contain folded line breaks).
    pub(crate) value_start: usize,
    pub(crate) value_end: usize,
    /// Just past the CRLF that ends the line, continuation lines included.
    pub(crate) line_end: usize,
    /// The trimmed value contains a folded line break.
    pub(crate) folded: bool,
}

/// Offset of the CR of the CRLF ending the line that starts at `from`. A bare CR or LF is an error.
pub(crate) fn line_end(buf: &[u8], from: usize) -> Result<usize, ParseError> {
    let rest = buf.get(from..).ok_or(ParseError::HeaderLine)?;
    match memchr2(b'\r', b'\n', rest) {
        Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => Ok(from + i),
        _ => Err(ParseError::HeaderLine),
    }
}

/// Number of leading CR/LF bytes (keep-alives and the CRLFs RFC 3261 §7.5 says to ignore).
pub(crate) fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Walks the header lines from `pos` (just after the start line) to the empty line, calling `each`
/// for every logical line. Returns the offset of the body (just past the empty line). A buffer that
/// ends cleanly after a header line's CRLF, without the empty line, ends the header section there
/// (datagram leniency; stream framing always has the empty line).
///
/// When `each` breaks, the walk stops there and returns the offset just past that line.
pub(crate) fn scan_headers(
    buf: &[u8],
    mut pos: usize,
    mut each: impl FnMut(RawLine) -> Result<ControlFlow<()>, ParseError>,
) -> Result<usize, ParseError> {
    loop {
        if pos == buf.len() {
            return Ok(pos);
        }
        let eol = line_end(buf, pos)?;
        if eol == pos {
            return Ok(pos + 2);
        }
        let name_start = pos;
        let mut i = pos;
        while i < eol && is_token_char(buf[i]) {
            i += 1;
        }
        if i == name_start {
            // Includes a continuation line with no header before it.
            return Err(ParseError::HeaderLine);
        }
        let name_end = i;
        while i < eol && matches!(buf[i], b' ' | b'\t') {
            i += 1;
        }
        if i == eol || buf[i] != b':' {
            return Err(ParseError::HeaderLine);
        }
        let mut content_end = eol;
        let mut next = eol + 2;
        while next < buf.len() && matches!(buf[next], b' ' | b'\t') {
            content_end = line_end(buf, next)?;
            next = content_end + 2;
        }
        let (value_start, value_end) = trim_span(buf, i + 1, content_end);
        let folded = next != eol + 2 && memchr(b'\n', &buf[value_start..value_end]).is_some();
        let flow = each(RawLine {
            name_start,
            name_end,
            value_start,
            value_end,
            line_end: next,
            folded,
        })?;
        pos = next;
        if flow.is_break() {
            return Ok(pos);
        }
    }
}

/// Parses a Content-Length value: 1*DIGIT, leading zeros allowed, bounded by [`MAX_MESSAGE`].
pub(crate) fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::ContentLength);
    }
    let mut n: usize = 0;
    for &d in v {
        n = n * 10 + usize::from(d - b'0');
        if n > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
    }
    Ok(n)
}

/// Finds Content-Length in a complete header section without validating anything else, so a
/// stream can be framed (and the message then rejected with a precise error by `Message::parse`).
fn stream_content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found: Option<usize> = None;
    let mut pos = memchr(b'\n', head).map_or(head.len(), |i| i + 1);
    while pos < head.len() {
        let mut end = memchr(b'\n', &head[pos..]).map_or(head.len(), |i| pos + i + 1);
        let line_start = pos;
        // Pull in continuation lines.
        while end < head.len() && matches!(head[end], b' ' | b'\t') {
            end = memchr(b'\n', &head[end..]).map_or(head.len(), |i| end + i + 1);
        }
        pos = end;
        let line = &head[line_start..end];
        let Some(colon) = memchr(b':', line) else {
            continue;
        };
        let (ns, ne) = trim_span(line, 0, colon);
        let is_cl = std::str::from_utf8(&line[ns..ne])
            .is_ok_and(|n| HeaderName::parse(n) == HeaderName::ContentLength);
        if !is_cl {
            continue;
        }
        let (vs, ve) = trim_span(line, colon + 1, line.len());
        let n = parse_content_length(&line[vs..ve])?;
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::ContentLength);
        }
        found = Some(n);
    }
    found.ok_or(ParseError::ContentLength)
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
    let skip = leading_crlf(buf);
    if skip == buf.len() {
        return Ok((skip > 0).then_some(skip));
    }
    let rest = &buf[skip..];
    let Some(blank) = EMPTY_LINE.find(rest) else {
        return if rest.len() > MAX_HEADER_SECTION {
            Err(ParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head_len = blank + 4;
    if head_len > MAX_HEADER_SECTION {
        return Err(ParseError::TooLarge);
    }
    let total = head_len + stream_content_length(&rest[..head_len])?;
    if total > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    Ok((rest.len() >= total).then_some(skip + total))
}

/// True when `buf` is only CR/LF bytes (RFC 5626 keep-alive), which is neither parsed nor counted.
pub fn is_keepalive(buf: &[u8]) -> bool {
    !buf.is_empty() && leading_crlf(buf) == buf.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\nbody";

    #[test]
    fn frames_whole_partial_and_keepalive() {
        assert_eq!(frame_stream(MSG), Ok(Some(MSG.len())));
        for cut in 0..MSG.len() {
            assert_eq!(frame_stream(&MSG[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_stream(&two), Ok(Some(MSG.len())));
        assert_eq!(frame_stream(b"\r\n\r\n"), Ok(Some(4)));
        assert_eq!(frame_stream(b""), Ok(None));
        let mut ka = b"\r\n\r\n".to_vec();
        ka.extend_from_slice(MSG);
        assert_eq!(frame_stream(&ka), Ok(Some(MSG.len() + 4)));
        assert_eq!(frame_stream(&ka[..10]), Ok(None));
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(is_keepalive(b"\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\nX"));
    }

    #[test]
    fn stream_errors() {
        assert_eq!(
            frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x1\r\n\r\n"),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n"),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n"),
            Err(ParseError::TooLarge)
        );
        let huge = vec![b'a'; MAX_HEADER_SECTION + 1];
        assert_eq!(frame_stream(&huge), Err(ParseError::TooLarge));
        // Folded Content-Length value.
        assert_eq!(
            frame_stream(b"X sip:a@b SIP/2.0\r\nContent-Length:\r\n 0\r\n\r\n"),
            Ok(Some(42))
        );
    }
}
