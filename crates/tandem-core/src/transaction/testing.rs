//! Deterministic simulation support for transaction tests (in the spirit of quinn-proto's
//! `tests/util.rs`): two [`TransactionLayer`]s, a UAC and a UAS, joined by a virtual network that
//! loses, delays and reorders datagrams under a seeded [`XorShift`], with virtual time that only
//! moves when [`Sim::step_until`] jumps to the next delivery or timer. Nothing here reads a clock
//! except [`Sim::new`], once, to get a starting `Instant`.
//!
//! Also small message builders for tests. They panic if the codec rejects what they build.

use super::{Incoming, Timers, TransactionLayer, TxEvent};
use crate::{Peer, Transport};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tandem_sip::{HeaderName, Message, Method, RequestBuilder, ResponseBuilder};

/// xorshift64* — a tiny, seeded, reproducible generator.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // splitmix64 of the seed, so that 0 and nearby seeds give unrelated, non-zero states
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when n is 0), from the high bits (the low bits of xorshift are weak).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }
}

/// One of the two simulated endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Uac,
    Uas,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Uac => Side::Uas,
            Side::Uas => Side::Uac,
        }
    }

    /// The endpoint's address: 10.0.0.1:5060 (UAC) or 10.0.0.2:5060 (UAS).
    pub fn addr(self) -> SocketAddr {
        let host = match self {
            Side::Uac => 1,
            Side::Uas => 2,
        };
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), 5060))
    }
}

/// How the virtual network treats every datagram.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Probability of loss, in ‰.
    pub loss_per_mille: u32,
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra uniform random delay in `0..=jitter`; anything above zero reorders.
    pub jitter: Duration,
    pub seed: u64,
}

impl Default for NetConfig {
    /// A perfect network with 10 ms latency.
    fn default() -> Self {
        NetConfig {
            loss_per_mille: 0,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            seed: 1,
        }
    }
}

/// Something a layer produced, in the order it happened.
#[allow(clippy::large_enum_variant)] // test support: matched by value in scenarios
#[derive(Debug)]
pub enum Happening {
    /// A delivered message and what the receiving layer made of it.
    Incoming { side: Side, incoming: Incoming },
    /// A timer-driven event of one layer.
    Event { side: Side, event: TxEvent },
}

/// One datagram a layer sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub from: Side,
    pub payload: Bytes,
    /// When it reaches the other side; `None` when the network lost it (random loss or a
    /// [`Sim::drop_when`] rule).
    pub arrives: Option<Instant>,
}

impl Sent {
    /// The message, as the codec parses it.
    pub fn message(&self) -> Option<Message> {
        Message::parse(self.payload.clone()).ok()
    }

    /// The start line, e.g. `INVITE sip:bob@example.com SIP/2.0` or `SIP/2.0 200 OK`.
    pub fn first_line(&self) -> &str {
        let line = self
            .payload
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or_default();
        std::str::from_utf8(line).unwrap_or("")
    }
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: Side,
    payload: Bytes,
}

type DropRule = Box<dyn FnMut(Side, &Message) -> bool>;

/// Two layers and the virtual network between them.
pub struct Sim {
    /// Virtual time.
    pub now: Instant,
    pub uac: TransactionLayer,
    pub uas: TransactionLayer,
    /// Transport both endpoints use.
    pub transport: Transport,
    net: NetConfig,
    rng: XorShift,
    in_flight: Vec<InFlight>,
    next_seq: u64,
    pending: VecDeque<Happening>,
    log: Vec<Sent>,
    drop_rule: Option<DropRule>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("transport", &self.transport)
            .field("in_flight", &self.in_flight.len())
            .field("uac", &self.uac.len())
            .field("uas", &self.uas.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    pub fn new(timers: Timers, transport: Transport, net: NetConfig) -> Sim {
        Sim {
            now: Instant::now(),
            uac: TransactionLayer::new(timers),
            uas: TransactionLayer::new(timers),
            transport,
            rng: XorShift::new(net.seed),
            net,
            in_flight: Vec::new(),
            next_seq: 0,
            pending: VecDeque::new(),
            log: Vec::new(),
            drop_rule: None,
        }
    }

    /// The address of `side`, as the other side sees it.
    pub fn peer(&self, side: Side) -> Peer {
        Peer {
            transport: self.transport,
            addr: side.addr(),
            conn: None,
        }
    }

    pub fn layer(&mut self, side: Side) -> &mut TransactionLayer {
        match side {
            Side::Uac => &mut self.uac,
            Side::Uas => &mut self.uas,
        }
    }

    /// Drops every datagram for which `rule(sender, message)` is true, on top of random loss.
    pub fn drop_when(&mut self, rule: impl FnMut(Side, &Message) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    /// Every datagram sent so far, dropped ones included.
    pub fn log(&self) -> &[Sent] {
        &self.log
    }

    /// Datagrams sent by `from` whose start line begins with `prefix`, with their send times.
    pub fn sent(&self, from: Side, prefix: &str) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.from == from && s.first_line().starts_with(prefix))
            .collect()
    }

