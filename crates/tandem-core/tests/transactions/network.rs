//! A UAC and a UAS layer through a lossy, reordering virtual network.

use super::support::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::time::{Duration, Instant};
use tandem_core::transaction::testing::{
    ack_for_2xx, request, response, Happening, NetConfig, Side, Sim,
};
use tandem_core::transaction::{Incoming, Timers, TxEvent, TxId};
use tandem_core::Transport;
use tandem_sip::{Message, Method};

// ---- two layers through the simulated network ----

/// What the two TUs saw.
#[derive(Debug, Default)]
struct Outcome {
    uac_finals: Vec<(TxId, u16)>,
    uac_2xx: usize,
    uas_acks: usize,
    uas_requests: usize,
    /// Timer-driven events other than `Terminated`, with when they happened.
    events: Vec<(Instant, Side, TxEvent)>,
}

/// A UAS that answers INVITE with 100, optionally 180, then `invite_code`, every other request with
/// 200, and CANCEL with 200 + 487; a UAC that ACKs every 2xx (end to end, outside the transaction).
fn tus(sim: &mut Sim, h: Happening, out: &mut Outcome, invite_code: u16, ring: bool) {
    match h {
        Happening::Incoming {
            side: Side::Uas,
            incoming: Incoming::Request { tx, msg, .. },
        } => {
            out.uas_requests += 1;
            let now = sim.now;
            let codes: &[u16] = match msg.method() {
                Some(Method::Invite) if ring => &[100, 180, invite_code],
                Some(Method::Invite) => &[100, invite_code],
                _ => &[200],
            };
            for &code in codes {
                sim.uas.respond(now, tx, response(&msg, code));
            }
        }
        Happening::Incoming {
            side: Side::Uas,
            incoming: Incoming::Cancel {
                tx, invite, msg, ..
            },
        } => {
            let now = sim.now;
            sim.uas.respond(
                now,
                tx,
                response(&msg, if invite.is_some() { 200 } else { 481 }),
            );
            if let Some(invite) = invite {
                let req = sim.uas.request(invite).unwrap().clone();
                sim.uas.respond(now, invite, response(&req, 487));
            }
        }
        // An ACK after Timer L (a late 2xx copy's) matches nothing: the TU would drop it.
        Happening::Incoming {
            side: Side::Uas,
            incoming: Incoming::Ack { invite, .. },
        } => {
            out.uas_acks += usize::from(invite.is_some());
        }
        Happening::Incoming {
            side: Side::Uac,
            incoming: Incoming::Response { tx, msg },
        } => {
            let code = msg.status().unwrap();
            if code >= 200 && !out.uac_finals.iter().any(|(t, _)| *t == tx) {
                out.uac_finals.push((tx, code));
            }
            if (200..300).contains(&code) && msg.cseq().method == Method::Invite {
                out.uac_2xx += 1;
                // The layer keeps no request past the final; the 2xx carries the INVITE's From,
                // Call-ID and CSeq.
                assert!(sim.uac.request(tx).is_none());
                let ack = ack_for_2xx(&msg, &msg, "z9hG4bK-e2e-ack");
                let dest = sim.peer(Side::Uas);
                sim.uac.send_stateless(dest, ack.as_bytes().clone());
            }
        }
        Happening::Incoming {
            incoming: Incoming::StrayResponse { .. },
            ..
        }
        | Happening::Incoming {
            incoming: Incoming::Absorbed,
            ..
        } => {}
        Happening::Event { side, event } => {
            if !matches!(event, TxEvent::Terminated { .. }) {
                out.events.push((sim.now, side, event));
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn sim(net: NetConfig) -> Sim {
    Sim::new(Timers::default(), Transport::Udp, net)
}

#[test]
fn lost_2xx_is_retransmitted_until_the_ack_arrives() {
    let mut s = sim(NetConfig::default());
    let mut dropped_2xx = 0;
    s.drop_when(move |from, m| {
        let drop = from == Side::Uas && m.status() == Some(200) && dropped_2xx < 3;
        dropped_2xx += usize::from(drop);
        drop
    });
    let now = s.now;
    let tx = s
        .uac
        .start_client(now, invite("z9hG4bK-lost"), s.peer(Side::Uas));
    let mut out = Outcome::default();
    s.run_until(now + Duration::from_secs(60), |s, h| {
        tus(s, h, &mut out, 200, false)
    });
    assert_eq!(out.uac_finals, vec![(tx, 200)]);
    assert_eq!(out.uas_acks, 1);
    assert!(out.events.is_empty(), "{:?}", out.events);
    let sent_2xx: Vec<_> = s
        .sent(Side::Uas, "SIP/2.0 200")
        .iter()
        .map(|x| x.at - now)
        .collect();
    // Sent at 10 ms (INVITE latency), then T1, 2·T1, 4·T1 later; the fourth copy gets through.
    assert_eq!(sent_2xx, vec![ms(10), ms(510), ms(1_510), ms(3_510)]);
    assert!(s.uac.is_empty() && s.uas.is_empty());
}

#[test]
fn lost_ack_of_a_non_2xx_is_resent_on_the_final_retransmission() {
    let mut s = sim(NetConfig::default());
    let mut dropped = false;
    s.drop_when(move |from, m| {
        let drop = from == Side::Uac && m.method() == Some(&Method::Ack) && !dropped;
        dropped |= drop;
        drop
    });
    let now = s.now;
    let tx = s
        .uac
        .start_client(now, invite("z9hG4bK-486"), s.peer(Side::Uas));
    let mut out = Outcome::default();
    s.run_until(now + Duration::from_secs(60), |s, h| {
        tus(s, h, &mut out, 486, true)
    });
    assert_eq!(out.uac_finals, vec![(tx, 486)]);
    assert_eq!(
        s.sent(Side::Uac, "ACK").len(),
        2,
        "the retransmitted 486 was ACKed again"
    );
    assert_eq!(
        s.sent(Side::Uas, "SIP/2.0 486").len(),
        2,
        "Timer G stopped at the ACK"
    );
    assert!(out.events.is_empty(), "{:?}", out.events);
    assert!(s.uac.is_empty() && s.uas.is_empty());
}

#[test]
fn cancel_before_and_after_provisional_end_with_487_through_the_network() {
    for ring_first in [false, true] {
        let mut s = sim(NetConfig::default());
        let now = s.now;
        let tx = s
            .uac
            .start_client(now, invite("z9hG4bK-cx"), s.peer(Side::Uas));
        // The UAS answers INVITE with 100, 180 and no final: the UAC cancels.
        let mut cancel = None;
        if !ring_first {
            cancel = s.uac.cancel(now, tx);
        }
        let mut finals = Vec::new();
        s.run_until(now + Duration::from_secs(60), |s, h| match h {
            Happening::Incoming {
                side: Side::Uas,
                incoming: Incoming::Request { tx, msg, .. },
            } => {
                let t = s.now;
                s.uas.respond(t, tx, response(&msg, 180));
            }
            Happening::Incoming {
                side: Side::Uas,
                incoming:
                    Incoming::Cancel {
                        tx, invite, msg, ..
                    },
            } => {
                let t = s.now;
                s.uas.respond(t, tx, response(&msg, 200));
                let req = s.uas.request(invite.unwrap()).unwrap().clone();
                s.uas.respond(t, invite.unwrap(), response(&req, 487));
            }
            Happening::Incoming {
                side: Side::Uac,
                incoming: Incoming::Response { tx: rtx, msg },
            } => {
                if msg.status() == Some(180) && cancel.is_none() {
                    let t = s.now;
                    cancel = s.uac.cancel(t, rtx);
                }
                if msg.status().unwrap() >= 200 {
                    finals.push((rtx, msg.status().unwrap()));
                }
            }
            _ => {}
        });
        let cancel = cancel.unwrap();
        assert_eq!(
            finals,
            vec![(cancel, 200), (tx, 487)],
            "ring_first={ring_first}"
        );
        let cancel_sent = s.sent(Side::Uac, "CANCEL");
        let ringing_at = s.sent(Side::Uas, "SIP/2.0 180")[0].at;
        assert!(
            cancel_sent.len() == 1 && cancel_sent[0].at > ringing_at,
            "CANCEL only after the 180 arrived"
        );
        assert_eq!(s.sent(Side::Uac, "ACK").len(), 1);
        assert!(s.uac.is_empty() && s.uas.is_empty());
    }
}

#[test]
fn two_hundred_concurrent_calls_over_a_lossy_reordering_network() {
    let net = NetConfig {
        loss_per_mille: 200,
        latency: ms(20),
        jitter: ms(400),
        seed: 7,
    };
    let mut s = sim(net);
    let start = s.now;
    let mut invites = Vec::new();
    for i in 0..200u32 {
        let dest = s.peer(Side::Uas);
        let inv = request(
            &Method::Invite,
            &format!("z9hG4bK-inv{i}"),
            &format!("call{i}@10.0.0.1"),
            1,
            &[],
        );
        invites.push(s.uac.start_client(start, inv, dest));
        let bye = request(
            &Method::Bye,
            &format!("z9hG4bK-bye{i}"),
            &format!("call{i}@10.0.0.1"),
            2,
            &[],
        );
        s.uac.start_client(start, bye, dest);
    }
    let mut out = Outcome::default();
    s.run_until(start + Duration::from_secs(120), |s, h| {
        tus(s, h, &mut out, 200, true)
    });
    assert_eq!(
        out.uac_finals.len(),
        400,
        "every transaction got its final: {:?}",
        out.events
    );
    assert_eq!(
        out.uas_requests, 400,
        "retransmissions never reached the TU"
    );
    assert!(out.events.is_empty(), "{:?}", out.events);
    assert!(out.uas_acks >= 200);
    assert!(s.uac.is_empty() && s.uas.is_empty());
    assert_eq!(s.uac.poll_timeout(), None);
}

/// Did a message from `from` for which `pred` holds reach the other side by `by`? (At equal times
/// the simulator delivers before it fires timers.)
fn reached(s: &Sim, from: Side, by: Instant, pred: impl Fn(&Message) -> bool) -> bool {
    s.log().iter().any(|x| {
        x.from == from
            && x.arrives.is_some_and(|a| a <= by)
            && x.message().is_some_and(|m| pred(&m))
    })
}

/// One INVITE (→ 2xx → ACK) and one OPTIONS exchange, whatever the loss (≤ 30 %), latency and
/// reordering:
/// * nothing panics, and once every timer has run both layers are empty (the UAC's TU cancels an
///   INVITE still without a final after 200 s, as Timer C would);
/// * each client transaction gets its 200, or ends in Timeout only when no final response to it
///   reached the UAC before that Timeout;
/// * an INVITE that reached the UAS gets its ACK, or ends in NoAck only when no ACK reached the
///   UAS before that NoAck;
/// * retransmissions never reach the UAS's TU as new requests.
///
/// Independent random loss can lose every copy of a message (about once in 10⁴ cases at 25 % loss),
/// so a failure is allowed exactly when the simulator's delivery log proves nothing got through.
fn exchange_completes(seed: u64, loss_per_mille: u32, latency_ms: u64, jitter_ms: u64, ring: bool) {
    let net = NetConfig {
        loss_per_mille,
        latency: ms(latency_ms),
        jitter: ms(jitter_ms),
        seed,
    };
    let mut s = sim(net);
    let start = s.now;
    let dest = s.peer(Side::Uas);
    let inv = s.uac.start_client(start, invite("z9hG4bK-p1"), dest);
    let opt = s.uac.start_client(start, options("z9hG4bK-p2"), dest);
    let mut out = Outcome::default();
    s.run_until(start + Duration::from_secs(200), |s, h| {
        tus(s, h, &mut out, 200, ring)
    });
    let timer_c = s.uac.cancel(s.now, inv);
    s.run_until(start + Duration::from_secs(300), |s, h| {
        tus(s, h, &mut out, 200, ring)
    });
    assert!(s.uac.is_empty() && s.uas.is_empty(), "{s:?}");
    assert!(s.uac.poll_timeout().is_none() && s.uas.poll_timeout().is_none());

    let end = s.now;
    let first = |wanted: &dyn Fn(&TxEvent) -> bool| {
        out.events
            .iter()
            .find(|(_, _, e)| wanted(e))
            .map(|(t, ..)| *t)
    };
    for (tx, method) in [(inv, Method::Invite), (opt, Method::Options)] {
        let answered = out.uac_finals.contains(&(tx, 200));
        let final_reached = |by| {
            reached(&s, Side::Uas, by, |m| {
                m.cseq().method == method && m.status() >= Some(200)
            })
        };
        match first(&|e| *e == TxEvent::Timeout { tx }) {
            None => assert!(
                answered,
                "{method:?} neither answered nor timed out: {out:?}"
            ),
            Some(at) => assert!(
                !answered && !final_reached(at),
                "{method:?} timed out although a final arrived"
            ),
        }
    }
    let invite_arrived = reached(&s, Side::Uac, end, |m| m.method() == Some(&Method::Invite));
    let options_arrived = reached(&s, Side::Uac, end, |m| m.method() == Some(&Method::Options));
    assert_eq!(
        out.uas_requests,
        usize::from(invite_arrived) + usize::from(options_arrived)
    );
    match first(&|e| matches!(e, TxEvent::NoAck { .. })) {
        None => assert!(
            out.uas_acks >= 1 || !invite_arrived,
            "no ACK and no NoAck: {out:?}"
        ),
        Some(at) => {
            assert_eq!(out.uas_acks, 0, "NoAck after an ACK");
            assert!(
                !reached(&s, Side::Uac, at, |m| m.method() == Some(&Method::Ack)),
                "NoAck although an ACK arrived"
            );
        }
    }
    let explained = |e: &TxEvent| match e {
        TxEvent::Timeout { tx } => *tx == inv || *tx == opt || Some(*tx) == timer_c,
        TxEvent::NoAck { .. } => true,
        TxEvent::Terminated { .. } => false,
    };
    assert!(
        out.events.iter().all(|(_, _, e)| explained(e)),
        "{:?}",
        out.events
    );
}

proptest! {
    #![proptest_config(ProptestConfig { rng_seed: RngSeed::Fixed(0x007a_4de3), cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn exchanges_complete_under_loss_and_reordering(
        seed in any::<u64>(),
        loss in 0u32..=300,
        latency in 1u64..150,
        jitter in 0u64..600,
        ring in any::<bool>(),
    ) {
        exchange_completes(seed, loss, latency, jitter, ring);
    }
}

#[test]
fn without_loss_every_exchange_completes() {
    for seed in 0..20 {
        let mut s = sim(NetConfig {
            loss_per_mille: 0,
            latency: ms(5),
            jitter: ms(300),
            seed,
        });
        let start = s.now;
        let dest = s.peer(Side::Uas);
        let inv = s.uac.start_client(start, invite("z9hG4bK-n1"), dest);
        let opt = s.uac.start_client(start, options("z9hG4bK-n2"), dest);
        let mut out = Outcome::default();
        s.run_until(start + Duration::from_secs(100), |s, h| {
            tus(s, h, &mut out, 200, seed.is_multiple_of(2))
        });
        let mut finals = out.uac_finals.clone();
        finals.sort();
        assert_eq!(finals, vec![(inv, 200), (opt, 200)]);
        assert!(out.uas_acks >= 1 && out.events.is_empty(), "{out:?}");
        assert!(s.uac.is_empty() && s.uas.is_empty());
    }
}
