//! One continuous outbound RTP stream per leg and direction, even when the far side changes.
//!
//! When an Asterisk dies mid-call and the call is re-INVITEd onto another one, the packets Tandem
//! relays to the caller suddenly come from a new source: another SSRC, another sequence number and
//! timestamp origin. [`OutboundStream`] hides that: the caller keeps seeing one SSRC, sequence numbers
//! that keep increasing, timestamps that keep advancing with wall time, and the marker bit on the first
//! packet after the switch (RFC 3550 §5.1, RFC 3551 §4.1).
//!
//! While nothing fails the stream is a passthrough: the outbound SSRC is the first source's SSRC and the
//! offsets are zero, so packets leave byte-identical.
//!
//! Everything here is sans-IO: time comes in as [`Instant`], packets as byte slices edited in place,
//! and no packet allocates. [`rewrite_rtcp_ssrcs`] keeps the RTCP of the same stream consistent with the
//! SSRC the other side knows (RFC 3550 §6.4).

use std::time::{Duration, Instant};

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// The only RTP/RTCP version in use (RFC 3550 §5.1).
const RTP_VERSION: u8 = 2;

/// Why an RTP packet could not be read or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The packet is shorter than the 12-byte fixed header.
    #[error("RTP packet of {len} bytes is shorter than the fixed header")]
    TooShort {
        /// Length of the packet in bytes.
        len: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {version} is not supported")]
    UnsupportedVersion {
        /// The version found in the packet.
        version: u8,
    },
}

/// The fields of the fixed RTP header that continuity rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeaderFields {
    /// Synchronization source identifier.
    pub ssrc: u32,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp, in units of the payload's clock rate.
    pub timestamp: u32,
    /// Marker bit (for audio: first packet of a talkspurt, or after a discontinuity).
    pub marker: bool,
}

impl RtpHeaderFields {
    /// Reads the fields from the fixed header of `packet`.
    pub fn read(packet: &[u8]) -> Result<Self, RtpError> {
        let header = fixed_header(packet)?;
        Ok(Self {
            ssrc: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
            sequence: u16::from_be_bytes([header[2], header[3]]),
            timestamp: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            marker: header[1] & 0x80 != 0,
        })
    }

    /// Writes the fields into the fixed header of `packet`, leaving every other bit untouched.
    pub fn write(&self, packet: &mut [u8]) -> Result<(), RtpError> {
        fixed_header(packet)?;
        let Some(header) = packet.first_chunk_mut::<RTP_FIXED_HEADER_LEN>() else {
            return Err(RtpError::TooShort { len: packet.len() });
        };
        header[1] = (header[1] & 0x7f) | if self.marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(())
    }
}

/// The fixed header of `packet`, once its length and version are checked.
fn fixed_header(packet: &[u8]) -> Result<&[u8; RTP_FIXED_HEADER_LEN], RtpError> {
    let header = packet
        .first_chunk::<RTP_FIXED_HEADER_LEN>()
        .ok_or(RtpError::TooShort { len: packet.len() })?;
    let version = header[0] >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::UnsupportedVersion { version });
    }
    Ok(header)
}

/// How an outbound stream follows its inbound source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuityConfig {
    /// RTP clock rate of the stream in Hz (8000 for PCMU/PCMA), used to advance the timestamp by the
    /// wall time that passed while the source changed.
    pub clock_rate: u32,
    /// Extra sequence numbers skipped on a switch of source (0: the first new packet is last sent + 1).
    /// A small jump tells the receiver that packets were lost during the switch.
    pub sequence_jump: u16,
    /// Largest forward sequence gap still taken as loss within the same source; beyond it the source is
    /// taken as restarted (RFC 3550 appendix A.1 uses 3000).
    pub max_dropout: u16,
    /// Largest backward sequence gap still taken as reordering within the same source; beyond it the
    /// source is taken as restarted (RFC 3550 appendix A.1 uses 100).
    pub max_misorder: u16,
}

impl ContinuityConfig {
    /// Settings for narrowband audio (PCMU, PCMA, G.729, telephone-event at 8 kHz).
    pub const AUDIO_8KHZ: Self = Self {
        clock_rate: 8000,
        sequence_jump: 0,
        max_dropout: 3000,
        max_misorder: 100,
    };
}

impl Default for ContinuityConfig {
    fn default() -> Self {
        Self::AUDIO_8KHZ
    }
}

