//! Header field names, long and compact forms (RFC 3261 §7.3.3, §20).

use std::fmt;

/// Well-known header names with their compact forms; anything else is `Other`.
/// Matching is case-insensitive; compact forms (`v f t i m l c k s e o r u`... per RFC 3261 §7.3.3 and
/// registered extensions) map to the same variant as the long form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName<'a> {
    /// Via (compact `v`).
    Via,
    /// From (compact `f`).
    From,
    /// To (compact `t`).
    To,
    /// Call-ID (compact `i`).
    CallId,
    /// CSeq.
    CSeq,
    /// Max-Forwards.
    MaxForwards,
    /// Contact (compact `m`).
    Contact,
    /// Content-Length (compact `l`).
    ContentLength,
    /// Content-Type (compact `c`).
    ContentType,
    /// Supported (compact `k`).
    Supported,
    /// Subject (compact `s`).
    Subject,
    /// Content-Encoding (compact `e`).
    ContentEncoding,
    /// Event (compact `o`).
    Event,
    /// Route.
    Route,
    /// Record-Route.
    RecordRoute,
    /// Require.
    Require,
    /// Proxy-Require.
    ProxyRequire,
    /// Unsupported.
    Unsupported,
    /// Allow.
    Allow,
    /// Server.
    Server,
    /// User-Agent.
    UserAgent,
    /// Expires.
    Expires,
    /// RSeq.
    RSeq,
    /// RAck.
    RAck,
    /// Session-Expires (compact `x`).
    SessionExpires,
    /// Refer-To (compact `r`).
    ReferTo,
    /// Allow-Events (compact `u`).
    AllowEvents,
    /// Any other name, as written in the message (compare case-insensitively with [`HeaderName::is`]).
    Other(&'a str),
}

/// Long names of the known variants, indexed by [`HeaderName::kind_id`].
const LONG: [(&str, HeaderName<'static>); 27] = [
    ("Via", HeaderName::Via),
    ("From", HeaderName::From),
    ("To", HeaderName::To),
    ("Call-ID", HeaderName::CallId),
    ("CSeq", HeaderName::CSeq),
    ("Max-Forwards", HeaderName::MaxForwards),
    ("Contact", HeaderName::Contact),
    ("Content-Length", HeaderName::ContentLength),
    ("Content-Type", HeaderName::ContentType),
    ("Supported", HeaderName::Supported),
    ("Subject", HeaderName::Subject),
    ("Content-Encoding", HeaderName::ContentEncoding),
    ("Event", HeaderName::Event),
    ("Route", HeaderName::Route),
    ("Record-Route", HeaderName::RecordRoute),
    ("Require", HeaderName::Require),
    ("Proxy-Require", HeaderName::ProxyRequire),
    ("Unsupported", HeaderName::Unsupported),
    ("Allow", HeaderName::Allow),
    ("Server", HeaderName::Server),
    ("User-Agent", HeaderName::UserAgent),
    ("Expires", HeaderName::Expires),
    ("RSeq", HeaderName::RSeq),
    ("RAck", HeaderName::RAck),
    ("Session-Expires", HeaderName::SessionExpires),
    ("Refer-To", HeaderName::ReferTo),
    ("Allow-Events", HeaderName::AllowEvents),
];

/// A name of at most 16 bytes folded to lower case (`| 0x20`) and packed into a `u128`. Known names
/// hold only letters, digits and `-`, so no other token folds onto one of them.
const fn fold_key(b: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let mut i = 0;
    while i < b.len() && i < 16 {
        buf[i] = b[i] | 0x20;
        i += 1;
    }
    u128::from_le_bytes(buf)
}

const fn long_keys() -> [u128; 27] {
    let mut keys = [0u128; 27];
    let mut i = 0;
    while i < LONG.len() {
        keys[i] = fold_key(LONG[i].0.as_bytes());
        i += 1;
    }
    keys
}

/// [`fold_key`] of every long name, indexed like `LONG`.
static LONG_KEYS: [u128; 27] = long_keys();

/// Kind id used in the header index for names that are not a known variant.
pub(crate) const OTHER_KIND: u8 = u8::MAX;

/// Registered compact forms whose long names have no variant (IANA SIP parameters registry).
const OTHER_COMPACT: [(u8, &str); 6] = [
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'd', "Request-Disposition"),
    (b'j', "Reject-Contact"),
    (b'n', "Identity-Info"),
    (b'y', "Identity"),
];

impl<'a> HeaderName<'a> {
    /// Classifies a header name as written (long or compact form, any case).
    pub fn parse(name: &'a str) -> HeaderName<'a> {
        match kind_of(name.as_bytes()) {
            OTHER_KIND => HeaderName::Other(name),
            k => LONG[usize::from(k)].1,
        }
    }

    /// Canonical long form used when Tandem writes this header.
    pub fn as_str(&self) -> &'a str {
        match self {
            HeaderName::Other(s) => s,
            known => LONG[usize::from(known.kind_id())].0,
        }
    }

    /// Case-insensitive equality that treats compact and long forms as equal.
    pub fn is(&self, other: HeaderName<'_>) -> bool {
        match (self.classified(), other.classified()) {
            (HeaderName::Other(a), HeaderName::Other(b)) => {
                expand_other(a).eq_ignore_ascii_case(expand_other(b))
            }
            (a, b) => a.kind_id() == b.kind_id(),
        }
    }

