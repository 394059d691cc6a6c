//! Server transactions: 2xx retransmission and timers G, H, I, J, L; retransmission absorption;
//! reliable transports; matching rules.

use super::support::*;
use tandem_core::transaction::testing::{ack_for_2xx, request, response};
use tandem_core::transaction::{Incoming, TxEvent};
use tandem_core::Transport;
use tandem_sip::{HeaderName, Message, Method};

// ---- server INVITE ----

#[test]
fn server_2xx_is_retransmitted_t1_doubling_to_t2_until_the_ack_and_timer_l_ends_it() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-s");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    let ok = response(&inv, 200);
    b.respond(ms(0), tx, ok.clone());
    let ack = ack_for_2xx(&inv, &ok, "z9hG4bK-ack");
    let incoming = b.feed(ms(9_000), ack.clone(), uac_peer(Transport::Udp));
    assert!(
        matches!(incoming, Incoming::Ack { invite: Some(t), .. } if t == tx),
        "{incoming:?}"
    );
    // ACK retransmissions still reach the TU while Accepted lasts.
    assert!(matches!(
        b.feed(ms(9_100), ack, uac_peer(Transport::Udp)),
        Incoming::Ack {
            invite: Some(_),
            ..
        }
    ));
    b.run_to(ms(40_000));
    assert_eq!(
        b.times("SIP/2.0 200"),
        vec![ms(0), ms(500), ms(1_500), ms(3_500), ms(7_500)]
    );
    assert_eq!(b.events, vec![(64 * T1, TxEvent::Terminated { tx })]);
}

#[test]
fn unacknowledged_2xx_reports_no_ack_at_64_t1() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-l");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    b.respond(ms(100), tx, response(&inv, 200));
    b.run_to(ms(60_000));
    let expected: Vec<_> = backoff(T1, T2, 64 * T1)
        .into_iter()
        .map(|t| t + ms(100))
        .collect();
    assert_eq!(b.times("SIP/2.0 200"), expected);
    assert_eq!(
        b.events,
        vec![
            (ms(100) + 64 * T1, TxEvent::NoAck { tx }),
            (ms(100) + 64 * T1, TxEvent::Terminated { tx })
        ]
    );
}

#[test]
fn non_2xx_final_uses_timer_g_and_timer_h_reports_no_ack() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-g");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    b.respond(ms(0), tx, response(&inv, 486));
    b.run_to(ms(60_000));
    assert_eq!(b.times("SIP/2.0 486"), backoff(T1, T2, 64 * T1));
    assert_eq!(
        b.events,
        vec![
            (64 * T1, TxEvent::NoAck { tx }),
            (64 * T1, TxEvent::Terminated { tx })
        ]
    );
}

