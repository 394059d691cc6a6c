//! The UDP service socket: large kernel buffers, batched non-blocking receive, send with a fallback
//! to waiting for writability.

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

/// Kernel receive and send buffer asked for (the kernel may cap it at `net.core.rmem_max` /
/// `net.core.wmem_max`), so bursts of signalling are not dropped while the core task is busy.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_535;

/// Most datagrams read per wake-up before the core task looks at its other inputs.
pub const RECV_BATCH: usize = 64;

/// Binds the service socket (must run inside a tokio runtime); `free_bind`: even on an address
/// this host does not hold yet (see [`tandem_relay::set_free_bind`]).
pub fn bind_udp(addr: SocketAddr, free_bind: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if free_bind {
        tandem_relay::set_free_bind(&socket, addr)?;
    }
    request_buffer(
        &socket,
        "receive",
        Socket::set_recv_buffer_size,
        Socket::recv_buffer_size,
    );
    request_buffer(
        &socket,
        "send",
        Socket::set_send_buffer_size,
        Socket::send_buffer_size,
    );
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn request_buffer(
    socket: &Socket,
    direction: &'static str,
    set: fn(&Socket, usize) -> io::Result<()>,
    get: fn(&Socket) -> io::Result<usize>,
) {
    if let Err(error) = set(socket, SOCKET_BUFFER_BYTES) {
        warn!(direction, %error, "cannot size UDP socket buffer");
        return;
    }
    match get(socket) {
        // Linux reports twice the usable size; less than asked means the sysctl maximum capped it.
        Ok(granted) if granted < SOCKET_BUFFER_BYTES => {
            warn!(
                direction,
                requested = SOCKET_BUFFER_BYTES,
                granted,
                "UDP socket buffer capped by the kernel (raise net.core.rmem_max / wmem_max)"
            )
        }
        Ok(granted) => debug!(direction, granted, "UDP socket buffer sized"),
        Err(error) => debug!(direction, %error, "cannot read UDP socket buffer size"),
    }
}

/// Reads the datagrams that are ready, up to [`RECV_BATCH`], without waiting. Each one is copied
/// out of `scratch` into a `Bytes` of its own size, so a message the core keeps pins only its own
/// bytes. Returns how many were delivered.
pub fn drain_datagrams(
    socket: &UdpSocket,
    scratch: &mut [u8],
    mut deliver: impl FnMut(Bytes, SocketAddr),
) -> usize {
    let mut delivered = 0;
    while delivered < RECV_BATCH {
        match socket.try_recv_from(scratch) {
            Ok((len, from)) => {
                deliver(Bytes::copy_from_slice(&scratch[..len]), from);
                delivered += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                break;
            }
        }
    }
    delivered
}

/// Sends one datagram: at once when the socket takes it, else after waiting for writability.
pub async fn send_datagram(socket: &UdpSocket, payload: &[u8], dest: SocketAddr) -> io::Result<()> {
    match socket.try_send_to(payload, dest) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            socket.send_to(payload, dest).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}
