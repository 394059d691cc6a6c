//! A stream replicated to another node and restored there (an HA takeover): the receiver keeps the
//! SSRC it knows; the replicated source carries on without a seam, any other source continues
//! after a forward jump estimated from the wall time since the snapshot.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};
use support::pcma;
use tandem_media::continuity::{
    ContinuityConfig, OutboundStream, Rewrite, RtpHeaderFields, SourceSnapshot, StreamSnapshot,
    ASSUMED_PACKET_INTERVAL,
};

const PTIME: Duration = Duration::from_millis(20);
const CONFIG: ContinuityConfig = ContinuityConfig::AUDIO_8KHZ;

fn header(packet: &[u8]) -> RtpHeaderFields {
    RtpHeaderFields::read(packet).unwrap()
}

/// An active node's stream that relayed source 1 (seq 100.., ts 1000..) and then switched to
/// source 2 (seq 5000.., ts 90_000..): the caller sees SSRC 1 throughout. Returns the stream, the
/// time of its last packet and the last outbound header.
fn switched_stream() -> (OutboundStream, Instant, RtpHeaderFields) {
    let mut stream = OutboundStream::new(CONFIG);
    let mut now = Instant::now();
    for i in 0..10u16 {
        let mut packet = pcma(1, 100 + i, 1000 + 160 * u32::from(i));
        stream.rewrite_packet(now, &mut packet).unwrap();
        now += PTIME;
    }
    let mut last = None;
    for i in 0..10u16 {
        let mut packet = pcma(2, 5000 + i, 90_000 + 160 * u32::from(i));
        let outcome = stream.rewrite_packet(now, &mut packet).unwrap();
        assert_eq!(outcome == Rewrite::Reanchored, i == 0);
        last = Some(header(&packet));
        now += PTIME;
    }
    (stream, now - PTIME, last.unwrap())
}

#[test]
fn the_snapshot_of_a_switched_stream_names_its_source_mapping() {
    let (stream, last_at, last) = switched_stream();
    let snapshot = stream.snapshot(last_at + PTIME).unwrap();
    assert_eq!(snapshot.outbound_ssrc, 1);
    assert_eq!(
        (snapshot.last_sequence, snapshot.last_timestamp),
        (last.sequence, last.timestamp)
    );
    assert_eq!(snapshot.since_last_sent, PTIME);
    let source = snapshot.source.unwrap();
    assert_eq!(source.inbound_ssrc, 2);
    assert_eq!(5009u16.wrapping_add(source.sequence_offset), last.sequence);
    assert_eq!(
        (90_000u32 + 9 * 160).wrapping_add(source.timestamp_offset),
        last.timestamp
    );
}

#[test]
fn the_replicated_source_carries_on_without_a_seam() {
    let (active, last_at, _) = switched_stream();
    let snapshot = active.snapshot(last_at).unwrap();
    // The active node dies after 3 s more of source 2; the new node restores the stream then.
    let restored_at = last_at + Duration::from_secs(3);
    let mut twin = active.clone();
    let mut standby = OutboundStream::restore(CONFIG, snapshot, restored_at);
    for i in 0..5u16 {
        let sequence = 5010 + 150 + i;
        let timestamp = 90_000 + 160 * u32::from(10 + 150 + i);
        let at = restored_at + PTIME * u32::from(i);
        let mut expected = pcma(2, sequence, timestamp);
        twin.rewrite_packet(at, &mut expected).unwrap();
        let mut packet = pcma(2, sequence, timestamp);
        assert_eq!(
            standby.rewrite_packet(at, &mut packet).unwrap(),
            Rewrite::Continued
        );
        assert_eq!(
            packet, expected,
            "packet {i} differs from the active node's"
        );
        assert!(!header(&packet).marker);
    }
}

#[test]
fn another_source_jumps_forward_by_the_time_since_the_snapshot() {
    let (active, last_at, last) = switched_stream();
    // The snapshot as the new node gets it: 3010 ms after the last packet it names.
    let elapsed = Duration::from_millis(3010);
    let snapshot = active.snapshot(last_at + elapsed).unwrap();
    let mut standby = OutboundStream::restore(CONFIG, snapshot, last_at + elapsed);
    let mut packet = pcma(3, 7, 777);
    assert_eq!(
        standby
            .rewrite_packet(last_at + elapsed, &mut packet)
            .unwrap(),
        Rewrite::Reanchored
    );
    let out = header(&packet);
    assert_eq!(out.ssrc, 1);
    // 3010 ms at one packet per 20 ms, rounded up: 151 packets, then this one.
    assert_eq!(ASSUMED_PACKET_INTERVAL, PTIME);
    assert_eq!(out.sequence, last.sequence.wrapping_add(151 + 1));
    assert_eq!(out.timestamp, last.timestamp.wrapping_add(3010 * 8));
    assert!(out.marker);
}

#[test]
fn the_replicated_mapping_is_used_up_by_the_first_packet() {
    let (active, last_at, _) = switched_stream();
    let snapshot = active.snapshot(last_at).unwrap();
    let mut standby = OutboundStream::restore(CONFIG, snapshot, last_at + PTIME);
    let mut first = pcma(3, 7, 777);
    standby.rewrite_packet(last_at + PTIME, &mut first).unwrap();
    // Source 2 after source 3 is a switch like any other.
    let mut second = pcma(2, 5010, 90_000 + 1600);
    assert_eq!(
        standby
            .rewrite_packet(last_at + PTIME * 2, &mut second)
            .unwrap(),
        Rewrite::Reanchored
    );
    assert_eq!(
        header(&second).sequence,
        header(&first).sequence.wrapping_add(1)
    );
}

#[test]
fn a_passthrough_stream_restores_as_a_passthrough() {
    let snapshot = StreamSnapshot {
        outbound_ssrc: 9,
        last_sequence: 400,
        last_timestamp: 64_000,
        since_last_sent: Duration::from_millis(500),
        source: Some(SourceSnapshot {
            inbound_ssrc: 9,
            sequence_offset: 0,
            timestamp_offset: 0,
        }),
    };
    let now = Instant::now();
    let mut standby = OutboundStream::restore(CONFIG, snapshot, now);
    let original = pcma(9, 425, 64_000 + 25 * 160);
    let mut packet = original.clone();
    assert_eq!(
        standby.rewrite_packet(now, &mut packet).unwrap(),
        Rewrite::Continued
    );
    assert_eq!(packet, original);
    // The snapshot of the restored stream is what really left, not the estimate.
    let again = standby.snapshot(now).unwrap();
    assert_eq!((again.last_sequence, again.last_timestamp), (425, 68_000));
}

#[test]
fn a_restored_stream_reports_its_replicated_mapping_until_a_packet_comes() {
    let (active, last_at, _) = switched_stream();
    let snapshot = active.snapshot(last_at).unwrap();
    let standby = OutboundStream::restore(CONFIG, snapshot, last_at);
    assert_eq!(standby.snapshot(last_at).unwrap().source, snapshot.source);
    assert_eq!(standby.outbound_ssrc(), Some(1));
}
