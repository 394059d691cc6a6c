#![allow(clippy::unwrap_used)]
//! RTP stream statistics (RFC 3550): sequence tracking, loss, jitter and inactivity on hand-made streams.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use tandem_media::stats::{Arrival, IntervalReport, StreamStats};

/// 8 kHz audio, 20 ms packets: 160 timestamp units apart.
const STEP_TS: u32 = 160;
const STEP: Duration = Duration::from_millis(20);

fn pcmu(now: Instant) -> StreamStats {
    StreamStats::new(NonZeroU32::new(8000).unwrap(), now)
}

/// Feeds packets given as (sequence number, extra arrival delay in ms), sent on a regular 20 ms
/// schedule with timestamps following the sequence number.
fn feed(stats: &mut StreamStats, t0: Instant, packets: &[(u16, u64)]) -> Vec<Arrival> {
    packets
        .iter()
        .map(|&(seq, delay_ms)| {
            let index = u32::from(seq.wrapping_sub(packets[0].0));
            let arrival = t0 + STEP * index + Duration::from_millis(delay_ms);
            stats.on_packet(arrival, seq, 1000 + index * STEP_TS, 160)
        })
        .collect()
}

#[test]
fn in_order_stream() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    let packets: Vec<(u16, u64)> = (100..150).map(|seq| (seq, 0)).collect();
    let arrivals = feed(&mut stats, t0, &packets);
    assert_eq!(arrivals[0], Arrival::First);
    assert!(arrivals[1..].iter().all(|a| *a == Arrival::InOrder));
    assert_eq!(stats.packets(), 50);
    assert_eq!(stats.payload_bytes(), 50 * 160);
    assert_eq!(stats.expected(), 50);
    assert_eq!(stats.received(), 50);
    assert_eq!(stats.cumulative_lost(), 0);
    assert_eq!(stats.extended_highest_seq(), Some(149));
    assert_eq!(stats.last_packet(), Some(t0 + STEP * 49));
    let report = stats.close_interval();
    assert_eq!(
        report,
        IntervalReport {
            expected: 50,
            received: 50,
            lost: 0,
            fraction_lost: 0
        }
    );
}

#[test]
fn loss_gives_cumulative_and_interval_fraction() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    // 0..=9 with 3 and 7 missing: 10 expected, 8 received.
    let packets: Vec<(u16, u64)> = (0..10)
        .filter(|s| *s != 3 && *s != 7)
        .map(|s| (s, 0))
        .collect();
    feed(&mut stats, t0, &packets);
    assert_eq!(stats.expected(), 10);
    assert_eq!(stats.cumulative_lost(), 2);
    let first = stats.close_interval();
    assert_eq!((first.expected, first.received, first.lost), (10, 8, 2));
    // (2 << 8) / 10: 20 % in 1/256 units.
    assert_eq!(first.fraction_lost, 51);
    // Next interval: 10..=13 all arrive.
    for seq in 10u16..14 {
        stats.on_packet(
            t0 + STEP * u32::from(seq),
            seq,
            u32::from(seq) * STEP_TS,
            160,
        );
    }
    let second = stats.close_interval();
    assert_eq!(
        (
            second.expected,
            second.received,
            second.lost,
            second.fraction_lost
        ),
        (4, 4, 0, 0)
    );
    assert_eq!(stats.cumulative_lost(), 2);
    // An interval without packets reports nothing lost.
    assert_eq!(stats.close_interval().expected, 0);
}

#[test]
fn reordered_packet_is_late_not_lost() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    let arrivals = feed(&mut stats, t0, &[(1, 0), (2, 0), (4, 0), (3, 25), (5, 0)]);
    assert_eq!(
        arrivals,
        [
            Arrival::First,
            Arrival::InOrder,
            Arrival::InOrder,
            Arrival::Late,
            Arrival::InOrder
        ]
    );
    assert_eq!(stats.late(), 1);
    assert_eq!(stats.cumulative_lost(), 0);
    assert_eq!(stats.extended_highest_seq(), Some(5));
}

#[test]
fn duplicate_counts_as_received_like_rfc_3550() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    let arrivals = feed(
        &mut stats,
        t0,
        &[(10, 0), (11, 0), (11, 1), (12, 0), (10, 45)],
    );
    assert_eq!(arrivals[2], Arrival::Duplicate);
    assert_eq!(arrivals[4], Arrival::Duplicate);
    assert_eq!(stats.duplicates(), 2);
    assert_eq!(stats.late(), 0);
    assert_eq!(stats.expected(), 3);
    assert_eq!(stats.received(), 5);
    assert_eq!(stats.cumulative_lost(), -2);
    let report = stats.close_interval();
    assert_eq!((report.lost, report.fraction_lost), (-2, 0));
}

