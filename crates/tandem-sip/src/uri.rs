//! URIs (RFC 3261 §19.1, RFC 3966 tel, RFC 5118 IPv6 references) and hosts.

use crate::lex::{
    find_byte, find_param, has_class, params, validate_params, HEADER_EXTRA, HOST, NOT_URI,
    PARAM_EXTRA, PASSWORD_EXTRA, UNRESERVED, USER_EXTRA,
};
use crate::ParseError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Transport token of a Via or a `transport=` URI parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS (over TCP).
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
    /// Any other token.
    Other,
}

impl TransportKind {
    /// Classifies a transport token (case-insensitive).
    pub fn from_token(s: &str) -> TransportKind {
        const ALL: [(&str, TransportKind); 6] = [
            ("UDP", TransportKind::Udp),
            ("TCP", TransportKind::Tcp),
            ("TLS", TransportKind::Tls),
            ("SCTP", TransportKind::Sctp),
            ("WS", TransportKind::Ws),
            ("WSS", TransportKind::Wss),
        ];
        ALL.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map_or(TransportKind::Other, |(_, k)| *k)
    }

    /// The upper-case token as written in a Via (`"UDP"`...); `"OTHER"` for [`TransportKind::Other`].
    pub fn as_str(&self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Sctp => "SCTP",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
            TransportKind::Other => "OTHER",
        }
    }
}

/// Host part of a Via or URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host<'a> {
    /// IPv4 or IPv6 literal (brackets removed).
    Ip(IpAddr),
    /// A domain name, as written.
    Name(&'a str),
}

impl fmt::Display for Host<'_> {
    /// Writes the host as it goes into a URI or Via: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
    /// Any other absolute URI scheme (kept opaque).
    Other,
}

/// A parsed URI (RFC 3261 §19.1, RFC 3966 tel, RFC 5118 IPv6 references). Borrowed; nothing decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The whole URI text.
    pub raw: &'a str,
    /// user part (sip/sips), or the number (tel); without the password.
    pub user: Option<&'a str>,
    /// host for sip/sips; `None` for tel and other schemes.
    pub host: Option<Host<'a>>,
    /// Port, when written.
    pub port: Option<u16>,
    /// Raw `;param` text (starting at the first ';'), empty when none.
    pub params: &'a str,
    /// Raw `?headers` text (after '?'), empty when none.
    pub headers: &'a str,
}

/// Parses a host: `[IPv6]`, IPv4 or a host name (RFC 3261 §25.1 `host`).
pub(crate) fn parse_host(s: &str) -> Result<Host<'_>, ParseError> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        if b.last() != Some(&b']') {
            return Err(ParseError::Uri);
        }
        return s[1..s.len() - 1]
            .parse::<Ipv6Addr>()
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .map_err(|_| ParseError::Uri);
    }
    let (mut numeric, mut prev_dot) = (true, false);
    for &c in b {
        if !has_class(c, HOST) || (c == b'.' && prev_dot) {
            return Err(ParseError::Uri);
        }
        prev_dot = c == b'.';
        numeric &= c.is_ascii_digit() || prev_dot;
    }
    if b.is_empty() {
        return Err(ParseError::Uri);
    }
    if numeric {
        return parse_ipv4(b)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or(ParseError::Uri);
    }
    if b[0] == b'.' || b[0] == b'-' {
        return Err(ParseError::Uri);
    }
    Ok(Host::Name(s))
}

