#![allow(clippy::unwrap_used)]
//! Symmetric RTP latching: NAT-rewritten ports, stray sources, relatching after silence, resignalling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_media::latch::{DropReason, Latch, LatchEvent, LatchPolicy, Verdict};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const SIGNALLED: &str = "203.0.113.10:4000";

fn policy() -> LatchPolicy {
    LatchPolicy {
        accept_any_ip: false,
        relatch_after: Duration::from_secs(2),
    }
}

#[test]
fn sends_to_the_signalled_address_until_a_packet_arrives() {
    let latch = Latch::new(addr(SIGNALLED), policy());
    assert_eq!(latch.destination(), addr(SIGNALLED));
    assert_eq!(latch.latched(), None);
}

#[test]
fn latches_to_the_nat_rewritten_source_port() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let natted = addr("203.0.113.10:61234");
    assert_eq!(latch.admit(t0, natted), Ok(LatchEvent::Latched(natted)));
    assert_eq!(latch.destination(), natted);
    assert_eq!(
        latch.on_packet(t0 + Duration::from_millis(20), natted),
        Verdict::Accept
    );
    assert_eq!(latch.counters().accepted, 2);
    assert_eq!(latch.last_seen(), Some(t0 + Duration::from_millis(20)));
}

#[test]
fn stray_ip_is_not_latched_and_is_counted() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let stray = addr("198.51.100.7:4000");
    assert_eq!(
        latch.on_packet(t0, stray),
        Verdict::Drop(DropReason::StrayIp)
    );
    assert_eq!(latch.latched(), None);
    assert_eq!(latch.destination(), addr(SIGNALLED));
    // Even long after, a foreign IP never takes the leg.
    assert_eq!(
        latch.on_packet(t0 + Duration::from_secs(60), stray),
        Verdict::Drop(DropReason::StrayIp)
    );
    assert_eq!(latch.counters().stray_ip, 2);
    assert_eq!(latch.counters().dropped(), 2);
}

#[test]
fn second_port_of_the_same_ip_is_dropped_while_the_latched_one_sends() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let first = addr("203.0.113.10:50000");
    let other = addr("203.0.113.10:50002");
    latch.on_packet(t0, first);
    let just_before = t0 + Duration::from_millis(1999);
    assert_eq!(
        latch.on_packet(just_before, other),
        Verdict::Drop(DropReason::StraySource)
    );
    assert_eq!(latch.destination(), first);
    assert_eq!(latch.counters().stray_source, 1);
}

#[test]
fn relatches_after_the_latched_source_falls_silent() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let old = addr("203.0.113.10:50000");
    let new = addr("203.0.113.10:50100");
    latch.on_packet(t0, old);
    latch.on_packet(t0 + Duration::from_secs(1), old);
    // Silent for 1.5 s only: not yet.
    let early = t0 + Duration::from_millis(2500);
    assert_eq!(
        latch.on_packet(early, new),
        Verdict::Drop(DropReason::StraySource)
    );
    // Silent for 2 s: the phone changed port.
    let later = t0 + Duration::from_secs(3);
    assert_eq!(
        latch.admit(later, new),
        Ok(LatchEvent::Relatched { from: old, to: new })
    );
    assert_eq!(latch.destination(), new);
    // The old port is now the stray one.
    let after = later + Duration::from_millis(20);
    assert_eq!(
        latch.on_packet(after, old),
        Verdict::Drop(DropReason::StraySource)
    );
    assert_eq!(latch.counters().relatches, 1);
}

#[test]
fn relatch_never_follows_a_foreign_ip() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    latch.on_packet(t0, addr("203.0.113.10:50000"));
    let stray = addr("198.51.100.7:50000");
    let much_later = t0 + Duration::from_secs(30);
    assert_eq!(
        latch.on_packet(much_later, stray),
        Verdict::Drop(DropReason::StrayIp)
    );
    assert_eq!(latch.latched(), Some(addr("203.0.113.10:50000")));
}

#[test]
fn accept_any_ip_latches_the_first_source() {
    let t0 = Instant::now();
    let policy = LatchPolicy {
        accept_any_ip: true,
        ..policy()
    };
    // A phone behind NAT signalled its private address.
    let mut latch = Latch::new(addr("192.168.1.20:4000"), policy);
    let public = addr("198.51.100.7:61000");
    assert_eq!(latch.on_packet(t0, public), Verdict::Accept);
    assert_eq!(latch.destination(), public);
    let intruder = addr("192.0.2.99:61000");
    let soon = t0 + Duration::from_millis(20);
    assert_eq!(
        latch.on_packet(soon, intruder),
        Verdict::Drop(DropReason::StraySource)
    );
}

#[test]
fn resignal_forgets_the_latched_source() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    latch.on_packet(t0, addr("203.0.113.10:50000"));
    // A re-INVITE moved the leg to another host.
    let moved = addr("203.0.113.20:6000");
    latch.resignal(moved);
    assert_eq!(latch.latched(), None);
    assert_eq!(latch.destination(), moved);
    let soon = t0 + Duration::from_millis(20);
    let old_host = addr("203.0.113.10:50000");
    assert_eq!(
        latch.on_packet(soon, old_host),
        Verdict::Drop(DropReason::StrayIp)
    );
    let new_source = addr("203.0.113.20:6002");
    assert_eq!(latch.on_packet(soon, new_source), Verdict::Accept);
    assert_eq!(latch.destination(), new_source);
    assert_eq!(latch.counters().accepted, 2);
}

#[test]
fn ipv4_mapped_source_matches_the_ipv4_signalled_address() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let mapped = addr("[::ffff:203.0.113.10]:4000");
    assert_eq!(latch.on_packet(t0, mapped), Verdict::Accept);
    let plain = addr("203.0.113.10:4000");
    let soon = t0 + Duration::from_millis(20);
    assert_eq!(latch.admit(soon, plain), Ok(LatchEvent::Same));
}

#[test]
fn a_presumed_source_is_sent_to_until_a_packet_latches() {
    let t0 = Instant::now();
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    let natted = addr("203.0.113.10:61234");
    latch.presume(natted);
    assert_eq!(latch.destination(), natted);
    assert_eq!(latch.latched(), None);
    // The presumption admits nothing by itself: the first packet latches, whatever its port.
    let other = addr("203.0.113.10:61300");
    assert_eq!(latch.admit(t0, other), Ok(LatchEvent::Latched(other)));
    assert_eq!(latch.destination(), other);
    // A latched leg ignores presumptions; resignalling forgets them.
    latch.presume(natted);
    assert_eq!(latch.destination(), other);
    latch.resignal(addr("203.0.113.10:5000"));
    assert_eq!(latch.destination(), addr("203.0.113.10:5000"));
}

#[test]
fn a_presumed_source_from_a_disallowed_ip_is_ignored() {
    let mut latch = Latch::new(addr(SIGNALLED), policy());
    latch.presume(addr("198.51.100.1:4000"));
    assert_eq!(latch.destination(), addr(SIGNALLED));
    let mut open = Latch::new(
        addr(SIGNALLED),
        LatchPolicy {
            accept_any_ip: true,
            ..policy()
        },
    );
    open.presume(addr("198.51.100.1:4000"));
    assert_eq!(open.destination(), addr("198.51.100.1:4000"));
}
