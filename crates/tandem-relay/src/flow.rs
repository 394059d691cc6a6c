//! What happens to one packet, without sockets: the per-side state of a stream (latches, outbound
//! continuity, receive statistics, counters) and [`forward`], which judges a received packet, edits
//! it in place and says where it goes.
//!
//! Packet handling, in order:
//! 1. The packet passes the receiving side's latch for the socket it arrived on (RTP port: the RTP
//!    latch; RTCP port: the RTCP latch). Any datagram from an allowed source counts, so NAT
//!    keep-alives latch too. Refused packets are strays.
//! 2. It must look like RTP or RTCP: version 2, at least 8 bytes (RTCP) or 12 (RTP), not cut by the
//!    receive buffer. Anything else is malformed and dropped (STUN, DTLS and ZRTP are not relayed).
//! 3. On an RTP port, RFC 5761 §4 tells RTCP (second byte 192..=223) from RTP, whether or not the
//!    side negotiated rtcp-mux; on an RTCP port everything is RTCP.
//! 4. RTP updates the side's [`StreamStats`], then goes through the other side's
//!    [`OutboundStream`] (one continuous SSRC/sequence toward it). RTCP gets its SSRCs rewritten to
//!    match; a compound packet that cannot be walked (SRTCP's encrypted tail) is relayed untouched.
//! 5. It leaves through the other side's RTP socket (RTP, and RTCP when that side multiplexes) or
//!    RTCP socket, toward that side's latched source, else its signalled address.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Instant;
use tandem_media::continuity::{
    rewrite_rtcp_ssrcs, ContinuityConfig, OutboundStream, Rewrite, RtpHeaderFields, StreamSnapshot,
    RTP_FIXED_HEADER_LEN,
};
use tandem_media::latch::{Latch, LatchEvent, LatchPolicy};
use tandem_media::session::EndpointPlan;
use tandem_media::stats::StreamStats;

/// Smallest RTCP packet: a header and the sender SSRC (an empty RR).
const RTCP_MIN_LEN: usize = 8;

/// The port a packet arrived on or leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The even port.
    Rtp,
    /// The odd port.
    Rtcp,
}

impl Port {
    /// 0 for RTP, 1 for RTCP: where per-port arrays keep it.
    pub(crate) fn index(self) -> usize {
        match self {
            Port::Rtp => 0,
            Port::Rtcp => 1,
        }
    }
}

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropCause {
    /// The latch refused its source.
    Stray,
    /// It is neither RTP nor RTCP, or was cut by the receive buffer.
    Malformed,
    /// The other side has neither a latched source nor a signalled address.
    NoDestination,
    /// A late RTP packet from before a source switch; sending it would reuse a sequence number.
    Stale,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send it through the other side's `port` to `destination`.
    Forward {
        /// The other side's socket to send from.
        port: Port,
        /// Where to.
        destination: SocketAddr,
        /// It is RTCP (for the counters).
        rtcp: bool,
    },
    /// Drop it.
    Drop(DropCause),
}

/// The verdict on one packet, and what it changed that the core must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Forward or drop.
    pub(crate) action: Action,
    /// The latch of this port of the receiving side (re)latched to this source on this packet.
    pub(crate) latched: Option<(Port, SocketAddr)>,
    /// The other side's outbound stream started mapping a new source on this packet.
    pub(crate) reanchored: bool,
}

/// Per-side packet counts, plain fields updated per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SideCounters {
    /// RTP packets accepted from this side.
    pub(crate) packets_received: u64,
    /// Bytes of those packets.
    pub(crate) bytes_received: u64,
    /// RTCP packets accepted from this side.
    pub(crate) rtcp_received: u64,
    /// Packets (RTP and RTCP) the kernel took for sending toward this side.
    pub(crate) packets_sent: u64,
    /// Packets from this side refused by its latches.
    pub(crate) stray_dropped: u64,
}