    /// Advances virtual time to the next delivery or timer, at most to `limit`, and returns what it
    /// produced; `None` (with `now` moved to `limit`) when nothing happens before `limit`.
    pub fn step_until(&mut self, limit: Instant) -> Option<Happening> {
        loop {
            self.flush();
            if let Some(happening) = self.pending.pop_front() {
                return Some(happening);
            }
            let packet = self
                .in_flight
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.at, p.seq))
                .map(|(i, p)| (i, p.at));
            let timer = [self.uac.poll_timeout(), self.uas.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = [packet.map(|(_, at)| at), timer]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(next) if next <= limit => self.now = self.now.max(next),
                _ => {
                    self.now = self.now.max(limit);
                    return None;
                }
            }
            match packet {
                Some((i, at)) if at <= self.now => self.deliver(i),
                _ => {
                    for side in [Side::Uac, Side::Uas] {
                        let now = self.now;
                        let layer = self.layer(side);
                        if layer.poll_timeout().is_some_and(|t| t <= now) {
                            layer.handle_timeout(now);
                        }
                    }
                }
            }
        }
    }

    /// Runs until `limit`, handing every happening to `tu` (which may call the layers).
    pub fn run_until(&mut self, limit: Instant, mut tu: impl FnMut(&mut Sim, Happening)) {
        while let Some(happening) = self.step_until(limit) {
            tu(self, happening);
        }
    }

    fn deliver(&mut self, index: usize) {
        let packet = self.in_flight.swap_remove(index);
        let Ok(msg) = Message::parse(packet.payload) else {
            return;
        };
        let (now, from) = (self.now, self.peer(packet.to.other()));
        let incoming = self.layer(packet.to).handle_incoming(now, msg, from);
        self.pending.push_back(Happening::Incoming {
            side: packet.to,
            incoming,
        });
    }

    /// Moves what the layers queued into the network and the pending list.
    fn flush(&mut self) {
        for side in [Side::Uac, Side::Uas] {
            while let Some(event) = self.layer(side).poll_event() {
                self.pending.push_back(Happening::Event { side, event });
            }
            while let Some(transmit) = self.layer(side).poll_transmit() {
                let to = side.other();
                let mut dropped =
                    transmit.dest.addr != to.addr() || self.rng.chance(self.net.loss_per_mille);
                if let (Some(rule), Ok(msg)) = (
                    self.drop_rule.as_mut(),
                    Message::parse(transmit.payload.clone()),
                ) {
                    dropped |= rule(side, &msg);
                }
                let jitter = self.rng.below(self.net.jitter.as_micros() as u64 + 1);
                let at = self.now + self.net.latency + Duration::from_micros(jitter);
                self.log.push(Sent {
                    at: self.now,
                    from: side,
                    payload: transmit.payload.clone(),
                    arrives: (!dropped).then_some(at),
                });
                if !dropped {
                    self.next_seq += 1;
                    self.in_flight.push(InFlight {
                        at,
                        seq: self.next_seq,
                        to,
                        payload: transmit.payload,
                    });
                }
            }
        }
    }
}

/// A request from the UAC (`Via: SIP/2.0/UDP 10.0.0.1:5060;branch=…`), with `extra` headers after
/// the usual ones.
pub fn request(
    method: &Method,
    branch: &str,
    call_id: &str,
    seq: u32,
    extra: &[(HeaderName<'_>, &str)],
) -> Message {
    let mut b = RequestBuilder::new(method, "sip:bob@10.0.0.2:5060");
    b.header(
        HeaderName::Via,
        &format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"),
    )
    .header(HeaderName::MaxForwards, "70")
    .header(HeaderName::From, "<sip:alice@example.com>;tag=caller")
    .header(HeaderName::To, "<sip:bob@example.com>")
    .header(HeaderName::CallId, call_id)
    .header(HeaderName::CSeq, &format!("{seq} {}", method.as_str()));
    for (name, value) in extra {
        b.header(*name, value);
    }
    Message::parse(b.build()).expect("codec rejected a test request")
}

/// A response to `request`; a To tag `callee` is added to every non-100 response.
pub fn response(request: &Message, code: u16) -> Message {
    let mut b = ResponseBuilder::new(request, code, reason(code));
    if code != 100 {
        b.to_tag("callee");
    }
    Message::parse(b.build()).expect("codec rejected a test response")
}

/// The UAC's ACK for a 2xx (§13.2.2.4): a new transaction (its own branch), To from the response.
pub fn ack_for_2xx(invite: &Message, ok: &Message, branch: &str) -> Message {
    let mut b = RequestBuilder::new(&Method::Ack, "sip:bob@10.0.0.2:5060");
    b.header(
        HeaderName::Via,
        &format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"),
    )
    .header(HeaderName::MaxForwards, "70")
    .header(
        HeaderName::From,
        &invite.header(HeaderName::From).unwrap_or_default(),
    )
    .header(
        HeaderName::To,
        &ok.header(HeaderName::To).unwrap_or_default(),
    )
    .header(HeaderName::CallId, invite.call_id())
    .header(HeaderName::CSeq, &format!("{} ACK", invite.cseq().seq));
    Message::parse(b.build()).expect("codec rejected a test ACK")
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        _ => "Other",
    }
}
