//! Media anchoring through the sans-IO `Core`: every offer and answer crossing a call is moved onto
//! Tandem's relay ports, and the data plane is told where each side wants its media.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tandem_core::Peer;
use tandem_media::session::{MediaCommand, MediaEvent, MediaSide, SessionPlan};
use tandem_sdp::Sdp;
use tandem_sip::{HeaderName, Message, Method, ResponseBuilder};

/// The (address, first m= port) an SDP body names.
fn sdp_target(msg: &Message) -> (String, u16) {
    let body = msg.body();
    let sdp = Sdp::parse(&body).unwrap();
    let ip = sdp.effective_connection(0).unwrap().ip.unwrap().to_string();
    (ip, sdp.media()[0].port)
}

fn plans(net: &mut Net) -> Vec<MediaCommand> {
    std::iter::from_fn(|| net.core.poll_media()).collect()
}

fn last_plan(net: &mut Net) -> SessionPlan {
    plans(net)
        .into_iter()
        .rev()
        .find_map(|c| match c {
            MediaCommand::Apply(plan) => Some(plan),
            MediaCommand::Remove { .. } | MediaCommand::Prepare(_) => None,
        })
        .expect("a media plan")
}

fn sock(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn offer_and_answer_are_anchored_on_tandems_ports_and_released_at_the_end() {
    let mut net = Net::new();
    net.caller_sends(&invite("m1@caller", "z9hG4bKm1", 70));
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    let (ip, server_facing) = sdp_target(&srv_invite);
    assert_eq!(ip, "127.0.0.1");
    assert!((30000..=30999).contains(&server_facing), "{server_facing}");
    let plan = last_plan(&mut net);
    assert_eq!(plan.call_id, "m1@caller");
    assert_eq!(plan.streams.len(), 1);
    let stream = plan.streams[0];
    assert_eq!(stream.server.local.rtp(), server_facing);
    assert_eq!(stream.caller.remote_rtp, sock("127.0.0.1:16000"));
    assert_eq!(stream.caller.remote_rtcp, sock("127.0.0.1:16001"));
    assert_eq!(stream.server.remote_rtp, None, "no answer yet");

    net.server_sends(MS1, answer(&srv_invite, 200, "OK", true));
    let sent = net.drain();
    let ok = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .unwrap()
        .clone();
    let (ip, caller_facing) = sdp_target(&ok);
    assert_eq!(ip, "127.0.0.1");
    assert_eq!(caller_facing, stream.caller.local.rtp());
    assert_ne!(caller_facing, server_facing);
    assert_eq!(
        ok.header(HeaderName::ContentLength)
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        ok.body().len()
    );
    let plan = last_plan(&mut net);
    assert_eq!(plan.streams[0].server.remote_rtp, sock("127.0.0.1:20000"));
    assert_eq!(net.core.media_ports().unwrap().0, 2);

    let tag = ok.to_hdr().tag().unwrap().to_owned();
    net.caller_sends(&in_dialog("ACK", "m1@caller", "z9hG4bKm1ack", &tag, 1));
    net.caller_sends(&in_dialog("BYE", "m1@caller", "z9hG4bKm1bye", &tag, 2));
    let sent = net.drain();
    let bye = request_to(&sent, MS1, Method::Bye);
    net.server_sends(MS1, answer(bye, 200, "OK", false));
    net.drain();
    assert!(plans(&mut net).contains(&MediaCommand::Remove { call: plan.call }));
    assert_eq!(
        net.core.media_ports().unwrap().0,
        0,
        "ports back in the range"
    );
}

#[test]
fn a_failover_keeps_tandems_ports_and_learns_the_new_server() {
    let mut net = Net::new();
    net.caller_sends(&invite("m2@caller", "z9hG4bKm2", 70));
    let sent = net.drain();
    let first = request_to(&sent, MS1, Method::Invite).clone();
    net.server_sends(MS1, answer(&first, 503, "Service Unavailable", false));
    let sent = net.drain();
    let second = request_to(&sent, MS2, Method::Invite).clone();
    assert_eq!(sdp_target(&first), sdp_target(&second));
    assert_eq!(
        first.body(),
        second.body(),
        "the same offer, same o= version"
    );
    assert_eq!(net.core.media_ports().unwrap().0, 2);
}

#[test]
fn a_hold_reinvite_from_the_server_passes_its_hold_address_through() {
    let mut net = Net::new();
    let (srv_invite, _tag) = establish(&mut net, "m3@caller");
    plans(&mut net);
    let sdp = "v=0\r\no=ms 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8\r\na=sendonly\r\n";
    let reinvite = format!(
        "INVITE sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {MS1};branch=z9hG4bKs1hold\r\n\
         From: <sip:100@127.0.0.1:5070>;tag=srv1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 INVITE\r\n\
         Contact: <sip:100@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        srv_invite.header(HeaderName::From).unwrap(),
        srv_invite.call_id(),
        sdp.len()
    );
    net.server_sends(MS1, Bytes::from(reinvite));
    let sent = net.drain();
    let to_caller = request_to(&sent, CALLER, Method::Invite);
    let body = String::from_utf8(to_caller.body().to_vec()).unwrap();
    assert!(body.contains("c=IN IP4 0.0.0.0\r\n"), "{body}");
    assert!(body.contains("a=sendonly\r\n"));
    assert!(
        body.contains("o=ms 1 3 IN IP4"),
        "version bumped once: {body}"
    );
    let plan = last_plan(&mut net);
    assert_eq!(
        plan.streams[0].server.remote_rtp, None,
        "nothing sent to a held side"
    );

    // The held server is not expected to send: its silence is no failure.
    net.core.handle_media_event(
        net.now,
        MediaEvent::Inactive {
            call: plan.call,
            side: MediaSide::Server,
        },
    );
    assert!(net.drain().is_empty());
    assert_eq!(net.core.metrics().server_media_silences, 0);
}

#[test]
fn a_late_offer_is_anchored_in_the_200_and_its_answer_in_the_ack() {
    let mut net = Net::new();
    let invite = format!(
        "INVITE sip:100@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKlate\r\n\
         From: <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>\r\nCall-ID: m4@caller\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    net.caller_sends(&invite);
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite).clone();
    assert!(srv_invite.body().is_empty());
    net.server_sends(MS1, answer(&srv_invite, 200, "OK", true));
    let sent = net.drain();
    let ok = only_to(&sent, CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200))
        .unwrap()
        .clone();
    let (_, caller_facing) = sdp_target(&ok);
    let sdp = "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16100 RTP/AVP 8\r\n";
    let ack = format!(
        "ACK sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKlateack\r\n\
         From: <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>;tag={}\r\nCall-ID: m4@caller\r\n\
         CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        ok.to_hdr().tag().unwrap(),
        sdp.len()
    );
    net.caller_sends(&ack);
    let sent = net.drain();
    let srv_ack = request_to(&sent, MS1, Method::Ack);
    let plan = last_plan(&mut net);
    let stream = plan.streams[0];
    assert_eq!(sdp_target(srv_ack).1, stream.server.local.rtp());
    assert_eq!(caller_facing, stream.caller.local.rtp());
    assert_eq!(stream.caller.remote_rtp, sock("127.0.0.1:16100"));
    assert_eq!(stream.server.remote_rtp, sock("127.0.0.1:20000"));
}

