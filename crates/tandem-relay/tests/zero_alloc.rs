//! The relay allocates nothing per packet: a counting global allocator (this file's own, hence
//! its own test binary with this single test) counts every allocation of every thread while
//! 10,000 packets are relayed after a warm-up. The test thread allocates nothing inside the
//! window itself: its packet and receive buffers exist before it opens. Port block: 42800.

#![allow(clippy::unwrap_used)]
// A global allocator needs `unsafe impl`; it only forwards to the system allocator.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::*;

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as received; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Packets per burst: sent, then all received, before the next burst.
const BURST: u16 = 50;

/// Sends `bursts` bursts from `from` to `relay_port` and receives them at `to`; returns how many
/// arrived. Allocates nothing.
fn relay_bursts(
    from: &UdpSocket,
    relay_port: u16,
    to: &UdpSocket,
    packet: &mut [u8],
    buffer: &mut [u8],
    bursts: u16,
    sequence: &mut u16,
) -> u64 {
    let mut arrived = 0;
    for _ in 0..bursts {
        for _ in 0..BURST {
            *sequence = sequence.wrapping_add(1);
            packet[2..4].copy_from_slice(&sequence.to_be_bytes());
            from.send_to(packet, at(relay_port)).unwrap();
        }
        for _ in 0..BURST {
            match to.recv_from(buffer) {
                Ok((len, _)) if len == packet.len() => arrived += 1,
                _ => return arrived,
            }
        }
    }
    arrived
}

#[test]
fn relaying_allocates_nothing_per_packet() {
    let base = 42800;
    let relay = Harness::start(config(1));
    let (caller, server) = (Peer::local(base + 10), Peer::local(base + 12));
    relay.apply(simple_plan(1, base));
    for socket in [&caller.rtp, &server.rtp] {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    let mut to_server = Rtp::new(0xca11, 0, 0).packet(1);
    let mut to_caller = Rtp::new(0x5e4e, 0, 0).packet(2);
    let mut buffer = vec![0u8; 2048];
    let (mut caller_sequence, mut server_sequence) = (0u16, 0u16);

    // Warm-up: both sides latch (events are sent then), streams start, buffers settle.
    let warm = relay_bursts(
        &caller.rtp,
        base,
        &server.rtp,
        &mut to_server,
        &mut buffer,
        10,
        &mut caller_sequence,
    ) + relay_bursts(
        &server.rtp,
        base + 2,
        &caller.rtp,
        &mut to_caller,
        &mut buffer,
        10,
        &mut server_sequence,
    );
    assert_eq!(warm, 1000);
    relay.totals_until(|t| t.packets_relayed == 1000);

    // The counter counts: an allocation inside a window is seen.
    COUNTING.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(vec![0u8; 64]);
    COUNTING.store(false, Ordering::SeqCst);
    drop(probe);
    assert!(
        ALLOCATIONS.swap(0, Ordering::SeqCst) >= 1,
        "the allocator counts"
    );

    COUNTING.store(true, Ordering::SeqCst);
    let mut relayed = 0;
    for _ in 0..10 {
        relayed += relay_bursts(
            &caller.rtp,
            base,
            &server.rtp,
            &mut to_server,
            &mut buffer,
            10,
            &mut caller_sequence,
        );
        relayed += relay_bursts(
            &server.rtp,
            base + 2,
            &caller.rtp,
            &mut to_caller,
            &mut buffer,
            10,
            &mut server_sequence,
        );
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    assert_eq!(relayed, 10_000, "every packet was relayed");
    let totals = relay.totals_until(|t| t.packets_relayed == 11_000);
    assert_eq!(totals.packets_received, 11_000);
    assert_eq!(allocations, 0, "allocations while relaying 10,000 packets");
}