#[test]
fn sequence_wrap_at_65535() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    // 65533, 65534, 65535, 0, 2 (1 lost), then 1 late.
    let arrivals = feed(
        &mut stats,
        t0,
        &[(65533, 0), (65534, 0), (65535, 0), (0, 0), (2, 0), (1, 30)],
    );
    assert_eq!(arrivals[3], Arrival::InOrder);
    assert_eq!(arrivals[5], Arrival::Late);
    assert_eq!(stats.extended_highest_seq(), Some(65536 + 2));
    assert_eq!(stats.expected(), 6);
    assert_eq!(stats.cumulative_lost(), 0);
    // A repeat from before the wrap is recognised, not taken for a new cycle.
    let late = stats.on_packet(t0 + STEP * 7, 65535, 0, 160);
    assert_eq!(late, Arrival::Duplicate);
    assert_eq!(stats.extended_highest_seq(), Some(65538));
}

#[test]
fn large_jump_is_confirmed_before_restarting() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    feed(&mut stats, t0, &[(100, 0), (101, 0)]);
    let t = t0 + STEP * 2;
    assert_eq!(stats.on_packet(t, 30000, 0, 160), Arrival::Jump);
    assert_eq!(stats.received(), 2);
    assert_eq!(
        stats.on_packet(t + STEP, 30001, 160, 160),
        Arrival::Restarted
    );
    assert_eq!(stats.expected(), 1);
    assert_eq!(stats.received(), 1);
    assert_eq!(stats.packets(), 4);
    // A lone stray jump does not restart anything.
    assert_eq!(stats.on_packet(t + STEP * 2, 9, 320, 160), Arrival::Jump);
    assert_eq!(
        stats.on_packet(t + STEP * 3, 30002, 480, 160),
        Arrival::InOrder
    );
    assert_eq!(stats.cumulative_lost(), 0);
}

#[test]
fn jitter_of_a_regular_stream_is_zero() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    let packets: Vec<(u16, u64)> = (0..500).map(|seq| (seq, 0)).collect();
    feed(&mut stats, t0, &packets);
    assert_eq!(stats.jitter(), 0.0);
    assert_eq!(stats.jitter_rtcp(), 0);
    // Across an RTP timestamp wrap as well.
    let mut wrapping = pcmu(t0);
    for i in 0u32..20 {
        let ts = (u32::MAX - 5 * STEP_TS).wrapping_add(i * STEP_TS);
        wrapping.on_packet(t0 + STEP * i, i as u16, ts, 160);
    }
    assert_eq!(wrapping.jitter(), 0.0);
}

#[test]
fn jitter_of_a_jittered_stream_matches_hand_computation() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    // Arrival delays 0, 5, 0, 10 ms on the 20 ms schedule; 1 ms = 8 timestamp units.
    // D = |transit(i) - transit(i-1)| = 40, 40, 80 units.
    // J1 = 0 + (40 - 0) / 16          = 2.5
    // J2 = 2.5 + (40 - 2.5) / 16      = 4.84375
    // J3 = 4.84375 + (80 - 4.84375)/16 = 9.541015625
    feed(&mut stats, t0, &[(0, 0), (1, 5), (2, 0), (3, 10)]);
    assert_eq!(stats.jitter(), 9.541015625);
    assert_eq!(stats.jitter_rtcp(), 9);
    // 9.541015625 units at 8 kHz = 1.192626953125 ms.
    let expected = Duration::from_nanos(1_192_626);
    let diff = stats.jitter_duration().abs_diff(expected);
    assert!(
        diff < Duration::from_nanos(2),
        "{:?}",
        stats.jitter_duration()
    );
}

#[test]
fn inactivity_counts_from_the_last_packet_or_creation() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(5);
    let mut stats = pcmu(t0);
    assert!(!stats.is_inactive(t0 + Duration::from_secs(4), timeout));
    assert!(stats.is_inactive(t0 + Duration::from_secs(5), timeout));
    stats.on_packet(t0 + Duration::from_secs(6), 1, 0, 160);
    assert!(!stats.is_inactive(t0 + Duration::from_secs(10), timeout));
    assert!(stats.is_inactive(t0 + Duration::from_secs(11), timeout));
    // A clock reading before the last packet never counts as inactive.
    assert!(!stats.is_inactive(t0, timeout));
}

#[test]
fn empty_stream_reports_nothing() {
    let t0 = Instant::now();
    let mut stats = pcmu(t0);
    assert_eq!(stats.extended_highest_seq(), None);
    assert_eq!(stats.cumulative_lost(), 0);
    assert_eq!(stats.close_interval().fraction_lost, 0);
    assert_eq!(stats.last_packet(), None);
}
