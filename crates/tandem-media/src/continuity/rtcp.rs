//! RTCP SSRC rewriting, in place (RFC 3550 §6.4, RFC 4585 §6.1).
//!
//! # What comes from `rtcp-types`, and what is done here
//!
//! `rtcp-types` (0.3) gives each RTCP packet type a zero-copy *parser* (a read-only view over
//! `&[u8]`) and a *builder* that writes a whole new packet. Here:
//!
//! * **From `rtcp-types`**: the header fields of every packet of the compound (version, count,
//!   packet type, length: [`rtcp_types::utils::parser`]); the validation of SR, RR, BYE, APP,
//!   RTPFB and PSFB packets by their own parsers ([`SenderReport`], [`ReceiverReport`], [`Bye`],
//!   [`App`], [`TransportFeedback`], [`PayloadFeedback`]), which also yields their report or source
//!   counts; and the layout constants the SSRC positions follow (the minimum length of SR, RR and
//!   BYE is where their report blocks or source list start, [`ReportBlock::EXPECTED_SIZE`] is the
//!   stride of report blocks).
//! * **Own, the in-place write**: no type of `rtcp-types` has a mutable view or an SSRC setter, and
//!   rebuilding a packet through a builder allocates (report blocks, sources and SDES chunks are
//!   collected in `Vec`s, feedback FCI is boxed), writes a new buffer, and cannot reproduce bytes
//!   it does not model (profile-specific extensions after report blocks, BYE reasons, APP data).
//!   So each SSRC is a 4-byte store at the offset the validated layout gives.
//! * **Own, the SDES chunk walk**: [`rtcp_types::Sdes::parse`] collects chunks and their items in
//!   `Vec`s — a heap allocation for every compound packet, since each carries a CNAME — and the
//!   chunk parser is private; so SDES chunks (SSRC, items of type/length/text up to a null type,
//!   padding to 32 bits) are walked here without allocating.
//! * **Own, the compound walk**: `rtcp_types::Compound::parse` reports errors without the offset of
//!   the faulty packet (which [`RtcpError`] carries), checks the version of the first packet only,
//!   and its iterator parses SDES (allocating) and XR (strictly) packets that this rewrite has no
//!   business refusing. The walk here checks each header and length itself and hands each packet,
//!   exactly as long as its length field says, to the parser of its type.
//!
//! Being validated by `rtcp-types` makes two kinds of malformed packet, which were rewritten before,
//! refused as [`RtcpError::BodyOverrun`]: an SR, RR, BYE, APP, RTPFB or PSFB whose padding bit is
//! set but whose padding count is 0, and a BYE whose reason runs past the packet. The relay
//! forwards a refused compound packet unchanged.

use rtcp_types::prelude::*;
use rtcp_types::utils::parser::{parse_count, parse_length, parse_packet_type, parse_version};
use rtcp_types::{
    App, Bye, PayloadFeedback, ReceiverReport, ReportBlock, Sdes, SenderReport, TransportFeedback,
    Unknown,
};

/// The only RTCP version in use (RFC 3550 §6.4.1).
const RTCP_VERSION: u8 = <Unknown<'static> as RtcpPacket>::VERSION;
/// Length of the common RTCP header: version, count, packet type, length.
const RTCP_HEADER_LEN: usize = <Unknown<'static> as RtcpPacket>::MIN_PACKET_LEN;
/// Offset of the SSRC that follows the common header of SR, RR, APP and feedback packets.
const SENDER_SSRC_AT: usize = 4;
/// Offset of the media source SSRC of an RTPFB or PSFB packet (RFC 4585 §6.1).
const MEDIA_SSRC_AT: usize = 8;
/// Length of one SSRC in a BYE source list.
const SSRC_LEN: usize = 4;

/// Why an RTCP compound packet could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// The compound packet holds no RTCP packet at all.
    #[error("empty RTCP packet")]
    Empty,
    /// Fewer than 4 bytes are left where an RTCP header should start.
    #[error("truncated RTCP header at byte {offset}")]
    TruncatedHeader {
        /// Offset of the header in the compound packet.
        offset: usize,
    },
    /// The version field is not 2.
    #[error("RTCP version {version} at byte {offset} is not supported")]
    UnsupportedVersion {
        /// Offset of the header in the compound packet.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// The length field runs past the end of the compound packet.
    #[error("RTCP packet at byte {offset} claims {claimed} bytes but only {available} remain")]
    LengthOverrun {
        /// Offset of the header in the compound packet.
        offset: usize,
        /// Length the header claims, in bytes.
        claimed: usize,
        /// Bytes left in the compound packet.
        available: usize,
    },
    /// The body (report blocks, SSRC list, BYE reason, SDES chunks) does not fit in the packet's
    /// length, or its padding bit is set with a padding count of 0.
    #[error("RTCP packet type {packet_type} at byte {offset} has a body longer than its length")]
    BodyOverrun {
        /// Offset of the header in the compound packet.
        offset: usize,
        /// The RTCP packet type.
        packet_type: u8,
    },
}

/// Rewrites, in place, the SSRC fields of an RTCP compound packet (RFC 3550 §6.4): the sender SSRC and
/// report-block SSRCs of SR and RR, SDES chunk SSRCs, BYE SSRCs, the APP SSRC and both SSRCs of RTPFB and
/// PSFB feedback (RFC 4585). Each field for which `map` returns `Some(new)` becomes `new`; other packet
/// types are length-checked and left alone. The whole compound packet is validated before the first
/// byte changes, so a malformed packet comes back untouched. Returns how many fields changed.
pub fn rewrite_rtcp_ssrcs(
    packet: &mut [u8],
    mut map: impl FnMut(u32) -> Option<u32>,
) -> Result<usize, RtcpError> {
    visit_ssrc_fields(packet, &mut |_| {})?;
    let mut changed = 0;
    visit_ssrc_fields(packet, &mut |field| {
        let old = u32::from_be_bytes(*field);
        if let Some(new) = map(old) {
            if new != old {
                *field = new.to_be_bytes();
                changed += 1;
            }
        }
    })?;
    Ok(changed)
}

