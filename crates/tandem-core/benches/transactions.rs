//! Steady-state cost of the transaction layer at the load test's rate: every 140 µs of virtual time
//! one client transaction starts and gets its 200 (INVITE and OPTIONS alternately), timers run, and
//! the population settles at ~130k live transactions (finished ones wait out Timers K and M); the
//! last 100k cycles are timed.
//!
//! Run: `cargo bench -p tandem-core --bench transactions`.
//! Measured 2026-11-21 on the 2-core development VM (shared with other builds): 2.4 µs per cycle
//! before the request was dropped at the final response and the top Via cached by the codec;
//! 1.17 µs per cycle after (commit of this header).
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tandem_core::transaction::testing::{request, response};
use tandem_core::transaction::{Timers, TransactionLayer};
use tandem_core::Peer;
use tandem_sip::{Message, Method};

fn dest() -> Peer {
    Peer::udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5070)))
}

fn main() {
    let n = 400_000usize;
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(Timers::default());
    let method = |i: usize| {
        if i.is_multiple_of(2) {
            Method::Invite
        } else {
            Method::Options
        }
    };
    // A pool of messages, reused: a branch may come back while its earlier transaction lives (the
    // newer one takes over the key), which costs the same as a fresh branch.
    let pool: Vec<(Message, Message)> = (0..4096)
        .map(|i| {
            let req = request(
                &method(i),
                &format!("z9hG4bK-{i}"),
                "load@10.0.0.1",
                i as u32,
                &[],
            );
            let ok = response(&req, 200);
            (req, ok)
        })
        .collect();
    let mut now = t0;
    let mut clock = Instant::now();
    for i in 0..n {
        if i == n - 100_000 {
            clock = Instant::now();
        }
        now += Duration::from_micros(140);
        let (req, ok) = &pool[i % pool.len()];
        layer.start_client(now, req.clone(), dest());
        let _ = layer.handle_incoming(now, ok.clone(), dest());
        if i.is_multiple_of(64) {
            while let Some(at) = layer.poll_timeout().filter(|t| *t <= now) {
                layer.handle_timeout(at);
            }
        }
        while layer.poll_transmit().is_some() {}
        while layer.poll_event().is_some() {}
    }
    let per_cycle = clock.elapsed() / 100_000;
    println!(
        "transaction layer: {per_cycle:?} per cycle (start + final + timers), {} live transactions",
        layer.len()
    );
}
