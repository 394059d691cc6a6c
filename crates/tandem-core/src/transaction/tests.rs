//! Unit tests that look inside the layer (timer heap size, indexes) at load-test scale.
#![allow(clippy::unwrap_used)]

use super::testing::{request, response};
use super::*;
use std::net::{Ipv4Addr, SocketAddr};

fn dest() -> Peer {
    Peer::udp(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 5060)))
}

/// After every public call the heap holds at most 4 entries per live transaction (+1024), and its
/// top is a live timer.
fn assert_heap_bounded(layer: &TransactionLayer) {
    assert!(
        layer.out.timers.len() <= 4 * layer.len() + 1024,
        "{} entries for {} transactions",
        layer.out.timers.len(),
        layer.len()
    );
}

#[test]
fn a_hundred_thousand_live_transactions_keep_the_timer_heap_bounded_and_exact() {
    let n: u32 = 100_000;
    let t0 = Instant::now();
    let timers = Timers::default();
    let mut layer = TransactionLayer::new(timers);
    for i in 0..n {
        let method = if i.is_multiple_of(2) {
            Method::Invite
        } else {
            Method::Options
        };
        layer.start_client(
            t0,
            request(&method, &format!("z9hG4bK-{i}"), "load@10.0.0.1", i, &[]),
            dest(),
        );
    }
    while layer.poll_transmit().is_some() {}
    assert_eq!(layer.len(), n as usize);
    assert_eq!(layer.client_dests.len(), 1);

    // Answer three quarters: their A/B and E/F entries go stale, D/M/K are armed.
    let t_answer = t0 + Duration::from_millis(100);
    for i in (0..n).filter(|i| i % 4 != 3) {
        let method = if i.is_multiple_of(2) {
            Method::Invite
        } else {
            Method::Options
        };
        let req = request(&method, &format!("z9hG4bK-{i}"), "load@10.0.0.1", i, &[]);
        let code = if i % 8 == 2 { 486 } else { 200 };
        assert!(matches!(
            layer.handle_incoming(t_answer, response(&req, code), dest()),
            Incoming::Response { .. }
        ));
        assert_heap_bounded(&layer);
    }
    assert_eq!(
        layer.poll_timeout(),
        Some(t0 + timers.t1),
        "the unanswered quarter retransmits at T1"
    );

    // Run every timer; the heap never outgrows its bound and empties with the layer.
    let mut wakeups = 0;
    while let Some(at) = layer.poll_timeout() {
        layer.handle_timeout(at);
        assert_heap_bounded(&layer);
        while layer.poll_transmit().is_some() {}
        while layer.poll_event().is_some() {}
        wakeups += 1;
    }
    assert!(layer.is_empty());
    assert_eq!(layer.out.timers.len(), 0);
    assert!(layer.client_keys.is_empty() && layer.client_dests.is_empty());
    // One wake-up per distinct deadline, not per cancelled entry.
    assert!(wakeups < 40, "{wakeups} wake-ups");
}

#[test]
fn removed_transactions_leave_no_index_entries() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(Timers::default());
    let from = dest();
    let inv = request(&Method::Invite, "z9hG4bK-idx", "idx@10.0.0.1", 1, &[]);
    let Incoming::Request { tx, .. } = layer.handle_incoming(t0, inv.clone(), from) else {
        panic!()
    };
    assert!(layer.respond(t0, tx, response(&inv, 200)));
    assert_eq!((layer.server_keys.len(), layer.ack_keys.len()), (1, 1));
    let later = t0 + Duration::from_secs(40);
    layer.handle_timeout(later);
    assert!(layer.is_empty());
    assert!(layer.server_keys.is_empty() && layer.ack_keys.is_empty());
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn past_the_final_a_transaction_keeps_no_request_and_after_the_ack_no_2xx() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(Timers::default());
    let from = dest();
    let inv = request(&Method::Invite, "z9hG4bK-mem", "mem@10.0.0.1", 1, &[]);
    let Incoming::Request { tx, .. } = layer.handle_incoming(t0, inv.clone(), from) else {
        panic!()
    };
    assert!(layer.respond(t0, tx, response(&inv, 180)));
    assert!(layer.request(tx).is_some(), "kept until the final");
    // The TU's own bytes: only the status code is read.
    let ok = response(&inv, 200).as_bytes().clone();
    assert!(
        !layer.respond(t0, tx, inv.as_bytes().clone()),
        "not a response"
    );
    assert!(layer.respond(t0, tx, ok.clone()));
    assert!(layer.request(tx).is_none());
    assert!(layer.txs.get(tx).is_some_and(|t| t.request.is_none()));
    while layer.poll_transmit().is_some() {}
    // The INVITE retransmitted before the ACK gets the 2xx again; after the ACK, nothing.
    assert!(matches!(
        layer.handle_incoming(t0, inv.clone(), from),
        Incoming::Absorbed
    ));
    assert_eq!(layer.poll_transmit().map(|t| t.payload), Some(ok.clone()));
    let ack = super::testing::ack_for_2xx(&inv, &response(&inv, 200), "z9hG4bK-mem-ack");
    assert!(matches!(
        layer.handle_incoming(t0, ack, from),
        Incoming::Ack { invite: Some(t), .. } if t == tx
    ));
    assert!(layer.txs.get(tx).is_some_and(|t| t.resend.is_none()));
    assert!(matches!(
        layer.handle_incoming(t0, inv, from),
        Incoming::Absorbed
    ));
    assert!(layer.poll_transmit().is_none());
}

