//! name-addr / addr-spec values with header parameters (RFC 3261 §20.10, §25.1).

use crate::lex::{find_byte, find_param, is_lws, quoted_end, trim_lws, validate_params_finding};
use crate::uri::Uri;
use crate::ParseError;

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name without quotes, if any.
    pub display: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Raw header-parameter text after the URI (`;tag=..;expires=..`), starting at ';' or empty.
    pub params: &'a str,
}

const ERR: ParseError = ParseError::Header("name-addr");

impl<'a> NameAddr<'a> {
    /// Parses one value (not a comma-list). LWS (including folding) is allowed around the display
    /// name, the angle brackets and parameters, but not inside the URI. A malformed URI gives
    /// [`ParseError::Uri`], any other defect `ParseError::Header("name-addr")`.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        Self::parse_tagged(s).map(|(addr, _)| addr)
    }

    /// [`NameAddr::parse`], also returning [`NameAddr::tag`] (found while the parameters are
    /// checked).
    pub(crate) fn parse_tagged(s: &'a str) -> Result<(NameAddr<'a>, Option<&'a str>), ParseError> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(ERR);
        }
        let (display, rest) = if b[0] == b'"' {
            let end = quoted_end(b, 0).map_err(|_| ERR)?;
            let rest = trim_lws(&s[end..]);
            if !rest.starts_with('<') {
                return Err(ERR);
            }
            (Some(&s[1..end - 1]), rest)
        } else {
            match find_byte(s, 0, b'<') {
                Some(i) => {
                    let d = trim_lws(&s[..i]);
                    if d.bytes()
                        .any(|c| matches!(c, b'"' | b'>' | b';' | b',') || (c < b' ' && !is_lws(c)))
                    {
                        return Err(ERR);
                    }
                    ((!d.is_empty()).then_some(d), &s[i..])
                }
                None => (None, s),
            }
        };
        let (uri_text, params) = if let Some(inner) = rest.strip_prefix('<') {
            let close = find_byte(inner, 0, b'>').ok_or(ERR)?;
            (&inner[..close], trim_lws(&inner[close + 1..]))
        } else {
            // addr-spec: URI parameters here are header parameters (RFC 3261 §20.10).
            let semi = find_byte(rest, 0, b';').unwrap_or(rest.len());
            let uri = trim_lws(&rest[..semi]);
            // A URI with a comma or question mark must be in <> (RFC 3261 §20.10).
            if uri.contains(['?', ',']) {
                return Err(ERR);
            }
            (uri, &rest[semi..])
        };
        let uri = Uri::parse(uri_text)?;
        if !params.is_empty() && !params.starts_with(';') {
            return Err(ERR);
        }
        let tag = validate_params_finding(params, "tag").map_err(|_| ERR)?;
        let addr = NameAddr {
            display,
            uri,
            params,
        };
        Ok((addr, tag))
    }

    /// Header parameter value (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param(self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag")
    }

    /// A placeholder used when a validated header is read back (never observed in practice).
    pub(crate) fn empty() -> NameAddr<'static> {
        NameAddr {
            display: None,
            uri: Uri::empty(),
            params: "",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::uri::Host;

    #[test]
    fn forms() {
        let n = NameAddr::parse(r#""Bob \"B\"" <sip:bob@b.example>;tag=1"#).unwrap();
        assert_eq!(n.display, Some(r#"Bob \"B\""#));
        assert_eq!(n.uri.host, Some(Host::Name("b.example")));
        assert_eq!(n.tag(), Some("1"));
        let n = NameAddr::parse("Bob Smith<sip:bob@b.example;transport=tcp>").unwrap();
        assert_eq!(n.display, Some("Bob Smith"));
        assert_eq!(n.uri.params, ";transport=tcp");
        assert_eq!(n.params, "");
        let n = NameAddr::parse("sip:bob@b.example ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.uri.raw, "sip:bob@b.example");
        assert_eq!(n.tag(), Some("1918181833n"));
        let n = NameAddr::parse(
            "\"x\" <sip:a@b> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33",
        )
        .unwrap();
        assert_eq!(n.param("newparam"), Some("newvalue"));
        assert_eq!(n.param("secondparam"), Some(""));
        assert_eq!(n.param("Q"), Some("0.33"));
    }

    #[test]
    fn bad() {
        assert_eq!(NameAddr::parse("< sip:a@b >"), Err(ParseError::Uri));
        assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("<sip:a@b> junk").is_err());
        assert!(NameAddr::parse("\"x\" sip:a@b").is_err());
        assert!(NameAddr::parse("").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
    }
}