/// What [`OutboundStream`] did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// First packet of the stream: its SSRC became the outbound SSRC; the packet is unchanged.
    Started,
    /// The packet continues the current source and was mapped with its offsets.
    Continued,
    /// The packet starts a new mapping (new SSRC, or the source restarted its sequence); it continues the
    /// outbound stream and carries the marker bit.
    Reanchored,
    /// A late packet from before the current mapping began; forwarding it would reuse an outbound
    /// sequence number already sent for other content, so it must be dropped.
    Stale,
}

impl Rewrite {
    /// Whether the packet should be forwarded (everything but [`Rewrite::Stale`]).
    pub fn forward(self) -> bool {
        self != Self::Stale
    }
}

/// How the current inbound source maps onto the outbound stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SourceMapping {
    ssrc: u32,
    /// Inbound sequence number of the packet the mapping started with.
    anchor_sequence: u16,
    /// Highest inbound sequence number seen from this source.
    highest_sequence: u16,
    /// Outbound sequence = inbound sequence + this (mod 2^16).
    sequence_offset: u16,
    /// Outbound timestamp = inbound timestamp + this (mod 2^32).
    timestamp_offset: u32,
}

/// The newest outbound packet sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastSent {
    sequence: u16,
    timestamp: u32,
    at: Instant,
}

/// Replicable state of an [`OutboundStream`]: plain values, no [`Instant`], so a standby can rebuild the
/// stream with [`OutboundStream::resume`] and carry on where the active one stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// The SSRC the receiver knows.
    pub outbound_ssrc: u32,
    /// Sequence number of the newest packet sent.
    pub last_sequence: u16,
    /// Timestamp of the newest packet sent.
    pub last_timestamp: u32,
    /// Wall time between sending the newest packet and taking the snapshot.
    pub since_last_sent: Duration,
}

/// One outbound RTP stream (per leg and direction): the SSRC Tandem presents and the mapping from the
/// current inbound source onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundStream {
    config: ContinuityConfig,
    outbound_ssrc: Option<u32>,
    source: Option<SourceMapping>,
    last_sent: Option<LastSent>,
}

impl OutboundStream {
    /// A stream that has sent nothing yet; its first source's SSRC becomes the outbound SSRC.
    pub fn new(config: ContinuityConfig) -> Self {
        Self {
            config,
            outbound_ssrc: None,
            source: None,
            last_sent: None,
        }
    }

    /// Rebuilds a stream from a [`StreamSnapshot`] taken elsewhere. The next packet, whatever its source,
    /// starts a new mapping that continues the snapshot's sequence and timestamp.
    pub fn resume(config: ContinuityConfig, snapshot: StreamSnapshot, now: Instant) -> Self {
        let at = now.checked_sub(snapshot.since_last_sent).unwrap_or(now);
        Self {
            config,
            outbound_ssrc: Some(snapshot.outbound_ssrc),
            source: None,
            last_sent: Some(LastSent {
                sequence: snapshot.last_sequence,
                timestamp: snapshot.last_timestamp,
                at,
            }),
        }
    }

    /// The state to replicate, or `None` before the first packet.
    pub fn snapshot(&self, now: Instant) -> Option<StreamSnapshot> {
        let last = self.last_sent?;
        Some(StreamSnapshot {
            outbound_ssrc: self.outbound_ssrc?,
            last_sequence: last.sequence,
            last_timestamp: last.timestamp,
            since_last_sent: now.saturating_duration_since(last.at),
        })
    }

    /// The configuration the stream was built with.
    pub fn config(&self) -> &ContinuityConfig {
        &self.config
    }

    /// The SSRC the receiver knows, once the first packet went out.
    pub fn outbound_ssrc(&self) -> Option<u32> {
        self.outbound_ssrc
    }

    /// The SSRC of the source currently mapped onto the stream.
    pub fn inbound_ssrc(&self) -> Option<u32> {
        self.source.map(|source| source.ssrc)
    }

    /// The outbound SSRC if `ssrc` is the current inbound source, for [`rewrite_rtcp_ssrcs`].
    pub fn map_ssrc(&self, ssrc: u32) -> Option<u32> {
        if self.inbound_ssrc() == Some(ssrc) {
            self.outbound_ssrc
        } else {
            None
        }
    }

