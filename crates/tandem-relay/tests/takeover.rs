//! A call carried on by another relay (an HA takeover), on loopback: the first relay reports what
//! it learned (the caller's latched source, the outbound stream after a server switch), the second
//! relay gets it in the plan and relays as the first one would have. Port block: 42700.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use support::*;
use tandem_media::session::{EndpointPlan, MediaEvent, MediaSide, SessionPlan};

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
