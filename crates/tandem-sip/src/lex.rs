//! Small lexical helpers shared by the typed parsers (RFC 3261 §25.1).
//!
//! Every typed parser works on the raw header value as it sits in the message, so linear white space
//! includes folded line breaks (CRLF followed by SP/HT); [`is_lws`] treats CR and LF as white space.

use crate::ParseError;

/// Character classes of RFC 3261 §25.1, one bit each in [`CLASS`].
pub(crate) const TOKEN: u8 = 1;
/// `unreserved`: alphanumerics and `-_.!~*'()`.
pub(crate) const UNRESERVED: u8 = 2;
/// Extra characters allowed unescaped in a URI user part: `&=+$,;?/`.
pub(crate) const USER_EXTRA: u8 = 4;
/// Extra characters allowed unescaped in a URI password: `&=+$,`.
pub(crate) const PASSWORD_EXTRA: u8 = 8;
/// Extra characters allowed unescaped in a URI parameter (and `=`): `[]/:&+$=`.
pub(crate) const PARAM_EXTRA: u8 = 16;
/// Extra characters allowed unescaped in a URI header (and `=`): `[]/?:+$=`.
pub(crate) const HEADER_EXTRA: u8 = 32;
/// Host name characters (alphanumerics, `-`, `.`, and `_` seen in practice).
pub(crate) const HOST: u8 = 64;
/// Bytes that never appear unescaped in a URI: controls, SP, non-ASCII, `<>"\`{}|^`.
pub(crate) const NOT_URI: u8 = 128;

const fn mark(mut t: [u8; 256], chars: &[u8], bit: u8) -> [u8; 256] {
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] |= bit;
        i += 1;
    }
    t
}

const fn build_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] |= TOKEN | UNRESERVED | HOST;
        }
        if b <= b' ' || b >= 0x7f {
            t[c] |= NOT_URI;
        }
        c += 1;
    }
    t = mark(t, b"-.!%*_+`'~", TOKEN);
    t = mark(t, b"-_.!~*'()", UNRESERVED);
    t = mark(t, b"&=+$,;?/", USER_EXTRA);
    t = mark(t, b"&=+$,", PASSWORD_EXTRA);
    t = mark(t, b"[]/:&+$=", PARAM_EXTRA);
    t = mark(t, b"[]/?:+$=", HEADER_EXTRA);
    t = mark(t, b"-._", HOST);
    mark(t, b"<>\"\\`{}|^", NOT_URI)
}

/// Class bits of every byte.
pub(crate) static CLASS: [u8; 256] = build_class();

/// True when byte `b` has any of the class bits in `mask`.
#[inline]
pub(crate) fn has_class(b: u8, mask: u8) -> bool {
    CLASS[usize::from(b)] & mask != 0
}

/// `token` characters (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    has_class(b, TOKEN)
}

/// Below this many bytes a plain loop finds a byte faster than `memchr` (whose set-up dominates on
/// the short header values and URI parts the typed parsers search); measured on the codec bench.
const SHORT: usize = 32;
/// The same for the three-byte search of [`find_top_level`] (each byte costs the loop more).
const SHORT3: usize = 16;

/// Position of the first `b` in `s` from byte `from`.
#[inline]
pub(crate) fn find_byte(s: &str, from: usize, b: u8) -> Option<usize> {
    let rest = &s.as_bytes()[from..];
    let found = if rest.len() < SHORT {
        rest.iter().position(|&c| c == b)
    } else {
        memchr::memchr(b, rest)
    };
    found.map(|i| i + from)
}

/// True when `s` is a non-empty token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// White space inside a raw header value: SP, HT, and the CR/LF of folded lines.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear white space (including folding) from both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    let (a, b) = trim_span(s.as_bytes(), 0, s.len());
    &s[a..b]
}

/// Index just past the quoted string starting at `s[start]` (which must be `"`).
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Result<usize, ParseError> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                // quoted-pair: any byte except CR and LF.
                match s.get(i + 1) {
                    Some(b'\r') | Some(b'\n') | None => return Err(ParseError::HeaderLine),
                    Some(_) => i += 2,
                }
            }
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(ParseError::HeaderLine)
}

/// Finds the first `target` byte at top level: outside quoted strings and `<...>`.
/// Returns `Err` for an unterminated quoted string.
pub(crate) fn find_top_level(
    s: &[u8],
    from: usize,
    target: u8,
) -> Result<Option<usize>, ParseError> {
    let mut i = from;
    while i < s.len() {
        let rest = &s[i..];
        let found = if rest.len() < SHORT3 {
            rest.iter()
                .position(|&c| c == target || c == b'"' || c == b'<')
        } else {
            memchr::memchr3(target, b'"', b'<', rest)
        };
        let Some(off) = found else {
            return Ok(None);
        };
        i += off;
        match s[i] {
            b'"' => i = quoted_end(s, i)?,
            // Inside <...> nothing is at top level (a URI holds no quotes).
            b'<' => match memchr::memchr(b'>', &s[i..]) {
                Some(close) => i += close + 1,
                None => return Ok(None),
            },
            _ => return Ok(Some(i)),
        }
    }
    Ok(None)
}

/// Iterator over the top-level comma-separated pieces of a header value, as `(start, end)` byte
/// offsets of the trimmed piece. Empty pieces are skipped. An unterminated quoted string ends the
/// iteration with the rest of the text as the last piece.
#[derive(Debug, Clone)]
pub(crate) struct CommaPieces<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> CommaPieces<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaPieces { s, pos: 0 }
    }

    /// Resumes splitting at byte offset `pos` (the end of a previous piece).
    pub(crate) fn starting_at(s: &'a str, pos: usize) -> Self {
        CommaPieces { s, pos }
    }
}