#[test]
fn a_silent_caller_ends_the_call_a_silent_server_gets_probed() {
    let mut net = Net::new();
    establish(&mut net, "m5@caller");
    let call = last_plan(&mut net).call;
    // The probes sent at start time out unanswered; the next is an hour away.
    net.advance(Duration::from_millis(600));
    net.drain();

    net.core.handle_media_event(
        net.now,
        MediaEvent::Inactive {
            call,
            side: MediaSide::Server,
        },
    );
    let sent = net.drain();
    assert_eq!(net.core.metrics().server_media_silences, 1);
    assert!(
        sent.iter()
            .any(|(to, m)| *to == addr(MS1) && m.method() == Some(&Method::Options)),
        "the silent server is probed at once"
    );
    assert_eq!(net.core.active_calls(), 1, "the call stays up");

    net.core.handle_media_event(
        net.now,
        MediaEvent::Inactive {
            call,
            side: MediaSide::Caller,
        },
    );
    let sent = net.drain();
    request_to(&sent, CALLER, Method::Bye);
    request_to(&sent, MS1, Method::Bye);
    assert_eq!(net.core.active_calls(), 0);
    assert_eq!(net.core.metrics().media_timeouts, 1);
    assert!(plans(&mut net).contains(&MediaCommand::Remove { call }));
}

#[test]
fn an_unreadable_sdp_is_forwarded_unchanged_and_counted() {
    let mut net = Net::new();
    let body = "this is not SDP";
    let invite = format!(
        "INVITE sip:100@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKbad\r\n\
         From: <sip:caller@{CALLER}>;tag=c1\r\nTo: <sip:100@{TANDEM}>\r\nCall-ID: m6@caller\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    net.caller_sends(&invite);
    let sent = net.drain();
    let srv_invite = request_to(&sent, MS1, Method::Invite);
    assert_eq!(&srv_invite.body()[..], body.as_bytes());
    assert_eq!(net.core.media_metrics().unwrap().sdp_unanchored, 1);
    assert_eq!(net.core.media_ports().unwrap().0, 0);
    // The call itself goes on.
    let ok = ResponseBuilder::new(srv_invite, 486, "Busy Here").build();
    net.core.handle_message(net.now, ok, Peer::udp(addr(MS1)));
    assert_eq!(statuses(&net.drain(), CALLER), vec![486]);
}
