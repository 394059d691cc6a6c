#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use std::time::Duration;
use tandem_media::ports::PortPair;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn endpoint(remote: Option<&str>, mux: bool) -> EndpointPlan {
    let remote_rtp = remote.map(addr);
    EndpointPlan {
        local: PortPair::from_rtp(30000).unwrap(),
        remote_rtp,
        remote_rtcp: remote_rtp.map(|rtp| match mux {
            true => rtp,
            false => SocketAddr::new(rtp.ip(), rtp.port() + 1),
        }),
        rtcp_mux: mux,
        ..EndpointPlan::unsignalled(PortPair::from_rtp(30000).unwrap())
    }
}

const STRICT: LatchPolicy = LatchPolicy {
    accept_any_ip: false,
    relatch_after: Duration::from_secs(2),
};
const ANY_IP: LatchPolicy = LatchPolicy {
    accept_any_ip: true,
    relatch_after: Duration::from_secs(2),
};

/// Caller signalled 10.0.0.1:4000 (no mux), server 10.0.0.2:6000 with rtcp-mux.
fn pair(now: Instant) -> (SideFlow, SideFlow) {
    (
        SideFlow::new(&endpoint(Some("10.0.0.1:4000"), false), STRICT, 8000, now),
        SideFlow::new(&endpoint(Some("10.0.0.2:6000"), true), STRICT, 8000, now),
    )
}

fn rtp(ssrc: u32, sequence: u16, timestamp: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[0xd5; 160]);
    packet
}

/// An RR from `sender` with one report block about `reportee`.
fn receiver_report(sender: u32, reportee: u32) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, 7];
    packet.extend_from_slice(&sender.to_be_bytes());
    packet.extend_from_slice(&reportee.to_be_bytes());
    packet.extend_from_slice(&[0; 20]);
    packet
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn rtp_from_the_signalled_source_goes_to_the_other_side_unchanged() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    let mut packet = rtp(0xaaaa, 10, 1000);
    let original = packet.clone();
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtp,
        addr("10.0.0.1:4000"),
        now,
        &mut packet,
    );
    assert_eq!(outcome.latched, Some((Port::Rtp, addr("10.0.0.1:4000"))));
    assert!(!outcome.reanchored);
    assert_eq!(
        outcome.action,
        Action::Forward {
            port: Port::Rtp,
            destination: addr("10.0.0.2:6000"),
            rtcp: false
        }
    );
    assert_eq!(packet, original);
    assert_eq!(caller.counters.packets_received, 1);
    assert_eq!(caller.stats().packets(), 1);
    assert_eq!(caller.last_packet(), Some(now));
}

#[test]
fn a_stray_ip_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    let mut packet = rtp(1, 1, 1);
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtp,
        addr("10.9.9.9:4000"),
        now,
        &mut packet,
    );
    assert_eq!(outcome.action, Action::Drop(DropCause::Stray));
    assert_eq!(caller.counters.stray_dropped, 1);
    assert_eq!(caller.latched(), None);
}

#[test]
fn an_unsignalled_side_latches_only_when_any_ip_is_accepted() {
    let now = Instant::now();
    let (_, mut server) = pair(now);
    let mut strict = SideFlow::new(&endpoint(None, false), STRICT, 8000, now);
    let mut packet = rtp(1, 1, 1);
    let source = addr("192.0.2.7:5555");
    let outcome = forward(
        &mut strict,
        &mut server,
        Port::Rtp,
        source,
        now,
        &mut packet,
    );
    assert_eq!(outcome.action, Action::Drop(DropCause::Stray));
    assert!(!strict.has_destination());

    let mut open = SideFlow::new(&endpoint(None, false), ANY_IP, 8000, now);
    let outcome = forward(&mut open, &mut server, Port::Rtp, source, now, &mut packet);
    assert_eq!(outcome.latched, Some((Port::Rtp, source)));
    assert!(open.has_destination());
    assert_eq!(open.latched(), Some(source));
}

#[test]
fn nothing_goes_toward_a_side_on_hold() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    server.update(&endpoint(None, true), 8000, now);
    let mut packet = rtp(1, 1, 1);
    let source = addr("10.0.0.1:4000");
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtp,
        source,
        now,
        &mut packet,
    );
    assert_eq!(outcome.action, Action::Drop(DropCause::NoDestination));
    assert!(!server.has_destination());
}