/// Splits `host[:port]` (host may be an IPv6 reference) and parses both.
pub(crate) fn parse_hostport(s: &str) -> Result<(Host<'_>, Option<u16>), ParseError> {
    let (host, port) = if s.starts_with('[') {
        let close = find_byte(s, 0, b']').ok_or(ParseError::Uri)?;
        let rest = &s[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(ParseError::Uri),
        };
        (&s[..=close], port)
    } else {
        match find_byte(s, 0, b':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or(ParseError::Uri)?),
    };
    Ok((parse_host(host)?, port))
}

pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = p.bytes().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// A dotted-quad IPv4 address, with the rules of `Ipv4Addr::from_str` (exactly four decimal octets,
/// each 0–255 without leading zeros) and without its generic parser's cost.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let (mut octets, mut at, mut n, mut digits) = ([0u8; 4], 0, 0u16, 0);
    for &c in b {
        if c == b'.' {
            if digits == 0 || at == 3 {
                return None;
            }
            octets[at] = n as u8;
            (at, n, digits) = (at + 1, 0, 0);
        } else if c.is_ascii_digit() && !(digits == 1 && n == 0) && digits < 3 {
            n = n * 10 + u16::from(c - b'0');
            digits += 1;
            if n > 255 {
                return None;
            }
        } else {
            return None; // not a digit, a leading zero, or a fourth digit
        }
    }
    if at != 3 || digits == 0 {
        return None;
    }
    octets[3] = n as u8;
    Some(Ipv4Addr::from(octets))
}

/// unreserved / escaped characters plus the characters of class `extra`.
fn valid_escaped_field(s: &str, extra: u8) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
            continue;
        }
        if !has_class(c, UNRESERVED | extra) {
            return false;
        }
        i += 1;
    }
    true
}