#[test]
fn a_request_given_as_bytes_is_keyed_by_a_peek_and_parsed_only_on_demand() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(Timers::default());
    let inv = request(&Method::Invite, "z9hG4bK-built", "built@10.0.0.1", 7, &[]);
    let tx = layer.start_client(t0, inv.as_bytes().clone(), dest());
    assert_eq!(layer.txs.get(tx).map(|t| t.kind), Some(Kind::ClientInvite));
    assert!(layer
        .txs
        .get(tx)
        .and_then(|t| t.request.as_ref())
        .is_some_and(|r| r.parsed_yet().is_none()));
    assert_eq!(
        layer.poll_transmit().map(|t| t.payload),
        Some(inv.as_bytes().clone())
    );
    assert_eq!(
        layer.request(tx).map(Message::call_id),
        Some("built@10.0.0.1")
    );
    // A CANCEL (built from the parsed INVITE) is keyed the same way; the 180 releases it.
    let cancel = layer.cancel(t0, tx).unwrap();
    assert!(matches!(
        layer.handle_incoming(t0, response(&inv, 180), dest()),
        Incoming::Response { tx: t, .. } if t == tx
    ));
    let sent: Vec<_> = std::iter::from_fn(|| layer.poll_transmit()).collect();
    assert!(sent.iter().any(|t| t.payload.starts_with(b"CANCEL ")));
    let cancel_req = layer.request(cancel).unwrap().clone();
    assert!(matches!(
        layer.handle_incoming(t0, response(&cancel_req, 200), dest()),
        Incoming::Response { tx: t, .. } if t == cancel
    ));
    // A non-2xx final is acknowledged from the stored INVITE, which is then dropped.
    assert!(matches!(
        layer.handle_incoming(t0, response(&inv, 487), dest()),
        Incoming::Response { tx: t, .. } if t == tx
    ));
    let ack = layer.poll_transmit().unwrap().payload;
    assert!(ack.starts_with(b"ACK sip:bob@10.0.0.2:5060 SIP/2.0"));
    assert!(layer.request(tx).is_none());
    // Bytes that are no request still go out, in a transaction nothing can match.
    let junk = layer.start_client(t0, bytes::Bytes::from_static(b"junk"), dest());
    assert_eq!(
        layer.txs.get(junk).map(|t| (t.kind, t.key.is_none())),
        Some((Kind::ClientNonInvite, true))
    );
}

#[test]
fn an_abandoned_client_transaction_sends_nothing_more_and_leaves_nothing_behind() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(Timers::default());
    let options = request(&Method::Options, "z9hG4bK-gone", "gone@10.0.0.1", 1, &[]);
    let tx = layer.start_client(t0, options.clone(), dest());
    assert!(layer.poll_transmit().is_some(), "the first transmission");
    let invite = request(&Method::Invite, "z9hG4bK-stays", "stays@10.0.0.1", 1, &[]);
    let kept = layer.start_client(t0, invite.clone(), dest());
    while layer.poll_transmit().is_some() {}

    layer.abandon_client(t0, tx);
    layer.abandon_client(t0, kept); // an INVITE is not abandoned this way
    layer.abandon_client(t0, tx); // nor twice
    assert_eq!(layer.len(), 1);
    let events: Vec<_> = std::iter::from_fn(|| layer.poll_event()).collect();
    assert_eq!(events, vec![TxEvent::Terminated { tx }]);
    // Timer E would have retransmitted the OPTIONS at 500 ms: only the INVITE's timer A fires.
    layer.handle_timeout(t0 + Duration::from_secs(1));
    let sent: Vec<_> = std::iter::from_fn(|| layer.poll_transmit()).collect();
    assert!(sent
        .iter()
        .all(|t| !String::from_utf8_lossy(&t.payload).starts_with("OPTIONS")));
    // Its late answer matches nothing.
    let late = layer.handle_incoming(t0, response(&options, 200), dest());
    assert!(matches!(late, Incoming::StrayResponse { .. }), "{late:?}");
    assert!(layer.client_dests.values().all(|ids| !ids.contains(&tx)));
    assert_heap_bounded(&layer);
}
