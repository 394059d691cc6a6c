//! Via header values (RFC 3261 §20.42, RFC 3581 rport).

use crate::index::Rel;
use crate::lex::{find_byte, is_lws, is_token_char, params, trim_lws, valid_param, HOST};
use crate::uri::{parse_host, parse_port, Host, TransportKind};
use crate::ParseError;
use std::net::IpAddr;

/// One Via value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport from the sent-protocol.
    pub transport: TransportKind,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port, when written.
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

/// Magic cookie that starts an RFC 3261 branch.
const MAGIC_COOKIE: &str = "z9hG4bK";

const ERR: ParseError = ParseError::Header("Via");

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while self.pos < self.s.len() && is_lws(self.s.as_bytes()[self.pos]) {
            self.pos += 1;
        }
        self.pos > start
    }
    fn token(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        while self.pos < self.s.len() && is_token_char(self.s.as_bytes()[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(ERR);
        }
        Ok(&self.s[start..self.pos])
    }
    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        self.skip_lws();
        if self.s.as_bytes().get(self.pos) != Some(&c) {
            return Err(ERR);
        }
        self.pos += 1;
        self.skip_lws();
        Ok(())
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.pos < self.s.len() && f(self.s.as_bytes()[self.pos]) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma-list). Linear white space, including folded line breaks,
    /// is allowed wherever RFC 3261 allows it (around `/`, `:`, `;` and `=`).
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        let s = trim_lws(s);
        let mut c = Cursor { s, pos: 0 };
        let name = c.token()?;
        c.expect(b'/')?;
        let version = c.token()?;
        if !name.eq_ignore_ascii_case("SIP") {
            return Err(ERR);
        }
        if version != "2.0" {
            return Err(ParseError::Version);
        }
        c.expect(b'/')?;
        let transport = TransportKind::from_token(c.token()?);
        if !c.skip_lws() {
            return Err(ERR);
        }
        let host_text = if s.as_bytes().get(c.pos) == Some(&b'[') {
            let close = find_byte(s, c.pos, b']').ok_or(ERR)?;
            let h = &s[c.pos..=close];
            c.pos = close + 1;
            h
        } else {
            c.take_while(|b| crate::lex::has_class(b, HOST))
        };
        let host = parse_host(host_text).map_err(|_| ERR)?;
        c.skip_lws();
        let mut port = None;
        if s.as_bytes().get(c.pos) == Some(&b':') {
            c.expect(b':')?;
            port = Some(parse_port(c.take_while(|b| b.is_ascii_digit())).ok_or(ERR)?);
            c.skip_lws();
        }
        let param_text = &s[c.pos..];
        if !param_text.is_empty() && !param_text.starts_with(';') {
            return Err(ERR);
        }
        let mut via = Via {
            transport,
            host,
            port,
            branch: None,
            received: None,
            rport: None,
            params: param_text,
        };
        for p in params(param_text) {
            let (name, value) = p.map_err(|_| ERR)?;
            if !valid_param(name, value) {
                return Err(ERR);
            }
            if name.eq_ignore_ascii_case("branch") {
                via.branch = Some(value.filter(|v| !v.is_empty()).ok_or(ERR)?);
            } else if name.eq_ignore_ascii_case("received") {
                let v = value.ok_or(ERR)?;
                via.received = Some(v);
            } else if name.eq_ignore_ascii_case("rport") {
                via.rport = Some(match value {
                    None => None,
                    Some(v) => Some(parse_port(v).ok_or(ERR)?),
                });
            } else if name.eq_ignore_ascii_case("ttl") {
                value.and_then(|v| v.parse::<u8>().ok()).ok_or(ERR)?;
            }
        }
        Ok(via)
    }

    /// True when the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn is_rfc3261(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The sent-by as `host[:port]` text suitable for a Via (IPv6 in brackets).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// Value of any Via parameter (`Some("")` for a flag), case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        crate::lex::find_param(self.params, name)
    }
}

/// The host of a [`ViaIndex`].
#[derive(Debug, Clone, Copy)]
enum HostIndex {
    Ip(IpAddr),
    Name(Rel),
}

/// A parsed Via kept as offsets, so a message hands out its top Via without parsing it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaIndex {
    transport: TransportKind,
    host: HostIndex,
    port: Option<u16>,
    branch: Option<Rel>,
    received: Option<Rel>,
    rport: Option<Option<u16>>,
    params: Rel,
}

impl ViaIndex {
    /// Records `via`, parsed from a sub-slice of `outer`; `base` is `outer`'s offset.
    pub(crate) fn new(outer: &str, via: &Via<'_>, base: u16) -> ViaIndex {
        let at = |part: &str| Rel::of_part(outer, part, base);
        ViaIndex {
            transport: via.transport,
            host: match via.host {
                Host::Ip(ip) => HostIndex::Ip(ip),
                Host::Name(name) => HostIndex::Name(at(name)),
            },
            port: via.port,
            branch: via.branch.map(at),
            received: via.received.map(at),
            rport: via.rport,
            params: at(via.params),
        }
    }

    /// The Via again, its text read through `text`.
    pub(crate) fn get<'a>(&self, text: impl Fn(Rel) -> &'a str) -> Via<'a> {
        Via {
            transport: self.transport,
            host: match self.host {
                HostIndex::Ip(ip) => Host::Ip(ip),
                HostIndex::Name(name) => Host::Name(text(name)),
            },
            port: self.port,
            branch: self.branch.map(&text),
            received: self.received.map(&text),
            rport: self.rport,
            params: text(self.params),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_via() {
        let v = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport;received=1.2.3.4")
            .unwrap();
        assert_eq!(v.transport, TransportKind::Udp);
        assert_eq!(v.host, Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some("z9hG4bK776"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received, Some("1.2.3.4"));
        assert!(v.is_rfc3261());
        assert_eq!(v.params, ";branch=z9hG4bK776;rport;received=1.2.3.4");
        assert_eq!(v.sent_by(), "10.0.0.1:5060");
    }

    #[test]
    fn folded_and_spaced_via() {
        let v =
            Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;rport=5;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, TransportKind::Udp);
        assert_eq!(v.host, Host::Ip("192.0.2.2".parse().unwrap()));
        assert_eq!(v.rport, Some(Some(5)));
        assert!(!v.is_rfc3261());
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.host, Host::Name("spindle.example.com"));
        assert_eq!(v.branch, Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ipv6_via() {
        let v = Via::parse(
            "SIP/2.0/TLS [2001:db8::9:1]:5061;received=[2001:db8::9:255];branch=z9hG4bKx",
        )
        .unwrap();
        assert_eq!(v.host, Host::Ip("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.received, Some("[2001:db8::9:255]"));
        assert_eq!(v.sent_by(), "[2001:db8::9:1]:5061");
    }

    #[test]
    fn bad_vias() {
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:port",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Via::parse("SIP/7.0/UDP host"), Err(ParseError::Version));
    }
}
