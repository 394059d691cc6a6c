//! RFC 3261 §17 transactions (sans-IO), with RFC 6026 Accepted states (timers L and M).
//!
//! API CONTRACT — the B2BUA codes against exactly these names and signatures.
#![allow(clippy::todo, unused_variables, dead_code)] // STUB: removed when implemented

use crate::{Peer, Transmit};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tandem_sip::Message;

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// Handle of one transaction inside a [`TransactionLayer`]. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// What an incoming message meant to the transaction layer.
#[derive(Debug)]
pub enum Incoming {
    /// A new request (not ACK, not CANCEL) that created a server transaction. The TU must answer it
    /// with [`TransactionLayer::respond`]. For INVITE over UDP the layer does NOT send 100 itself; the
    /// TU does (a proxy/B2BUA sends 100 at once).
    Request { tx: TxId, msg: Message, from: Peer },
    /// A CANCEL: a server non-INVITE transaction `tx` was created for it; `invite` is the server INVITE
    /// transaction it matches (§9.2: same branch/sent-by/Request-URI... per §17.2.3 matching with method
    /// INVITE), if any and if that transaction has not sent a final response. The TU answers `tx`
    /// (200, or 481 when `invite` is None) and decides what to do with the INVITE (487).
    Cancel { tx: TxId, invite: Option<TxId>, msg: Message, from: Peer },
    /// An ACK that is not absorbed by a transaction: the ACK for a 2xx (end-to-end). `invite` is the
    /// server INVITE transaction in Accepted state whose 2xx it acknowledges (matched by Call-ID, CSeq
    /// number and From tag); 2xx retransmission stops when it arrives.
    Ack { invite: Option<TxId>, msg: Message, from: Peer },
    /// A response that matched client transaction `tx` and must go to the TU: every 1xx except 100
    /// duplicates? No: every provisional that moves or keeps the transaction in Proceeding, the first
    /// final, and for INVITE every 2xx retransmission in Accepted state (RFC 6026). Retransmitted non-2xx
    /// finals are absorbed (and re-ACKed).
    Response { tx: TxId, msg: Message },
    /// A response that matched no client transaction (e.g. a 2xx retransmission after Timer M). The TU
    /// may handle it at dialog level (re-send ACK) or drop it.
    StrayResponse { msg: Message, from: Peer },
    /// Consumed by the layer: a request or response retransmission, an ACK for a non-2xx final.
    Absorbed,
}

/// Something the layer decided on its own, from a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Client transaction `tx` got no final response in time (Timer B or F): the TU acts as if a 408
    /// had arrived.
    Timeout { tx: TxId },
    /// A server INVITE transaction's final response was never acknowledged (Timer H for non-2xx, or 64·T1
    /// of 2xx retransmissions without ACK — the TU should end the dialog with BYE, §13.3.1.4).
    NoAck { tx: TxId },
    /// Transaction `tx` was removed (after its terminal timer). Purely informational.
    Terminated { tx: TxId },
}

/// All transactions of one endpoint.
#[derive(Debug)]
pub struct TransactionLayer {
    timers: Timers,
}

impl TransactionLayer {
    pub fn new(timers: Timers) -> Self {
        TransactionLayer { timers }
    }

    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Sends `request` (already complete, its top Via carries a unique z9hG4bK branch) to `dest` in a new
    /// client transaction: INVITE (timers A, B, D, M) or non-INVITE (E, F, K). The first transmission is
    /// queued at once. ACK must not be sent through here (use [`TransactionLayer::send_stateless`]).
    pub fn start_client(&mut self, now: Instant, request: Message, dest: Peer) -> TxId {
        todo!()
    }

    /// Sends a CANCEL for client INVITE transaction `invite` (§9.1): built from the INVITE (same
    /// Request-URI, Call-ID, From, To, CSeq number, top Via; Route copied) in its own client non-INVITE
    /// transaction. If no provisional has been received yet, the CANCEL is held back until one arrives
    /// (§9.1), and if a final arrives first it is never sent. Returns the CANCEL's transaction, or None
    /// when `invite` is unknown or already completed.
    pub fn cancel(&mut self, now: Instant, invite: TxId) -> Option<TxId> {
        todo!()
    }

    /// Feeds one parsed incoming message. Request retransmissions re-send the last response; response
    /// retransmissions and ACKs for non-2xx finals are absorbed. Non-2xx finals to a client INVITE are
    /// acknowledged by the layer (§17.1.1.3).
    pub fn handle_incoming(&mut self, now: Instant, msg: Message, from: Peer) -> Incoming {
        todo!()
    }

    /// Sends `response` on server transaction `tx`. A 2xx to an INVITE moves it to Accepted (RFC 6026):
    /// the layer retransmits the 2xx (T1 doubling to T2, unreliable transports only) until the matching
    /// ACK arrives or 64·T1 passes (then [`TxEvent::NoAck`]). Non-2xx finals to INVITE: timers G, H, I.
    /// Returns false when `tx` is unknown or already terminated.
    pub fn respond(&mut self, now: Instant, tx: TxId, response: Message) -> bool {
        todo!()
    }

    /// Sends a message outside any transaction (an ACK for a 2xx, a stateless response).
    pub fn send_stateless(&mut self, dest: Peer, payload: Bytes) {
        todo!()
    }

    /// The transport could not deliver to `dest` (ICMP unreachable, connect refused, broken TCP): every
    /// client transaction whose destination is `dest` fails at once as [`TxEvent::Timeout`] (§17.1.4).
    pub fn handle_transport_error(&mut self, now: Instant, dest: Peer) {
        todo!()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!()
    }

    /// The earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        todo!()
    }

    /// The request that started transaction `tx` (client or server), while it lives.
    pub fn request(&self, tx: TxId) -> Option<&Message> {
        todo!()
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