/// One side of one stream: what it signalled, what it latched, and the streams in both directions.
#[derive(Debug, Clone)]
pub(crate) struct SideFlow {
    policy: LatchPolicy,
    rtcp_mux: bool,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    rtp_latch: Option<Latch>,
    rtcp_latch: Option<Latch>,
    /// RTP sent toward this side.
    outbound: OutboundStream,
    /// RTP received from this side.
    stats: StreamStats,
    /// Packet counts.
    pub(crate) counters: SideCounters,
    /// Latest accepted packet (RTP or RTCP), or when the side was created or signalled anew.
    last_activity: Instant,
    /// Latest accepted packet (RTP or RTCP).
    last_packet: Option<Instant>,
}

impl SideFlow {
    /// A side as `plan` describes it, created at `now`.
    pub(crate) fn new(
        plan: &EndpointPlan,
        policy: LatchPolicy,
        clock_rate: u32,
        now: Instant,
    ) -> Self {
        let mut side = Self {
            policy,
            rtcp_mux: plan.rtcp_mux,
            remote_rtp: None,
            remote_rtcp: None,
            rtp_latch: None,
            rtcp_latch: None,
            outbound: match plan.outbound {
                Some(snapshot) => OutboundStream::restore(continuity(clock_rate), snapshot, now),
                None => OutboundStream::new(continuity(clock_rate)),
            },
            stats: StreamStats::new(clock(clock_rate), now),
            counters: SideCounters::default(),
            last_activity: now,
            last_packet: None,
        };
        side.signal(plan, now);
        side
    }

    /// Follows a new plan for this side: a changed remote re-signals its latch (or drops it, on
    /// hold), the outbound stream stays continuous across a clock-rate change.
    pub(crate) fn update(&mut self, plan: &EndpointPlan, clock_rate: u32, now: Instant) {
        if self.outbound.config().clock_rate != clock_rate {
            let config = continuity(clock_rate);
            self.outbound = match self.outbound.snapshot(now) {
                Some(snapshot) => OutboundStream::resume(config, snapshot, now),
                None => OutboundStream::new(config),
            };
            self.stats = StreamStats::new(clock(clock_rate), now);
        }
        self.signal(plan, now);
    }

    /// A prepared call goes live (a takeover) or its plan changes while prepared: a side toward
    /// which nothing was sent on this node yet takes the plan's outbound stream (what the node that
    /// carried the call before sent), and a side from which nothing arrived yet gets a full
    /// inactivity period from `now` (it was not expected to send to this node before).
    pub(crate) fn adopt(&mut self, plan: &EndpointPlan, clock_rate: u32, now: Instant) {
        if let (None, Some(snapshot)) = (self.outbound.snapshot(now), plan.outbound) {
            self.outbound = OutboundStream::restore(continuity(clock_rate), snapshot, now);
        }
        if self.last_packet.is_none() {
            self.last_activity = self.last_activity.max(now);
        }
    }

