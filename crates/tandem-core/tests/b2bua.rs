//! B2BUA scenarios driven through the sans-IO `Core` with virtual time: a caller, Tandem and two
//! media servers exchange real SIP text; the test plays the caller and the servers.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use std::time::Duration;
use support::*;
use tandem_core::{CallEvent, Peer, Transport};
use tandem_sip::{HeaderName, Method, ResponseBuilder};

#[test]
fn basic_call_crosses_two_independent_legs() {
    let mut net = Net::new();
    let (srv_invite, tag) = establish(&mut net, "call-1@caller");
    assert_ne!(
        srv_invite.call_id(),
        "call-1@caller",
        "the server leg has its own Call-ID"
    );
    assert_eq!(srv_invite.request_uri(), Some("sip:100@127.0.0.1:5070"));
    assert_eq!(srv_invite.max_forwards(), Some(69));
    assert_eq!(
        srv_invite.header(HeaderName::Other("X-Custom")).as_deref(),
        Some("kept as is")
    );
    assert!(srv_invite.body().starts_with(b"v=0"));
    assert_eq!(
        srv_invite.vias().len(),
        1,
        "the caller's Via does not leak to the server"
    );
    assert_eq!(net.core.active_calls(), 1);

    net.caller_sends(&in_dialog("BYE", "call-1@caller", "z9hG4bKc1bye", &tag, 2));
    let sent = net.drain();
    let bye = request_to(&sent, MS1, Method::Bye);
    assert_eq!(bye.call_id(), srv_invite.call_id());
    net.server_sends(MS1, answer(bye, 200, "OK", false));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![200]);
    assert_eq!(net.core.active_calls(), 0);
    let events = net.events();
    assert!(events.contains(&CallEvent::CallAnswered {
        call_id: "call-1@caller".into()
    }));
    assert!(events.contains(&CallEvent::CallEnded {
        call_id: "call-1@caller".into(),
        reason: "bye-caller".into()
    }));
}

#[test]
fn bye_from_the_server_reaches_the_caller_in_its_own_dialog() {
    let mut net = Net::new();
    let (srv_invite, tag) = establish(&mut net, "call-2@caller");
    let bye = format!(
        "BYE sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {MS1};branch=z9hG4bKs1bye\r\n\
         From: <sip:100@127.0.0.1:5070>;tag=srv1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        srv_invite.header(HeaderName::From).unwrap(),
        srv_invite.call_id()
    );
    net.server_sends(MS1, Bytes::from(bye));
    let sent = net.drain();
    let to_caller = request_to(&sent, CALLER, Method::Bye);
    assert_eq!(to_caller.call_id(), "call-2@caller");
    assert_eq!(to_caller.from_hdr().tag(), Some(tag.as_str()));
    assert_eq!(to_caller.to_hdr().tag(), Some("c1"));
    assert_eq!(to_caller.request_uri(), Some("sip:caller@127.0.0.1:5061"));
    let ok = ResponseBuilder::new(to_caller, 200, "OK").build();
    net.core
        .handle_message(net.now, ok, Peer::udp(addr(CALLER)));
    let sent = net.drain();
    assert_eq!(statuses(&sent, MS1), vec![200]);
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn a_503_is_retried_on_the_next_server_before_the_caller_sees_it() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-3@caller", "z9hG4bKc3", 70));
    let sent = net.drain();
    let first = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&first, 503, "Service Unavailable", false));
    let sent = net.drain();
    assert!(
        statuses(&sent, CALLER).is_empty(),
        "the caller sees nothing of the 503"
    );
    let second = request_to(&sent, MS2, Method::Invite).clone();
    assert_ne!(second.call_id(), first.call_id());
    net.server_sends(MS2, answer(&second, 200, "OK", true));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![200]);
}

#[test]
fn a_silent_server_is_skipped_after_the_invite_timeout() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-4@caller", "z9hG4bKc4", 70));
    let sent = net.drain();
    request_to(&sent, MS1, Method::Invite);
    net.advance(Duration::from_millis(2100));
    let sent = net.drain();
    let second = request_to(&sent, MS2, Method::Invite).clone();
    net.server_sends(MS2, answer(&second, 200, "OK", true));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
}