#[test]
fn rtcp_is_told_from_rtp_on_the_rtp_port_and_routed_by_the_receivers_mux() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    // Server (muxed) sends RTCP on its RTP port: it leaves through the caller's RTCP port.
    let mut packet = receiver_report(7, 8);
    let outcome = forward(
        &mut server,
        &mut caller,
        Port::Rtp,
        addr("10.0.0.2:6000"),
        now,
        &mut packet,
    );
    assert_eq!(
        outcome.action,
        Action::Forward {
            port: Port::Rtcp,
            destination: addr("10.0.0.1:4001"),
            rtcp: true
        }
    );
    assert_eq!(server.counters.rtcp_received, 1);
    assert_eq!(server.counters.packets_received, 0);
    // Caller sends RTCP on its RTCP port: it leaves through the server's RTP port (mux).
    let mut packet = receiver_report(9, 10);
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtcp,
        addr("10.0.0.1:4001"),
        now,
        &mut packet,
    );
    assert_eq!(
        outcome.action,
        Action::Forward {
            port: Port::Rtp,
            destination: addr("10.0.0.2:6000"),
            rtcp: true
        }
    );
}

#[test]
fn a_new_server_source_continues_the_callers_stream_and_rtcp_follows() {
    let start = Instant::now();
    let (mut caller, mut server) = pair(start);
    let old = addr("10.0.0.2:6000");
    for i in 0..5u16 {
        let mut packet = rtp(0x1111, 100 + i, 160 * u32::from(i));
        let outcome = forward(&mut server, &mut caller, Port::Rtp, old, start, &mut packet);
        assert!(matches!(outcome.action, Action::Forward { .. }));
    }
    // Failover: the server side is signalled anew and a new source with a new SSRC sends.
    let later = start + Duration::from_millis(100);
    server.update(&endpoint(Some("10.0.0.3:7000"), true), 8000, later);
    let new = addr("10.0.0.3:7000");
    let mut packet = rtp(0x2222, 9000, 555_555);
    let outcome = forward(&mut server, &mut caller, Port::Rtp, new, later, &mut packet);
    assert_eq!(outcome.latched, Some((Port::Rtp, new)));
    assert!(
        outcome.reanchored,
        "the caller's stream now maps another source"
    );
    assert!(matches!(outcome.action, Action::Forward { .. }));
    assert_eq!(be32(&packet, 8), 0x1111);
    assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 105);
    assert_ne!(
        packet[1] & 0x80,
        0,
        "marker on the first packet after the switch"
    );

    // The new server's RTCP names its real SSRC; the caller must see the one it knows.
    let mut report = receiver_report(0x2222, 0x3333);
    forward(&mut server, &mut caller, Port::Rtp, new, later, &mut report);
    assert_eq!(be32(&report, 4), 0x1111);
    // The caller's report about 0x1111 reaches the server as a report about 0x2222.
    let mut report = receiver_report(0x4444, 0x1111);
    let source = addr("10.0.0.1:4001");
    forward(
        &mut caller,
        &mut server,
        Port::Rtcp,
        source,
        later,
        &mut report,
    );
    assert_eq!(be32(&report, 8), 0x2222);
}

#[test]
fn packets_that_are_neither_rtp_nor_rtcp_are_malformed() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    let source = addr("10.0.0.1:4000");
    let cases: [&[u8]; 5] = [
        &[],
        &[0x80],
        &[0x00; 40],
        &[0x80, 0x00, 0, 1, 0, 0, 0, 1, 0, 0, 0],
        &[0x81, 201, 0, 1],
    ];
    for case in cases {
        let mut packet = case.to_vec();
        let outcome = forward(
            &mut caller,
            &mut server,
            Port::Rtp,
            source,
            now,
            &mut packet,
        );
        assert_eq!(
            outcome.action,
            Action::Drop(DropCause::Malformed),
            "{case:?}"
        );
        assert_eq!(packet, case);
    }
}

#[test]
fn unwalkable_rtcp_is_relayed_untouched() {
    let now = Instant::now();
    let (mut caller, mut server) = pair(now);
    let mut packet = receiver_report(1, 2);
    packet.extend_from_slice(&[0x12, 0x34, 0x56]);
    let original = packet.clone();
    let source = addr("10.0.0.1:4001");
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtcp,
        source,
        now,
        &mut packet,
    );
    assert!(matches!(outcome.action, Action::Forward { rtcp: true, .. }));
    assert_eq!(packet, original);
}

#[test]
fn payload_length_skips_csrcs_extension_and_padding() {
    let mut packet = vec![0xb1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&[0; 4]); // one CSRC
    packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 0, 0, 0, 0]); // extension of one word
    packet.extend_from_slice(&[7; 10]); // payload
    packet.extend_from_slice(&[0, 0, 3]); // padding
    assert_eq!(payload_len(&packet), 10);
    assert_eq!(payload_len(&[0xbf, 0, 0]), 0);
}