impl<'a> Uri<'a> {
    /// Parses an absolute URI. sip/sips URIs are checked against RFC 3261 §25.1; tel and other
    /// schemes only for characters that can never appear unescaped in a URI.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        let colon = find_byte(s, 0, b':').ok_or(ParseError::Uri)?;
        let scheme_text = &s[..colon];
        let sb = scheme_text.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(ParseError::Uri);
        }
        let rest = &s[colon + 1..];
        let scheme = if sb.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if sb.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if sb.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            scheme,
            raw: s,
            user: None,
            host: None,
            port: None,
            params: "",
            headers: "",
        };
        // Every part of a sip/sips URI is checked against its own character class below, so only
        // the other schemes need the scan for characters no URI may hold.
        if !matches!(scheme, Scheme::Sip | Scheme::Sips)
            && rest.bytes().any(|c| has_class(c, NOT_URI))
        {
            return Err(ParseError::Uri);
        }
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => {
                let end = find_byte(rest, 0, b';').unwrap_or(rest.len());
                if end == 0 || find_byte(rest, 0, b'?').is_some() {
                    return Err(ParseError::Uri);
                }
                uri.user = Some(&rest[..end]);
                uri.params = &rest[end..];
                validate_params(uri.params).map_err(|_| ParseError::Uri)?;
            }
            Scheme::Other => {
                if rest.is_empty() {
                    return Err(ParseError::Uri);
                }
            }
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a str) -> Result<(), ParseError> {
        let hostpart = match find_byte(rest, 0, b'@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match find_byte(userinfo, 0, b':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !valid_escaped_field(user, USER_EXTRA) {
                    return Err(ParseError::Uri);
                }
                if let Some(pw) = password {
                    if !valid_escaped_field(pw, PASSWORD_EXTRA) {
                        return Err(ParseError::Uri);
                    }
                }
                self.user = Some(user);
                &rest[at + 1..]
            }
            None => rest,
        };
        let hp_end = memchr::memchr2(b';', b'?', hostpart.as_bytes()).unwrap_or(hostpart.len());
        let (host, port) = parse_hostport(&hostpart[..hp_end])?;
        self.host = Some(host);
        self.port = port;
        let tail = &hostpart[hp_end..];
        let q = find_byte(tail, 0, b'?').unwrap_or(tail.len());
        self.params = &tail[..q];
        self.headers = tail.get(q + 1..).unwrap_or("");
        if tail.len() > q && self.headers.is_empty() {
            return Err(ParseError::Uri);
        }
        if !self.params.split(';').skip(1).all(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, "x"));
            !n.is_empty() && !v.is_empty() && valid_escaped_field(p, PARAM_EXTRA)
        }) {
            return Err(ParseError::Uri);
        }
        if !self.headers.is_empty()
            && !self
                .headers
                .split('&')
                .all(|h| h.contains('=') && valid_escaped_field(h, HEADER_EXTRA))
        {
            return Err(ParseError::Uri);
        }
        Ok(())
    }

    /// Value of a URI parameter (`Some("")` for a flag such as `;lr`), case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param(self.params, name)
    }

    /// `transport=` parameter as a kind.
    pub fn transport(&self) -> Option<TransportKind> {
        self.param("transport").map(TransportKind::from_token)
    }

    /// Iterates every `;name[=value]` URI parameter in order (flags give `""`).
    pub fn params_iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        params(self.params)
            .filter_map(Result::ok)
            .map(|(n, v)| (n, v.unwrap_or("")))
    }

    /// A placeholder used when a validated header is read back (never observed in practice).
    pub(crate) fn empty() -> Uri<'static> {
        Uri {
            scheme: Scheme::Other,
            raw: "",
            user: None,
            host: None,
            port: None,
            params: "",
            headers: "",
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn characters_no_uri_holds_are_rejected_in_every_sip_part() {
        for bad in [
            "sip:a b@h",
            "sip:a:p w@h",
            "sip:a@h o",
            "sip:a@h:50 60",
            "sip:a@h;p=<x>",
            "sip:a@h;p{=1",
            "sip:a@h?x=\"1\"",
            "sip:a@h?x=1|2",
            "sip:a@h\u{e9}",
            "sip:\u{e9}@h",
            "sips:a@[::1]^",
        ] {
            assert_eq!(Uri::parse(bad), Err(ParseError::Uri), "{bad:?}");
            assert!(bad.bytes().any(|c| has_class(c, NOT_URI)));
        }
    }

    #[test]
    fn ipv4_like_the_standard_parser() {
        let check = |t: &str| {
            assert_eq!(
                parse_ipv4(t.as_bytes()),
                t.parse::<Ipv4Addr>().ok(),
                "{t:?}"
            );
        };
        for t in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "000.1.1.1",
            "1.2.3.4.",
            ".1.2.3",
            "127.0.0.1",
            "1.2.3.1000",
        ] {
            check(t);
        }
        // Every string of up to 7 characters over a few digits and the dot.
        let alphabet = ['0', '1', '2', '5', '9', '.'];
        let mut words = vec![String::new()];
        for _ in 0..7 {
            words = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            words.iter().for_each(|w| check(w));
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = Uri::parse("sip:alice:pw@example.com:5070;transport=tcp;lr?subject=x&h=y").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.host, Some(Host::Name("example.com")));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params, ";transport=tcp;lr");
        assert_eq!(u.headers, "subject=x&h=y");
        assert_eq!(u.transport(), Some(TransportKind::Tcp));
        assert_eq!(u.param("LR"), Some(""));
        assert_eq!(u.param("maddr"), None);
    }

    #[test]
    fn hosts() {
        let u = Uri::parse("sips:[2001:db8::10]:5061").unwrap();
        assert_eq!(u.host, Some(Host::Ip("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port, Some(5061));
        let u = Uri::parse("sip:10.0.0.1").unwrap();
        assert_eq!(u.host, Some(Host::Ip("10.0.0.1".parse().unwrap())));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:10.0.0.256").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("sip:host:").is_err());
        assert!(Uri::parse("sip:@host").is_err());
        assert!(Uri::parse("sip:a b@host").is_err());
        assert!(Uri::parse("sip:user@host>").is_err());
        assert!(Uri::parse("sip:us%zzer@host").is_err());
    }

    #[test]
    fn escaped_user_kept_raw() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user, Some("sips%3Auser%40example.com"));
        assert_eq!(u.host, Some(Host::Name("example.net")));
    }

    #[test]
    fn tel_and_other() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-201-555-0123"));
        assert_eq!(u.host, None);
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert!(Uri::parse("nocolon").is_err());
        assert!(Uri::parse("1abc:x").is_err());
    }
}