#[test]
fn ack_of_non_2xx_is_absorbed_and_timer_i_is_t4() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-i");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    b.respond(ms(0), tx, response(&inv, 486));
    // The hop-by-hop ACK: same branch as the INVITE.
    let ack = request(&Method::Ack, "z9hG4bK-i", inv.call_id(), 1, &[]);
    assert!(matches!(
        b.feed(ms(2_000), ack.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert!(matches!(
        b.feed(ms(2_100), ack, uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert!(matches!(
        b.feed(ms(2_200), inv, uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    b.run_to(ms(60_000));
    assert_eq!(
        b.times("SIP/2.0 486"),
        vec![ms(0), ms(500), ms(1_500)],
        "Confirmed re-sends nothing"
    );
    assert_eq!(b.events, vec![(ms(2_000) + T4, TxEvent::Terminated { tx })]);
}

#[test]
fn invite_retransmissions_resend_the_last_response() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-r");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    assert!(matches!(
        b.feed(ms(500), inv.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert!(b.sent.is_empty(), "nothing to re-send yet");
    b.respond(ms(600), tx, response(&inv, 100));
    b.respond(ms(700), tx, response(&inv, 180));
    assert!(matches!(
        b.feed(ms(1_500), inv.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert_eq!(b.times("SIP/2.0 180"), vec![ms(700), ms(1_500)]);
    b.respond(ms(2_000), tx, response(&inv, 486));
    assert!(matches!(
        b.feed(ms(2_100), inv.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert_eq!(b.times("SIP/2.0 486"), vec![ms(2_000), ms(2_100)]);
    assert!(
        b.layer.request(tx).is_none(),
        "the request is dropped once the final is sent"
    );
    let now = b.now;
    assert!(
        !b.layer.respond(now, tx, response(&inv, 200)),
        "one final only"
    );
}

// ---- server non-INVITE ----

#[test]
fn server_non_invite_resends_last_response_and_timer_j_is_64_t1() {
    let mut b = Bench::new();
    let opt = options("z9hG4bK-j");
    let tx = b.server_tx(ms(0), opt.clone(), Transport::Udp);
    assert!(matches!(
        b.feed(ms(500), opt.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    b.respond(ms(600), tx, response(&opt, 200));
    assert!(matches!(
        b.feed(ms(1_500), opt, uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert_eq!(b.times("SIP/2.0 200"), vec![ms(600), ms(1_500)]);
    b.run_to(ms(60_000));
    assert_eq!(
        b.events,
        vec![(ms(600) + 64 * T1, TxEvent::Terminated { tx })]
    );
}

// ---- reliable transport ----

#[test]
fn reliable_transport_sends_once_and_uses_zero_duration_timers() {
    let mut b = Bench::new();
    let inv_tx = b.start(invite("z9hG4bK-t1"), Transport::Tcp);
    let opt_tx = b.start(options("z9hG4bK-t2"), Transport::Tcp);
    let inv = b.layer.request(inv_tx).unwrap().clone();
    let opt = b.layer.request(opt_tx).unwrap().clone();
    b.feed(ms(1_000), response(&inv, 486), uas_peer(Transport::Tcp));
    b.feed(ms(1_000), response(&opt, 200), uas_peer(Transport::Tcp));
    assert_eq!(
        b.layer.poll_timeout(),
        Some(b.t0 + ms(1_000)),
        "D and K are zero"
    );
    b.run_to(ms(1_000));
    assert_eq!(b.event_times(is_terminated), vec![ms(1_000), ms(1_000)]);

    let s_inv = invite("z9hG4bK-t3");
    let s_ok = b.server_tx(ms(2_000), s_inv.clone(), Transport::Tcp);
    b.respond(ms(2_000), s_ok, response(&s_inv, 200));
    let s_bad_inv = invite("z9hG4bK-t4");
    let s_bad = b.server_tx(ms(2_000), s_bad_inv.clone(), Transport::Tcp);
    b.respond(ms(2_000), s_bad, response(&s_bad_inv, 486));
    b.feed(
        ms(3_000),
        request(&Method::Ack, "z9hG4bK-t4", s_bad_inv.call_id(), 1, &[]),
        uac_peer(Transport::Tcp),
    );
    let s_opt = b.server_tx(ms(3_000), options("z9hG4bK-t5"), Transport::Tcp);
    b.respond(
        ms(3_000),
        s_opt,
        response(b.layer.request(s_opt).unwrap(), 200),
    );
    b.run_to(ms(120_000));

    assert_eq!(b.times("INVITE"), vec![ms(0)]);
    assert_eq!(b.times("OPTIONS"), vec![ms(0)]);
    assert_eq!(b.times("ACK"), vec![ms(1_000)]);
    assert_eq!(
        b.times("SIP/2.0 200"),
        vec![ms(2_000), ms(3_000)],
        "no 2xx retransmission"
    );
    assert_eq!(b.times("SIP/2.0 486"), vec![ms(2_000)], "no Timer G");
    // I and J are zero; L keeps its 64·T1 (it absorbs INVITE retransmissions and passes ACKs).
    let ends = |tx| {
        b.events
            .iter()
            .find(|(_, e)| *e == TxEvent::Terminated { tx })
            .map(|(t, _)| *t)
    };
    assert_eq!(ends(s_bad), Some(ms(3_000)));
    assert_eq!(ends(s_opt), Some(ms(3_000)));
    assert_eq!(ends(s_ok), Some(ms(2_000) + 64 * T1));
    assert_eq!(b.event_times(is_no_ack), vec![ms(2_000) + 64 * T1]);
    assert!(b.layer.is_empty());
}

// ---- matching ----

#[test]
fn responses_match_by_branch_and_cseq_method_only() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-x"), Transport::Udp);
    let req = b.layer.request(tx).unwrap().clone();
    let other_branch = response(&invite("z9hG4bK-y"), 200);
    assert!(matches!(
        b.feed(ms(10), other_branch, uas_peer(Transport::Udp)),
        Incoming::StrayResponse { .. }
    ));
    // Same branch, other method: not this transaction.
    let bye = request(&Method::Bye, "z9hG4bK-x", req.call_id(), 1, &[]);
    assert!(matches!(
        b.feed(ms(20), response(&bye, 200), uas_peer(Transport::Udp)),
        Incoming::StrayResponse { .. }
    ));
    assert!(matches!(
        b.feed(ms(30), response(&req, 200), uas_peer(Transport::Udp)),
        Incoming::Response { .. }
    ));
}

#[test]
fn rfc2543_requests_match_on_call_id_cseq_from_tag_uri_and_via() {
    let mut b = Bench::new();
    let legacy = request(&Method::Invite, "1234", "legacy@10.0.0.1", 3, &[]);
    let tx = b.server_tx(ms(0), legacy.clone(), Transport::Udp);
    b.respond(ms(10), tx, response(&legacy, 486));
    assert!(matches!(
        b.feed(ms(500), legacy.clone(), uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    let ack = request(&Method::Ack, "1234", "legacy@10.0.0.1", 3, &[]);
    assert!(matches!(
        b.feed(ms(600), ack, uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    let next = request(&Method::Invite, "1234", "legacy@10.0.0.1", 4, &[]);
    assert!(matches!(
        b.feed(ms(700), next, uac_peer(Transport::Udp)),
        Incoming::Request { .. }
    ));
}

#[test]
fn same_branch_from_another_sent_by_is_another_transaction() {
    let mut b = Bench::new();
    let a = options("z9hG4bK-sb");
    let via = "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK-sb";
    let other = Message::parse(
        a.edit()
            .pop_first_value(HeaderName::Via)
            .push_front(HeaderName::Via, via)
            .finish(),
    )
    .unwrap();
    let first = b.server_tx(ms(0), a, Transport::Udp);
    let second = b.server_tx(ms(1), other, Transport::Udp);
    assert_ne!(first, second);
}