#[test]
fn a_side_created_with_latched_sources_is_reached_there_before_it_sends() {
    let now = Instant::now();
    // A caller behind NAT: its SDP says 10.0.0.1:4000, the node before latched :61000 / :61001.
    let plan = EndpointPlan {
        latched_rtp: Some(addr("10.0.0.1:61000")),
        latched_rtcp: Some(addr("10.0.0.1:61001")),
        ..endpoint(Some("10.0.0.1:4000"), false)
    };
    let mut caller = SideFlow::new(&plan, ANY_IP, 8000, now);
    let mut server = SideFlow::new(&endpoint(Some("10.0.0.2:6000"), false), STRICT, 8000, now);
    let server_source = addr("10.0.0.2:6000");
    let mut packet = rtp(7, 1, 1);
    let outcome = forward(
        &mut server,
        &mut caller,
        Port::Rtp,
        server_source,
        now,
        &mut packet,
    );
    assert_eq!(
        outcome.action,
        Action::Forward {
            port: Port::Rtp,
            destination: addr("10.0.0.1:61000"),
            rtcp: false
        }
    );
    let mut report = receiver_report(7, 8);
    let outcome = forward(
        &mut server,
        &mut caller,
        Port::Rtcp,
        addr("10.0.0.2:6001"),
        now,
        &mut report,
    );
    assert_eq!(outcome.latched, Some((Port::Rtcp, addr("10.0.0.2:6001"))));
    assert_eq!(
        outcome.action,
        Action::Forward {
            port: Port::Rtcp,
            destination: addr("10.0.0.1:61001"),
            rtcp: true
        }
    );
    // The caller's first packet latches as usual; the report is what the relay learned.
    let mut packet = rtp(9, 1, 1);
    let outcome = forward(
        &mut caller,
        &mut server,
        Port::Rtp,
        addr("10.0.0.1:61000"),
        now,
        &mut packet,
    );
    assert_eq!(outcome.latched, Some((Port::Rtp, addr("10.0.0.1:61000"))));
    assert_eq!(caller.latched(), Some(addr("10.0.0.1:61000")));
}

#[test]
fn a_side_created_with_an_outbound_stream_carries_it_on() {
    let start = Instant::now();
    let (mut caller, mut server) = pair(start);
    let source = addr("10.0.0.2:6000");
    // The stream toward the caller switched from SSRC 0x1111 to 0x2222 on this node.
    for (i, ssrc) in [(0u16, 0x1111), (1, 0x1111), (2, 0x2222), (3, 0x2222)] {
        let mut packet = rtp(ssrc, 100 * i, 160 * u32::from(i));
        let at = start + Duration::from_millis(20 * u64::from(i));
        let outcome = forward(&mut server, &mut caller, Port::Rtp, source, at, &mut packet);
        assert_eq!(outcome.reanchored, i == 2);
    }
    let at = start + Duration::from_millis(80);
    let snapshot = caller.outbound_snapshot(at).unwrap();
    let mut expected = rtp(0x2222, 301, 4 * 160);
    forward(
        &mut server,
        &mut caller,
        Port::Rtp,
        source,
        at,
        &mut expected,
    );

    // Another node creates the caller side from the replicated plan.
    let plan = EndpointPlan {
        outbound: Some(snapshot),
        ..endpoint(Some("10.0.0.1:4000"), false)
    };
    let mut taken_over = SideFlow::new(&plan, STRICT, 8000, at);
    let (_, mut server) = pair(at);
    let mut packet = rtp(0x2222, 301, 4 * 160);
    let outcome = forward(
        &mut server,
        &mut taken_over,
        Port::Rtp,
        source,
        at,
        &mut packet,
    );
    assert!(!outcome.reanchored);
    assert_eq!(packet, expected);
    assert_eq!(be32(&packet, 8), 0x1111);
}

proptest! {
    #[test]
    fn no_bytes_make_it_panic(
        packets in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>(), any::<bool>(), 0u64..3000),
            1..40,
        )
    ) {
        let start = Instant::now();
        let (mut caller, mut server) = pair(start);
        for (mut packet, from_caller, rtcp_port, millis) in packets {
            let now = start + Duration::from_millis(millis);
            let port = if rtcp_port { Port::Rtcp } else { Port::Rtp };
            let (from, to, source) = match from_caller {
                true => (&mut caller, &mut server, addr("10.0.0.1:4000")),
                false => (&mut server, &mut caller, addr("10.0.0.2:6000")),
            };
            let len = packet.len();
            forward(from, to, port, source, now, &mut packet);
            prop_assert_eq!(packet.len(), len);
        }
    }
}
