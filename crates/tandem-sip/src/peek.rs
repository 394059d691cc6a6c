//! What a transaction layer needs to know about a message this process built itself — a response's
//! status code, a request's method and top-Via branch — read without parsing the whole message.
//!
//! [`crate::Message::parse`] validates every header a received message carries; a message built by
//! [`crate::Editor`], [`crate::ResponseBuilder`] or [`crate::RequestBuilder`] needs none of that
//! before it is sent, and these readers look at the start line and at most the lines up to the
//! first Via.

use crate::framing::{leading_crlf, line_end, scan_headers};
use crate::header_name::{kind_of_at, HeaderName};
use crate::lex::{find_byte, params, CommaPieces};
use crate::method::Method;
use std::ops::ControlFlow;

/// The status code of a response; `None` for a request, or when the Status-Line does not start
/// with `SIP/2.0 ` and a code from 100 to 699.
pub fn peek_status(buf: &[u8]) -> Option<u16> {
    let line = &buf[leading_crlf(buf)..];
    let (version, rest) = line.split_at_checked(8)?;
    let code = rest.get(..3)?;
    if !version.eq_ignore_ascii_case(b"SIP/2.0 ")
        || !code.iter().all(u8::is_ascii_digit)
        || !matches!(rest.get(3), Some(b' ' | b'\r'))
    {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=699).contains(&code).then_some(code)
}

/// What [`peek_request`] reads from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method of the Request-Line.
    pub method: Method,
    /// The `branch` parameter of the top Via; `None` when there is no Via, it does not parse, or it
    /// has no branch.
    pub branch: Option<&'a str>,
}

/// The method and top-Via branch of a request, from its Request-Line and first Via value only;
/// `None` for a response, or when the method or version cannot be read. Neither the Request-URI nor
/// anything after the first Via is looked at, so this is no validation: it is meant for requests
/// this process built itself.
pub fn peek_request(buf: &[u8]) -> Option<RequestHead<'_>> {
    // `Method SP Request-URI SP SIP-Version`: the method token and the version are checked, the
    // Request-URI is not.
    let at = leading_crlf(buf);
    let end = line_end(buf, at).ok()?;
    let line = std::str::from_utf8(&buf[at..end]).ok()?;
    let (token, rest) = line.split_once(' ')?;
    let version = rest.len().checked_sub(8).and_then(|i| rest.get(i..))?;
    if !version.eq_ignore_ascii_case(" SIP/2.0") {
        return None;
    }
    let method = Method::from_token(token)?;
    let headers_at = end + 2;
    let mut via_value = None;
    let via_kind = HeaderName::Via.kind_id();
    // A malformed line before the first Via leaves the branch unknown.
    let _ = scan_headers(buf, headers_at, |raw| {
        if kind_of_at(buf, raw.name_start, raw.name_end) != via_kind {
            return Ok(ControlFlow::Continue(()));
        }
        via_value = Some(raw.value_start..raw.value_end);
        Ok(ControlFlow::Break(()))
    });
    let branch = via_value
        .and_then(|range| std::str::from_utf8(&buf[range]).ok())
        .and_then(top_branch);
    Some(RequestHead { method, branch })
}

/// The `branch` of the first value of a Via header line: its parameters start at the first `;`
/// (sent-protocol and sent-by hold none). The last `branch` counts, as in [`crate::Via::parse`].
fn top_branch(value: &str) -> Option<&str> {
    let (a, z) = CommaPieces::new(value).next()?;
    let piece = &value[a..z];
    let params_at = find_byte(piece, 0, b';')?;
    params(&piece[params_at..])
        .filter_map(Result::ok)
        .filter(|(name, _)| name.eq_ignore_ascii_case("branch"))
        .last()
        .and_then(|(_, value)| value.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_status_method_and_branch() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n\r\n";
        assert_eq!(peek_status(ok), Some(200));
        assert_eq!(peek_request(ok), None);
        let invite = b"\r\nINVITE sip:a@b SIP/2.0\r\nMax-Forwards: 70\r\n\
v: SIP/2.0/UDP h:5060 ; branch=z9hG4bKx, SIP/2.0/UDP g;branch=z9hG4bKy\r\nVia: SIP/2.0/UDP k;branch=z\r\n\r\n";
        assert_eq!(peek_status(invite), None);
        assert_eq!(
            peek_request(invite),
            Some(RequestHead {
                method: Method::Invite,
                branch: Some("z9hG4bKx")
            })
        );
        let twice = b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=one;Branch=two\r\n\r\n";
        assert_eq!(
            peek_request(twice).unwrap().branch,
            Some("two"),
            "as Via::parse"
        );
    }

    #[test]
    fn unreadable_parts() {
        assert_eq!(peek_status(b"SIP/2.0 2000 OK\r\n\r\n"), None);
        assert_eq!(peek_status(b"SIP/2.0 099 Low\r\n\r\n"), None);
        assert_eq!(peek_status(b"sip/2.0 180\r\n\r\n"), Some(180));
        assert_eq!(peek_status(b"SIP/2.0 18"), None);
        assert_eq!(peek_request(b"BYE sip:a@b\r\n\r\n"), None);
        let head = |raw: &'static [u8]| peek_request(raw).unwrap().branch;
        assert_eq!(head(b"BYE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n"), None);
        assert_eq!(
            head(b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n"),
            None
        );
        assert_eq!(head(b"BYE sip:a@b SIP/2.0\r\nVia: nonsense\r\n\r\n"), None);
        assert_eq!(
            head(b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=\r\n\r\n"),
            None
        );
        assert_eq!(
            head(b"BYE sip:a@b SIP/2.0\r\nbad line\r\nVia: SIP/2.0/UDP h;branch=b\r\n"),
            None
        );
    }
}
