//! Client transactions: timers A, B, D, M (INVITE), E, F, K (non-INVITE), the layer's ACK, transport errors.

use super::support::*;
use bytes::Bytes;
use std::time::Duration;
use tandem_core::transaction::testing::{request, response};
use tandem_core::transaction::{Incoming, TxEvent};
use tandem_core::{Peer, Transport};
use tandem_sip::{HeaderName, Message, Method};

// ---- client INVITE ----

#[test]
fn timer_a_doubles_from_t1_until_timer_b_fires_at_64_t1() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-a"), Transport::Udp);
    b.run_to(ms(40_000));
    assert_eq!(b.times("INVITE"), backoff(T1, Duration::MAX, 64 * T1));
    assert_eq!(b.times("INVITE").last(), Some(&ms(31_500)));
    assert_eq!(
        b.events,
        vec![
            (64 * T1, TxEvent::Timeout { tx }),
            (64 * T1, TxEvent::Terminated { tx })
        ]
    );
    assert!(b.layer.is_empty());
}

#[test]
fn provisional_stops_timer_a_and_timer_b() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-a"), Transport::Udp);
    let req = b.layer.request(tx).unwrap().clone();
    assert!(matches!(
        b.feed(ms(700), response(&req, 180), uas_peer(Transport::Udp)),
        Incoming::Response { .. }
    ));
    b.run_to(ms(100_000));
    assert_eq!(b.times("INVITE"), vec![ms(0), ms(500)]);
    assert!(
        b.events.is_empty(),
        "Proceeding waits for the final: {:?}",
        b.events
    );
    assert_eq!(b.layer.len(), 1);
}

#[test]
fn non_2xx_final_is_acked_by_the_layer_with_the_rfc_headers_and_timer_d_is_32s() {
    let route = [(HeaderName::Route, "<sip:proxy.example.com;lr>")];
    let inv = request(&Method::Invite, "z9hG4bK-d", "call-d@10.0.0.1", 5, &route);
    let mut b = Bench::new();
    let tx = b.start(inv.clone(), Transport::Udp);
    let busy = response(&inv, 486);
    assert!(
        matches!(b.feed(ms(200), busy.clone(), uas_peer(Transport::Udp)), Incoming::Response { tx: t, .. } if t == tx)
    );
    // The final's retransmission is absorbed and ACKed again.
    assert!(matches!(
        b.feed(ms(1_000), busy, uas_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert_eq!(b.times("ACK "), vec![ms(200), ms(1_000)]);
    let acks: Vec<&Bytes> = b
        .payloads
        .iter()
        .filter(|p| p.starts_with(b"ACK "))
        .collect();
    assert_eq!(acks[0], acks[1], "the same ACK each time");
    let ack = Message::parse(acks[0].clone()).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri(), inv.request_uri());
    assert_eq!(ack.call_id(), inv.call_id());
    assert_eq!(ack.cseq().seq, 5);
    assert_eq!(ack.cseq().method, Method::Ack);
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.top_via().branch, Some("z9hG4bK-d"));
    assert_eq!(ack.from_hdr().tag(), Some("caller"));
    assert_eq!(ack.to_hdr().tag(), Some("callee"));
    assert_eq!(ack.routes().len(), 1);
    assert_eq!(ack.max_forwards(), Some(70));
    assert!(ack.body().is_empty());
    assert_eq!(ack.header(HeaderName::ContentLength).as_deref(), Some("0"));
    b.run_to(ms(60_000));
    assert_eq!(
        b.event_times(is_terminated),
        vec![ms(200) + Duration::from_secs(32)]
    );
    assert!(b.event_times(is_timeout).is_empty());
}

#[test]
fn accepted_client_invite_passes_every_2xx_until_timer_m() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-m"), Transport::Udp);
    let ok = response(b.layer.request(tx).unwrap(), 200);
    for offset in [100, 600, 1_600] {
        let incoming = b.feed(ms(offset), ok.clone(), uas_peer(Transport::Udp));
        assert!(
            matches!(incoming, Incoming::Response { tx: t, .. } if t == tx),
            "2xx at {offset} ms: {incoming:?}"
        );
    }
    assert!(b.times("ACK").is_empty(), "the ACK for a 2xx is the TU's");
    b.run_to(ms(40_000));
    assert_eq!(b.event_times(is_terminated), vec![ms(100) + 64 * T1]);
    assert!(matches!(
        b.feed(ms(40_000), ok, uas_peer(Transport::Udp)),
        Incoming::StrayResponse { .. }
    ));
}

// ---- client non-INVITE ----

#[test]
fn timer_e_doubles_to_t2_until_timer_f_fires_at_64_t1() {
    let mut b = Bench::new();
    let tx = b.start(options("z9hG4bK-e"), Transport::Udp);
    b.run_to(ms(40_000));
    let expected = backoff(T1, T2, 64 * T1);
    assert_eq!(
        &expected[..6],
        &[ms(0), ms(500), ms(1_500), ms(3_500), ms(7_500), ms(11_500)]
    );
    assert_eq!(b.times("OPTIONS"), expected);
    assert_eq!(
        b.events,
        vec![
            (64 * T1, TxEvent::Timeout { tx }),
            (64 * T1, TxEvent::Terminated { tx })
        ]
    );
}

#[test]
fn after_a_provisional_timer_e_runs_at_t2_and_timer_k_is_t4() {
    let mut b = Bench::new();
    let tx = b.start(options("z9hG4bK-e2"), Transport::Udp);
    let req = b.layer.request(tx).unwrap().clone();
    assert!(matches!(
        b.feed(ms(200), response(&req, 100), uas_peer(Transport::Udp)),
        Incoming::Response { .. }
    ));
    let final_at = ms(10_000);
    assert!(matches!(
        b.feed(final_at, response(&req, 200), uas_peer(Transport::Udp)),
        Incoming::Response { .. }
    ));
    // E was armed for T1 before the 100; every later interval is T2.
    assert_eq!(
        b.times("OPTIONS"),
        vec![ms(0), ms(500), ms(4_500), ms(8_500)]
    );
    assert!(matches!(
        b.feed(ms(11_000), response(&req, 200), uas_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    b.run_to(ms(30_000));
    assert_eq!(b.events, vec![(final_at + T4, TxEvent::Terminated { tx })]);
}

// ---- transport errors ----

#[test]
fn transport_error_fails_client_transactions_to_that_peer_at_once() {
    let mut b = Bench::new();
    let a = b.start(invite("z9hG4bK-te1"), Transport::Udp);
    let o = b.start(options("z9hG4bK-te2"), Transport::Udp);
    let elsewhere = b
        .layer
        .start_client(b.now, options("z9hG4bK-te3"), uac_peer(Transport::Udp));
    let now = b.at(ms(700));
    b.layer.handle_transport_error(
        now,
        Peer {
            conn: Some(4),
            ..uas_peer(Transport::Udp)
        },
    );
    b.drain();
    let timeouts: Vec<_> = b
        .events
        .iter()
        .filter(|(_, e)| is_timeout(e))
        .map(|(t, e)| (*t, e.clone()))
        .collect();
    assert_eq!(
        timeouts,
        vec![
            (ms(700), TxEvent::Timeout { tx: a }),
            (ms(700), TxEvent::Timeout { tx: o })
        ]
    );
    assert_eq!(b.layer.len(), 1);
    assert!(b.layer.request(elsewhere).is_some());
}
