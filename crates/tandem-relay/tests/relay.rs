//! The relay on loopback with real sockets: each test plays a caller and a media server around
//! one Tandem relay. Port blocks: 41000 both ways, 41100 RTCP, 41200 latching, 41300 strays,
//! 41400 continuity, 41500 update/hold/remove, 41600 inactivity, 41700 garbage, 41800 bind
//! failure, 41900 several calls on several shards, 42600 ports reused by the next call at once.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::*;
use tandem_media::latch::LatchPolicy;
use tandem_media::session::{MediaEvent, MediaSide};
use tandem_relay::RelayConfig;

const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Sends `count` packets of `ssrc` from `from` to `to`, sequence from `first`, tags from `tag0`.
fn send_rtp(from: &UdpSocket, to: SocketAddr, ssrc: u32, first: u16, count: u16, tag0: u32) {
    for i in 0..count {
        let header = Rtp::new(ssrc, first.wrapping_add(i), 160 * u32::from(i));
        from.send_to(&header.packet(tag0 + u32::from(i)), to)
            .unwrap();
    }
}

#[test]
fn rtp_is_relayed_both_ways_unchanged() {
    let base = 41000;
    let relay = Harness::start(config(2));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    relay.apply(simple_plan(7, base));

    send_rtp(&caller.rtp, at(base), 0xca11, 1000, 100, 0);
    for i in 0..100u16 {
        let (packet, from) = recv(&server.rtp);
        assert_eq!(from, at(base + 2), "leaves from the server-facing port");
        assert_eq!(
            Rtp::read(&packet),
            Rtp::new(0xca11, 1000 + i, 160 * u32::from(i))
        );
        assert_eq!(tag(&packet), Some(u32::from(i)));
        assert_eq!(&packet[16..], &[0xd5; 156]);
    }
    send_rtp(&server.rtp, at(base + 2), 0x5e4e, 50, 100, 1000);
    for i in 0..100u16 {
        let (packet, from) = recv(&caller.rtp);
        assert_eq!(from, at(base));
        assert_eq!(
            Rtp::read(&packet),
            Rtp::new(0x5e4e, 50 + i, 160 * u32::from(i))
        );
        assert_eq!(tag(&packet), Some(1000 + u32::from(i)));
    }

    let stats = relay.query(7).unwrap();
    let [caller_side, server_side] = &stats.streams[..] else {
        panic!("one stream, two sides: {stats:?}");
    };
    assert_eq!(
        (caller_side.side, server_side.side),
        (MediaSide::Caller, MediaSide::Server)
    );
    assert_eq!(
        (caller_side.local_rtp_port, server_side.local_rtp_port),
        (base, base + 2)
    );
    assert_eq!(caller_side.packets_received, 100);
    assert_eq!(caller_side.bytes_received, 100 * 172);
    assert_eq!(caller_side.packets_sent, 100);
    assert_eq!(caller_side.lost, 0);
    assert_eq!(caller_side.latched, Some(at(base + 10)));
    assert!(caller_side.last_packet_age.is_some());
    assert_eq!(server_side.packets_received, 100);
    let totals = relay.totals_until(|t| t.packets_relayed == 200);
    assert_eq!((totals.sessions, totals.streams), (1, 1));
    assert_eq!(totals.bytes_relayed, 200 * 172);
    assert_eq!(totals.dropped_stray + totals.dropped_malformed, 0);
}

