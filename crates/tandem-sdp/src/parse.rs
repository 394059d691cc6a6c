//! The index: one pass over the body, spans into the original bytes, no copies.

use std::net::IpAddr;
use std::ops::Range;

use crate::SdpError;

/// A media direction attribute (RFC 3264 §5.1 / RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    fn from_attribute(name: &[u8]) -> Option<Self> {
        match name {
            b"sendrecv" => Some(Self::SendRecv),
            b"sendonly" => Some(Self::SendOnly),
            b"recvonly" => Some(Self::RecvOnly),
            b"inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// A connection address: a `c=` line, or the address part of `a=rtcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection<'a> {
    /// Network type, `IN` in practice.
    pub network_type: &'a [u8],
    /// Address type as written (`IP4`, `IP6`).
    pub address_type: &'a [u8],
    /// The address as written, `/ttl` or `/count` suffixes excluded.
    pub address: &'a [u8],
    /// The address as an IP, when it is a literal (not a host name).
    pub ip: Option<IpAddr>,
    /// From the address type up to the end of the address token (suffixes included): what a
    /// rewrite replaces.
    pub(crate) span: Range<usize>,
}

impl Connection<'_> {
    /// `0.0.0.0` (RFC 2543-style hold) or `::`: not an address to relay to.
    pub fn is_hold(&self) -> bool {
        self.ip.is_some_and(|ip| ip.is_unspecified())
    }
}

/// An `a=rtcp:` attribute (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp<'a> {
    /// The RTCP port.
    pub port: u16,
    /// The optional explicit address.
    pub address: Option<Connection<'a>>,
    pub(crate) port_span: Range<usize>,
}