impl Iterator for CommaPieces<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.s.as_bytes();
        while self.pos <= bytes.len() {
            let start = self.pos;
            let end = match find_top_level(bytes, start, b',') {
                Ok(Some(i)) => i,
                Ok(None) | Err(_) => bytes.len(),
            };
            self.pos = end + 1;
            let (a, b) = trim_span(bytes, start, end);
            if a < b {
                return Some((a, b));
            }
        }
        None
    }
}

/// Trims LWS from the span `start..end` of `s`.
pub(crate) fn trim_span(s: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_lws(s[start]) {
        start += 1;
    }
    while end > start && is_lws(s[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// Iterates `;name[=value]` parameters (text starting at ';' or empty), splitting outside quoted
/// strings and trimming LWS around names and values. Yields `(name, value)`; flags give `None`.
pub(crate) fn params(s: &str) -> Params<'_> {
    Params { s, pos: 0 }
}

/// See [`params`].
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a str, Option<&'a str>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.s.as_bytes();
        loop {
            if self.pos >= bytes.len() {
                return None;
            }
            let start = self.pos;
            let end = match find_top_level(bytes, start, b';') {
                Ok(Some(i)) => i,
                Ok(None) => bytes.len(),
                Err(e) => {
                    self.pos = bytes.len();
                    return Some(Err(e));
                }
            };
            self.pos = end + 1;
            let piece = trim_lws(&self.s[start..end]);
            if piece.is_empty() {
                if start == 0 {
                    // text before the first ';' (normally empty)
                    continue;
                }
                return Some(Err(ParseError::HeaderLine));
            }
            if start == 0 {
                // Parameter text must start with ';'.
                self.pos = bytes.len();
                return Some(Err(ParseError::HeaderLine));
            }
            return Some(Ok(match find_byte(piece, 0, b'=') {
                Some(eq) => (trim_lws(&piece[..eq]), Some(trim_lws(&piece[eq + 1..]))),
                None => (piece, None),
            }));
        }
    }
}

/// Checks a generic-param list: every name is a token, every value a token, host or quoted string.
pub(crate) fn validate_params(s: &str) -> Result<(), ParseError> {
    validate_params_finding(s, "").map(drop)
}

/// [`validate_params`], also returning what [`find_param`] would for `name`, in the same pass.
pub(crate) fn validate_params_finding<'a>(
    s: &'a str,
    name: &str,
) -> Result<Option<&'a str>, ParseError> {
    let mut found = None;
    for p in params(s) {
        let (n, value) = p?;
        if !valid_param(n, value) {
            return Err(ParseError::HeaderLine);
        }
        if found.is_none() && n.eq_ignore_ascii_case(name) {
            found = Some(value.unwrap_or(""));
        }
    }
    Ok(found)
}

/// One generic-param: the name is a token, the value (if any) a token, host or quoted string.
pub(crate) fn valid_param(name: &str, value: Option<&str>) -> bool {
    is_token(name) && value.is_none_or(is_param_value)
}

/// Looks up a parameter by case-insensitive name; a flag yields `Some("")`.
pub(crate) fn find_param<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    params(s)
        .filter_map(Result::ok)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or(""))
}

/// gen-value = token / host / quoted-string.
fn is_param_value(v: &str) -> bool {
    let b = v.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.first() == Some(&b'"') {
        return matches!(quoted_end(b, 0), Ok(end) if end == b.len());
    }
    b.iter()
        .all(|&c| is_token_char(c) || matches!(c, b':' | b'[' | b']'))
}

/// Parses 1*DIGIT (leading zeros allowed) into a u32, rejecting overflow.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u32 = 0;
    for b in s.bytes() {
        n = n.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(n)
}

/// Replaces folded line breaks (CRLF + white space) by one space.
pub(crate) fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, seg) in s.split('\n').enumerate() {
        let seg = seg.trim_end_matches(['\r', ' ', '\t']);
        let seg = if i == 0 {
            seg
        } else {
            seg.trim_start_matches([' ', '\t'])
        };
        if seg.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(seg);
    }
    out
}

/// Formats a number into a stack buffer (no allocation).
pub(crate) fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn comma_pieces_respect_quotes_and_angles() {
        let s = r#""a,b" <sip:x@y;p=1,2>, <sip:z>,, c"#;
        let v: Vec<&str> = CommaPieces::new(s).map(|(a, b)| &s[a..b]).collect();
        assert_eq!(v, vec![r#""a,b" <sip:x@y;p=1,2>"#, "<sip:z>", "c"]);
    }

    #[test]
    fn params_trim_lws() {
        let v: Vec<_> = params(";  tag = 1 ;\r\n  lr ; q=\"a;b\"")
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(
            v,
            vec![("tag", Some("1")), ("lr", None), ("q", Some("\"a;b\""))]
        );
        assert_eq!(find_param(";Tag=x;lr", "tag"), Some("x"));
        assert_eq!(find_param(";Tag=x;lr", "LR"), Some(""));
        assert!(validate_params(";tag=").is_err());
        assert!(validate_params(";;").is_err());
        assert!(validate_params("x").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0068"), Some(68));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32(""), None);
        let mut b = [0; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn unfolding() {
        assert_eq!(unfold("a\r\n  b \r\n\tc"), "a b c");
    }
}
