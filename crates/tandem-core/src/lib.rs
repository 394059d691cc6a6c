//! Tandem's sans-IO core. Nothing here touches a socket or reads a clock: the I/O shell feeds
//! messages and the current time in (`handle_*(now, ..)`) and drains what to send
//! (`poll_transmit`), when to wake (`poll_timeout`) and what changed (`poll_event`).
//!
//! * [`transaction`]: RFC 3261 §17 client and server transactions (INVITE and non-INVITE, timers
//!   A–K and RFC 6026 L/M), retransmission absorption, CANCEL matching.
//! * [`Core`]: the B2BUA (caller leg ↔ server leg per call), the media-server pool with OPTIONS
//!   probes, and the events every change of call state produces.

pub mod media;
pub mod transaction;

use bytes::Bytes;
use std::net::SocketAddr;

/// Transport of a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Reliable transports need no retransmission timers (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
    /// Token used in Via headers and `transport=` parameters.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Identifier the I/O shell gives a TCP connection.
pub type ConnId = u64;

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// For TCP: the connection it arrived on / should leave on, when known. The shell opens (or
    /// reuses) a connection to `addr` when `None` or when that connection is gone.
    pub conn: Option<ConnId>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr,
            conn: None,
        }
    }
    pub fn tcp(addr: SocketAddr, conn: Option<ConnId>) -> Peer {
        Peer {
            transport: Transport::Tcp,
            addr,
            conn,
        }
    }
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub dest: Peer,
    pub payload: Bytes,
}

mod b2bua;
pub mod call;
pub mod config;
pub mod ids;
pub mod pool;

pub use b2bua::{
    CallEvent, CallOverview, CallSnapshot, CallView, ChangeView, Core, Durability, Metrics,
    ReplicaSnapshot, ReplicationChange, ServerHealth,
};
pub use config::{CoreConfig, MediaServerConfig, ProbeConfig};
