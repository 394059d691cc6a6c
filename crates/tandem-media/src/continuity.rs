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
//! SSRC the other side knows (RFC 3550 §6.4); what it takes from `rtcp-types` and what it does itself
//! is told in its own module.
//!
//! # RTP headers through `rtp-types`
//!
//! The fixed header is read with [`rtp_types::RtpPacket`] and edited in place with
//! [`rtp_types::RtpPacketMut`] (`set_ssrc`, `set_sequence_number`, `set_timestamp`,
//! `set_marker_bit`): no copy of the packet, no allocation. Its `parse` also checks what follows the
//! fixed header — that the CSRC list, the header extension and the padding announced by the CC, X and
//! P bits fit in the packet. Continuity touches none of those, and the relay forwards such a packet
//! as it always did (only a packet shorter than 12 bytes or not of version 2 is refused, which is
//! all [`RtpError`] can say). So when `rtp-types` rejects a packet for what follows its fixed header
//! alone, the 12 header bytes are copied with CC, X and P cleared, that bare header goes through
//! `rtp-types` the same way, and its bytes 1–11 (marker, payload type, sequence number, timestamp,
//! SSRC) are copied back; byte 0 and everything after byte 11 stay untouched.

use std::time::{Duration, Instant};

use rtp_types::{RtpPacket, RtpPacketMut, RtpParseError};

mod rtcp;

pub use rtcp::{rewrite_rtcp_ssrcs, RtcpError};

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const RTP_FIXED_HEADER_LEN: usize = RtpPacket::MIN_RTP_PACKET_LEN;

/// Bits of the first header byte that announce what follows the fixed header: padding (P),
/// extension (X) and the CSRC count (CC).
const BEYOND_FIXED_HEADER_BITS: u8 = 0x3f;

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
        match RtpPacket::parse(packet) {
            Ok(rtp) => Ok(Self::of(&rtp)),
            Err(error) => {
                let header = bare_fixed_header(packet, error)?;
                let rtp = RtpPacket::parse(&header).map_err(|error| rtp_error(packet, error))?;
                Ok(Self::of(&rtp))
            }
        }
    }

    /// Writes the fields into the fixed header of `packet`, leaving every other bit untouched.
    pub fn write(&self, packet: &mut [u8]) -> Result<(), RtpError> {
        edit_fixed_header(packet, |rtp| self.store(rtp))
    }

    fn of(rtp: &RtpPacket<'_>) -> Self {
        Self {
            ssrc: rtp.ssrc(),
            sequence: rtp.sequence_number(),
            timestamp: rtp.timestamp(),
            marker: rtp.marker_bit(),
        }
    }

    fn store(&self, rtp: &mut RtpPacketMut<'_>) {
        rtp.set_ssrc(self.ssrc);
        rtp.set_sequence_number(self.sequence);
        rtp.set_timestamp(self.timestamp);
        rtp.set_marker_bit(self.marker);
    }
}

/// Runs `edit` on `packet` through `rtp-types`, in place; a packet refused only for what follows its
/// fixed header is edited through its bare fixed header (see the module doc). A packet with an
/// unusable fixed header comes back untouched with the error.
fn edit_fixed_header<R>(
    packet: &mut [u8],
    edit: impl FnOnce(&mut RtpPacketMut<'_>) -> R,
) -> Result<R, RtpError> {
    let error = match RtpPacketMut::parse(packet) {
        Ok(mut rtp) => return Ok(edit(&mut rtp)),
        Err(error) => error,
    };
    let mut header = bare_fixed_header(packet, error)?;
    let mut rtp = RtpPacketMut::parse(&mut header).map_err(|error| rtp_error(packet, error))?;
    let outcome = edit(&mut rtp);
    if let (Some(target), Some(edited)) = (packet.get_mut(1..RTP_FIXED_HEADER_LEN), header.get(1..))
    {
        target.copy_from_slice(edited);
    }
    Ok(outcome)
}

/// The fixed header of a packet that `rtp-types` refused with `error`, with the P, X and CC bits
/// cleared, when the refusal concerns only what follows the fixed header; otherwise the error.
fn bare_fixed_header(
    packet: &[u8],
    error: RtpParseError,
) -> Result<[u8; RTP_FIXED_HEADER_LEN], RtpError> {
    match error {
        RtpParseError::UnsupportedVersion(_) => Err(rtp_error(packet, error)),
        RtpParseError::Truncated { .. } | RtpParseError::PaddingInvalid(_) => {
            let mut header = *packet
                .first_chunk::<RTP_FIXED_HEADER_LEN>()
                .ok_or(RtpError::TooShort { len: packet.len() })?;
            header[0] &= !BEYOND_FIXED_HEADER_BITS;
            Ok(header)
        }
    }
}

/// [`RtpError`] for a fixed header that `rtp-types` refused.
fn rtp_error(packet: &[u8], error: RtpParseError) -> RtpError {
    match error {
        RtpParseError::UnsupportedVersion(version) => RtpError::UnsupportedVersion { version },
        RtpParseError::Truncated { .. } | RtpParseError::PaddingInvalid(_) => {
            RtpError::TooShort { len: packet.len() }
        }
    }
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
/// stream with [`OutboundStream::restore`] and carry on where the active one stopped.
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
    /// How the inbound source relayed at the time maps onto the stream.
    pub source: Option<SourceSnapshot>,
}

/// How one inbound source maps onto an outbound stream, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// The source's SSRC.
    pub inbound_ssrc: u32,
    /// Outbound sequence = inbound sequence + this (mod 2^16).
    pub sequence_offset: u16,
    /// Outbound timestamp = inbound timestamp + this (mod 2^32).
    pub timestamp_offset: u32,
}

