//! Drives one layer by hand in virtual time and records what it sent and reported.

use bytes::Bytes;
use std::time::{Duration, Instant};
use tandem_core::transaction::testing::{request, Side};
use tandem_core::transaction::{Incoming, Timers, TransactionLayer, TxEvent, TxId};
use tandem_core::{Peer, Transport};
use tandem_sip::{Message, Method};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn uac_peer(transport: Transport) -> Peer {
    Peer {
        transport,
        addr: Side::Uac.addr(),
        conn: None,
    }
}

pub fn uas_peer(transport: Transport) -> Peer {
    Peer {
        transport,
        addr: Side::Uas.addr(),
        conn: None,
    }
}

pub fn first_line(payload: &Bytes) -> String {
    let text = String::from_utf8_lossy(payload);
    text.lines().next().unwrap_or_default().to_owned()
}

pub fn invite(branch: &str) -> Message {
    request(&Method::Invite, branch, "call-1@10.0.0.1", 1, &[])
}

pub fn options(branch: &str) -> Message {
    request(&Method::Options, branch, "probe-1@10.0.0.1", 7, &[])
}

/// One layer and its virtual clock, with everything it sent and reported, stamped with the offset
/// from the start.
pub struct Bench {
    pub layer: TransactionLayer,
    pub t0: Instant,
    pub now: Instant,
    pub sent: Vec<(Duration, String)>,
    pub payloads: Vec<Bytes>,
    pub events: Vec<(Duration, TxEvent)>,
}

impl Bench {
    pub fn new() -> Bench {
        let t0 = Instant::now();
        Bench {
            layer: TransactionLayer::new(Timers::default()),
            t0,
            now: t0,
            sent: Vec::new(),
            payloads: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn at(&mut self, offset: Duration) -> Instant {
        assert!(self.t0 + offset >= self.now, "virtual time never goes back");
        self.now = self.t0 + offset;
        self.now
    }

    pub fn drain(&mut self) {
        let offset = self.now - self.t0;
        while let Some(t) = self.layer.poll_transmit() {
            self.sent.push((offset, first_line(&t.payload)));
            self.payloads.push(t.payload);
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((offset, e));
        }
    }

    /// Fires timers, exactly when due, up to `offset`.
    pub fn run_to(&mut self, offset: Duration) {
        self.drain();
        while let Some(due) = self.layer.poll_timeout().filter(|&t| t <= self.t0 + offset) {
            assert!(due >= self.now, "poll_timeout returned a past deadline");
            self.now = due;
            self.layer.handle_timeout(due);
            self.drain();
        }
        self.now = self.t0 + offset;
    }

    pub fn feed(&mut self, offset: Duration, msg: Message, from: Peer) -> Incoming {
        self.run_to(offset);
        let now = self.at(offset);
        let incoming = self.layer.handle_incoming(now, msg, from);
        self.drain();
        incoming
    }

    pub fn respond(&mut self, offset: Duration, tx: TxId, msg: Message) {
        self.run_to(offset);
        let now = self.at(offset);
        assert!(self.layer.respond(now, tx, msg), "respond refused");
        self.drain();
    }

    /// Send times of messages whose start line begins with `prefix`.
    pub fn times(&self, prefix: &str) -> Vec<Duration> {
        self.sent
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn event_times(&self, wanted: fn(&TxEvent) -> bool) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|(_, e)| wanted(e))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn start(&mut self, msg: Message, transport: Transport) -> TxId {
        let now = self.now;
        let tx = self.layer.start_client(now, msg, uas_peer(transport));
        self.drain();
        tx
    }

    pub fn server_tx(&mut self, offset: Duration, msg: Message, transport: Transport) -> TxId {
        match self.feed(offset, msg, uac_peer(transport)) {
            Incoming::Request { tx, .. } => tx,
            other => panic!("expected a new request, got {other:?}"),
        }
    }
}

pub fn is_timeout(e: &TxEvent) -> bool {
    matches!(e, TxEvent::Timeout { .. })
}
pub fn is_no_ack(e: &TxEvent) -> bool {
    matches!(e, TxEvent::NoAck { .. })
}
pub fn is_terminated(e: &TxEvent) -> bool {
    matches!(e, TxEvent::Terminated { .. })
}

/// 0, then T1, 2·T1, 4·T1… after each previous send, while below `limit`, each gap capped at `cap`.
pub fn backoff(first: Duration, cap: Duration, limit: Duration) -> Vec<Duration> {
    let (mut at, mut gap, mut out) = (Duration::ZERO, first, vec![Duration::ZERO]);
    while at + gap < limit {
        at += gap;
        out.push(at);
        gap = (gap * 2).min(cap);
    }
    out
}
