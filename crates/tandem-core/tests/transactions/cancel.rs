//! CANCEL, outgoing (held until a provisional, §9.1) and incoming (matched to its INVITE, §9.2).

use super::support::*;
use tandem_core::transaction::testing::{request, response};
use tandem_core::transaction::{Incoming, TxEvent, TxId};
use tandem_core::Transport;
use tandem_sip::{HeaderName, Method};

// ---- CANCEL ----

#[test]
fn cancel_after_a_provisional_goes_out_at_once_built_from_the_invite() {
    let route = [(HeaderName::Route, "<sip:edge.example.com;lr>")];
    let inv = request(&Method::Invite, "z9hG4bK-c", "call-c@10.0.0.1", 9, &route);
    let mut b = Bench::new();
    let tx = b.start(inv.clone(), Transport::Udp);
    b.feed(ms(100), response(&inv, 180), uas_peer(Transport::Udp));
    let now = b.at(ms(200));
    let cancel = b.layer.cancel(now, tx).unwrap();
    assert_eq!(
        b.layer.cancel(now, tx),
        Some(cancel),
        "one CANCEL per INVITE"
    );
    let c = b.layer.request(cancel).unwrap().clone();
    b.drain();
    assert_eq!(b.times("CANCEL"), vec![ms(200)]);
    assert_eq!(c.request_uri(), inv.request_uri());
    assert_eq!(c.top_via().branch, Some("z9hG4bK-c"));
    assert_eq!(c.vias().len(), 1);
    assert_eq!(c.cseq().seq, 9);
    assert_eq!(c.cseq().method, Method::Cancel);
    assert_eq!(c.to_hdr().tag(), None);
    assert_eq!(c.from_hdr().tag(), Some("caller"));
    assert_eq!(c.call_id(), inv.call_id());
    assert_eq!(c.routes().len(), 1);
    // The CANCEL's 200 and the INVITE's 487 reach their own transactions.
    let ok = b.feed(ms(300), response(&c, 200), uas_peer(Transport::Udp));
    assert!(
        matches!(ok, Incoming::Response { tx: t, .. } if t == cancel),
        "{ok:?}"
    );
    let terminated = b.feed(ms(310), response(&inv, 487), uas_peer(Transport::Udp));
    assert!(matches!(terminated, Incoming::Response { tx: t, .. } if t == tx));
    assert_eq!(b.times("ACK"), vec![ms(310)]);
}

#[test]
fn cancel_before_a_provisional_is_held_and_dropped_when_a_final_comes_first() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-h"), Transport::Udp);
    let cancel = b.layer.cancel(b.now, tx).unwrap();
    b.run_to(ms(1_000));
    assert!(b.times("CANCEL").is_empty(), "held until a provisional");
    let ok = response(b.layer.request(tx).unwrap(), 200);
    b.feed(ms(1_200), ok, uas_peer(Transport::Udp));
    assert_eq!(
        b.events,
        vec![(ms(1_200), TxEvent::Terminated { tx: cancel })]
    );
    assert_eq!(b.layer.cancel(b.now, tx), None, "already has its final");
    b.run_to(ms(60_000));
    assert!(b.times("CANCEL").is_empty());
    assert!(b.layer.is_empty());
}

#[test]
fn cancelled_invite_without_final_ends_64_t1_after_the_cancel() {
    let mut b = Bench::new();
    let tx = b.start(invite("z9hG4bK-g2"), Transport::Udp);
    let cancel = b.layer.cancel(b.now, tx).unwrap();
    b.feed(
        ms(2_000),
        response(b.layer.request(tx).unwrap(), 100),
        uas_peer(Transport::Udp),
    );
    assert_eq!(
        b.times("CANCEL"),
        vec![ms(2_000)],
        "released by the provisional"
    );
    b.run_to(ms(100_000));
    assert!(b
        .events
        .contains(&(ms(2_000) + 64 * T1, TxEvent::Timeout { tx })));
    assert!(
        b.events
            .contains(&(ms(2_000) + 64 * T1, TxEvent::Timeout { tx: cancel })),
        "nobody answered the CANCEL either"
    );
    assert!(b.layer.is_empty());
    assert_eq!(b.layer.cancel(b.now, TxId(999)), None);
}

#[test]
fn incoming_cancel_finds_its_invite_only_before_the_final() {
    let mut b = Bench::new();
    let inv = invite("z9hG4bK-ic");
    let tx = b.server_tx(ms(0), inv.clone(), Transport::Udp);
    let cancel = request(&Method::Cancel, "z9hG4bK-ic", inv.call_id(), 1, &[]);
    let incoming = b.feed(ms(100), cancel.clone(), uac_peer(Transport::Udp));
    let Incoming::Cancel {
        tx: ctx,
        invite: target,
        ..
    } = incoming
    else {
        panic!("{incoming:?}")
    };
    assert_eq!(target, Some(tx));
    b.respond(ms(110), ctx, response(&cancel, 200));
    assert!(matches!(
        b.feed(ms(600), cancel, uac_peer(Transport::Udp)),
        Incoming::Absorbed
    ));
    assert_eq!(
        b.times("SIP/2.0 200"),
        vec![ms(110), ms(600)],
        "CANCEL retransmission answered again"
    );
    b.respond(ms(650), tx, response(&inv, 487));
    // A CANCEL arriving after the INVITE's final finds nothing to cancel.
    let inv2 = invite("z9hG4bK-ic2");
    let tx2 = b.server_tx(ms(700), inv2.clone(), Transport::Udp);
    b.respond(ms(710), tx2, response(&inv2, 200));
    let cancel2 = request(&Method::Cancel, "z9hG4bK-ic2", inv2.call_id(), 1, &[]);
    let incoming = b.feed(ms(720), cancel2, uac_peer(Transport::Udp));
    assert!(
        matches!(incoming, Incoming::Cancel { invite: None, .. }),
        "{incoming:?}"
    );
}
