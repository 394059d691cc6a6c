//! A busy io_uring shard gathers datagrams (`RelayConfig::batch_wait`): at 50,000 packets a second
//! its rounds carry dozens of datagrams, and every datagram is still relayed. Port block: 43000.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};
use support::*;
use tandem_relay::{RelayConfig, RelayIo};

/// Datagrams a second, and in all.
const RATE: u32 = 50_000;
const TOTAL: u32 = 10_000;
/// The receiving test socket's buffer (capped by `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 << 20;

/// Relays `TOTAL` packets sent at `RATE` through a
/// one-shard relay; returns the mean datagrams per receive round.
fn mean_round(config: RelayConfig, base: u16, call: u64) -> f64 {
    let relay = Harness::start(config);
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    relay.apply(simple_plan(call, base));
    // Room for the bursts a busy relay sends while this test's receiving thread waits for a CPU
    // (the default buffer holds a few hundred datagrams: a few milliseconds at this rate).
    socket2::SockRef::from(&server.rtp)
        .set_recv_buffer_size(RECEIVE_BUFFER)
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let mut got = 0;
        while got < TOTAL && recv_within(&server.rtp, Duration::from_secs(2)).is_some() {
            got += 1;
        }
        got
    });
    // Paced by the clock: what is due at 50,000 a second goes out, then a short sleep (a sender
    // held up sends what fell due at once and keeps the mean rate).
    let start = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        let due = (start.elapsed().as_secs_f64() * f64::from(RATE)) as u32;
        for n in sent..due.min(TOTAL) {
            let packet = Rtp::new(0x6a7e, n as u16, 160 * n).packet(n);
            caller.rtp.send_to(&packet, at(base)).unwrap();
        }
        sent = sent.max(due.min(TOTAL));
        std::thread::sleep(Duration::from_micros(100));
    }
    let received = receiver.join().unwrap();
    assert_eq!(
        received,
        TOTAL,
        "every datagram relayed; the relay's totals: {:?}",
        relay.relay.totals()
    );
    let totals = relay.totals_until(|t| t.packets_relayed == u64::from(TOTAL));
    assert_eq!(totals.packets_received, u64::from(TOTAL));
    totals.packets_received as f64 / totals.recv_batches.max(1) as f64
}

#[test]
fn a_busy_shard_relays_dozens_of_datagrams_per_round() {
    if io_backend() != RelayIo::IoUring {
        eprintln!("gather: epoll shards do not gather; nothing to test");
        return;
    }
    let gathering = mean_round(config(1), 43000, 1);
    let at_once = mean_round(
        RelayConfig {
            batch_wait: Duration::ZERO,
            ..config(1)
        },
        43100,
        2,
    );
    eprintln!(
        "gather: {TOTAL} datagrams at 50,000 a second: {gathering:.1} per round with a 1 ms \
         batch wait, {at_once:.1} without"
    );
    // 50 datagrams come in a millisecond; waking for each one or few, rounds carry far fewer.
    assert!(
        gathering >= 16.0,
        "{gathering:.1} datagrams per round with a 1 ms batch wait ({at_once:.1} without)"
    );
}
