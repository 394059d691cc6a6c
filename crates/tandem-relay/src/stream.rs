//! One relayed media stream on a shard: its four sockets (RTP and RTCP facing each side), the two
//! [`SideFlow`]s, and the slab that gives every socket a stable [`Token`].
//!
//! Token layout: stream slot `s` owns tokens `4s..4s+4`, in the order caller RTP, caller RTCP,
//! server RTP, server RTCP. A slot is reused only after its stream closed, and commands (which close
//! streams) run between poll rounds, so an event never reaches the wrong stream.

use crate::flow::{Port, SideFlow};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
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

/// The two sockets facing one side.
#[derive(Debug)]
pub(crate) struct SidePorts {
    /// The pair they are bound to.
    pub(crate) local: PortPair,
    /// The RTP socket (even port).
    pub(crate) rtp: UdpSocket,
    /// The RTCP socket (odd port).
    pub(crate) rtcp: UdpSocket,
}

impl SidePorts {
    /// The socket of `port`.
    pub(crate) fn socket(&self, port: Port) -> &UdpSocket {
        match port {
            Port::Rtp => &self.rtp,
            Port::Rtcp => &self.rtcp,
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
}

/// The shard's streams, in stable slots.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    live: usize,
}

impl Streams {
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

    /// Binds and registers a new stream; returns its slot.
    pub(crate) fn open(
        &mut self,
        registry: &Registry,
        call: CallKey,
        plan: &StreamPlan,
        settings: StreamSettings,
        now: Instant,
    ) -> Result<usize, BindError> {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let bound =
            bind_side(registry, settings.address, plan.caller.local, slot, 0).and_then(|caller| {
                let server = bind_side(registry, settings.address, plan.server.local, slot, 1);
                server.map(|server| [caller, server])
            });
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
        Ok(slot)
    }

    /// Brings the stream in `slot` to `plan`: sockets whose port pair is unchanged are kept, a
    /// changed pair is bound anew, remotes re-signal. On a bind failure the stream is closed.
    pub(crate) fn update(
        &mut self,
        registry: &Registry,
        slot: usize,
        plan: &StreamPlan,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), BindError> {
        let Some(stream) = self.get_mut(slot) else {
            return Ok(());
        };
        for side in SIDES {
            let endpoint: &EndpointPlan = plan.endpoint(side);
            let i = side_index(side);
            if stream.ports[i].local != endpoint.local {
                let old = &mut stream.ports[i];
                deregister(registry, old);
                match bind_side(registry, address, endpoint.local, slot, i) {
                    Ok(fresh) => stream.ports[i] = fresh,
                    Err(error) => {
                        self.close(registry, slot);
                        return Err(error);
                    }
                }
            }
            stream.flows[i].update(endpoint, plan.clock_rate, now);
        }
        Ok(())
    }

    /// Closes the stream in `slot`: its ports are free again when this returns.
    pub(crate) fn close(&mut self, registry: &Registry, slot: usize) {
        let Some(mut stream) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for ports in &mut stream.ports {
            deregister(registry, ports);
        }
        drop(stream);
        self.free.push(slot);
        self.live -= 1;
    }
}

/// The token of `side`'s `port` socket of the stream in `slot`.
pub(crate) fn token(slot: usize, side: usize, port: Port) -> Token {
    let port = match port {
        Port::Rtp => 0,
        Port::Rtcp => 1,
    };
    Token(slot * 4 + side * 2 + port)
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

fn bind_side(
    registry: &Registry,
    address: IpAddr,
    local: PortPair,
    slot: usize,
    side: usize,
) -> Result<SidePorts, BindError> {
    let mut rtp = bind(address, local.rtp())?;
    let mut rtcp = bind(address, local.rtcp())?;
    let register = |socket: &mut UdpSocket, port: Port, number: u16| {
        registry
            .register(socket, token(slot, side, port), Interest::READABLE)
            .map_err(|error| BindError {
                port: number,
                error,
            })
    };
    register(&mut rtp, Port::Rtp, local.rtp())?;
    if let Err(error) = register(&mut rtcp, Port::Rtcp, local.rtcp()) {
        let _ = registry.deregister(&mut rtp);
        return Err(error);
    }
    Ok(SidePorts { local, rtp, rtcp })
}

/// A non-blocking UDP socket on `address:port`, without SO_REUSEADDR, with large buffers.
fn bind(address: IpAddr, port: u16) -> Result<UdpSocket, BindError> {
    let fail = |error| BindError { port, error };
    let local = SocketAddr::new(address, port);
    let socket =
        Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    socket.set_reuse_address(false).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&local.into()).map_err(fail)?;
    Ok(UdpSocket::from_std(socket.into()))
}

fn deregister(registry: &Registry, ports: &mut SidePorts) {
    let _ = registry.deregister(&mut ports.rtp);
    let _ = registry.deregister(&mut ports.rtcp);
}

#[cfg(test)]
mod tests {
    use super::*;

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
