//! One relayed media stream on a shard: its four sockets (RTP and RTCP facing each side), the two
//! [`SideFlow`]s, and the slab that gives every socket a stable [`Token`].
//!
//! Token layout: stream slot `s` owns tokens `4s..4s+4`, in the order caller RTP, caller RTCP,
//! server RTP, server RTCP. A slot is reused only after its stream closed, and commands (which close
//! streams) run between poll rounds, so an event never reaches the wrong stream.

use crate::flow::{Port, SideFlow};
use crate::sys;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;
use tandem_media::latch::LatchPolicy;
use tandem_media::ports::PortPair;
use tandem_media::session::{CallKey, EndpointPlan, MediaSide, StreamPlan};

/// Socket buffer size asked for (the kernel caps it at `net.core.[rw]mem_max`).
const SOCKET_BUFFER: usize = 1 << 20;

/// Index of a side in the per-stream arrays.
pub(crate) fn side_index(side: MediaSide) -> usize {
    match side {
        MediaSide::Caller => 0,
        MediaSide::Server => 1,
    }
}

/// Both sides, in array order.
pub(crate) const SIDES: [MediaSide; 2] = [MediaSide::Caller, MediaSide::Server];

/// The sockets facing one side.
///
/// RTP leaves through a socket of its own bound to the same port ([`bind_rtp`]): one that is not
/// registered with the poll, so the kernel's "send buffer has room again" wake-up after every sent
/// packet finds no waiter (on a polled socket it runs the poll's callback, a few percent of a
/// packet's cost). RTCP, a packet every few seconds, uses its receiving socket.
#[derive(Debug)]
pub(crate) struct SidePorts {
    /// The pair they are bound to.
    pub(crate) local: PortPair,
    /// The RTP socket (even port), which receives.
    pub(crate) rtp: UdpSocket,
    /// The RTCP socket (odd port).
    pub(crate) rtcp: UdpSocket,
    /// The send-only socket on the RTP port, when the kernel allowed one.
    rtp_sender: Option<std::net::UdpSocket>,
    /// Told apart from earlier sockets of the same slot and side (the io_uring shard's requests
    /// carry it, so a completion for a closed socket never reaches a stream opened in its slot).
    pub(crate) generation: u32,
    /// The io_uring shard's registered-file slots of the RTP and RTCP senders, once registered.
    pub(crate) fixed: [Option<u32>; 2],
    /// The io_uring shard has a receive running on the RTP and RTCP sockets.
    pub(crate) armed: [bool; 2],
}

impl SidePorts {
    /// The socket that receives on `port`.
    pub(crate) fn socket(&self, port: Port) -> &UdpSocket {
        match port {
            Port::Rtp => &self.rtp,
            Port::Rtcp => &self.rtcp,
        }
    }

    /// The socket that sends from `port`.
    pub(crate) fn sender(&self, port: Port) -> BorrowedFd<'_> {
        match (port, &self.rtp_sender) {
            (Port::Rtp, Some(sender)) => sender.as_fd(),
            (Port::Rtp, None) => self.rtp.as_fd(),
            (Port::Rtcp, _) => self.rtcp.as_fd(),
        }
    }
}

/// One relayed m-line.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The call it belongs to.
    pub(crate) call: CallKey,
    /// Its m-line index.
    pub(crate) index: u16,
    /// Sockets, by side index.
    pub(crate) ports: [SidePorts; 2],
    /// Packet state, by side index.
    pub(crate) flows: [SideFlow; 2],
    /// The sockets are IPv6.
    pub(crate) ipv6: bool,
}

/// A port that could not be bound.
#[derive(Debug)]
pub(crate) struct BindError {
    /// The port.
    pub(crate) port: u16,
    /// Why.
    pub(crate) error: io::Error,
}

/// Where a stream's sockets are bound and how sides latch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSettings {
    /// Local address of every socket.
    pub(crate) address: IpAddr,
    /// Latch policy per side index.
    pub(crate) policies: [LatchPolicy; 2],
    /// Bind even when `address` is not (yet) this host's (`IP_FREEBIND`): a standby's prepared
    /// sessions, on the service address it takes over later. Live sessions bind plainly, so a
    /// wrong media address fails loudly instead of binding where no packet ever comes.
    pub(crate) free_bind: bool,
}

impl StreamSettings {
    /// Where and how the sockets bind.
    fn bind_at(self) -> Local {
        Local {
            address: self.address,
            free_bind: self.free_bind,
        }
    }
}

/// The shard's streams, in stable slots.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    live: usize,
    /// `None`: the sockets are registered with this poll (epoll shards). `Some`: they are not,
    /// and every side bound or closed is logged here for the io_uring shard to arm or cancel.
    changes: Option<Vec<SocketChange>>,
    next_generation: u32,
}