#[test]
fn every_server_failing_gives_the_caller_503() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-5@caller", "z9hG4bKc5", 70));
    let sent = net.drain();
    let first = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&first, 503, "Service Unavailable", false));
    let sent = net.drain();
    let second = request_to(&sent, MS2, Method::Invite).clone();
    net.server_sends(MS2, answer(&second, 503, "Service Unavailable", false));
    assert_eq!(statuses(&net.drain(), CALLER), vec![503]);
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn busy_is_relayed_to_the_caller() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-6@caller", "z9hG4bKc6", 70));
    let sent = net.drain();
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&inv, 486, "Busy Here", false));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![486]);
    assert!(
        only_to(&sent, MS1)
            .iter()
            .any(|m| m.method() == Some(&Method::Ack)),
        "hop-by-hop ACK for the 486"
    );
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn cancel_while_ringing() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-7@caller", "z9hG4bKc7", 70));
    let sent = net.drain();
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&inv, 180, "Ringing", false));
    net.drain();
    let cancel = format!(
        "CANCEL sip:100@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKc7\r\n\
         From: \"Caller\" <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>\r\nCall-ID: call-7@caller\r\n\
         CSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    net.caller_sends(&cancel);
    let sent = net.drain();
    let mut codes = statuses(&sent, CALLER);
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 487]);
    let srv_cancel = request_to(&sent, MS1, Method::Cancel);
    assert_eq!(srv_cancel.call_id(), inv.call_id());
    net.server_sends(MS1, answer(srv_cancel, 200, "OK", false));
    net.server_sends(MS1, answer(&inv, 487, "Request Terminated", false));
    net.drain();
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn max_forwards_zero_is_answered_483() {
    let mut net = Net::new();
    net.caller_sends(&invite("call-8@caller", "z9hG4bKc8", 0));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![483]);
    assert!(only_to(&sent, MS1).is_empty());
}

#[test]
fn options_to_tandem_itself_is_answered_200() {
    let mut net = Net::new();
    let options = format!(
        "OPTIONS sip:{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKo1\r\n\
         From: <sip:ping@{CALLER}>;tag=p1\r\nTo: <sip:{TANDEM}>\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    net.caller_sends(&options);
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
}

#[test]
fn garbage_is_counted_and_a_broken_request_gets_400() {
    let mut net = Net::new();
    net.caller_sends("\x00\x01 not sip at all");
    assert!(net.drain().is_empty());
    let broken = format!(
        "INVITE sip:100@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKb1\r\n\
         From: <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>\r\nCall-ID: broken-1\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 99999\r\n\r\n"
    );
    net.caller_sends(&broken);
    assert_eq!(statuses(&net.drain(), CALLER), vec![400]);
    assert_eq!(net.core.metrics().parse_errors, 2);
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn in_dialog_request_for_an_unknown_dialog_gets_481() {
    let mut net = Net::new();
    net.caller_sends(&in_dialog(
        "BYE",
        "nobody@caller",
        "z9hG4bKu1",
        "unknown",
        2,
    ));
    assert_eq!(statuses(&net.drain(), CALLER), vec![481]);
}

#[test]
fn hold_reinvite_and_info_cross_the_call() {
    let mut net = Net::new();
    let (srv_invite, tag) = establish(&mut net, "call-9@caller");
    let reinvite = invite("call-9@caller", "z9hG4bKc9re", 70)
        .replace(
            "To: <sip:100@127.0.0.1:5060>",
            &format!("To: <sip:100@127.0.0.1:5060>;tag={tag}"),
        )
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE");
    net.caller_sends(&reinvite);
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![100]);
    let srv_re = request_to(&sent, MS1, Method::Invite).clone();
    assert_eq!(srv_re.call_id(), srv_invite.call_id());
    assert_eq!(srv_re.cseq().seq, srv_invite.cseq().seq + 1);
    assert_eq!(
        srv_re.request_uri(),
        Some("sip:100@127.0.0.1:5070"),
        "the server's Contact is the target"
    );
    net.server_sends(MS1, answer(&srv_re, 200, "OK", true));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
    net.caller_sends(&in_dialog(
        "ACK",
        "call-9@caller",
        "z9hG4bKc9reack",
        &tag,
        2,
    ));
    let sent = net.drain();
    assert_eq!(
        request_to(&sent, MS1, Method::Ack).cseq().seq,
        srv_re.cseq().seq
    );

    net.caller_sends(&in_dialog(
        "INFO",
        "call-9@caller",
        "z9hG4bKc9info",
        &tag,
        3,
    ));
    let sent = net.drain();
    let info = request_to(&sent, MS1, Method::Info).clone();
    net.server_sends(MS1, answer(&info, 200, "OK", false));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);

    net.caller_sends(&in_dialog(
        "FOOBAR",
        "call-9@caller",
        "z9hG4bKc9foo",
        &tag,
        4,
    ));
    let sent = net.drain();
    let foo = only_to(&sent, MS1)
        .into_iter()
        .find(|m| m.method().map(|m| m.as_str()) == Some("FOOBAR"))
        .expect("unknown in-dialog methods are relayed");
    assert_eq!(foo.cseq().method.as_str(), "FOOBAR");
}

