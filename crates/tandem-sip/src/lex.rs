//! Small lexical helpers shared by the typed parsers (RFC 3261 §25.1).
//!
//! Every typed parser works on the raw header value as it sits in the message, so linear white space
//! includes folded line breaks (CRLF followed by SP/HT); [`is_lws`] treats CR and LF as white space.

use crate::ParseError;

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
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
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
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
    let mut in_angle = false;
    while i < s.len() {
        let b = s[i];
        if b == b'"' && !in_angle {
            i = quoted_end(s, i)?;
            continue;
        }
        if b == target && !in_angle {
            return Ok(Some(i));
        }
        match b {
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ => {}
        }
        i += 1;
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
            return Some(Ok(match piece.find('=') {
                Some(eq) => (trim_lws(&piece[..eq]), Some(trim_lws(&piece[eq + 1..]))),
                None => (piece, None),
            }));
        }
    }
}

/// Checks a generic-param list: every name is a token, every value a token, host or quoted string.
pub(crate) fn validate_params(s: &str) -> Result<(), ParseError> {
    for p in params(s) {
        let (name, value) = p?;
        if !is_token(name) {
            return Err(ParseError::HeaderLine);
        }
        if let Some(v) = value {
            if !is_param_value(v) {
                return Err(ParseError::HeaderLine);
            }
        }
    }
    Ok(())
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
