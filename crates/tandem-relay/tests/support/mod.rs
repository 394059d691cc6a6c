//! Loopback helpers for the relay's integration tests: a relay with an event channel, peers that
//! play the caller and the media server with real UDP sockets, and RTP/RTCP packet builders.
//!
//! Ports: every test owns a block of 100 ports in 41000-42999 (see each test file), so tests run in
//! parallel without sharing a port. Within a block `base`: Tandem's caller-facing pair `base`,
//! server-facing pair `base + 2`, the caller peer `base + 10`, the server peer `base + 12`, extra
//! peers from `base + 20`.

#![allow(clippy::unwrap_used, dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tandem_media::latch::LatchPolicy;
use tandem_media::ports::PortPair;
use tandem_media::session::{
    CallKey, EndpointPlan, MediaCommand, MediaEvent, SessionPlan, StreamPlan,
};
use tandem_relay::{CallMediaStats, Relay, RelayConfig, RelayIo, RelayTotals};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn at(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST, port)
}

/// A strict latch: the signalled IP only.
pub const STRICT: LatchPolicy = LatchPolicy {
    accept_any_ip: false,
    relatch_after: Duration::from_secs(2),
};

/// Relay settings for tests: loopback, `shards` threads, strict latches, no inactivity reports.
pub fn config(shards: usize) -> RelayConfig {
    RelayConfig {
        shards,
        caller_latch: STRICT,
        server_latch: STRICT,
        io: io_backend(),
        ..RelayConfig::new(LOCALHOST)
    }
}

/// The data plane the tests run: the default (io_uring), or epoll with `TANDEM_RELAY_IO=epoll`
/// (scripts/test.sh runs the relay's tests once more that way).
pub fn io_backend() -> RelayIo {
    match std::env::var("TANDEM_RELAY_IO").as_deref() {
        Ok("epoll") => RelayIo::Epoll,
        _ => RelayIo::default(),
    }
}

/// A running relay and the events it reported.
pub struct Harness {
    pub relay: Relay,
    pub events: mpsc::Receiver<MediaEvent>,
}

impl Harness {
    pub fn start(config: RelayConfig) -> Self {
        let (sender, events) = mpsc::channel();
        let relay = Relay::start(config, move |event| {
            let _ = sender.send(event);
        })
        .unwrap();
        Self { relay, events }
    }

    /// Applies `plan` and waits until the shard has run it.
    pub fn apply(&self, plan: SessionPlan) {
        let call = plan.call;
        self.relay.apply(MediaCommand::Apply(plan));
        self.query(call);
    }

    /// Prepares `plan` (a standby's copy of a call) and waits until the shard has run it.
    pub fn prepare(&self, plan: SessionPlan) {
        let call = plan.call;
        self.relay.apply(MediaCommand::Prepare(plan));
        self.query(call);
    }

    /// Removes `call` and waits until the shard has run it.
    pub fn remove(&self, call: CallKey) {
        self.relay.apply(MediaCommand::Remove { call });
        assert!(self.query(call).is_none());
    }

    /// The call's statistics, once the shard answers.
    pub fn query(&self, call: CallKey) -> Option<CallMediaStats> {
        let (sender, reply) = mpsc::channel();
        self.relay.query(call, move |stats| {
            let _ = sender.send(stats);
        });
        reply.recv_timeout(DEADLINE).unwrap()
    }

    /// Waits for an event that `wanted` accepts, skipping the others.
    pub fn event(&self, wanted: impl Fn(&MediaEvent) -> bool) -> MediaEvent {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(_) => panic!("no matching media event within {DEADLINE:?}"),
            }
        }
    }

    /// Waits until the relay's totals satisfy `done`.
    pub fn totals_until(&self, done: impl Fn(&RelayTotals) -> bool) -> RelayTotals {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let totals = self.relay.totals();
            if done(&totals) {
                return totals;
            }
            assert!(
                Instant::now() < deadline,
                "totals never got there: {totals:?}"
            );
            // A query round trip paces the loop and lets the shard run a batch.
            let _ = self.query(u64::MAX);
        }
    }
}