#[test]
fn a_server_that_stops_answering_probes_gets_no_new_calls() {
    let mut net = Net::with_probe_interval(Duration::from_secs(1));
    // ms1 never answers its probes, ms2 always does.
    for _ in 0..6 {
        net.advance(Duration::from_millis(500));
        for (to, msg) in net.drain() {
            if to == addr(MS2) && msg.method() == Some(&Method::Options) {
                net.server_sends(MS2, answer(&msg, 200, "OK", false));
            }
        }
    }
    let events = net.events();
    assert!(
        events.contains(&CallEvent::ServerHealthChanged {
            server: "ms1".into(),
            up: false
        }),
        "{events:?}"
    );
    let health = net.core.server_health();
    assert_eq!(
        health.iter().map(|h| h.up).collect::<Vec<_>>(),
        vec![false, true]
    );
    for n in 0..2 {
        net.caller_sends(&invite(
            &format!("probe-{n}@caller"),
            &format!("z9hG4bKp{n}"),
            70,
        ));
        let sent = net.drain();
        assert!(only_to(&sent, MS1)
            .iter()
            .all(|m| m.method() != Some(&Method::Invite)));
        request_to(&sent, MS2, Method::Invite);
    }
}

#[test]
fn a_large_invite_goes_over_tcp_and_falls_back_to_udp() {
    let mut net = Net::new();
    let padding = "x".repeat(1400);
    let big = invite("big-1@caller", "z9hG4bKbig", 70)
        .replace("X-Custom: kept as is", &format!("X-Pad: {padding}"));
    net.caller_sends(&big);
    let sent = net.drain_transports();
    let (dest, inv) = sent
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Invite))
        .unwrap();
    assert_eq!(dest.transport, Transport::Tcp, "RFC 3261 §18.1.1 size rule");
    assert!(inv.top_via().transport == tandem_sip::TransportKind::Tcp);
    let dest = *dest;
    net.core.handle_transport_error(net.now, dest);
    let sent = net.drain_transports();
    let (dest, inv) = sent
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Invite))
        .unwrap();
    assert_eq!(
        (dest.transport, dest.addr),
        (Transport::Udp, addr(MS1)),
        "same server, over UDP"
    );
    let inv = inv.clone();
    net.server_sends(MS1, answer(&inv, 200, "OK", true));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
}