/// The generations a side's sockets count through before they wrap (24 bits).
pub(crate) const GENERATIONS: u32 = 0xFF_FFFF;

/// A side's sockets bound or closed (logged for an io_uring shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketChange {
    Bound {
        slot: usize,
        side: usize,
    },
    Closed {
        slot: usize,
        side: usize,
        generation: u32,
        /// Registered-file slots to release.
        fixed: [Option<u32>; 2],
    },
}

impl Streams {
    /// Streams whose sockets are not polled but logged ([`Streams::take_changes`]).
    pub(crate) fn logged() -> Self {
        Self {
            changes: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// The sides bound and closed since the last call, in order.
    pub(crate) fn take_changes(&mut self, into: &mut Vec<SocketChange>) {
        if let Some(changes) = &mut self.changes {
            into.append(changes);
        }
    }

    fn log(&mut self, change: SocketChange) {
        if let Some(changes) = &mut self.changes {
            changes.push(change);
        }
    }

    /// The next generation, in the 24 bits an io_uring request carries ([`GENERATIONS`]).
    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATIONS;
        self.next_generation
    }

    fn log_closed(&mut self, slot: usize, side: usize, ports: &SidePorts) {
        self.log(SocketChange::Closed {
            slot,
            side,
            generation: ports.generation,
            fixed: ports.fixed,
        });
    }

    /// The stream in `slot`.
    pub(crate) fn get(&self, slot: usize) -> Option<&Stream> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The stream in `slot`, mutable.
    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Stream> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// How many streams are open.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Binds a new stream (registered with `registry` unless the streams are logged); returns its
    /// slot.
    pub(crate) fn open(
        &mut self,
        registry: &Registry,
        call: CallKey,
        plan: &StreamPlan,
        settings: StreamSettings,
        now: Instant,
    ) -> Result<usize, BindError> {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let at = settings.bind_at();
        // Logged streams are not polled: their shard runs io_uring.
        let registry = self.changes.is_none().then_some(registry);
        let generations = [self.generation(), self.generation()];
        let bound = bind_side(registry, at, plan.caller.local, slot, 0, generations[0]).and_then(
            |caller| {
                let server = bind_side(registry, at, plan.server.local, slot, 1, generations[1]);
                server.map(|server| [caller, server])
            },
        );
        let ports = match bound {
            Ok(ports) => ports,
            Err(error) => {
                if slot < self.slots.len() {
                    self.free.push(slot);
                }
                return Err(error);
            }
        };
        let flow = |side: MediaSide| {
            let policy = settings.policies[side_index(side)];
            SideFlow::new(plan.endpoint(side), policy, plan.clock_rate, now)
        };
        let stream = Stream {
            call,
            index: plan.index,
            ports,
            flows: [flow(MediaSide::Caller), flow(MediaSide::Server)],
            ipv6: settings.address.is_ipv6(),
        };
        if slot == self.slots.len() {
            self.slots.push(Some(stream));
        } else {
            self.slots[slot] = Some(stream);
        }
        self.live += 1;
        for side in 0..2 {
            self.log(SocketChange::Bound { slot, side });
        }
        Ok(slot)
    }

    /// Brings the stream in `slot` to `plan`: sockets whose port pair is unchanged are kept, a
    /// changed pair is bound anew, remotes re-signal. On a bind failure the stream is closed.
    pub(crate) fn update(
        &mut self,
        registry: &Registry,
        slot: usize,
        plan: &StreamPlan,
        settings: StreamSettings,
        now: Instant,
    ) -> Result<(), BindError> {
        let at = settings.bind_at();
        // Logged streams are not polled: their shard runs io_uring.
        let registry = self.changes.is_none().then_some(registry);
        for side in SIDES {
            let endpoint: &EndpointPlan = plan.endpoint(side);
            let i = side_index(side);
            let generation = self.generation();
            let Some(stream) = self.get_mut(slot) else {
                return Ok(());
            };
            if stream.ports[i].local != endpoint.local {
                // The old sockets close when replaced (see `close`).
                match bind_side(registry, at, endpoint.local, slot, i, generation) {
                    Ok(fresh) => {
                        let old = std::mem::replace(&mut stream.ports[i], fresh);
                        self.log_closed(slot, i, &old);
                        self.log(SocketChange::Bound { slot, side: i });
                    }
                    Err(error) => {
                        self.close(slot);
                        return Err(error);
                    }
                }
            }
            if let Some(stream) = self.get_mut(slot) {
                stream.flows[i].update(endpoint, plan.clock_rate, now);
            }
        }
        Ok(())
    }

    /// Every side of the stream in `slot` adopts what `plan` carries from another node
    /// ([`SideFlow::adopt`]).
    pub(crate) fn adopt(&mut self, slot: usize, plan: &StreamPlan, now: Instant) {
        if let Some(stream) = self.get_mut(slot) {
            for side in SIDES {
                stream.flows[side_index(side)].adopt(plan.endpoint(side), plan.clock_rate, now);
            }
        }
    }

    /// Closes the stream in `slot`: its ports are free again when this returns.
    ///
    /// The sockets are closed without deregistering them first: closing a descriptor nobody else
    /// holds removes it from the epoll set, and commands run between poll rounds, so no event of
    /// the old sockets is pending (two `epoll_ctl` calls fewer per side on every call's end).
    pub(crate) fn close(&mut self, slot: usize) {
        let Some(stream) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for (side, ports) in stream.ports.iter().enumerate() {
            self.log_closed(slot, side, ports);
        }
        drop(stream);
        self.free.push(slot);
        self.live -= 1;
    }
}

/// The token of `side`'s `port` socket of the stream in `slot`.
pub(crate) fn token(slot: usize, side: usize, port: Port) -> Token {
    Token(slot * 4 + side * 2 + port.index())
}

/// The stream slot, side index and port a token stands for.
pub(crate) fn untoken(token: Token) -> (usize, usize, Port) {
    let port = if token.0 & 1 == 0 {
        Port::Rtp
    } else {
        Port::Rtcp
    };
    (token.0 / 4, (token.0 / 2) & 1, port)
}

/// Where a stream's sockets bind.
#[derive(Debug, Clone, Copy)]
struct Local {
    address: IpAddr,
    /// `IP_FREEBIND` ([`StreamSettings::free_bind`]).
    free_bind: bool,
}

/// `side`'s sockets in `slot`, registered with `registry` when there is one.
fn bind_side(
    registry: Option<&Registry>,
    at: Local,
    local: PortPair,
    slot: usize,
    side: usize,
    generation: u32,
) -> Result<SidePorts, BindError> {
    let (rtp, rtp_sender) = bind_rtp(at, local.rtp())?;
    let mut rtp = UdpSocket::from_std(rtp);
    // RTCP is a packet every few seconds, but a burst (garbage, a flood) must queue, not drop.
    let rtcp = bind(at, local.rtcp(), Buffers::BOTH, false)?;
    let mut rtcp = UdpSocket::from_std(rtcp.into());
    let register = |socket: &mut UdpSocket, port: Port, number: u16| {
        let Some(registry) = registry else {
            return Ok(());
        };
        registry
            .register(socket, token(slot, side, port), Interest::READABLE)
            .map_err(|error| BindError {
                port: number,
                error,
            })
    };
    register(&mut rtp, Port::Rtp, local.rtp())?;
    // On failure the sockets close here, which also takes `rtp` off the poll.
    register(&mut rtcp, Port::Rtcp, local.rtcp())?;
    Ok(SidePorts {
        local,
        rtp,
        rtcp,
        rtp_sender,
        generation,
        fixed: [None; 2],
        armed: [false; 2],
    })
}

/// The RTP port's receiving socket and, where the kernel allows, a send-only socket on the same
/// port. The receiving socket binds alone (so a port anyone holds fails as usual), then turns
/// `SO_REUSEPORT` on; the sender joins it, which makes a group whose first socket is the receiver,
/// and a classic BPF program on the group hands every datagram to that first socket. (Another
/// socket of the same user that joins later with `SO_REUSEPORT` receives nothing either.)
fn bind_rtp(
    at: Local,
    port: u16,
) -> Result<(std::net::UdpSocket, Option<std::net::UdpSocket>), BindError> {
    let receiver = bind(at, port, Buffers::RECEIVE, false)?;
    let sender = sys::set_reuse_port(&receiver, true)
        .ok()
        .and_then(|()| bind(at, port, Buffers::SEND, true).ok())
        .filter(|sender| sys::steer_to_first(sender).is_ok());
    match &sender {
        // It never reads: keep what it could queue (broadcasts) small.
        Some(sender) => drop(sender.set_recv_buffer_size(0)),
        // Without a steered group (or once the sender is closed) the port is the receiver's alone,
        // and the receiver sends too.
        None => {
            let _ = sys::set_reuse_port(&receiver, false);
            let _ = receiver.set_send_buffer_size(SOCKET_BUFFER);
        }
    }
    Ok((receiver.into(), sender.map(Into::into)))
}

/// Which of a socket's buffers are enlarged to [`SOCKET_BUFFER`].
#[derive(Debug, Clone, Copy)]
struct Buffers {
    receive: bool,
    send: bool,
}

impl Buffers {
    const RECEIVE: Buffers = Buffers {
        receive: true,
        send: false,
    };
    const SEND: Buffers = Buffers {
        receive: false,
        send: true,
    };
    const BOTH: Buffers = Buffers {
        receive: true,
        send: true,
    };
}

/// A non-blocking UDP socket on `at.address:port`, with the `buffers` asked for enlarged, with
/// SO_REUSEPORT when `reuse_port` (never SO_REUSEADDR, off by default), with IP_FREEBIND when
/// `at.free_bind`. Every call's setup runs this four times per side, so it makes only the system
/// calls it needs: the socket is created non-blocking and close-on-exec in one.
fn bind(at: Local, port: u16, buffers: Buffers, reuse_port: bool) -> Result<Socket, BindError> {
    let fail = |error| BindError { port, error };
    let local = SocketAddr::new(at.address, port);
    let kind = Type::from(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let socket =
        Socket::new_raw(Domain::for_address(local), kind, Some(Protocol::UDP)).map_err(fail)?;
    if reuse_port {
        sys::set_reuse_port(&socket, true).map_err(fail)?;
    }
    if at.free_bind {
        crate::set_free_bind(&socket, local).map_err(fail)?;
    }
    // Best effort: a smaller buffer still works.
    if buffers.receive {
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    }
    if buffers.send {
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    }
    socket.bind(&local.into()).map_err(fail)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn plain(address: IpAddr) -> Local {
        Local {
            address,
            free_bind: false,
        }
    }

    #[test]
    fn a_prepared_session_binds_an_address_this_host_does_not_hold() {
        // 192.0.2.0/24 (TEST-NET-1) is on no interface here; nothing is sent. Port 42604.
        let absent: IpAddr = [192, 0, 2, 77].into();
        if !nonlocal_bind_sysctl_set(absent) {
            assert!(
                bind(plain(absent), 42604, Buffers::RECEIVE, false).is_err(),
                "a live session must not bind an address the host does not hold"
            );
        }
        let free = Local {
            address: absent,
            free_bind: true,
        };
        let (receiver, sender) = bind_rtp(free, 42604).unwrap();
        assert_eq!(
            receiver.local_addr().unwrap(),
            SocketAddr::new(absent, 42604)
        );
        drop((receiver, sender));
        let v6: IpAddr = "2001:db8::77".parse().unwrap();
        let free = Local {
            address: v6,
            free_bind: true,
        };
        // Only where the host has IPv6 at all.
        if std::net::UdpSocket::bind(("::1", 0)).is_ok() {
            assert!(bind(free, 42604, Buffers::RECEIVE, false).is_ok());
        }
    }

    fn nonlocal_bind_sysctl_set(address: IpAddr) -> bool {
        let path = match address {
            IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_nonlocal_bind",
            IpAddr::V6(_) => "/proc/sys/net/ipv6/ip_nonlocal_bind",
        };
        std::fs::read_to_string(path).is_ok_and(|value| value.trim() != "0")
    }

    #[test]
    fn the_rtp_port_receives_on_one_socket_sends_from_both_and_stays_exclusive() {
        // Port 42600 (outside the integration tests' blocks).
        let ip: IpAddr = [127, 0, 0, 1].into();
        let port = 42600;
        let (receiver, sender) = bind_rtp(plain(ip), port).unwrap();
        let sender = sender.expect("the kernel steers a SO_REUSEPORT group");
        assert!(std::net::UdpSocket::bind((ip, port)).is_err());
        let peers: Vec<_> = (0..16)
            .map(|_| std::net::UdpSocket::bind((ip, 0)).unwrap())
            .collect();
        for peer in &peers {
            peer.send_to(b"in", (ip, port)).unwrap();
        }
        receiver.set_nonblocking(false).unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0; 16];
        for _ in &peers {
            receiver.recv_from(&mut buffer).unwrap();
        }
        let mut sources = 0;
        while sender.recv_from(&mut buffer).is_ok() {
            sources += 1;
        }
        assert_eq!(sources, 0, "the send-only socket received");
        sender
            .send_to(b"out", peers[0].local_addr().unwrap())
            .unwrap();
        let (_, from) = peers[0].recv_from(&mut buffer).unwrap();
        assert_eq!(from, SocketAddr::new(ip, port));
    }

    #[test]
    fn a_port_held_with_so_reuseport_is_not_shared() {
        // Port 42602.
        let ip: IpAddr = [127, 0, 0, 1].into();
        let _holder = bind(plain(ip), 42602, Buffers::RECEIVE, true).unwrap();
        assert!(bind_rtp(plain(ip), 42602).is_err());
    }

    #[test]
    fn tokens_round_trip() {
        for slot in [0, 1, 7, 10_000] {
            for side in 0..2 {
                for port in [Port::Rtp, Port::Rtcp] {
                    assert_eq!(untoken(token(slot, side, port)), (slot, side, port));
                }
            }
        }
    }
}