/// An endpoint with Tandem's pair at `local` and the remote at `remote` (RTCP on +1 unless mux).
pub fn endpoint(local: u16, remote: Option<SocketAddr>, rtcp_mux: bool) -> EndpointPlan {
    EndpointPlan {
        local: PortPair::from_rtp(local).unwrap(),
        remote_rtp: remote,
        remote_rtcp: remote.map(|rtp| match rtcp_mux {
            true => rtp,
            false => SocketAddr::new(rtp.ip(), rtp.port() + 1),
        }),
        rtcp_mux,
        ..EndpointPlan::unsignalled(PortPair::from_rtp(local).unwrap())
    }
}

pub fn stream(index: u16, caller: EndpointPlan, server: EndpointPlan) -> StreamPlan {
    StreamPlan {
        index,
        clock_rate: 8000,
        caller,
        server,
    }
}

pub fn plan(call: CallKey, streams: Vec<StreamPlan>) -> SessionPlan {
    SessionPlan {
        call,
        call_id: format!("call-{call}@test"),
        streams,
    }
}

/// The usual one-stream call of a port block: caller peer at `base + 10`, server peer at
/// `base + 12`, no rtcp-mux.
pub fn simple_plan(call: CallKey, base: u16) -> SessionPlan {
    plan(
        call,
        vec![stream(
            0,
            endpoint(base, Some(at(base + 10)), false),
            endpoint(base + 2, Some(at(base + 12)), false),
        )],
    )
}

/// A peer: an RTP socket and the RTCP socket above it.
pub struct Peer {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl Peer {
    pub fn bind(ip: IpAddr, port: u16) -> Self {
        Self {
            rtp: UdpSocket::bind(SocketAddr::new(ip, port)).unwrap(),
            rtcp: UdpSocket::bind(SocketAddr::new(ip, port + 1)).unwrap(),
        }
    }

    pub fn local(port: u16) -> Self {
        Self::bind(LOCALHOST, port)
    }
}

/// Receives one datagram within [`DEADLINE`].
pub fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv_within(socket, DEADLINE).expect("no datagram within the deadline")
}

/// Receives one datagram within `wait`, or `None`.
pub fn recv_within(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buffer = [0u8; 4096];
    socket.set_read_timeout(Some(wait)).unwrap();
    let (len, from) = socket.recv_from(&mut buffer).ok()?;
    Some((buffer[..len].to_vec(), from))
}

/// Receives until a datagram `wanted` accepts arrives (skipping others) within [`DEADLINE`].
pub fn recv_matching(socket: &UdpSocket, wanted: impl Fn(&[u8]) -> bool) -> (Vec<u8>, SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching datagram within {DEADLINE:?}");
        if let Some((packet, from)) = recv_within(socket, left) {
            if wanted(&packet) {
                return (packet, from);
            }
        }
    }
}

/// The fixed-header fields of an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
}

impl Rtp {
    pub fn new(ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            sequence,
            timestamp,
            marker: false,
        }
    }

    /// The packet with a 160-byte payload that starts with `tag`.
    pub fn packet(&self, tag: u32) -> Vec<u8> {
        let mut packet = vec![0x80, if self.marker { 0x80 } else { 0x00 }];
        packet.extend_from_slice(&self.sequence.to_be_bytes());
        packet.extend_from_slice(&self.timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(&tag.to_be_bytes());
        packet.extend_from_slice(&[0xd5; 156]);
        packet
    }

    pub fn read(packet: &[u8]) -> Self {
        assert!(packet.len() >= 12, "not RTP: {packet:?}");
        Self {
            ssrc: be32(packet, 8),
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: be32(packet, 4),
            marker: packet[1] & 0x80 != 0,
        }
    }
}

/// The tag a packet built by [`Rtp::packet`] carries.
pub fn tag(packet: &[u8]) -> Option<u32> {
    (packet.len() >= 16 && packet[0] >> 6 == 2 && !is_rtcp(packet)).then(|| be32(packet, 12))
}

/// RFC 5761 §4.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// An RTCP receiver report from `sender` with one report block about `about`.
pub fn receiver_report(sender: u32, about: u32) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, 7];
    packet.extend_from_slice(&sender.to_be_bytes());
    packet.extend_from_slice(&about.to_be_bytes());
    packet.extend_from_slice(&[0; 20]);
    packet
}

pub fn be32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap())
}
