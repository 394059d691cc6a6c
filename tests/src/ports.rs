//! Loopback ports for tests running in parallel.
//!
//! Single ports (SIP, admin, SIPp's media ports) come from 22000–31999: above the Asterisk lab's RTP
//! ranges (20000–21999), below Linux's ephemeral range (32768+), away from SIPp's defaults (5060, 6000,
//! 8888) and the Asterisk lab's 5080. Each process starts in its own 500-port window (chosen from its
//! pid) and hands ports out from an atomic counter; a port is only handed out if binding it over UDP
//! and TCP works on every loopback address of the machine (127.0.0.1, and ::1 when configured), so one
//! port serves a test of either [`IpFamily`].
//!
//! Tandem's media relay ports come in ranges of their own, one per Tandem a test starts
//! ([`free_media_range`]): 200-port windows of 61000–65399, above Linux's ephemeral range (which
//! ends at 60999) and clear of the single ports, the Asterisk lab, the benches' relay ranges
//! (benches/rtp-load.sh: 10000–29999) and 41000–42999 (the relay crate's own tests).

use crate::IpFamily;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 22_000;
const WINDOW: u32 = 500;
const WINDOWS: u32 = 20;
/// The longest block [`free_port_block`] hands out.
const MAX_BLOCK: u32 = 16;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn window_start() -> u32 {
    FIRST + (std::process::id() % WINDOWS) * WINDOW
}

/// Whether `addr` can be bound over UDP and TCP right now. TCP is tried without `SO_REUSEADDR`,
/// as SIPp binds: a port whose earlier connection still lingers in TIME_WAIT is not free for it
/// (a listener with the option, like std's, would bind it anyway).
pub fn is_free_on(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok() && tcp_bindable_without_reuse(addr)
}

fn tcp_bindable_without_reuse(addr: SocketAddr) -> bool {
    let Ok(socket) = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
    else {
        return false;
    };
    if addr.is_ipv6() && socket.set_only_v6(true).is_err() {
        return false;
    }
    socket.set_reuse_address(false).is_ok() && socket.bind(&addr.into()).is_ok()
}

/// Whether `port` can be bound over UDP and TCP on every configured loopback address right now.
pub fn is_free(port: u16) -> bool {
    IpFamily::ALL
        .into_iter()
        .filter(|family| family.is_configured())
        .all(|family| is_free_on(family.addr(port)))
}

/// A free port.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `len` consecutive free ports (`len` ≤ 16), e.g. for SIPp's media port (it also
/// uses the port two above for video).
pub fn free_port_block(len: u16) -> u16 {
    let len = u32::from(len).clamp(1, MAX_BLOCK);
    // One modulus for every block length, so that the counter's blocks never overlap, also after
    // it wraps (a modulus depending on `len` would put a wrapped 1-port block inside a 4-port one
    // handed out before); ports checked only on the machine's loopback cannot tell.
    let span = WINDOWS * WINDOW - MAX_BLOCK;
    let start = window_start() - FIRST;
    // the whole range is tried at most once; if every port is taken, the last candidate is returned
    // and the process that wants it will say that it cannot bind
    let mut candidate = FIRST;
    for _ in 0..span {
        candidate = block_start(start, NEXT.fetch_add(len, Ordering::Relaxed));
        if (candidate..candidate + len).all(|p| u16::try_from(p).map(is_free).unwrap_or(false)) {
            break;
        }
    }
    u16::try_from(candidate).unwrap_or(u16::MAX)
}

/// The first port of the block the counter at `counter` stands for, in a process whose window
/// starts `start` ports above [`FIRST`].
fn block_start(start: u32, counter: u32) -> u32 {
    FIRST + (start + counter) % (WINDOWS * WINDOW - MAX_BLOCK)
}

const MEDIA_FIRST: u32 = 61_000;
/// Ports per Tandem: 100 RTP/RTCP pairs, two per call (caller- and server-facing), 50 calls at once.
const MEDIA_WINDOW: u32 = 200;
const MEDIA_WINDOWS: u32 = 22;

static NEXT_MEDIA: AtomicU32 = AtomicU32::new(0);