    /// Rewrites the fixed header of an RTP packet in place. Packets shorter than 12 bytes or not of
    /// version 2 are rejected and left untouched; a [`Rewrite::Stale`] packet is left untouched too.
    pub fn rewrite_packet(&mut self, now: Instant, packet: &mut [u8]) -> Result<Rewrite, RtpError> {
        let mut fields = RtpHeaderFields::read(packet)?;
        let outcome = self.rewrite(now, &mut fields);
        if outcome.forward() {
            fields.write(packet)?;
        }
        Ok(outcome)
    }

    /// Maps the header fields of one inbound packet onto the outbound stream.
    pub fn rewrite(&mut self, now: Instant, fields: &mut RtpHeaderFields) -> Rewrite {
        let outbound_ssrc = *self.outbound_ssrc.get_or_insert(fields.ssrc);
        let outcome = match self.source {
            None if self.last_sent.is_none() => {
                self.source = Some(SourceMapping {
                    ssrc: fields.ssrc,
                    anchor_sequence: fields.sequence,
                    highest_sequence: fields.sequence,
                    sequence_offset: 0,
                    timestamp_offset: 0,
                });
                Rewrite::Started
            }
            Some(source) if source.ssrc == fields.ssrc => {
                match self.classify(&source, fields.sequence) {
                    SequenceStep::Forward => {
                        self.source = Some(SourceMapping {
                            highest_sequence: fields.sequence,
                            ..source
                        });
                        Rewrite::Continued
                    }
                    SequenceStep::Late => Rewrite::Continued,
                    SequenceStep::BeforeAnchor => return Rewrite::Stale,
                    SequenceStep::Restart => self.reanchor(now, fields),
                }
            }
            _ => self.reanchor(now, fields),
        };
        let Some(source) = self.source else {
            return outcome;
        };
        fields.ssrc = outbound_ssrc;
        fields.sequence = fields.sequence.wrapping_add(source.sequence_offset);
        fields.timestamp = fields.timestamp.wrapping_add(source.timestamp_offset);
        if outcome == Rewrite::Reanchored {
            fields.marker = true;
        }
        self.record_sent(now, fields);
        outcome
    }

    /// Where an inbound sequence number of the current source stands.
    fn classify(&self, source: &SourceMapping, sequence: u16) -> SequenceStep {
        let ahead = sequence.wrapping_sub(source.highest_sequence);
        let behind = source.highest_sequence.wrapping_sub(sequence);
        if ahead != 0 && ahead <= self.config.max_dropout {
            SequenceStep::Forward
        } else if behind <= self.config.max_misorder {
            let since_anchor = sequence.wrapping_sub(source.anchor_sequence);
            if since_anchor >= 0x8000 {
                SequenceStep::BeforeAnchor
            } else {
                SequenceStep::Late
            }
        } else {
            SequenceStep::Restart
        }
    }

    /// Starts mapping a new source (or a restarted one) right after the newest packet sent.
    fn reanchor(&mut self, now: Instant, fields: &RtpHeaderFields) -> Rewrite {
        let Some(last) = self.last_sent else {
            return Rewrite::Started;
        };
        let elapsed = now.saturating_duration_since(last.at);
        let sequence = last
            .sequence
            .wrapping_add(1)
            .wrapping_add(self.config.sequence_jump);
        let timestamp = last
            .timestamp
            .wrapping_add(clock_ticks(elapsed, self.config.clock_rate));
        self.source = Some(SourceMapping {
            ssrc: fields.ssrc,
            anchor_sequence: fields.sequence,
            highest_sequence: fields.sequence,
            sequence_offset: sequence.wrapping_sub(fields.sequence),
            timestamp_offset: timestamp.wrapping_sub(fields.timestamp),
        });
        Rewrite::Reanchored
    }

    /// Remembers `fields` (already outbound) if it is the newest packet sent.
    fn record_sent(&mut self, now: Instant, fields: &RtpHeaderFields) {
        let newer = match self.last_sent {
            None => true,
            Some(last) => {
                let ahead = fields.sequence.wrapping_sub(last.sequence);
                ahead != 0 && ahead < 0x8000
            }
        };
        if newer {
            self.last_sent = Some(LastSent {
                sequence: fields.sequence,
                timestamp: fields.timestamp,
                at: now,
            });
        }
    }
}