    fn signal(&mut self, plan: &EndpointPlan, now: Instant) {
        self.rtcp_mux = plan.rtcp_mux;
        let rtcp = plan.remote_rtcp.or_else(|| {
            plan.remote_rtp.map(|rtp| match plan.rtcp_mux {
                true => rtp,
                false => SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)),
            })
        });
        let rtp_changed = resignal(&mut self.rtp_latch, plan.remote_rtp, self.policy);
        let rtcp_changed = resignal(&mut self.rtcp_latch, rtcp, self.policy);
        if rtp_changed || rtcp_changed {
            // A newly signalled side gets a full inactivity period before it is reported.
            self.last_activity = self.last_activity.max(now);
        }
        self.remote_rtp = plan.remote_rtp;
        self.remote_rtcp = rtcp;
        // Sources latched elsewhere (the node that carried the call before): sent to until a
        // packet latches. A latch that already follows a source ignores them.
        for (latch, source) in [
            (&mut self.rtp_latch, plan.latched_rtp),
            (&mut self.rtcp_latch, plan.latched_rtcp),
        ] {
            if let (Some(latch), Some(source)) = (latch.as_mut(), source) {
                latch.presume(source);
            }
        }
    }

    /// Where RTP toward this side goes.
    fn rtp_destination(&self) -> Option<SocketAddr> {
        self.rtp_latch.as_ref().map(Latch::destination)
    }

    /// Where RTCP toward this side goes, and through which of its ports.
    fn rtcp_route(&self) -> Option<(Port, SocketAddr)> {
        if self.rtcp_mux {
            self.rtp_destination().map(|to| (Port::Rtp, to))
        } else {
            let latch = self.rtcp_latch.as_ref()?;
            Some((Port::Rtcp, latch.destination()))
        }
    }

    /// The side has somewhere to send to (signalled or latched): silence from it is worth reporting.
    pub(crate) fn has_destination(&self) -> bool {
        self.rtp_latch.is_some()
    }

    /// Latest accepted packet, or creation / new signalling.
    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Latest accepted packet.
    pub(crate) fn last_packet(&self) -> Option<Instant> {
        self.last_packet
    }

    /// The signalled RTP address.
    pub(crate) fn signalled(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    /// The latched RTP source.
    pub(crate) fn latched(&self) -> Option<SocketAddr> {
        self.rtp_latch.as_ref().and_then(Latch::latched)
    }

    /// Receive statistics of this side's RTP.
    pub(crate) fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// The RTP stream sent toward this side, for a standby; `None` before its first packet.
    pub(crate) fn outbound_snapshot(&self, now: Instant) -> Option<StreamSnapshot> {
        self.outbound.snapshot(now)
    }

    /// Runs the latch of `port` on a packet from `source`.
    fn admit(
        &mut self,
        port: Port,
        source: SocketAddr,
        now: Instant,
    ) -> Result<Option<(Port, SocketAddr)>, ()> {
        let policy = self.policy;
        let latch = match port {
            Port::Rtp => &mut self.rtp_latch,
            Port::Rtcp => &mut self.rtcp_latch,
        };
        // An unsignalled side may still latch when any IP is accepted (the plan's "until a source
        // latches"); otherwise there is nothing to compare the source with.
        let latch = match latch {
            Some(latch) => latch,
            None if policy.accept_any_ip => latch.insert(Latch::new(source, policy)),
            None => return Err(()),
        };
        match latch.admit(now, source) {
            Ok(LatchEvent::Same) => Ok(None),
            Ok(LatchEvent::Latched(to) | LatchEvent::Relatched { to, .. }) => Ok(Some((port, to))),
            Err(_) => Err(()),
        }
    }
}

/// Judges one packet that `from` sent to its `port`, edits it in place for `to` and says where it
/// goes. Never panics, whatever the bytes.
pub(crate) fn forward(
    from: &mut SideFlow,
    to: &mut SideFlow,
    port: Port,
    source: SocketAddr,
    now: Instant,
    packet: &mut [u8],
) -> Outcome {
    let latched = match from.admit(port, source, now) {
        Ok(latched) => latched,
        Err(()) => {
            from.counters.stray_dropped += 1;
            return Outcome {
                action: Action::Drop(DropCause::Stray),
                latched: None,
                reanchored: false,
            };
        }
    };
    from.last_activity = from.last_activity.max(now);
    from.last_packet = Some(now);
    let (action, reanchored) = match classify(port, packet) {
        None => (Action::Drop(DropCause::Malformed), false),
        Some(Port::Rtcp) => (forward_rtcp(from, to, packet), false),
        Some(Port::Rtp) => forward_rtp(from, to, now, packet),
    };
    Outcome {
        action,
        latched,
        reanchored,
    }
}

/// RTP or RTCP by RFC 5761 §4, or `None` for a packet that is neither.
fn classify(port: Port, packet: &[u8]) -> Option<Port> {
    let [first, second, ..] = *packet else {
        return None;
    };
    if first >> 6 != 2 {
        return None;
    }
    let rtcp = port == Port::Rtcp || (192..=223).contains(&second);
    match rtcp {
        true if packet.len() >= RTCP_MIN_LEN => Some(Port::Rtcp),
        false if packet.len() >= RTP_FIXED_HEADER_LEN => Some(Port::Rtp),
        _ => None,
    }
}