/// Whether every port of `ports` can be bound over UDP on every configured loopback address.
pub fn is_free_udp_range(ports: &RangeInclusive<u16>) -> bool {
    let families: Vec<IpFamily> = IpFamily::ALL
        .into_iter()
        .filter(|family| family.is_configured())
        .collect();
    ports.clone().all(|port| {
        families
            .iter()
            .all(|family| UdpSocket::bind(family.addr(port)).is_ok())
    })
}

/// A free range of 200 ports for one Tandem's media relay (`[media] port_min..=port_max`): starts
/// even, ends odd, never overlaps another range handed out by this process nor the single ports of
/// [`free_port`]. Windows are tried from one chosen by the pid; one with a port already bound (by
/// another test process) is skipped.
pub fn free_media_range() -> RangeInclusive<u16> {
    let window = |index: u32| {
        let first = MEDIA_FIRST + (index % MEDIA_WINDOWS) * MEDIA_WINDOW;
        let to_u16 = |port: u32| u16::try_from(port).unwrap_or(u16::MAX);
        to_u16(first)..=to_u16(first + MEDIA_WINDOW - 1)
    };
    let start = std::process::id() % MEDIA_WINDOWS;
    let mut candidate = window(start);
    for _ in 0..MEDIA_WINDOWS {
        candidate = window(start + NEXT_MEDIA.fetch_add(1, Ordering::Relaxed));
        if is_free_udp_range(&candidate) {
            break;
        }
    }
    candidate
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_ranges_are_disjoint_even_pairs_away_from_the_single_ports() {
        let ranges: Vec<RangeInclusive<u16>> = (0..5).map(|_| free_media_range()).collect();
        for (i, range) in ranges.iter().enumerate() {
            assert_eq!(range.start() % 2, 0, "{range:?}");
            assert_eq!(range.end() % 2, 1, "{range:?}");
            assert!(
                *range.start() >= 61_000 && *range.end() < 65_400,
                "{range:?}"
            );
            for other in &ranges[i + 1..] {
                assert!(
                    range.end() < other.start() || other.end() < range.start(),
                    "{range:?} overlaps {other:?}"
                );
            }
            assert!(!range.contains(&free_port()));
        }
    }

    #[test]
    fn blocks_of_mixed_lengths_never_overlap_also_after_the_counter_wraps() {
        // The last window, which wraps soonest: 1- and 4-port blocks across the wrap.
        let start = (WINDOWS - 1) * WINDOW;
        let (mut counter, mut taken) = (0u32, std::collections::HashSet::new());
        for i in 0..3000u32 {
            let len = if i % 3 == 0 { 4 } else { 1 };
            let first = block_start(start, counter);
            counter += len;
            for port in first..first + len {
                assert!((22_000..32_000).contains(&port), "{port}");
                assert!(
                    taken.insert(port),
                    "port {port} handed out twice (block {i})"
                );
            }
        }
    }

    #[test]
    fn ports_are_distinct_and_in_range() {
        let a = free_port();
        let b = free_port_block(4);
        let c = free_port();
        assert_ne!(a, c);
        assert!(!(b..b + 4).contains(&a) && !(b..b + 4).contains(&c));
        for p in [a, b, c] {
            assert!((22_000..32_000).contains(&u32::from(p)), "{p}");
        }
    }

    /// A port whose connection lingers in TIME_WAIT is not free: SIPp could not bind it.
    #[test]
    fn a_port_in_time_wait_is_not_free() {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = TcpListener::bind(addr).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        drop(listener);
        // The side on `port` closes first, so it is the one left in TIME_WAIT.
        drop(accepted);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!is_free_on(addr), "{addr} in TIME_WAIT counted as free");
    }

    /// A port taken on one loopback address only is not free: it could not serve a test of that
    /// family.
    #[test]
    fn a_port_bound_on_either_loopback_is_not_free() {
        for family in IpFamily::ALL.into_iter().filter(|f| f.is_configured()) {
            let port = free_port();
            let taken = UdpSocket::bind(family.addr(port)).unwrap();
            assert!(!is_free(port), "{port} bound on {family}");
            assert!(!is_free_on(family.addr(port)));
            drop(taken);
            assert!(is_free(port), "{port} released on {family}");
        }
    }
}