/// Where an inbound sequence number of the current source stands relative to what was seen.
enum SequenceStep {
    /// Newer than anything seen, within the allowed dropout.
    Forward,
    /// Reordered or duplicated, but after the start of the current mapping.
    Late,
    /// Reordered from before the current mapping began.
    BeforeAnchor,
    /// Too far from what was seen: the source restarted its sequence.
    Restart,
}

/// `elapsed × clock_rate`, in RTP timestamp units modulo 2^32.
fn clock_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    (ticks % (1u128 << 32)) as u32
}

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
    /// The body (report blocks, SSRC list, SDES chunks) does not fit in the packet's length.
    #[error("RTCP packet type {packet_type} at byte {offset} has a body longer than its length")]
    BodyOverrun {
        /// Offset of the header in the compound packet.
        offset: usize,
        /// The RTCP packet type.
        packet_type: u8,
    },
}

const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const RTCP_SDES: u8 = 202;
const RTCP_BYE: u8 = 203;
const RTCP_APP: u8 = 204;
const RTCP_RTPFB: u8 = 205;
const RTCP_PSFB: u8 = 206;
/// Sender info of an SR: NTP timestamp, RTP timestamp, packet and octet counts.
const SENDER_INFO_LEN: usize = 20;
const REPORT_BLOCK_LEN: usize = 24;

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

/// Walks the compound packet, checking every length, and hands each SSRC field to `visit`.
fn visit_ssrc_fields(
    packet: &mut [u8],
    visit: &mut dyn FnMut(&mut [u8; 4]),
) -> Result<(), RtcpError> {
    if packet.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut offset = 0;
    while offset < packet.len() {
        let available = packet.len() - offset;
        let Some(header) = packet[offset..].first_chunk::<4>() else {
            return Err(RtcpError::TruncatedHeader { offset });
        };
        let version = header[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtcpError::UnsupportedVersion { offset, version });
        }
        let count = usize::from(header[0] & 0x1f);
        let packet_type = header[1];
        let claimed = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        if claimed > available {
            return Err(RtcpError::LengthOverrun {
                offset,
                claimed,
                available,
            });
        }
        let body = &mut packet[offset..offset + claimed];
        let fields =
            ssrc_field_offsets(body, packet_type, count).ok_or(RtcpError::BodyOverrun {
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

    /// The sender SSRC (offset 4) and the SSRC opening each of `count` report blocks from `blocks`.
    fn sender_and_reports(blocks: usize, count: usize) -> Self {
        let mut fields = Self::strided(blocks, REPORT_BLOCK_LEN, count);
        fields.offsets.copy_within(0..count, 1);
        fields.offsets[0] = 4;
        fields.len = count + 1;
        fields
    }
}

/// The SSRC fields of one RTCP packet (`body` is exactly that packet), or `None` if its body does not
/// fit in its length.
fn ssrc_field_offsets(body: &[u8], packet_type: u8, count: usize) -> Option<SsrcOffsets> {
    let fits = |end: usize| (end <= body.len()).then_some(());
    match packet_type {
        RTCP_SR => {
            let blocks = 8 + SENDER_INFO_LEN;
            fits(blocks + count * REPORT_BLOCK_LEN)?;
            Some(SsrcOffsets::sender_and_reports(blocks, count))
        }
        RTCP_RR => {
            fits(8 + count * REPORT_BLOCK_LEN)?;
            Some(SsrcOffsets::sender_and_reports(8, count))
        }
        RTCP_BYE => {
            fits(4 + 4 * count)?;
            Some(SsrcOffsets::strided(4, 4, count))
        }
        RTCP_APP => {
            fits(12)?;
            Some(SsrcOffsets::strided(4, 0, 1))
        }
        RTCP_RTPFB | RTCP_PSFB => {
            fits(12)?;
            Some(SsrcOffsets::strided(4, 4, 2))
        }
        RTCP_SDES => sdes_chunk_offsets(body, count),
        _ => Some(SsrcOffsets::NONE),
    }
}

/// Walks SDES chunks: an SSRC, items (type, length, text) ended by a null type, padded to 32 bits.
fn sdes_chunk_offsets(body: &[u8], count: usize) -> Option<SsrcOffsets> {
    let mut fields = SsrcOffsets::NONE;
    let mut at = 4;
    for _ in 0..count {
        if at + 4 > body.len() {
            return None;
        }
        fields.push(at);
        at += 4;
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
