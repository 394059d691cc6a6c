//! A call carried on by another relay (an HA takeover), on loopback: the first relay reports what
//! it learned (the caller's latched source, the outbound stream after a server switch), the second
//! relay gets it in the plan and relays as the first one would have. Port blocks: 42700, and 42900
//! for a call prepared on a standby's relay.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;
use support::*;
use tandem_media::continuity::{SourceSnapshot, StreamSnapshot};
use tandem_media::session::{EndpointPlan, MediaEvent, MediaSide, SessionPlan};
use tandem_relay::RelayConfig;

#[test]
fn a_second_relay_reaches_the_latched_caller_and_continues_its_stream() {
    let base = 42700;
    let (signalled, old_server) = (Peer::local(base + 10), Peer::local(base + 12));
    let new_server = Peer::local(base + 20);
    // The caller sends from a port other than its SDP's (NAT).
    let real = UdpSocket::bind(at(base + 30)).unwrap();

    let first = Harness::start(config(1));
    first.apply(simple_plan(9, base));
    send_rtp(&real, at(base), 0xca, 1, 1);
    recv(&old_server.rtp);
    let latched = match first.event(|e| {
        matches!(
            e,
            MediaEvent::Latched {
                side: MediaSide::Caller,
                ..
            }
        )
    }) {
        MediaEvent::Latched { source, rtcp, .. } => {
            assert!(!rtcp);
            source
        }
        other => unreachable!("{other:?}"),
    };
    assert_eq!(latched, at(base + 30));
    send_rtp(&old_server.rtp, at(base + 2), 0x1111, 100, 5);
    let mut last = Rtp::new(0, 0, 0);
    for _ in 0..5 {
        last = Rtp::read(&recv(&real).0);
    }
    // The call moves to another media server: the caller's stream maps a new source.
    let mut switched = simple_plan(9, base);
    switched.streams[0].caller.latched_rtp = Some(latched);
    switched.streams[0].server = endpoint(base + 2, Some(at(base + 20)), false);
    first.apply(switched.clone());
    send_rtp(&new_server.rtp, at(base + 2), 0x2222, 7000, 3);
    for _ in 0..3 {
        last = Rtp::read(&recv(&real).0);
    }
    assert_eq!(last.ssrc, 0x1111);
    let outbound = match first.event(|e| matches!(e, MediaEvent::Outbound { .. })) {
        MediaEvent::Outbound {
            call, side, stream, ..
        } => {
            assert_eq!((call, side), (9, MediaSide::Caller));
            stream
        }
        other => unreachable!("{other:?}"),
    };
    assert_eq!(outbound.outbound_ssrc, 0x1111);
    assert_eq!(outbound.source.unwrap().inbound_ssrc, 0x2222);
    assert!(
        first
            .events
            .try_iter()
            .all(|e| !matches!(e, MediaEvent::Outbound { .. })),
        "one report per switch, not per packet"
    );
    drop(first);

    // Another node takes over with what was replicated.
    let second = Harness::start(config(1));
    let mut taken_over: SessionPlan = switched;
    taken_over.streams[0].caller = EndpointPlan {
        outbound: Some(outbound),
        ..taken_over.streams[0].caller
    };
    second.apply(taken_over);
    send_rtp(&new_server.rtp, at(base + 2), 0x2222, 7003, 1);
    let (packet, from) = recv(&real);
    assert_eq!(from, at(base), "the first packet goes to the latched port");
    let header = Rtp::read(&packet);
    assert_eq!(header.ssrc, 0x1111, "same SSRC toward the caller");
    assert_eq!(header.sequence, last.sequence.wrapping_add(1), "no seam");
    assert!(!header.marker);
    assert!(
        recv_within(&signalled.rtp, std::time::Duration::from_millis(50)).is_none(),
        "nothing went to the SDP address"
    );
}

#[test]
fn a_prepared_call_holds_its_ports_reports_nothing_and_goes_live_with_the_plans_stream() {
    let base = 42900;
    let relay = Harness::start(RelayConfig {
        inactivity_timeout: Some(Duration::from_millis(100)),
        ..config(1)
    });
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    // The active node's call, switched once onto this server: its stream toward the caller.
    let stream = StreamSnapshot {
        outbound_ssrc: 0x1111,
        last_sequence: 900,
        last_timestamp: 144_000,
        since_last_sent: Duration::from_millis(20),
        source: Some(SourceSnapshot {
            inbound_ssrc: 0x2222,
            sequence_offset: 400,
            timestamp_offset: 8000,
        }),
    };
    let mut plan = simple_plan(11, base);
    relay.prepare(plan.clone());

    // The ports are bound (another socket cannot take them) and the silence of both sides for
    // several inactivity timeouts is not reported.
    assert!(UdpSocket::bind(at(base)).is_err());
    assert!(UdpSocket::bind(at(base + 3)).is_err());
    let quiet = relay.events.recv_timeout(Duration::from_millis(500));
    assert!(quiet.is_err(), "a prepared call reports nothing: {quiet:?}");
    assert_eq!(relay.relay.totals().inactivity_reports, 0);

    // The active node switched the stream toward the caller meanwhile: the prepared call takes
    // the new plan, its sockets stay.
    plan.streams[0].caller.outbound = Some(stream);
    relay.prepare(plan.clone());
    assert!(UdpSocket::bind(at(base)).is_err());

    // Takeover: the core's Apply makes it live; the server's packets from the mapped source go on
    // exactly as the active node sent them.
    relay.apply(plan);
    send_rtp(&server.rtp, at(base + 2), 0x2222, 501, 1);
    let header = Rtp::read(&recv(&caller.rtp).0);
    assert_eq!(header.ssrc, 0x1111, "the caller keeps its SSRC");
    assert_eq!(header.sequence, 901, "no seam");
    assert!(!header.marker);
    // Live: the caller that sends nothing is reported after a full period from the takeover.
    let silent = relay.event(|e| {
        matches!(
            e,
            MediaEvent::Inactive {
                call: 11,
                side: MediaSide::Caller
            }
        )
    });
    assert!(matches!(silent, MediaEvent::Inactive { .. }));
}

/// Sends `count` packets of `ssrc` from `from` to `to`, sequence from `first`, 20 ms apart in
/// timestamp.
fn send_rtp(from: &UdpSocket, to: std::net::SocketAddr, ssrc: u32, first: u16, count: u16) {
    for i in 0..count {
        let sequence = first.wrapping_add(i);
        let header = Rtp::new(ssrc, sequence, 160 * u32::from(sequence));
        from.send_to(&header.packet(u32::from(sequence)), to)
            .unwrap();
    }
}