#[test]
fn reliable_provisional_and_prack_cross_the_call() {
    let mut net = Net::new();
    let offer = invite("prack-1@caller", "z9hG4bKpr1", 70)
        .replace("X-Custom: kept as is", "Supported: 100rel")
        .replace("CSeq: 1 INVITE", "CSeq: 10 INVITE");
    net.caller_sends(&offer);
    let sent = net.drain();
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    assert_eq!(inv.header(HeaderName::Supported).as_deref(), Some("100rel"));
    let mut b = ResponseBuilder::new(&inv, 183, "Session Progress");
    b.to_tag("srv1")
        .header(HeaderName::Contact, "<sip:100@127.0.0.1:5070>")
        .header(HeaderName::Require, "100rel")
        .header(HeaderName::RSeq, "1")
        .body("application/sdp", b"v=0\r\no=ms 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8\r\n");
    net.server_sends(MS1, b.build());
    let sent = net.drain();
    let early = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(183))
        .unwrap();
    assert_eq!(early.header(HeaderName::RSeq).as_deref(), Some("1"));
    assert_eq!(early.header(HeaderName::Require).as_deref(), Some("100rel"));
    assert!(
        early.body().starts_with(b"v=0"),
        "early media SDP is relayed"
    );
    let tag = early.to_hdr().tag().unwrap().to_owned();

    let prack = in_dialog("PRACK", "prack-1@caller", "z9hG4bKpr1prack", &tag, 11)
        .replace("Max-Forwards: 70", "RAck: 1 10 INVITE\r\nMax-Forwards: 70");
    net.caller_sends(&prack);
    let sent = net.drain();
    let srv_prack = request_to(&sent, MS1, Method::Prack).clone();
    assert_eq!(
        srv_prack.header(HeaderName::RAck).as_deref(),
        Some("1 1 INVITE"),
        "RAck names the server leg's INVITE"
    );
    assert_eq!(srv_prack.to_hdr().tag(), Some("srv1"));
    net.server_sends(MS1, answer(&srv_prack, 200, "OK", false));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
    net.server_sends(MS1, answer(&inv, 200, "OK", true));
    assert_eq!(statuses(&net.drain(), CALLER), vec![200]);
}

#[test]
fn update_from_the_server_reaches_the_caller() {
    let mut net = Net::new();
    let (srv_invite, tag) = establish(&mut net, "upd-1@caller");
    let update = format!(
        "UPDATE sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {MS1};branch=z9hG4bKs1upd\r\n\
         From: <sip:100@127.0.0.1:5070>;tag=srv1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 UPDATE\r\n\
         Contact: <sip:100@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        srv_invite.header(HeaderName::From).unwrap(),
        srv_invite.call_id()
    );
    net.server_sends(MS1, Bytes::from(update));
    let sent = net.drain();
    let to_caller = request_to(&sent, CALLER, Method::Update).clone();
    assert_eq!(to_caller.from_hdr().tag(), Some(tag.as_str()));
    assert_eq!(
        to_caller
            .contacts()
            .first()
            .map(|c| c.uri.raw.to_owned())
            .as_deref(),
        Some("sip:127.0.0.1:5060"),
        "the caller sees Tandem's Contact, not the server's"
    );
    let ok = ResponseBuilder::new(&to_caller, 200, "OK").build();
    net.core
        .handle_message(net.now, ok, Peer::udp(addr(CALLER)));
    assert_eq!(statuses(&net.drain(), MS1), vec![200]);
    // An out-of-order CSeq from the server is refused (§12.2.2).
    let stale = format!(
        "INFO sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {MS1};branch=z9hG4bKs1old\r\n\
         From: <sip:100@127.0.0.1:5070>;tag=srv1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 4 INFO\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        srv_invite.header(HeaderName::From).unwrap(),
        srv_invite.call_id()
    );
    net.server_sends(MS1, Bytes::from(stale));
    assert_eq!(statuses(&net.drain(), MS1), vec![500]);
}

