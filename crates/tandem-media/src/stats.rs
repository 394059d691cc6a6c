//! Per-stream RTP statistics after RFC 3550: extended highest sequence number with wrap handling
//! (Appendix A.1), expected versus received packets, cumulative loss and fraction lost per report
//! interval (§6.4.1, Appendix A.3), interarrival jitter (§6.4.1, Appendix A.8), and stream activity.
//!
//! The caller hands in the few header fields that matter (sequence number, RTP timestamp, payload
//! length) and the arrival [`Instant`]; nothing here parses packets or reads a clock.
//!
//! Two deliberate departures from Appendix A.1: there is no probation period (the first packet starts the
//! statistics; the latch already decides which source is followed), and duplicates within the last 128
//! sequence numbers are recognised and counted. They still count as received, as the RFC asks, so a
//! duplicate can make the cumulative loss negative.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Sequence numbers per cycle.
const SEQ_MOD: u64 = 1 << 16;
/// A forward jump of at least this many sequence numbers is a discontinuity, not loss (A.1).
const MAX_DROPOUT: u16 = 3000;
/// A packet at most this many sequence numbers behind the highest one is late, not a restart (A.1).
const MAX_MISORDER: u16 = 100;
/// How many sequence numbers behind the highest one duplicates are recognised.
const DUPLICATE_WINDOW: u16 = 128;
/// Nanoseconds per second, for exact arrival-time arithmetic in timestamp units.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// How a packet's sequence number fits the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first packet of the stream.
    First,
    /// Ahead of the highest sequence number so far (packets in between, if any, are missing for now).
    InOrder,
    /// Behind the highest sequence number and not seen before: reordered or late.
    Late,
    /// A sequence number already received.
    Duplicate,
    /// A large jump; not counted until the next packet confirms the sender restarted its sequence.
    Jump,
    /// The packet after a [`Arrival::Jump`] confirmed a new sequence: loss accounting starts over.
    Restarted,
}

/// Loss over one report interval (between two calls of [`StreamStats::close_interval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalReport {
    /// Packets the sequence numbers say were sent in the interval.
    pub expected: u64,
    /// Packets received in the interval (duplicates and late packets included).
    pub received: u64,
    /// `expected - received`; negative when duplicates outnumber losses.
    pub lost: i64,
    /// Fraction of `expected` lost, in 1/256 units as RTCP carries it; 0 when nothing was lost.
    pub fraction_lost: u8,
}

/// Sequence tracking of RFC 3550 A.1, started by the first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sequence {
    base_seq: u16,
    max_seq: u16,
    /// Sequence number wraps seen since `base_seq`.
    cycles: u64,
    /// The sequence number that would confirm a jump (A.1 `bad_seq`); `None` when no jump is pending.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Bit `n` set: extended sequence number `highest - n` was received.
    recent: u128,
}

impl Sequence {
    fn new(seq: u16) -> Self {
        Self {
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            received: 1,
            expected_prior: 0,
            received_prior: 0,
            recent: 1,
        }
    }

    fn extended_max(&self) -> u64 {
        self.cycles * SEQ_MOD + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        self.extended_max() - u64::from(self.base_seq) + 1
    }

    /// Appendix A.1 `update_seq`, without probation.
    fn update(&mut self, seq: u16) -> Arrival {
        let ahead = seq.wrapping_sub(self.max_seq);
        let behind = self.max_seq.wrapping_sub(seq);
        if ahead == 0 {
            self.received += 1;
            Arrival::Duplicate
        } else if ahead < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
            self.recent = if ahead < DUPLICATE_WINDOW {
                (self.recent << ahead) | 1
            } else {
                1
            };
            self.bad_seq = None;
            self.received += 1;
            Arrival::InOrder
        } else if behind > MAX_MISORDER {
            if self.bad_seq == Some(seq) {
                *self = Self::new(seq);
                Arrival::Restarted
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                Arrival::Jump
            }
        } else {
            self.received += 1;
            // behind <= MAX_MISORDER < DUPLICATE_WINDOW, so the bit exists.
            let bit = 1u128 << behind;
            if self.recent & bit != 0 {
                Arrival::Duplicate
            } else {
                self.recent |= bit;
                Arrival::Late
            }
        }
    }
}

/// Arrival time and RTP timestamp of the previous packet, for the jitter's transit difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transit {
    arrival: Instant,
    timestamp: u32,
}

/// Statistics of one received RTP stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    clock_rate: NonZeroU32,
    created: Instant,
    packets: u64,
    payload_bytes: u64,
    duplicates: u64,
    late: u64,
    sequence: Option<Sequence>,
    previous: Option<Transit>,
    /// Interarrival jitter in timestamp units (A.8's `jitter`, unscaled).
    jitter: f64,
    last_packet: Option<Instant>,
}