#[test]
fn rtcp_is_relayed_with_consistent_ssrcs_and_rtcp_mux_on_one_side() {
    let base = 41100;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    // The caller uses separate RTCP ports; the server multiplexes RTCP on its RTP port.
    relay.apply(plan(
        1,
        vec![stream(
            0,
            endpoint(base, Some(at(base + 10)), false),
            endpoint(base + 2, Some(at(base + 12)), true),
        )],
    ));
    send_rtp(&caller.rtp, at(base), 0xc0, 1, 3, 0);
    send_rtp(&server.rtp, at(base + 2), 0x5a, 100, 3, 0);
    for _ in 0..3 {
        assert_eq!(Rtp::read(&recv(&server.rtp).0).ssrc, 0xc0);
        assert_eq!(Rtp::read(&recv(&caller.rtp).0).ssrc, 0x5a);
    }
    // The server's source restarts with a new SSRC: the caller keeps seeing 0x5a.
    send_rtp(&server.rtp, at(base + 2), 0x5b, 7000, 3, 0);
    for _ in 0..3 {
        assert_eq!(Rtp::read(&recv(&caller.rtp).0).ssrc, 0x5a);
    }

    // Server RTCP (muxed, on its RTP port) names its real SSRC 0x5b: the caller gets 0x5a on
    // its RTCP port, from Tandem's caller-facing RTCP port.
    server
        .rtp
        .send_to(&receiver_report(0x5b, 0xc0), at(base + 2))
        .unwrap();
    let (report, from) = recv(&caller.rtcp);
    assert_eq!(from, at(base + 1));
    assert_eq!((be32(&report, 4), be32(&report, 8)), (0x5a, 0xc0));

    // The caller reports about 0x5a: the server learns about its own 0x5b, on its RTP port.
    caller
        .rtcp
        .send_to(&receiver_report(0xc0, 0x5a), at(base + 1))
        .unwrap();
    let (report, from) = recv_matching(&server.rtp, is_rtcp);
    assert_eq!(from, at(base + 2));
    assert_eq!((be32(&report, 4), be32(&report, 8)), (0xc0, 0x5b));

    let stats = relay.query(1).unwrap();
    assert_eq!(stats.streams[0].rtcp_received, 1);
    assert_eq!(stats.streams[1].rtcp_received, 1);
    relay.totals_until(|t| t.rtcp_relayed == 2);
}

#[test]
fn a_caller_behind_nat_is_latched_and_answered_at_its_real_port() {
    let base = 41200;
    let relay = Harness::start(config(1));
    let (signalled, server) = (Peer::local(base + 10), Peer::local(base + 12));
    let real = UdpSocket::bind(at(base + 20)).unwrap();
    relay.apply(simple_plan(3, base));

    // Before the caller sends, media goes to the signalled address.
    send_rtp(&server.rtp, at(base + 2), 0x5e, 1, 1, 1);
    assert_eq!(tag(&recv(&signalled.rtp).0), Some(1));

    send_rtp(&real, at(base), 0xca, 1, 1, 2);
    assert_eq!(tag(&recv(&server.rtp).0), Some(2));
    let event = relay.event(|e| {
        matches!(
            e,
            MediaEvent::Latched {
                side: MediaSide::Caller,
                ..
            }
        )
    });
    assert_eq!(
        event,
        MediaEvent::Latched {
            call: 3,
            side: MediaSide::Caller,
            index: 0,
            source: at(base + 20),
            rtcp: false,
        }
    );

    send_rtp(&server.rtp, at(base + 2), 0x5e, 2, 1, 3);
    let (packet, from) = recv(&real);
    assert_eq!((tag(&packet), from), (Some(3), at(base)));
    assert_eq!(
        relay.query(3).unwrap().streams[0].latched,
        Some(at(base + 20))
    );
}

