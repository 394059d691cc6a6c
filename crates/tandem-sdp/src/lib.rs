//! Byte-preserving SDP (RFC 8866 / RFC 4566) index and rewriter.
//!
//! Tandem anchors RTP/RTCP on its own relay ports: every offer and answer crossing it has its
//! connection addresses and media ports rewritten. [`Sdp::parse`] builds a light index over the
//! original bytes (no copies); [`rewrite`] splices only the address, port and `o=` version tokens
//! and copies every other byte as is, line ends included (CRLF or LF-only, whatever the input used).
//!
//! Sans-IO, no panics on any input: malformed bodies give an [`SdpError`].
//!
//! ```
//! use bytes::Bytes;
//! use tandem_sdp::{rewrite, MediaPorts, Plan};
//!
//! let body = Bytes::from_static(
//!     b"v=0\r\no=- 1 7 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
//! );
//! let plan = Plan {
//!     connection: Some("192.0.2.1".parse().unwrap()),
//!     media: vec![Some(MediaPorts { rtp: 30000, rtcp: None })],
//!     origin_version: None,
//! };
//! let out = rewrite(&body, &plan).unwrap();
//! assert_eq!(out.version, 8);
//! assert!(out.changed);
//! assert_eq!(
//!     &out.body[..],
//!     b"v=0\r\no=- 1 8 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
//! );
//! ```
//!
//! # Choice
//!
//! An own rewriter rather than a general SDP crate: measured against `sdp-types` 0.3.1 (parse into
//! owned structs, change the same fields, serialize) with `cargo bench -p tandem-sdp` (bench
//! `benches/rewrite.rs`, bodies in `benches/bodies/`). Both rewrite every `c=`, the `m=` ports, the
//! `a=rtcp` port and address and bump the `o=` version, and both wrote the same bytes for these
//! three canonical CRLF bodies. Criterion medians on the project's 2-core VM, shared with other
//! builds, `--warm-up-time 1 --measurement-time 3`: noisy, expect ±10 %. Allocations are of one
//! rewrite, counted with a counting global allocator:
//!
//! | body                                   | tandem-sdp | sdp-types | allocations (tandem-sdp / sdp-types) |
//! |----------------------------------------|------------|-----------|--------------------------------------|
//! | Asterisk G.711 answer, 255 B           | 0.75 µs    | 3.4 µs    | 10 (+4 realloc) / 31 (+2 realloc)    |
//! | WebRTC-style audio+video offer, 1.6 KB | 2.7 µs     | 16.1 µs   | 16 (+11 realloc) / 115 (+12 realloc) |
//! | hold re-INVITE (`a=sendonly`), 237 B   | 0.76 µs    | 3.3 µs    | 10 (+4 realloc) / 29 (+2 realloc)    |
//!
//! tandem-sdp is 4.5–6× faster and makes 3–7× fewer allocations, though on the two small bodies
//! it allocates more bytes in total (about 2.7 KB against 1.9 KB: its line index).
//!
//! Speed is the lesser reason. A B2BUA must pass on what it does not understand, and a
//! parse + serialize round trip through `sdp-types` does not (see
//! `tests/sdp_types_comparison.rs`, which asserts each of these): LF-only line ends become CRLF, a
//! missing final line end is added, blank lines are dropped, unknown line types (`y=`, `x=`) are
//! dropped, runs of spaces in `o=`, `c=` and `t=` are collapsed, lowercase `in ip4` is uppercased,
//! lines are put in RFC order (`c=` before `b=`, media `c=` before `a=`), `r=` times are rewritten
//! in `d`/`h`/`m` units, and missing `s=` and `t=` lines are added. Some bodies are rejected
//! outright: a non-UTF-8 (Latin-1) session name, a double space after the media type in `m=`.
//! tandem-sdp relays all of these, changing only the address, port and version tokens. What
//! `sdp-types` does keep is every attribute value as written, spaces included.

mod parse;
mod rewrite;

pub use parse::{Connection, Direction, Line, MediaSection, Rtcp, Sdp};
pub use rewrite::{rewrite, MediaPorts, Plan, Rewritten};

/// A body Tandem cannot index or rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body has no `o=` line.
    #[error("SDP body has no o= line")]
    MissingOrigin,
    /// The `o=` line lacks its six fields or its session version is not a decimal number.
    #[error("malformed o= line (line {line})")]
    MalformedOrigin {
        /// 1-based line number.
        line: usize,
    },
    /// A line is not `<letter>=<value>`.
    #[error("malformed SDP line (line {line})")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// An `m=` line lacks media, port, proto or has a port/count that is not a 16-bit number.
    #[error("malformed m= line (line {line})")]
    MalformedMedia {
        /// 1-based line number.
        line: usize,
    },
    /// A `c=` line lacks its network type, address type or address.
    #[error("malformed c= line (line {line})")]
    MalformedConnection {
        /// 1-based line number.
        line: usize,
    },
    /// An `a=rtcp:` attribute whose port is not a 16-bit number or whose address part is incomplete.
    #[error("malformed a=rtcp attribute (line {line})")]
    MalformedRtcp {
        /// 1-based line number.
        line: usize,
    },
    /// The plan names more media sections than the body has.
    #[error("plan names {planned} media sections, body has {present}")]
    PlanMediaCount {
        /// Entries in [`Plan::media`].
        planned: usize,
        /// Media sections in the body.
        present: usize,
    },
    /// The derived RTCP port (RTP port + 1) does not fit in 16 bits.
    #[error("RTCP port for RTP port {rtp} overflows")]
    RtcpPortOverflow {
        /// The planned RTP port.
        rtp: u16,
    },
    /// Incrementing the `o=` session version would overflow 64 bits.
    #[error("o= session version overflows")]
    VersionOverflow,
}