/// The packet interval [`OutboundStream::restore`] assumes to estimate how many packets went out
/// since a snapshot: 20 ms, the usual telephony packetisation (RFC 3551 §4.5). A longer real
/// interval only makes the sequence jump further forward, which receivers take as loss.
pub const ASSUMED_PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// One outbound RTP stream (per leg and direction): the SSRC Tandem presents and the mapping from the
/// current inbound source onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundStream {
    config: ContinuityConfig,
    outbound_ssrc: Option<u32>,
    source: Option<SourceMapping>,
    /// A mapping replicated from another node, taken up by the first packet if it comes from that
    /// source.
    restored: Option<SourceSnapshot>,
    last_sent: Option<LastSent>,
}

impl OutboundStream {
    /// A stream that has sent nothing yet; its first source's SSRC becomes the outbound SSRC.
    pub fn new(config: ContinuityConfig) -> Self {
        Self {
            config,
            outbound_ssrc: None,
            source: None,
            restored: None,
            last_sent: None,
        }
    }

    /// Rebuilds a stream from a [`StreamSnapshot`] taken on the same node (a change of clock rate).
    /// The next packet, whatever its source, starts a new mapping that continues the snapshot's
    /// sequence and timestamp.
    pub fn resume(config: ContinuityConfig, snapshot: StreamSnapshot, now: Instant) -> Self {
        let at = now.checked_sub(snapshot.since_last_sent).unwrap_or(now);
        Self {
            config,
            outbound_ssrc: Some(snapshot.outbound_ssrc),
            source: None,
            restored: None,
            last_sent: Some(LastSent {
                sequence: snapshot.last_sequence,
                timestamp: snapshot.last_timestamp,
                at,
            }),
        }
    }

    /// Rebuilds a stream that another node sent, from its replicated [`StreamSnapshot`] (a node
    /// taking a call over). The receiver keeps the snapshot's SSRC:
    ///
    /// * the first packet from the snapshot's source takes its mapping up unchanged — the stream
    ///   goes on exactly as the other node would have sent it (no marker, no jump);
    /// * a packet from any other source starts a new mapping after the newest packet the stream is
    ///   estimated to have sent by `now`: the snapshot's timestamp advanced by the wall time since
    ///   (`since_last_sent`), its sequence by one packet per [`ASSUMED_PACKET_INTERVAL`] of it. Time
    ///   in which nothing was sent (the takeover itself) shows as a forward jump, i.e. as loss.
    pub fn restore(config: ContinuityConfig, snapshot: StreamSnapshot, now: Instant) -> Self {
        let elapsed = snapshot.since_last_sent;
        Self {
            config,
            outbound_ssrc: Some(snapshot.outbound_ssrc),
            source: None,
            restored: snapshot.source,
            last_sent: Some(LastSent {
                sequence: snapshot.last_sequence.wrapping_add(packets_in(elapsed)),
                timestamp: snapshot
                    .last_timestamp
                    .wrapping_add(clock_ticks(elapsed, config.clock_rate)),
                at: now,
            }),
        }
    }

    /// The state to replicate, or `None` before the first packet.
    pub fn snapshot(&self, now: Instant) -> Option<StreamSnapshot> {
        let last = self.last_sent?;
        let source = self.source.map(|source| SourceSnapshot {
            inbound_ssrc: source.ssrc,
            sequence_offset: source.sequence_offset,
            timestamp_offset: source.timestamp_offset,
        });
        Some(StreamSnapshot {
            outbound_ssrc: self.outbound_ssrc?,
            last_sequence: last.sequence,
            last_timestamp: last.timestamp,
            since_last_sent: now.saturating_duration_since(last.at),
            source: source.or(self.restored),
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
        edit_fixed_header(packet, |rtp| {
            let mut fields = RtpHeaderFields::of(rtp);
            let outcome = self.rewrite(now, &mut fields);
            if outcome.forward() {
                fields.store(rtp);
            }
            outcome
        })
    }

    /// Maps the header fields of one inbound packet onto the outbound stream.
    pub fn rewrite(&mut self, now: Instant, fields: &mut RtpHeaderFields) -> Rewrite {
        let outbound_ssrc = *self.outbound_ssrc.get_or_insert(fields.ssrc);
        let taken_up = self.source.is_none() && self.take_up_restored(fields);
        let outcome = match self.source {
            Some(_) if taken_up => Rewrite::Continued,
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

    /// The first packet after [`OutboundStream::restore`]: if it comes from the replicated source,
    /// that mapping becomes current, and the estimated newest packet gives way to what this packet
    /// really is. Either way the replicated mapping is used up. Returns whether it was taken up.
    fn take_up_restored(&mut self, fields: &RtpHeaderFields) -> bool {
        let Some(restored) = self.restored.take() else {
            return false;
        };
        if restored.inbound_ssrc != fields.ssrc {
            return false;
        }
        self.source = Some(SourceMapping {
            ssrc: fields.ssrc,
            anchor_sequence: fields.sequence,
            highest_sequence: fields.sequence,
            sequence_offset: restored.sequence_offset,
            timestamp_offset: restored.timestamp_offset,
        });
        self.last_sent = None;
        true
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

/// Packets sent in `elapsed` at one per [`ASSUMED_PACKET_INTERVAL`], rounded up, modulo 2^16.
fn packets_in(elapsed: Duration) -> u16 {
    let packets = elapsed
        .as_nanos()
        .div_ceil(ASSUMED_PACKET_INTERVAL.as_nanos());
    (packets % (1u128 << 16)) as u16
}

/// `elapsed × clock_rate`, in RTP timestamp units modulo 2^32.
fn clock_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    (ticks % (1u128 << 32)) as u32
}