#[test]
fn a_stray_ip_is_dropped_unless_any_ip_is_accepted() {
    let base = 41300;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    let stray = UdpSocket::bind(SocketAddr::new(OTHER_LOOPBACK, base + 20)).unwrap();
    relay.apply(simple_plan(4, base));

    send_rtp(&stray, at(base), 0xbad, 1, 1, 666);
    send_rtp(&caller.rtp, at(base), 0xca, 1, 1, 1);
    // The server's first packet is the caller's: the stray one was never relayed.
    assert_eq!(tag(&recv(&server.rtp).0), Some(1));
    relay.totals_until(|t| t.dropped_stray == 1);
    let stats = relay.query(4).unwrap();
    assert_eq!(stats.streams[0].stray_dropped, 1);
    assert_eq!(stats.streams[0].latched, Some(at(base + 10)));

    // Same call shape with a caller latch that accepts any IP: the stray source latches.
    let open = Harness::start(RelayConfig {
        caller_latch: LatchPolicy {
            accept_any_ip: true,
            ..STRICT
        },
        ..config(1)
    });
    let base = base + 50;
    let server = Peer::local(base + 12);
    let roaming = UdpSocket::bind(SocketAddr::new(OTHER_LOOPBACK, base + 20)).unwrap();
    open.apply(simple_plan(4, base));
    send_rtp(&roaming, at(base), 0xca, 1, 1, 2);
    assert_eq!(tag(&recv(&server.rtp).0), Some(2));
    let source = SocketAddr::new(OTHER_LOOPBACK, base + 20);
    open.event(|e| matches!(e, MediaEvent::Latched { side: MediaSide::Caller, source: s, .. } if *s == source));
    send_rtp(&server.rtp, at(base + 2), 0x5e, 1, 1, 3);
    assert_eq!(tag(&recv(&roaming).0), Some(3));
}

#[test]
fn the_caller_sees_one_continuous_stream_across_a_server_switch() {
    let base = 41400;
    let relay = Harness::start(config(1));
    let (caller, old_server) = (Peer::local(base + 10), Peer::local(base + 12));
    let new_server = Peer::local(base + 20);
    relay.apply(simple_plan(5, base));

    send_rtp(&old_server.rtp, at(base + 2), 0x1111, 100, 20, 0);
    let mut last = Rtp::new(0, 0, 0);
    for i in 0..20u16 {
        last = Rtp::read(&recv(&caller.rtp).0);
        assert_eq!((last.ssrc, last.sequence), (0x1111, 100 + i));
    }

    // Failover: the core re-INVITEs the call onto another media server.
    let mut failover = simple_plan(5, base);
    failover.streams[0].server = endpoint(base + 2, Some(at(base + 20)), false);
    relay.apply(failover);
    send_rtp(&new_server.rtp, at(base + 2), 0x2222, 50_000, 20, 100);
    for i in 0..20u16 {
        let (packet, from) = recv(&caller.rtp);
        let header = Rtp::read(&packet);
        assert_eq!(from, at(base), "same Tandem port toward the caller");
        assert_eq!(header.ssrc, 0x1111, "same SSRC");
        assert_eq!(header.sequence, last.sequence + 1 + i, "sequence continues");
        assert_eq!(
            header.marker,
            i == 0,
            "marker only on the first packet after the switch"
        );
        assert!(
            header.timestamp.wrapping_sub(last.timestamp) < 0x8000_0000,
            "timestamp advances"
        );
        assert_eq!(tag(&packet), Some(100 + u32::from(i)), "payload intact");
    }
    // And the caller's media now reaches the new server.
    send_rtp(&caller.rtp, at(base), 0xca, 1, 1, 7);
    assert_eq!(tag(&recv(&new_server.rtp).0), Some(7));
}