/// An RTP packet: where it goes, and whether `to`'s outbound stream started mapping a new source.
fn forward_rtp(
    from: &mut SideFlow,
    to: &mut SideFlow,
    now: Instant,
    packet: &mut [u8],
) -> (Action, bool) {
    let Ok(fields) = RtpHeaderFields::read(packet) else {
        return (Action::Drop(DropCause::Malformed), false);
    };
    from.counters.packets_received += 1;
    from.counters.bytes_received += packet.len() as u64;
    from.stats
        .on_packet(now, fields.sequence, fields.timestamp, payload_len(packet));
    let Some(destination) = to.rtp_destination() else {
        return (Action::Drop(DropCause::NoDestination), false);
    };
    match to.outbound.rewrite_packet(now, packet) {
        Ok(rewrite) if rewrite.forward() => (
            Action::Forward {
                port: Port::Rtp,
                destination,
                rtcp: false,
            },
            rewrite == Rewrite::Reanchored,
        ),
        Ok(_) => (Action::Drop(DropCause::Stale), false),
        Err(_) => (Action::Drop(DropCause::Malformed), false),
    }
}

fn forward_rtcp(from: &mut SideFlow, to: &SideFlow, packet: &mut [u8]) -> Action {
    from.counters.rtcp_received += 1;
    let Some((port, destination)) = to.rtcp_route() else {
        return Action::Drop(DropCause::NoDestination);
    };
    // SSRCs of `from`'s own streams become what `to` sees from Tandem; SSRCs `from` reports about
    // (Tandem's stream toward `from`) become the source `to` really sends. A compound packet that
    // cannot be walked is left as it is.
    let toward_to = &to.outbound;
    let toward_from = &from.outbound;
    let _ = rewrite_rtcp_ssrcs(packet, |ssrc| {
        toward_to.map_ssrc(ssrc).or_else(|| {
            (toward_from.outbound_ssrc() == Some(ssrc))
                .then(|| toward_from.inbound_ssrc())
                .flatten()
        })
    });
    Action::Forward {
        port,
        destination,
        rtcp: true,
    }
}

/// Payload bytes of an RTP packet: after the CSRC list and header extension, before the padding.
fn payload_len(packet: &[u8]) -> usize {
    let first = packet.first().copied().unwrap_or_default();
    let mut header = RTP_FIXED_HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet
            .get(header + 2..header + 4)
            .map_or(0, |len| usize::from(u16::from_be_bytes([len[0], len[1]])));
        header += 4 + 4 * words;
    }
    let padding = match first & 0x20 {
        0 => 0,
        _ => usize::from(packet.last().copied().unwrap_or_default()),
    };
    packet.len().saturating_sub(header).saturating_sub(padding)
}

/// Points `latch` at `signalled`; returns whether anything changed.
fn resignal(latch: &mut Option<Latch>, signalled: Option<SocketAddr>, policy: LatchPolicy) -> bool {
    match (latch.as_mut(), signalled) {
        (Some(current), Some(address)) if current.signalled() == address => false,
        (Some(current), Some(address)) => {
            current.resignal(address);
            true
        }
        (None, Some(address)) => {
            *latch = Some(Latch::new(address, policy));
            true
        }
        (Some(_), None) => {
            *latch = None;
            true
        }
        (None, None) => false,
    }
}

fn continuity(clock_rate: u32) -> ContinuityConfig {
    ContinuityConfig {
        clock_rate: clock(clock_rate).get(),
        ..ContinuityConfig::AUDIO_8KHZ
    }
}

/// The plan's clock rate, 8000 Hz when it says 0.
fn clock(clock_rate: u32) -> NonZeroU32 {
    NonZeroU32::new(clock_rate).unwrap_or(NonZeroU32::MIN.saturating_add(7999))
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