/// One media section: its `m=` line and the attributes Tandem cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection<'a> {
    /// Media type (`audio`, `video`, ...).
    pub media: &'a [u8],
    /// Transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The optional `/<number of ports>`.
    pub port_count: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVPF`, ...).
    pub proto: &'a [u8],
    /// The format list as written (may be empty).
    pub formats: &'a [u8],
    /// The first media-level `c=` line.
    pub connection: Option<Connection<'a>>,
    /// The `a=rtcp:` attribute.
    pub rtcp: Option<Rtcp<'a>>,
    /// `a=rtcp-mux` is present.
    pub rtcp_mux: bool,
    /// The last media-level direction attribute.
    pub direction: Option<Direction>,
    pub(crate) port_span: Range<usize>,
}

impl MediaSection<'_> {
    /// Port 0: the stream is rejected (in an answer) or disabled (in an offer).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }
}

/// One line of the body, line end excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The type letter (`v`, `o`, `c`, `m`, `a`, ...).
    pub kind: u8,
    /// Everything after `=`.
    pub value: &'a [u8],
    /// `None` at session level, else the media section index.
    pub section: Option<usize>,
}

/// An index over an SDP body.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    pub(crate) body: &'a [u8],
    lines: Vec<Line<'a>>,
    pub(crate) origin_version: u64,
    pub(crate) origin_version_span: Range<usize>,
    session_connection: Option<Connection<'a>>,
    session_direction: Option<Direction>,
    pub(crate) media: Vec<MediaSection<'a>>,
    /// Every `c=` line with its section (`None` = session level), in body order.
    pub(crate) connections: Vec<(Option<usize>, Connection<'a>)>,
}

impl<'a> Sdp<'a> {
    /// Index `body`. Unknown lines and attributes are kept (and later copied) as they are;
    /// lines may end in CRLF or LF only; blank lines are skipped.
    pub fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        let mut sdp = Sdp {
            body,
            lines: Vec::new(),
            origin_version: 0,
            origin_version_span: 0..0,
            session_connection: None,
            session_direction: None,
            media: Vec::new(),
            connections: Vec::new(),
        };
        let mut origin_seen = false;
        let mut start = 0;
        let mut number = 0;
        while start < body.len() {
            let newline = body[start..].iter().position(|&b| b == b'\n');
            let next = newline.map_or(body.len(), |n| start + n + 1);
            let mut end = newline.map_or(body.len(), |n| start + n);
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
            number += 1;
            let line_start = start;
            start = next;
            if line_start == end {
                continue;
            }
            let raw = &body[line_start..end];
            if raw.len() < 2 || raw[1] != b'=' || !raw[0].is_ascii_alphabetic() {
                return Err(SdpError::MalformedLine { line: number });
            }
            let kind = raw[0];
            let value = line_start + 2..end;
            let section = sdp.media.len().checked_sub(1);
            sdp.lines.push(Line {
                kind,
                value: &body[value.clone()],
                section,
            });
            match kind {
                b'o' if !origin_seen && section.is_none() => {
                    origin_seen = true;
                    let span = parse_origin(body, value, number)?;
                    sdp.origin_version = parse_number(&body[span.clone()])
                        .ok_or(SdpError::MalformedOrigin { line: number })?;
                    sdp.origin_version_span = span;
                }
                b'm' => {
                    let media = parse_media(body, value, number)?;
                    sdp.media.push(media);
                }
                b'c' => {
                    let connection = parse_connection(body, value)
                        .ok_or(SdpError::MalformedConnection { line: number })?;
                    match section.and_then(|i| sdp.media.get_mut(i)) {
                        Some(media) => {
                            media.connection.get_or_insert_with(|| connection.clone());
                        }
                        None => {
                            sdp.session_connection
                                .get_or_insert_with(|| connection.clone());
                        }
                    }
                    sdp.connections.push((section, connection));
                }
                b'a' => sdp.attribute(body, value, number)?,
                _ => {}
            }
        }
        if !origin_seen {
            return Err(SdpError::MissingOrigin);
        }
        Ok(sdp)
    }

    fn attribute(
        &mut self,
        body: &'a [u8],
        value: Range<usize>,
        line: usize,
    ) -> Result<(), SdpError> {
        let raw = &body[value.clone()];
        let name_len = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
        let name = &raw[..name_len];
        let media = self.media.last_mut();
        if let Some(direction) = Direction::from_attribute(name) {
            match media {
                Some(media) => media.direction = Some(direction),
                None => self.session_direction = Some(direction),
            }
            return Ok(());
        }
        let Some(media) = media else { return Ok(()) };
        match name {
            b"rtcp-mux" => media.rtcp_mux = true,
            b"rtcp" if name_len < raw.len() => {
                let rtcp = parse_rtcp(body, value.start + name_len + 1..value.end)
                    .ok_or(SdpError::MalformedRtcp { line })?;
                media.rtcp.get_or_insert(rtcp);
            }
            _ => {}
        }
        Ok(())
    }

    /// The `o=` session version (RFC 3264 §8).
    pub fn origin_version(&self) -> u64 {
        self.origin_version
    }

    /// The session-level `c=` line.
    pub fn session_connection(&self) -> Option<&Connection<'a>> {
        self.session_connection.as_ref()
    }

    /// The session-level direction attribute.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }

    /// The media sections, in body order (indexes match [`crate::Plan::media`]).
    pub fn media(&self) -> &[MediaSection<'a>] {
        &self.media
    }

    /// Every non-blank line, in body order.
    pub fn lines(&self) -> &[Line<'a>] {
        &self.lines
    }

    /// The session-level lines (before the first `m=`).
    pub fn session_lines(&self) -> impl Iterator<Item = &Line<'a>> {
        self.lines.iter().filter(|line| line.section.is_none())
    }

    /// The effective connection of media section `index`: its own `c=`, else the session one.
    pub fn effective_connection(&self, index: usize) -> Option<&Connection<'a>> {
        let media = self.media.get(index)?;
        media
            .connection
            .as_ref()
            .or(self.session_connection.as_ref())
    }

    /// The effective direction of media section `index`: its own attribute, else the session
    /// one, else `sendrecv` (RFC 3264 §5.1).
    pub fn effective_direction(&self, index: usize) -> Option<Direction> {
        let media = self.media.get(index)?;
        Some(
            media
                .direction
                .or(self.session_direction)
                .unwrap_or(Direction::SendRecv),
        )
    }
}

/// Space-separated tokens of `body[range]`, as absolute spans (runs of spaces tolerated).
fn tokens(body: &[u8], range: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut at = range.start;
    let end = range.end;
    std::iter::from_fn(move || {
        while at < end && body[at] == b' ' {
            at += 1;
        }
        if at >= end {
            return None;
        }
        let start = at;
        while at < end && body[at] != b' ' {
            at += 1;
        }
        Some(start..at)
    })
}

/// A decimal number of ASCII digits, `None` when empty, not digits or over 64 bits.
pub(crate) fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    u16::try_from(parse_number(digits)?).ok()
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`: the version span.
fn parse_origin(body: &[u8], value: Range<usize>, line: usize) -> Result<Range<usize>, SdpError> {
    let fields: Vec<Range<usize>> = tokens(body, value).collect();
    match fields.get(2) {
        Some(version) if fields.len() >= 6 => Ok(version.clone()),
        _ => Err(SdpError::MalformedOrigin { line }),
    }
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`
fn parse_media(
    body: &[u8],
    value: Range<usize>,
    line: usize,
) -> Result<MediaSection<'_>, SdpError> {
    let malformed = SdpError::MalformedMedia { line };
    let mut fields = tokens(body, value.clone());
    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed);
    };
    let formats = fields
        .next()
        .map_or(value.end..value.end, |first| first.start..value.end);
    let port_field = &body[port.clone()];
    let (port_span, port_count) = match port_field.iter().position(|&b| b == b'/') {
        Some(slash) => {
            let count = parse_port(&port_field[slash + 1..]).ok_or(malformed.clone())?;
            (port.start..port.start + slash, Some(count))
        }
        None => (port, None),
    };
    Ok(MediaSection {
        media: &body[media],
        port: parse_port(&body[port_span.clone()]).ok_or(malformed)?,
        port_count,
        proto: &body[proto],
        formats: &body[formats],
        connection: None,
        rtcp: None,
        rtcp_mux: false,
        direction: None,
        port_span,
    })
}

/// `<nettype> <addrtype> <address>[/suffix]`, the form of `c=` and of the address in `a=rtcp`.
fn parse_connection(body: &[u8], value: Range<usize>) -> Option<Connection<'_>> {
    let mut fields = tokens(body, value);
    let (network_type, address_type, address) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let address_field = &body[address.clone()];
    let bare_len = address_field
        .iter()
        .position(|&b| b == b'/')
        .unwrap_or(address_field.len());
    let bare = &address_field[..bare_len];
    let ip = std::str::from_utf8(bare)
        .ok()
        .and_then(|text| text.parse().ok());
    Some(Connection {
        network_type: &body[network_type],
        address_type: &body[address_type.clone()],
        address: bare,
        ip,
        span: address_type.start..address.end,
    })
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (value after the colon).
fn parse_rtcp(body: &[u8], value: Range<usize>) -> Option<Rtcp<'_>> {
    let port_span = tokens(body, value.clone()).next()?;
    let port = parse_port(&body[port_span.clone()])?;
    let rest = port_span.end..value.end;
    let address = if body[rest.clone()].iter().all(|&b| b == b' ') {
        None
    } else {
        Some(parse_connection(body, rest)?)
    };
    Some(Rtcp {
        port,
        address,
        port_span,
    })
}