    /// Re-classifies an `Other` built by hand from a known name (e.g. `Other("via")`).
    pub(crate) fn classified(self) -> HeaderName<'a> {
        match self {
            HeaderName::Other(s) => HeaderName::parse(s),
            known => known,
        }
    }

    /// Small integer identifying a known variant; [`OTHER_KIND`] for `Other`.
    pub(crate) fn kind_id(&self) -> u8 {
        match self {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            HeaderName::MaxForwards => 5,
            HeaderName::Contact => 6,
            HeaderName::ContentLength => 7,
            HeaderName::ContentType => 8,
            HeaderName::Supported => 9,
            HeaderName::Subject => 10,
            HeaderName::ContentEncoding => 11,
            HeaderName::Event => 12,
            HeaderName::Route => 13,
            HeaderName::RecordRoute => 14,
            HeaderName::Require => 15,
            HeaderName::ProxyRequire => 16,
            HeaderName::Unsupported => 17,
            HeaderName::Allow => 18,
            HeaderName::Server => 19,
            HeaderName::UserAgent => 20,
            HeaderName::Expires => 21,
            HeaderName::RSeq => 22,
            HeaderName::RAck => 23,
            HeaderName::SessionExpires => 24,
            HeaderName::ReferTo => 25,
            HeaderName::AllowEvents => 26,
            HeaderName::Other(_) => OTHER_KIND,
        }
    }
}

/// [`HeaderName::kind_id`] of a name as written (long or compact form, any case), without building
/// a `HeaderName`; the parser's per-line classification.
#[inline]
pub(crate) fn kind_of(b: &[u8]) -> u8 {
    kind_of_at(b, 0, b.len())
}

/// [`kind_of`] for the name `buf[start..end]`; reads 16 bytes at once when `buf` has them.
#[inline]
pub(crate) fn kind_of_at(buf: &[u8], start: usize, end: usize) -> u8 {
    let b = &buf[start..end];
    if b.len() == 1 {
        return match b[0].to_ascii_lowercase() {
            b'v' => 0,
            b'f' => 1,
            b't' => 2,
            b'i' => 3,
            b'm' => 6,
            b'l' => 7,
            b'c' => 8,
            b'k' => 9,
            b's' => 10,
            b'e' => 11,
            b'o' => 12,
            b'x' => 24,
            b'r' => 25,
            b'u' => 26,
            _ => OTHER_KIND,
        };
    }
    // Candidates by length (indices into LONG), then one 128-bit compare each.
    let candidates: &[u8] = match b.len() {
        2 => &[2],
        3 => &[0],
        4 => &[1, 4, 22, 23],
        5 => &[12, 13, 18],
        6 => &[19],
        7 => &[3, 6, 10, 15, 21],
        8 => &[25],
        9 => &[9],
        10 => &[20],
        11 => &[17],
        12 => &[5, 8, 14, 26],
        13 => &[16],
        14 => &[7],
        15 => &[24],
        16 => &[11],
        _ => return OTHER_KIND,
    };
    // Lower-cased (`| 0x20`) name bytes, zero past the name. One unaligned load when the buffer
    // has 16 bytes from `start`; otherwise built with shifts (a stack buffer would stall on reload).
    let len_mask = if b.len() == 16 {
        u128::MAX
    } else {
        (1u128 << (b.len() * 8)) - 1
    };
    let key = match buf
        .get(start..start + 16)
        .and_then(|w| <[u8; 16]>::try_from(w).ok())
    {
        Some(word) => {
            (u128::from_le_bytes(word) | 0x2020_2020_2020_2020_2020_2020_2020_2020) & len_mask
        }
        None => {
            let mut key = 0u128;
            for (i, &c) in b.iter().enumerate() {
                key |= u128::from(c | 0x20) << (8 * i);
            }
            key
        }
    };
    for &i in candidates {
        if LONG_KEYS[usize::from(i)] == key {
            return i;
        }
    }
    OTHER_KIND
}

/// Canonical long name of a known kind id (see [`HeaderName::kind_id`]); empty for others.
pub(crate) fn name_of_kind(kind: u8) -> &'static str {
    LONG.get(usize::from(kind)).map_or("", |(n, _)| n)
}

/// Long form of a registered compact name that has no variant; the name itself otherwise.
fn expand_other(name: &str) -> &str {
    if name.len() == 1 {
        let c = name.as_bytes()[0].to_ascii_lowercase();
        if let Some((_, long)) = OTHER_COMPACT.iter().find(|(k, _)| *k == c) {
            return long;
        }
    }
    name
}

impl fmt::Display for HeaderName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_compact_and_case() {
        for (long, kind) in &LONG {
            assert_eq!(HeaderName::parse(long), *kind, "{long}");
            assert_eq!(HeaderName::parse(&long.to_ascii_uppercase()), *kind);
            assert_eq!(kind.as_str(), *long);
            assert_eq!(LONG[usize::from(kind.kind_id())].1, *kind);
        }
        for (c, kind) in [
            ("v", HeaderName::Via),
            ("F", HeaderName::From),
            ("t", HeaderName::To),
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("x", HeaderName::SessionExpires),
            ("r", HeaderName::ReferTo),
            ("u", HeaderName::AllowEvents),
        ] {
            assert_eq!(HeaderName::parse(c), kind, "{c}");
        }
        assert_eq!(HeaderName::parse("X-Foo"), HeaderName::Other("X-Foo"));
        assert_eq!(HeaderName::parse("X-Foo").as_str(), "X-Foo");
    }

    #[test]
    fn is_matches_forms() {
        assert!(HeaderName::Via.is(HeaderName::parse("v")));
        assert!(HeaderName::Other("VIA").is(HeaderName::Via));
        assert!(HeaderName::Other("x-foo").is(HeaderName::Other("X-FOO")));
        assert!(HeaderName::Other("b").is(HeaderName::Other("referred-by")));
        assert!(!HeaderName::Other("x-foo").is(HeaderName::Via));
        assert!(!HeaderName::To.is(HeaderName::From));
    }
}