#[test]
fn update_keeps_sockets_hold_drops_and_remove_frees_the_ports() {
    let base = 41500;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    let moved_caller = Peer::local(base + 20);
    relay.apply(simple_plan(6, base));
    send_rtp(&caller.rtp, at(base), 0xca, 1, 5, 0);
    for _ in 0..5 {
        recv(&server.rtp);
    }

    // Re-INVITE: the caller moved; Tandem's ports stay, with their state.
    let mut moved = simple_plan(6, base);
    moved.streams[0].caller = endpoint(base, Some(at(base + 20)), false);
    relay.apply(moved.clone());
    let in_use = UdpSocket::bind(at(base)).unwrap_err();
    assert_eq!(in_use.kind(), std::io::ErrorKind::AddrInUse);
    let stats = relay.query(6).unwrap();
    assert_eq!(stats.streams[0].packets_received, 5, "the stream was kept");
    assert_eq!(stats.streams[0].signalled, Some(at(base + 20)));
    send_rtp(&server.rtp, at(base + 2), 0x5e, 1, 1, 1);
    assert_eq!(tag(&recv(&moved_caller.rtp).0), Some(1));

    // Hold: the caller has no address; media toward it is dropped, nothing breaks.
    let mut hold = simple_plan(6, base);
    hold.streams[0].caller = endpoint(base, None, false);
    relay.apply(hold);
    send_rtp(&server.rtp, at(base + 2), 0x5e, 2, 5, 10);
    send_rtp(&caller.rtp, at(base), 0xca, 6, 2, 20);
    relay.totals_until(|t| t.dropped_no_destination == 5 && t.dropped_stray == 2);
    relay.apply(moved);
    send_rtp(&server.rtp, at(base + 2), 0x5e, 7, 1, 30);
    assert_eq!(tag(&recv(&moved_caller.rtp).0), Some(30));

    // Remove: every port can be bound again at once; removing it again is a no-op.
    relay.remove(6);
    relay.remove(6);
    for port in base..base + 4 {
        UdpSocket::bind(at(port)).unwrap();
    }
    let totals = relay.relay.totals();
    assert_eq!((totals.sessions, totals.streams), (0, 0));
    assert!(relay
        .events
        .try_iter()
        .all(|e| !matches!(e, MediaEvent::BindFailed { .. })));
}

#[test]
fn a_silent_side_is_reported_once_per_silence_and_an_active_one_never() {
    let base = 41600;
    let relay = Harness::start(RelayConfig {
        inactivity_timeout: Some(Duration::from_millis(300)),
        ..config(1)
    });
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    relay.apply(simple_plan(8, base));

    // The caller talks every 20 ms (the event channel's timeout paces it); the server is silent.
    let mut sequence = 0u16;
    let mut talk_until = |done: &dyn Fn(&MediaEvent) -> bool, limit: Duration| {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            sequence += 1;
            send_rtp(&caller.rtp, at(base), 0xca, sequence, 1, 0);
            if let Ok(event) = relay.events.recv_timeout(Duration::from_millis(20)) {
                assert_ne!(
                    event,
                    MediaEvent::Inactive {
                        call: 8,
                        side: MediaSide::Caller
                    }
                );
                if done(&event) {
                    return true;
                }
            }
        }
        false
    };
    let server_silent = |e: &MediaEvent| {
        *e == MediaEvent::Inactive {
            call: 8,
            side: MediaSide::Server,
        }
    };
    assert!(
        talk_until(&server_silent, DEADLINE),
        "the silent server is reported"
    );
    // Reported once: nothing more for three timeouts while it stays silent.
    assert!(!talk_until(&server_silent, Duration::from_millis(900)));
    // A packet re-arms the report; the next silence is reported again.
    send_rtp(&server.rtp, at(base + 2), 0x5e, 1, 1, 0);
    assert!(
        talk_until(&server_silent, DEADLINE),
        "reported again after new silence"
    );
    assert_eq!(relay.relay.totals().inactivity_reports, 2);
}

