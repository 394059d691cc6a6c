//! Loopback throughput and CPU cost per packet of one relay shard (a benchmark: it loads the
//! machine for a few seconds). Run it with
//!
//! ```text
//! cargo bench -p tandem-relay --bench throughput
//! ```
//!
//! 20 calls on one shard; the test thread sends bursts of 16 (`RELAY_BENCH_BURST`) G.711-sized packets from each caller
//! in turn, a receiver thread drains the server peers. Bounded: at most 5 seconds and 2,000,000
//! packets. It prints the packets relayed per second of wall time and the relay thread's CPU time
//! per packet (from `/proc/self/task/*/schedstat`). Port block: 42000-42499.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const CALLS: u16 = 20;
/// Packets sent to one caller port before the next; `RELAY_BENCH_BURST=1` approaches real calls,
/// where every port sees one packet per wake-up.
fn burst() -> u16 {
    std::env::var("RELAY_BENCH_BURST")
        .ok()
        .and_then(|burst| burst.parse().ok())
        .unwrap_or(16)
}
const RUN: Duration = Duration::from_secs(5);
const MAX_PACKETS: u64 = 2_000_000;

/// CPU time the named thread of this process has run, in nanoseconds.
fn thread_cpu(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim() == name {
            let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            return schedstat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

fn main() {
    let base = 42000;
    let relay = Harness::start(config(1));
    let mut callers = Vec::new();
    let mut servers = Vec::new();
    for call in 0..CALLS {
        let block = base + 20 * call;
        relay.apply(simple_plan(u64::from(call), block));
        let caller = UdpSocket::bind(at(block + 10)).unwrap();
        let server = UdpSocket::bind(at(block + 12)).unwrap();
        server.set_nonblocking(true).unwrap();
        callers.push((block, caller));
        servers.push(server);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                for server in &servers {
                    while server.recv_from(&mut buffer).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let cpu_before = thread_cpu("tandem-relay-0").unwrap_or(0);
    let before = relay.relay.totals();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut packet = Rtp::new(0xca11, 0, 0).packet(0);
    let mut sequence = 0u16;
    let burst = burst();
    while started.elapsed() < RUN && sent < MAX_PACKETS {
        for (block, caller) in &callers {
            for _ in 0..burst {
                sequence = sequence.wrapping_add(1);
                packet[2..4].copy_from_slice(&sequence.to_be_bytes());
                if caller.send_to(&packet, at(*block)).is_ok() {
                    sent += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // Let the shard finish what is queued: wait until its counter stops moving.
    let mut last = relay.relay.totals().packets_received;
    loop {
        let _ = relay.query(0);
        let now = relay.relay.totals().packets_received;
        if now == last {
            break;
        }
        last = now;
    }
    let cpu = thread_cpu("tandem-relay-0").unwrap_or(0) - cpu_before;
    let totals = relay.relay.totals();
    let relayed = totals.packets_relayed - before.packets_relayed;
    let batches = totals.recv_batches - before.recv_batches;
    let read = totals.packets_received - before.packets_received;
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();

    println!(
        "sent {sent} in {elapsed:?}; relayed {relayed} ({:.0} pps); received {}; relay thread CPU {:.3} s = {:.2} us/packet; mean batch {:.1}; dropped: send {} malformed {}",
        relayed as f64 / elapsed.as_secs_f64(),
        received.load(Ordering::Relaxed),
        cpu as f64 / 1e9,
        cpu as f64 / 1e3 / relayed.max(1) as f64,
        read as f64 / batches.max(1) as f64,
        totals.send_errors,
        totals.dropped_malformed,
    );
    assert!(relayed > 0);
}
