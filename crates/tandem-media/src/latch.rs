//! Symmetric RTP latching for one leg.
//!
//! A leg signals where it wants media (the SDP `c=` address and `m=` port), but behind NAT its packets
//! arrive from another port, sometimes another IP. Tandem learns the real source from the first packet
//! that comes from an allowed IP and sends toward that source from then on ([`Latch::destination`]).
//! Packets from other sources are dropped and counted while the latched source is alive; once it has been
//! silent for [`LatchPolicy::relatch_after`], the next allowed source takes its place (a phone that
//! changed port). A re-INVITE with new SDP calls [`Latch::resignal`], which starts over.
//!
//! Everything here is plain data: time comes in as [`Instant`] arguments.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How a leg's latch picks its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchPolicy {
    /// Accept (and latch to) packets from any IP, not only the signalled one. Needed for phones that
    /// signal a private address behind NAT; it lets whoever sends first take the leg over, so keep it off
    /// for trusted peers such as the media servers.
    pub accept_any_ip: bool,
    /// How long the latched source must be silent before another allowed source may replace it.
    pub relatch_after: Duration,
}

impl Default for LatchPolicy {
    fn default() -> Self {
        Self {
            accept_any_ip: false,
            relatch_after: Duration::from_secs(2),
        }
    }
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it.
    Accept,
    /// Drop it.
    Drop(DropReason),
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It came from an IP other than the signalled one (and the policy does not accept any IP).
    StrayIp,
    /// It came from an allowed IP but not from the latched source, which is still sending.
    StraySource,
}

/// What changed in the latch on an accepted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchEvent {
    /// The packet came from the latched source.
    Same,
    /// The leg had no latched source; it now has this one.
    Latched(SocketAddr),
    /// The latched source had gone silent; the leg now follows this one.
    Relatched {
        /// The source followed until now.
        from: SocketAddr,
        /// The source followed from now on.
        to: SocketAddr,
    },
}

/// Packets counted by a latch since it was created (resignalling keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatchCounters {
    /// Packets accepted.
    pub accepted: u64,
    /// Packets dropped as [`DropReason::StrayIp`].
    pub stray_ip: u64,
    /// Packets dropped as [`DropReason::StraySource`].
    pub stray_source: u64,
    /// Times the latch moved from one source to another after silence.
    pub relatches: u64,
}

impl LatchCounters {
    /// All dropped packets.
    pub fn dropped(&self) -> u64 {
        self.stray_ip + self.stray_source
    }
}

/// The latched source and when it last sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latched {
    source: SocketAddr,
    last_seen: Instant,
}

/// Symmetric RTP latch of one leg (one RTP or RTCP flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    signalled: SocketAddr,
    policy: LatchPolicy,
    latched: Option<Latched>,
    /// Where to send until a source latches, other than the signalled address ([`Latch::presume`]).
    presumed: Option<SocketAddr>,
    counters: LatchCounters,
}

impl Latch {
    /// A latch for a leg that signalled `signalled`, not yet latched.
    pub fn new(signalled: SocketAddr, policy: LatchPolicy) -> Self {
        Self {
            signalled,
            policy,
            latched: None,
            presumed: None,
            counters: LatchCounters::default(),
        }
    }

    /// Sends toward `source` until a packet latches: a source learned elsewhere (by the node that
    /// carried the call before an HA takeover) and presumed still valid, such as a caller's address
    /// behind NAT that differs from its SDP. It admits nothing by itself: the first accepted packet
    /// latches as usual, from whatever source. Ignored when a source is already latched or when
    /// `source`'s IP is not allowed by the policy.
    pub fn presume(&mut self, source: SocketAddr) {
        if self.latched.is_none() && self.ip_allowed(source.ip()) {
            self.presumed = Some(source);
        }
    }

    /// Judges a packet from `source` received at `now`, latching or relatching as the policy allows.
    pub fn on_packet(&mut self, now: Instant, source: SocketAddr) -> Verdict {
        match self.admit(now, source) {
            Ok(_) => Verdict::Accept,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Like [`Latch::on_packet`], but says what changed on an accepted packet (for logging a latch or
    /// relatch once, with its addresses).
    pub fn admit(&mut self, now: Instant, source: SocketAddr) -> Result<LatchEvent, DropReason> {
        if !self.ip_allowed(source.ip()) {
            self.counters.stray_ip += 1;
            return Err(DropReason::StrayIp);
        }
        // A packet stamped earlier than the last one (callers mixing clocks) never moves time back.
        let (event, latched) = match self.latched {
            None => (
                LatchEvent::Latched(source),
                Latched {
                    source,
                    last_seen: now,
                },
            ),
            Some(latched) if same_source(latched.source, source) => {
                let last_seen = latched.last_seen.max(now);
                (
                    LatchEvent::Same,
                    Latched {
                        last_seen,
                        ..latched
                    },
                )
            }
            Some(latched)
                if now.saturating_duration_since(latched.last_seen)
                    >= self.policy.relatch_after =>
            {
                self.counters.relatches += 1;
                let event = LatchEvent::Relatched {
                    from: latched.source,
                    to: source,
                };
                (
                    event,
                    Latched {
                        source,
                        last_seen: now,
                    },
                )
            }
            Some(_) => {
                self.counters.stray_source += 1;
                return Err(DropReason::StraySource);
            }
        };
        self.latched = Some(latched);
        self.counters.accepted += 1;
        Ok(event)
    }

    /// The leg's SDP changed (re-INVITE): follow the new address and forget the latched source.
    pub fn resignal(&mut self, signalled: SocketAddr) {
        self.signalled = signalled;
        self.latched = None;
        self.presumed = None;
    }

    /// Where Tandem sends toward this leg: the latched source, else the presumed one, else the
    /// signalled address.
    pub fn destination(&self) -> SocketAddr {
        match (self.latched, self.presumed) {
            (Some(latched), _) => latched.source,
            (None, Some(presumed)) => presumed,
            (None, None) => self.signalled,
        }
    }

    /// The address the leg signalled in its SDP.
    pub fn signalled(&self) -> SocketAddr {
        self.signalled
    }

    /// The latched source, if any packet has been accepted since the last (re)signalling.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched.map(|latched| latched.source)
    }

    /// When the latched source last sent an accepted packet.
    pub fn last_seen(&self) -> Option<Instant> {
        self.latched.map(|latched| latched.last_seen)
    }

    /// The policy in force.
    pub fn policy(&self) -> LatchPolicy {
        self.policy
    }

    /// Accepted and dropped packet counts.
    pub fn counters(&self) -> LatchCounters {
        self.counters
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.policy.accept_any_ip || ip.to_canonical() == self.signalled.ip().to_canonical()
    }
}

/// Compares sources so that an IPv4 peer seen through a dual-stack socket (`::ffff:a.b.c.d`) is the same
/// source as its plain IPv4 form.
fn same_source(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}