#[test]
fn responses_record_the_real_source_in_received_and_rport() {
    let mut net = Net::new();
    let natted = invite("nat-1@caller", "z9hG4bKnat", 70).replace(
        &format!("Via: SIP/2.0/UDP {CALLER};branch=z9hG4bKnat"),
        "Via: SIP/2.0/UDP 10.1.2.3:5099;branch=z9hG4bKnat;rport",
    );
    net.caller_sends(&natted);
    let sent = net.drain();
    let trying = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(100))
        .unwrap();
    let via = trying.top_via();
    assert_eq!(via.received, Some("127.0.0.1"));
    assert_eq!(via.rport, Some(Some(5061)));
    assert_eq!(via.branch, Some("z9hG4bKnat"));
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&inv, 200, "OK", true));
    let sent = net.drain();
    let ok = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .unwrap();
    assert_eq!(
        ok.top_via().received,
        Some("127.0.0.1"),
        "relayed responses are stamped too"
    );
    assert_eq!(ok.top_via().rport, Some(Some(5061)));
}

#[test]
fn a_server_that_rings_forever_is_cancelled_after_timer_c() {
    let mut net = Net::new();
    net.caller_sends(&invite("ring-1@caller", "z9hG4bKring", 70));
    let sent = net.drain();
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&inv, 180, "Ringing", false));
    net.drain();
    net.advance(Duration::from_secs(120));
    net.server_sends(MS1, answer(&inv, 180, "Ringing", false)); // restarts Timer C
    net.drain();
    net.advance(Duration::from_secs(120));
    assert!(
        statuses(&net.drain(), CALLER).is_empty(),
        "Timer C restarted by the second 180"
    );
    net.advance(Duration::from_secs(62));
    let sent = net.drain();
    let to_caller = statuses(&sent, CALLER);
    assert!(
        !to_caller.is_empty() && to_caller.iter().all(|c| *c == 408),
        "{to_caller:?} (retransmitted until ACKed)"
    );
    let cancel = request_to(&sent, MS1, Method::Cancel).clone();
    net.server_sends(MS1, answer(&cancel, 200, "OK", false));
    net.server_sends(MS1, answer(&inv, 487, "Request Terminated", false));
    net.drain();
    assert_eq!(net.core.active_calls(), 0);
}

#[test]
fn a_late_answer_from_an_abandoned_server_is_acknowledged_and_hung_up() {
    let mut net = Net::new();
    net.caller_sends(&invite("late-1@caller", "z9hG4bKlate", 70));
    let sent = net.drain();
    let first = request_to(&sent, MS1, Method::Invite).clone();
    net.advance(Duration::from_millis(2100));
    let sent = net.drain();
    request_to(&sent, MS2, Method::Invite);
    net.server_sends(MS1, answer(&first, 200, "OK", true));
    let sent = net.drain();
    let ack = request_to(&sent, MS1, Method::Ack);
    assert_eq!(ack.call_id(), first.call_id());
    assert_eq!(ack.to_hdr().tag(), Some("srv1"));
    let bye = request_to(&sent, MS1, Method::Bye);
    assert_eq!(bye.cseq().seq, first.cseq().seq + 1);
    assert!(
        statuses(&sent, CALLER).is_empty(),
        "the caller sees nothing of it"
    );
    assert_eq!(net.core.active_calls(), 1, "the call goes on with ms2");
}

#[test]
fn the_callers_record_route_is_echoed_in_responses() {
    let mut net = Net::new();
    let via_proxy = invite("rr-1@caller", "z9hG4bKrr", 70).replace(
        "X-Custom: kept as is",
        "Record-Route: <sip:127.0.0.1:5065;lr>",
    );
    net.caller_sends(&via_proxy);
    let sent = net.drain();
    let inv = request_to(&sent, MS1, Method::Invite).clone();
    assert!(
        inv.header(HeaderName::RecordRoute).is_none(),
        "the caller side's proxies stay hidden"
    );
    net.server_sends(MS1, answer(&inv, 200, "OK", true));
    let sent = net.drain();
    let ok = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .unwrap();
    assert_eq!(
        ok.header(HeaderName::RecordRoute).as_deref(),
        Some("<sip:127.0.0.1:5065;lr>")
    );
}

