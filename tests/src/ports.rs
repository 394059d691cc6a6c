//! Loopback ports for tests running in parallel.
//!
//! Ports come from 22000–31999: above the Asterisk lab's RTP ranges (20000–21999), below Linux's
//! ephemeral range (32768+), away from SIPp's defaults (5060, 6000, 8888) and the Asterisk lab's 5080.
//! Each process starts in its own 500-port window (chosen from its pid) and hands ports out from an
//! atomic counter; a port is only handed out if binding it over UDP and TCP works on every loopback
//! address of the machine (127.0.0.1, and ::1 when configured), so one port serves a test of either
//! [`IpFamily`].

use crate::IpFamily;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 22_000;
const WINDOW: u32 = 500;
const WINDOWS: u32 = 20;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn window_start() -> u32 {
    FIRST + (std::process::id() % WINDOWS) * WINDOW
}

/// Whether `addr` can be bound over UDP and TCP right now.
pub fn is_free_on(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
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
    let len = u32::from(len.clamp(1, 16));
    let span = WINDOWS * WINDOW;
    let start = window_start() - FIRST;
    // the whole range is tried at most once; if every port is taken, the last candidate is returned
    // and the process that wants it will say that it cannot bind
    let mut candidate = FIRST;
    for _ in 0..span {
        candidate = FIRST + (start + NEXT.fetch_add(len, Ordering::Relaxed)) % (span - len);
        if (candidate..candidate + len).all(|p| u16::try_from(p).map(is_free).unwrap_or(false)) {
            break;
        }
    }
    u16::try_from(candidate).unwrap_or(u16::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