/// Walks the compound packet, checking every header and length, and hands each SSRC field to `visit`.
fn visit_ssrc_fields(
    packet: &mut [u8],
    visit: &mut dyn FnMut(&mut [u8; 4]),
) -> Result<(), RtcpError> {
    if packet.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut offset = 0;
    while let Some(rest) = packet.get_mut(offset..).filter(|rest| !rest.is_empty()) {
        let available = rest.len();
        let Some(header) = rest.first_chunk::<RTCP_HEADER_LEN>() else {
            return Err(RtcpError::TruncatedHeader { offset });
        };
        let version = parse_version(header);
        if version != RTCP_VERSION {
            return Err(RtcpError::UnsupportedVersion { offset, version });
        }
        let claimed = parse_length(header);
        let packet_type = parse_packet_type(header);
        let Some(body) = rest.get_mut(..claimed) else {
            return Err(RtcpError::LengthOverrun {
                offset,
                claimed,
                available,
            });
        };
        let fields = ssrc_field_offsets(body).ok_or(RtcpError::BodyOverrun {
            offset,
            packet_type,
        })?;
        for &at in fields.as_slice() {
            if let Some(field) = body.get_mut(at..).and_then(|rest| rest.first_chunk_mut()) {
                visit(field);
            }
        }
        offset += claimed;
    }
    Ok(())
}

/// Offsets of the SSRC fields of one RTCP packet, without allocating: at most a sender SSRC and 31
/// report blocks, 31 BYE sources or 31 SDES chunks (the count field has 5 bits).
#[derive(Debug, Clone, Copy)]
struct SsrcOffsets {
    offsets: [usize; 32],
    len: usize,
}

impl SsrcOffsets {
    const NONE: Self = Self {
        offsets: [0; 32],
        len: 0,
    };

    fn push(&mut self, offset: usize) {
        if let Some(slot) = self.offsets.get_mut(self.len) {
            *slot = offset;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[usize] {
        &self.offsets[..self.len]
    }

    /// `count` fields, `stride` bytes apart, starting at `first`.
    fn strided(first: usize, stride: usize, count: usize) -> Self {
        let mut fields = Self::NONE;
        (0..count).for_each(|i| fields.push(first + i * stride));
        fields
    }

    /// The sender SSRC and the SSRC opening each of `count` report blocks from `blocks`.
    fn sender_and_reports(blocks: usize, count: u8) -> Self {
        let mut fields = Self::NONE;
        fields.push(SENDER_SSRC_AT);
        (0..usize::from(count)).for_each(|i| fields.push(blocks + i * ReportBlock::EXPECTED_SIZE));
        fields
    }
}

/// The SSRC fields of one RTCP packet (`body` is exactly that packet, at least a header long), or
/// `None` if the parser of its type refuses it.
fn ssrc_field_offsets(body: &[u8]) -> Option<SsrcOffsets> {
    match parse_packet_type(body) {
        SenderReport::PACKET_TYPE => {
            let report = SenderReport::parse(body).ok()?;
            Some(SsrcOffsets::sender_and_reports(
                SenderReport::MIN_PACKET_LEN,
                report.n_reports(),
            ))
        }
        ReceiverReport::PACKET_TYPE => {
            let report = ReceiverReport::parse(body).ok()?;
            Some(SsrcOffsets::sender_and_reports(
                ReceiverReport::MIN_PACKET_LEN,
                report.n_reports(),
            ))
        }
        Bye::PACKET_TYPE => {
            let bye = Bye::parse(body).ok()?;
            Some(SsrcOffsets::strided(
                Bye::MIN_PACKET_LEN,
                SSRC_LEN,
                usize::from(bye.count()),
            ))
        }
        App::PACKET_TYPE => {
            App::parse(body).ok()?;
            Some(SsrcOffsets::strided(SENDER_SSRC_AT, 0, 1))
        }
        TransportFeedback::PACKET_TYPE => {
            TransportFeedback::parse(body).ok()?;
            Some(feedback_ssrcs())
        }
        PayloadFeedback::PACKET_TYPE => {
            PayloadFeedback::parse(body).ok()?;
            Some(feedback_ssrcs())
        }
        Sdes::PACKET_TYPE => sdes_chunk_offsets(body, usize::from(parse_count(body))),
        _ => Some(SsrcOffsets::NONE),
    }
}

/// Sender and media source SSRCs of an RTPFB or PSFB packet.
fn feedback_ssrcs() -> SsrcOffsets {
    SsrcOffsets::strided(SENDER_SSRC_AT, MEDIA_SSRC_AT - SENDER_SSRC_AT, 2)
}

/// Walks SDES chunks: an SSRC, items (type, length, text) ended by a null type, padded to 32 bits.
fn sdes_chunk_offsets(body: &[u8], count: usize) -> Option<SsrcOffsets> {
    let mut fields = SsrcOffsets::NONE;
    let mut at = RTCP_HEADER_LEN;
    for _ in 0..count {
        if at + SSRC_LEN > body.len() {
            return None;
        }
        fields.push(at);
        at += SSRC_LEN;
        loop {
            match *body.get(at)? {
                0 => {
                    at = (at + 1).next_multiple_of(4);
                    break;
                }
                _ => at += 2 + usize::from(*body.get(at + 1)?),
            }
        }
        if at > body.len() {
            return None;
        }
    }
    Some(fields)
}