#[test]
fn with_every_server_down_a_new_call_gets_503_at_once() {
    let mut net = Net::with_probe_interval(Duration::from_secs(1));
    // Neither server answers its probes: both go down.
    for _ in 0..6 {
        net.advance(Duration::from_millis(500));
        net.drain();
    }
    assert!(net.core.server_health().iter().all(|h| !h.up));
    net.caller_sends(&invite("down-1@caller", "z9hG4bKdown", 70));
    let sent = net.drain();
    assert_eq!(statuses(&sent, CALLER), vec![100, 503]);
    assert!(sent
        .iter()
        .all(|(_, m)| m.method() != Some(&Method::Invite)));
    assert_eq!(net.core.active_calls(), 0);
    assert!(net.core.server_health().iter().all(|h| h.active_calls == 0));
}

/// The OPTIONS probes Tandem sent in `sent`.
fn probes(sent: &[(std::net::SocketAddr, tandem_sip::Message)]) -> Vec<&tandem_sip::Message> {
    sent.iter()
        .filter(|(_, m)| m.method() == Some(&Method::Options))
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn a_standby_sends_no_probes_and_shows_the_health_it_is_given() {
    let mut net = Net::with_probe_interval(Duration::from_secs(1));
    net.core.set_probing(net.now, false);
    for _ in 0..6 {
        net.advance(Duration::from_millis(500));
        assert!(probes(&net.drain()).is_empty(), "a standby probes nobody");
    }
    // Unanswered probes would have taken both servers down by now; nothing changed.
    assert!(net.core.server_health().iter().all(|h| h.up));
    assert!(net.events().is_empty());
    net.core.adopt_server_health(&[
        ("ms1".to_owned(), false),
        ("ms9".to_owned(), false), // not configured here: ignored
    ]);
    let health = net.core.server_health();
    assert_eq!(
        health.iter().map(|h| h.up).collect::<Vec<_>>(),
        vec![false, true]
    );
    assert!(
        net.events().is_empty(),
        "taken verdicts are not this node's news"
    );
}

#[test]
fn probes_stopped_midway_count_for_nothing_and_resume_at_once() {
    let mut net = Net::with_probe_interval(Duration::from_secs(1));
    // The start's probes fail unanswered (one failure each); the next ones are under way.
    net.advance(Duration::from_secs(1));
    let second = net.drain();
    net.core.set_probing(net.now, false);
    // ms1's refusal of the probes under way would be its second failure in a row and take it
    // down, had it counted; the missing answers do not count either.
    let to_ms1: Vec<_> = second
        .iter()
        .filter(|(to, m)| *to == addr(MS1) && m.method() == Some(&Method::Options))
        .map(|(_, m)| m.clone())
        .collect();
    assert!(!to_ms1.is_empty(), "{second:?}");
    for probe in &to_ms1 {
        net.server_sends(MS1, answer(probe, 503, "Busy", false));
    }
    for _ in 0..6 {
        net.advance(Duration::from_millis(500));
        net.drain();
    }
    assert!(net.core.server_health().iter().all(|h| h.up));
    net.core.adopt_server_health(&[("ms2".to_owned(), false)]);

    // Probing again (the node became active): every server at once, and the answers count (two
    // in a row bring a server up).
    net.core.set_probing(net.now, true);
    net.advance(Duration::from_millis(1));
    for round in 0..2 {
        if round > 0 {
            net.advance(Duration::from_secs(1));
        }
        let sent = net.drain();
        let mut probed = Vec::new();
        for (to, msg) in &sent {
            if msg.method() == Some(&Method::Options) {
                let server = if *to == addr(MS1) { MS1 } else { MS2 };
                net.server_sends(server, answer(msg, 200, "OK", false));
                probed.push(server);
            }
        }
        probed.sort_unstable();
        probed.dedup();
        assert_eq!(probed, vec![MS1, MS2], "round {round}: {sent:?}");
    }
    let events = net.events();
    assert!(
        events.contains(&CallEvent::ServerHealthChanged {
            server: "ms2".into(),
            up: true
        }),
        "{events:?}"
    );
    assert!(net.core.server_health().iter().all(|h| h.up));
}