#[test]
fn garbage_never_crashes_and_is_counted() {
    let base = 41700;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    relay.apply(simple_plan(9, base));

    let oversized = [0x80u8; 3000];
    let malformed: [&[u8]; 5] = [&[], &[0x80], &[0x80; 11], &[0x00; 12], &oversized];
    for (socket, port) in [(&caller.rtp, base), (&caller.rtcp, base + 1)] {
        for packet in malformed {
            socket.send_to(packet, at(port)).unwrap();
        }
    }
    // On the RTCP port the 11 bytes of version 2 count as RTCP that cannot be walked (as SRTCP
    // would be) and are relayed untouched; the other nine are dropped.
    relay.totals_until(|t| t.dropped_malformed == 9 && t.packets_received == 10);

    // Pseudo-random datagrams of any length to every port, from both peers.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buffer = [0u8; 1600];
    for _ in 0..2000 {
        let len = (next() % 1600) as usize;
        buffer[..len].iter_mut().for_each(|b| *b = next() as u8);
        let port = base + (next() % 4) as u16;
        // Each from the peer socket that the port's latch follows.
        let peer = if port < base + 2 { &caller } else { &server };
        let socket = if port & 1 == 0 { &peer.rtp } else { &peer.rtcp };
        socket.send_to(&buffer[..len], at(port)).unwrap();
    }
    relay.totals_until(|t| t.packets_received == 2010);

    // Still relaying both ways.
    send_rtp(&caller.rtp, at(base), 0xca11, 1, 1, 0xfeed);
    recv_matching(&server.rtp, |p| tag(p) == Some(0xfeed));
    send_rtp(&server.rtp, at(base + 2), 0x5e4e, 1, 1, 0xbeef);
    recv_matching(&caller.rtp, |p| tag(p) == Some(0xbeef));
    assert!(relay.query(9).is_some());
}

#[test]
fn a_port_that_cannot_be_bound_fails_only_its_stream() {
    let base = 41800;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    let _squatter = UdpSocket::bind(at(base + 5)).unwrap();
    let mut call = simple_plan(10, base);
    call.streams.push(stream(
        1,
        endpoint(base + 4, Some(at(base + 30)), false),
        endpoint(base + 6, Some(at(base + 32)), false),
    ));
    relay.apply(call);
    let event = relay.event(|e| matches!(e, MediaEvent::BindFailed { .. }));
    assert!(matches!(event, MediaEvent::BindFailed { call: 10, port, .. } if port == base + 5));
    assert_eq!(
        relay.query(10).unwrap().streams.len(),
        2,
        "only stream 0 remains"
    );
    // Its other ports were released with it.
    UdpSocket::bind(at(base + 4)).unwrap();
    send_rtp(&caller.rtp, at(base), 0xca, 1, 1, 1);
    assert_eq!(tag(&recv(&server.rtp).0), Some(1));
}

#[test]
fn calls_on_different_shards_relay_independently() {
    let base = 41900;
    let relay = Harness::start(config(3));
    assert_eq!(relay.relay.shards(), 3);
    let mut peers = Vec::new();
    for call in 0..4u16 {
        let block = base + 20 * call;
        relay.apply(simple_plan(u64::from(call), block));
        peers.push((block, Peer::local(block + 10), Peer::local(block + 12)));
    }
    for (block, caller, server) in &peers {
        send_rtp(&caller.rtp, at(*block), 0xca, 1, 10, u32::from(*block));
        send_rtp(
            &server.rtp,
            at(*block + 2),
            0x5e,
            1,
            10,
            u32::from(*block) + 100,
        );
    }
    for (block, caller, server) in &peers {
        for i in 0..10 {
            assert_eq!(tag(&recv(&server.rtp).0), Some(u32::from(*block) + i));
            assert_eq!(tag(&recv(&caller.rtp).0), Some(u32::from(*block) + 100 + i));
        }
    }
    let totals = relay.totals_until(|t| t.packets_relayed == 80);
    assert_eq!((totals.sessions, totals.streams), (4, 4));
}

#[test]
fn the_next_call_binds_the_ports_of_a_call_that_just_ended() {
    let base = 42600;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    for call in 1..=20 {
        relay.apply(simple_plan(call, base));
        send_rtp(&caller.rtp, at(base), 0xca, 1, 1, call as u32);
        assert_eq!(tag(&recv(&server.rtp).0), Some(call as u32));
        // The end of this call and the next one's ports, queued back to back: the shard runs the
        // second command right after the first, so the first must free the ports on its own.
        relay
            .relay
            .apply(tandem_media::session::MediaCommand::Remove { call });
    }
    relay.remove(20);
    assert!(relay
        .events
        .try_iter()
        .all(|e| !matches!(e, MediaEvent::BindFailed { .. })));
}