impl StreamStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz, created at `now` (a stream that
    /// never receives a packet becomes inactive counting from here).
    pub fn new(clock_rate: NonZeroU32, now: Instant) -> Self {
        Self {
            clock_rate,
            created: now,
            packets: 0,
            payload_bytes: 0,
            duplicates: 0,
            late: 0,
            sequence: None,
            previous: None,
            jitter: 0.0,
            last_packet: None,
        }
    }

    /// Accounts one packet received at `arrival`.
    pub fn on_packet(
        &mut self,
        arrival: Instant,
        seq: u16,
        timestamp: u32,
        payload_len: usize,
    ) -> Arrival {
        self.packets += 1;
        self.payload_bytes = self.payload_bytes.saturating_add(payload_len as u64);
        self.last_packet = Some(self.last_packet.map_or(arrival, |last| last.max(arrival)));
        let class = match &mut self.sequence {
            None => {
                self.sequence = Some(Sequence::new(seq));
                Arrival::First
            }
            Some(sequence) => sequence.update(seq),
        };
        match class {
            Arrival::Jump => return class,
            // A new sequence usually means a new sender clock: the old transit means nothing.
            Arrival::Restarted => self.previous = None,
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Late => self.late += 1,
            Arrival::First | Arrival::InOrder => {}
        }
        if let Some(previous) = self.previous {
            let difference = self.transit_difference(previous, arrival, timestamp);
            self.jitter += (difference - self.jitter) / 16.0;
        }
        self.previous = Some(Transit { arrival, timestamp });
        class
    }

    /// Ends a report interval: loss since the previous call (or since the stream started).
    pub fn close_interval(&mut self) -> IntervalReport {
        let Some(sequence) = &mut self.sequence else {
            return IntervalReport {
                expected: 0,
                received: 0,
                lost: 0,
                fraction_lost: 0,
            };
        };
        let expected_total = sequence.expected();
        let expected = expected_total.saturating_sub(sequence.expected_prior);
        let received = sequence.received.saturating_sub(sequence.received_prior);
        sequence.expected_prior = expected_total;
        sequence.received_prior = sequence.received;
        let lost = to_i64(expected) - to_i64(received);
        let fraction_lost = match u64::try_from(lost) {
            Ok(lost) if lost > 0 && expected > 0 => {
                u8::try_from((lost << 8) / expected).unwrap_or(u8::MAX)
            }
            _ => 0,
        };
        IntervalReport {
            expected,
            received,
            lost,
            fraction_lost,
        }
    }

    /// Packets handed to [`StreamStats::on_packet`], whatever their sequence number.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload bytes of those packets.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Packets received for loss accounting since the sequence (re)started (RFC 3550's `received`:
    /// late and duplicate packets included, an unconfirmed jump not).
    pub fn received(&self) -> u64 {
        self.sequence.map_or(0, |s| s.received)
    }

    /// Packets the sequence numbers say were sent since the sequence (re)started.
    pub fn expected(&self) -> u64 {
        self.sequence.map_or(0, |s| s.expected())
    }

    /// `expected - received` since the sequence (re)started; negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        to_i64(self.expected()) - to_i64(self.received())
    }

    /// [`StreamStats::cumulative_lost`] clamped to RTCP's signed 24-bit field.
    pub fn cumulative_lost_rtcp(&self) -> i32 {
        let clamped = self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff);
        i32::try_from(clamped).unwrap_or_default()
    }

    /// Duplicate packets recognised.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number (reordered or late), duplicates excluded.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Extended highest sequence number received (cycles in the upper 16 bits), as RTCP carries it.
    pub fn extended_highest_seq(&self) -> Option<u32> {
        // RTCP's field is 32 bits wide and wraps after 65536 sequence cycles.
        self.sequence
            .map(|s| (s.extended_max() & u64::from(u32::MAX)) as u32)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in timestamp units, truncated as RTCP carries it.
    pub fn jitter_rtcp(&self) -> u32 {
        // Float to integer casts saturate; jitter is never negative.
        self.jitter as u32
    }

    /// Interarrival jitter as a duration, using the stream's clock rate.
    pub fn jitter_duration(&self) -> Duration {
        let seconds = self.jitter / f64::from(self.clock_rate.get());
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }

    /// The RTP clock rate in Hz.
    pub fn clock_rate(&self) -> NonZeroU32 {
        self.clock_rate
    }

    /// When the latest packet arrived.
    pub fn last_packet(&self) -> Option<Instant> {
        self.last_packet
    }

    /// Whether no packet has arrived for `timeout` (counting from creation if none ever did).
    pub fn is_inactive(&self, now: Instant, timeout: Duration) -> bool {
        let since = self.last_packet.unwrap_or(self.created);
        now.saturating_duration_since(since) >= timeout
    }

    /// |D(i-1, i)| of RFC 3550 §6.4.1 in timestamp units: the change in transit time between the
    /// previous packet and this one. Computed in nanosecond-scaled integers, so a perfectly regular
    /// stream gives exactly 0.
    fn transit_difference(&self, previous: Transit, arrival: Instant, timestamp: u32) -> f64 {
        let arrival_nanos = signed_nanos(arrival, previous.arrival);
        // Two's complement reinterpretation: timestamps wrap, and a step back is negative.
        let timestamp_step = i128::from(timestamp.wrapping_sub(previous.timestamp) as i32);
        let scaled = arrival_nanos
            .saturating_mul(i128::from(self.clock_rate.get()))
            .saturating_sub(timestamp_step * NANOS_PER_SEC);
        scaled.unsigned_abs() as f64 / NANOS_PER_SEC as f64
    }
}

/// `later - earlier` in nanoseconds, negative when `later` is actually earlier.
fn signed_nanos(later: Instant, earlier: Instant) -> i128 {
    match later.checked_duration_since(earlier) {
        Some(forward) => i128::try_from(forward.as_nanos()).unwrap_or(i128::MAX),
        None => -i128::try_from(earlier.duration_since(later).as_nanos()).unwrap_or(i128::MAX),
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
