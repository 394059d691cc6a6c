//! Sockets: the UDP service socket, TCP listener and connections. The core task owns the UDP
//! socket and the table of TCP connections; each TCP connection runs in its own task and talks to
//! the core task through channels (never a lock).

pub mod framing;
pub mod tcp;
pub mod udp;

use bytes::Bytes;
use std::net::SocketAddr;
use tandem_core::{ConnId, Peer};
use tokio::sync::mpsc;

/// What TCP tasks tell the core task.
#[derive(Debug)]
pub enum Inbound {
    /// A connection was accepted; sent before any of its messages.
    Accepted {
        conn: ConnId,
        addr: SocketAddr,
        /// Messages to write on the connection.
        writer: mpsc::Sender<Bytes>,
    },
    /// One SIP message read from a connection.
    Message { payload: Bytes, from: Peer },
    /// A connection ended (or an outbound one never opened).
    Closed {
        conn: ConnId,
        addr: SocketAddr,
        reason: CloseReason,
    },
}

/// Why a TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// Nothing was read or written for `sip.tcp_idle_timeout`.
    Idle,
    /// Reading failed (reset, ...).
    ReadFailed,
    /// Writing failed or timed out, or messages were still queued when it ended.
    WriteFailed,
    /// The peer sent bytes that can never frame a SIP message.
    InvalidStream,
    /// An outbound connection could not be opened.
    ConnectFailed,
    /// The core task stopped.
    Shutdown,
}

impl CloseReason {
    /// Whether messages sent to the peer were lost, which the core hears as a transport error.
    pub fn lost_messages(self) -> bool {
        matches!(self, CloseReason::WriteFailed | CloseReason::ConnectFailed)
    }

    /// Short token for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer-closed",
            CloseReason::Idle => "idle",
            CloseReason::ReadFailed => "read-failed",
            CloseReason::WriteFailed => "write-failed",
            CloseReason::InvalidStream => "invalid-stream",
            CloseReason::ConnectFailed => "connect-failed",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// A listening TCP socket on `addr` (SO_REUSEADDR, as `TcpListener::bind` sets it), free-bound
/// when `free_bind` ([`tandem_relay::set_free_bind`]); must run inside a tokio runtime.
pub fn bind_tcp(
    addr: std::net::SocketAddr,
    free_bind: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if free_bind {
        tandem_relay::set_free_bind(&socket, addr)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}
