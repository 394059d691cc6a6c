//! RFC 3261 §17 transactions (sans-IO), with RFC 6026 Accepted states (timers L and M).
//!
//! API CONTRACT — the B2BUA codes against exactly these names and signatures.
//!
//! Layout: [`TransactionLayer`] (this file) routes each message or timer to one transaction and
//! keeps the indexes; `client` and `server` hold the state machines, `state` and `table` the
//! transactions (a generational slab), `key` the matching rules,
//! `timer` the lazily cancelled timer queue, [`testing`] a deterministic two-endpoint simulator.
//!
//! Matching choices:
//! * RFC 3261 requests match by top-Via branch + sent-by + method (ACK as INVITE); responses by
//!   top-Via branch + CSeq method; a CANCEL finds its INVITE by the same key with method INVITE.
//! * RFC 2543 requests (branch without `z9hG4bK`, or none) match by method, Call-ID, CSeq number,
//!   From tag, Request-URI and top Via (§17.2.3 without the To tag, see `key`), so their
//!   retransmissions are absorbed rather than taken for new requests.
//! * The ACK of a 2xx (its own branch) finds the Accepted INVITE by Call-ID, CSeq number, From tag.
//!
//! Memory: a transaction past its final response (received by a client, sent by a server) keeps its
//! matching keys and the bytes it may have to send again, not its request — it lives on for up to
//! 64·T1 (timers J, L, M) — and an Accepted server INVITE drops its 2xx once the ACK has come.
//! Messages the TU built are handed over as [`Outgoing::Bytes`] and never parsed again on the hot
//! path (a client request is parsed only if a CANCEL or an ACK must be built from it).
//!
//! Not done here (TU duties): sending 100 Trying, Timer C, and ending a client INVITE that stays in
//! Proceeding forever — it ends on its final response, or 64·T1 after its CANCEL was sent (§9.1).

mod client;
mod key;
mod server;
mod state;
mod table;
pub mod testing;
#[cfg(test)]
mod tests;
mod timer;

use crate::{Peer, Transmit, Transport};
use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};
use server::AckVerdict;
use state::Key;
use state::{Kind, Output, Request, State, Transaction, Verdict};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use table::TxTable;
use tandem_sip::{Message, Method};
use timer::Slot;

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
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// A message for the layer to send: a parsed one, or the bytes of one the TU built (from
/// [`tandem_sip::Editor`] or a builder), which the layer does not parse again: it reads only the
/// status code of a response, or the method and top-Via branch of a request
/// ([`tandem_sip::peek_status`], [`tandem_sip::peek_request`]).
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A parsed message.
    Message(Message),
    /// A complete message the TU built.
    Bytes(Bytes),
}

impl From<Message> for Outgoing {
    fn from(msg: Message) -> Self {
        Outgoing::Message(msg)
    }
}

impl From<Bytes> for Outgoing {
    fn from(bytes: Bytes) -> Self {
        Outgoing::Bytes(bytes)
    }
}

impl Outgoing {
    /// Status code of a response (`None` for a request or an unreadable Status-Line).
    fn status(&self) -> Option<u16> {
        match self {
            Outgoing::Message(msg) => msg.status(),
            Outgoing::Bytes(bytes) => tandem_sip::peek_status(bytes),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Outgoing::Message(msg) => msg.as_bytes().clone(),
            Outgoing::Bytes(bytes) => bytes,
        }
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
    Cancel {
        tx: TxId,
        invite: Option<TxId>,
        msg: Message,
        from: Peer,
    },
    /// An ACK that is not absorbed by a transaction: the ACK for a 2xx (end-to-end). `invite` is the
    /// server INVITE transaction in Accepted state whose 2xx it acknowledges (matched by Call-ID, CSeq
    /// number and From tag); 2xx retransmission stops when it arrives.
    Ack {
        invite: Option<TxId>,
        msg: Message,
        from: Peer,
    },
    /// A response that matched client transaction `tx` and must go to the TU: every provisional
    /// received before the final (100 and repeats included), the first final, and for INVITE every
    /// 2xx retransmission in Accepted state (RFC 6026). Retransmitted non-2xx finals are absorbed
    /// (and re-ACKed).
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
    txs: TxTable,
    /// `key::client` → client transaction.
    client_keys: FxHashMap<Key, TxId>,
    /// `key::server` → server transaction.
    server_keys: HashMap<Key, TxId>,
    /// `key::ack` → server INVITE transaction in Accepted.
    ack_keys: HashMap<Key, TxId>,
    /// Live client transactions per destination, for [`TransactionLayer::handle_transport_error`].
    client_dests: FxHashMap<(Transport, SocketAddr), FxHashSet<TxId>>,
    out: Output,
    /// Reused buffer for lookup keys: matching a message allocates nothing.
    scratch: String,
}

impl TransactionLayer {
    /// An empty layer using these timer values.
    pub fn new(timers: Timers) -> Self {
        TransactionLayer {
            timers,
            txs: TxTable::default(),
            client_keys: FxHashMap::default(),
            server_keys: HashMap::new(),
            ack_keys: HashMap::new(),
            client_dests: FxHashMap::default(),
            out: Output::default(),
            scratch: String::with_capacity(128),
        }
    }

    /// The timer values in use.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Sends `request` (already complete, its top Via carries a unique z9hG4bK branch) to `dest` in a new
    /// client transaction: INVITE (timers A, B, D, M) or non-INVITE (E, F, K). The first transmission is
    /// queued at once. ACK must not be sent through here (use [`TransactionLayer::send_stateless`]).
    /// Bytes whose Request-Line cannot be read are sent as a non-INVITE that no response can match.
    pub fn start_client(&mut self, now: Instant, request: impl Into<Outgoing>, dest: Peer) -> TxId {
        let id = self.insert_client(None, request.into(), dest);
        if let Some(tx) = self.txs.get_mut(id) {
            tx.launch(now, &self.timers, &mut self.out);
        }
        id
    }

    /// Sends a CANCEL for client INVITE transaction `invite` (§9.1): built from the INVITE (same
    /// Request-URI, Call-ID, From, To, CSeq number, top Via; Route copied) in its own client non-INVITE
    /// transaction. If no provisional has been received yet, the CANCEL is held back until one arrives
    /// (§9.1), and if a final arrives first it is never sent. Returns the CANCEL's transaction, or None
    /// when `invite` is unknown or already completed.
    ///
    /// Calling it again while that CANCEL lives returns the same transaction. Once the CANCEL is sent,
    /// the INVITE transaction ends with [`TxEvent::Timeout`] if no final arrives within 64·T1.
    pub fn cancel(&mut self, now: Instant, invite: TxId) -> Option<TxId> {
        let tx = self.txs.get(invite)?;
        if tx.kind != Kind::ClientInvite || !tx.state.awaits_final() {
            return None;
        }
        if let Some(existing) = tx.cancel.filter(|c| self.txs.get(*c).is_some()) {
            return Some(existing);
        }
        let (held, dest) = (tx.state == State::Calling, tx.peer);
        let Some(request) = tx.request_message().map(client::build_cancel) else {
            tracing::warn!(
                tx = invite.0,
                "could not build CANCEL: the INVITE does not parse"
            );
            return None;
        };
        let id = self.insert_client(Some(State::Held), request.into(), dest);
        if let Some(tx) = self.txs.get_mut(invite) {
            tx.cancel = Some(id);
        }
        if !held {
            self.release_cancel(now, invite, id);
        }
        self.tidy();
        Some(id)
    }

    /// Feeds one parsed incoming message. Request retransmissions re-send the last response; response
    /// retransmissions and ACKs for non-2xx finals are absorbed. Non-2xx finals to a client INVITE are
    /// acknowledged by the layer (§17.1.1.3).
    pub fn handle_incoming(&mut self, now: Instant, msg: Message, from: Peer) -> Incoming {
        let incoming = match msg.method() {
            None => self.incoming_response(now, msg, from),
            Some(Method::Ack) => self.incoming_ack(now, msg, from),
            Some(Method::Cancel) => self.incoming_cancel(msg, from),
            Some(_) => self.incoming_request(msg, from),
        };
        self.tidy();
        incoming
    }

    /// Sends `response` on server transaction `tx`. A 2xx to an INVITE moves it to Accepted (RFC 6026):
    /// the layer retransmits the 2xx (T1 doubling to T2, unreliable transports only) until the matching
    /// ACK arrives or 64·T1 passes (then [`TxEvent::NoAck`]). Non-2xx finals to INVITE: timers G, H, I.
    /// Returns false when `tx` is unknown or already terminated.
    ///
    /// Also false (nothing sent) when the state takes no such response: a client transaction, a
    /// provisional or a second final after a final, a non-2xx after a 2xx; or when `response` is
    /// not a response (its Status-Line cannot be read).
    pub fn respond(&mut self, now: Instant, tx: TxId, response: impl Into<Outgoing>) -> bool {
        let response = response.into();
        let Some(t) = self.txs.get_mut(tx) else {
            return false;
        };
        let Some(code) = response.status() else {
            return false;
        };
        if t.kind.is_client() {
            return false;
        }
        let before = t.state;
        let sent = t.respond(
            now,
            code,
            response.into_bytes(),
            &self.timers,
            &mut self.out,
        );
        if t.state == State::Accepted && t.ack_key.is_none() {
            if let Some(request) = t.request_message() {
                key::ack(&mut self.scratch, request);
                let key = Key::from(self.scratch.as_str());
                self.ack_keys.insert(key.clone(), tx);
                t.ack_key = Some(key);
            }
        }
        self.settle(now, tx, before);
        self.tidy();
        sent
    }

    /// Sends a message outside any transaction (an ACK for a 2xx, a stateless response).
    pub fn send_stateless(&mut self, dest: Peer, payload: Bytes) {
        self.out.transmits.push_back(Transmit { dest, payload });
    }

    /// The transport could not deliver to `dest` (ICMP unreachable, connect refused, broken TCP): every
    /// client transaction whose destination is `dest` fails at once as [`TxEvent::Timeout`] (§17.1.4).
    ///
    /// Destinations compare by transport and address (not connection id). Transactions that already
    /// have their final response (or a CANCEL not yet sent) end without an event besides
    /// [`TxEvent::Terminated`].
    pub fn handle_transport_error(&mut self, now: Instant, dest: Peer) {
        let Some(ids) = self.client_dests.remove(&(dest.transport, dest.addr)) else {
            return;
        };
        let mut ids: Vec<TxId> = ids.into_iter().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(tx) = self.txs.get_mut(id) else {
                continue;
            };
            let before = tx.state;
            if before.awaits_final() {
                tracing::debug!(tx = id.0, peer = %dest.addr, "transport error");
                self.out.events.push_back(TxEvent::Timeout { tx: id });
            }
            tx.terminate();
            self.settle(now, id, before);
        }
        self.tidy();
    }

    /// The TU no longer wants non-INVITE client transaction `tx`'s outcome (a health probe of a
    /// node that stopped probing): it ends at once, sends nothing more and reports nothing besides
    /// [`TxEvent::Terminated`]; a response that comes later matches nothing. INVITE and server
    /// transactions are left alone (an INVITE is ended with CANCEL, [`TransactionLayer::cancel`]).
    pub fn abandon_client(&mut self, now: Instant, tx: TxId) {
        let Some(t) = self.txs.get_mut(tx) else {
            return;
        };
        if t.kind != Kind::ClientNonInvite {
            return;
        }
        let before = t.state;
        t.terminate();
        self.settle(now, tx, before);
        self.tidy();
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id, slot)) = self.out.timers.pop_due(now) {
            let Some(tx) = self.txs.get_mut(id) else {
                continue;
            };
            if tx.timer(slot) != Some(at) {
                continue; // cancelled or re-armed
            }
            tx.disarm(slot);
            let before = tx.state;
            if tx.kind.is_client() {
                tx.on_client_timer(slot, now, &self.timers, &mut self.out);
            } else {
                tx.on_server_timer(slot, now, &self.timers, &mut self.out);
            }
            self.settle(now, id, before);
        }
        self.tidy();
    }

    /// The earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.timers.next()
    }

    /// The next message to send, in the order the layer decided them.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next timer-driven event ([`TxEvent`]).
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// The request that started transaction `tx` (client or server), until its final response:
    /// `None` once a client transaction has received a final response or a server transaction has
    /// sent one (what is left of the transaction — retransmissions and matching — keeps only keys
    /// and bytes), and for a request the TU built that does not parse.
    pub fn request(&self, tx: TxId) -> Option<&Message> {
        self.txs.get(tx)?.request_message()
    }

    /// The peer of transaction `tx`: where a server transaction's request came from, or where a
    /// client transaction's request goes.
    pub fn peer(&self, tx: TxId) -> Option<Peer> {
        self.txs.get(tx).map(|t| t.peer)
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a client transaction (not sent yet) under its branch and destination, in `state`
    /// or in the initial state of its kind.
    fn insert_client(&mut self, state: Option<State>, request: Outgoing, dest: Peer) -> TxId {
        let (method, key) = match &request {
            Outgoing::Message(msg) => (
                msg.method().cloned(),
                self.client_key(msg.method(), msg.top_via().branch),
            ),
            Outgoing::Bytes(bytes) => match tandem_sip::peek_request(bytes) {
                Some(head) => {
                    let key = self.client_key(Some(&head.method), head.branch);
                    (Some(head.method), key)
                }
                None => (None, None),
            },
        };
        let (kind, initial) = match method {
            Some(Method::Invite) => (Kind::ClientInvite, State::Calling),
            _ => (Kind::ClientNonInvite, State::Trying),
        };
        let state = state.unwrap_or(initial);
        let request = match request {
            Outgoing::Message(msg) => Request::parsed(msg),
            Outgoing::Bytes(bytes) => Request::built(bytes),
        };
        let id = self
            .txs
            .insert(|id| Transaction::new(id, kind, state, request, dest, key.clone()));
        match key {
            Some(key) => {
                self.client_keys.insert(key, id);
            }
            None => tracing::warn!(
                tx = id.0,
                "client request without Via branch: responses cannot match"
            ),
        }
        self.client_dests
            .entry((dest.transport, dest.addr))
            .or_default()
            .insert(id);
        id
    }

    /// The client key of a request with this method and top-Via branch (a response's CSeq method is
    /// the request's; ACK never starts a client transaction).
    fn client_key(&mut self, method: Option<&Method>, branch: Option<&str>) -> Option<Key> {
        let (method, branch) = (method?, branch?);
        key::client(&mut self.scratch, method, branch);
        Some(Key::from(self.scratch.as_str()))
    }

    /// Creates a server transaction for `request`; `self.scratch` holds its `key::server` key.
    fn insert_server(&mut self, request: Message, from: Peer) -> TxId {
        let (kind, state) = match request.method() {
            Some(Method::Invite) => (Kind::ServerInvite, State::Proceeding),
            _ => (Kind::ServerNonInvite, State::Trying),
        };
        let key = Key::from(self.scratch.as_str());
        let request = Request::parsed(request);
        let id = self
            .txs
            .insert(|id| Transaction::new(id, kind, state, request, from, Some(key.clone())));
        self.server_keys.insert(key, id);
        id
    }

    fn incoming_request(&mut self, msg: Message, from: Peer) -> Incoming {
        let Some(method) = msg.method() else {
            return Incoming::Absorbed;
        };
        key::server(&mut self.scratch, &msg, method);
        if let Some(tx) = self
            .server_keys
            .get(self.scratch.as_str())
            .and_then(|id| self.txs.get(*id))
        {
            tx.on_request_retransmission(&mut self.out);
            return Incoming::Absorbed;
        }
        let tx = self.insert_server(msg.clone(), from);
        Incoming::Request { tx, msg, from }
    }

    fn incoming_cancel(&mut self, msg: Message, from: Peer) -> Incoming {
        key::server(&mut self.scratch, &msg, &Method::Cancel);
        if let Some(tx) = self
            .server_keys
            .get(self.scratch.as_str())
            .and_then(|id| self.txs.get(*id))
        {
            tx.on_request_retransmission(&mut self.out);
            return Incoming::Absorbed;
        }
        key::server(&mut self.scratch, &msg, &Method::Invite);
        let invite = self
            .server_keys
            .get(self.scratch.as_str())
            .copied()
            .filter(|id| {
                self.txs
                    .get(*id)
                    .is_some_and(|t| t.kind == Kind::ServerInvite && t.state == State::Proceeding)
            });
        key::server(&mut self.scratch, &msg, &Method::Cancel);
        let tx = self.insert_server(msg.clone(), from);
        Incoming::Cancel {
            tx,
            invite,
            msg,
            from,
        }
    }

    fn incoming_ack(&mut self, now: Instant, msg: Message, from: Peer) -> Incoming {
        key::server(&mut self.scratch, &msg, &Method::Invite);
        let mut found = self.server_keys.get(self.scratch.as_str()).copied();
        if found.is_none() {
            key::ack(&mut self.scratch, &msg);
            found = self.ack_keys.get(self.scratch.as_str()).copied();
        }
        let Some(id) = found else {
            return Incoming::Ack {
                invite: None,
                msg,
                from,
            };
        };
        let Some(tx) = self.txs.get_mut(id) else {
            return Incoming::Ack {
                invite: None,
                msg,
                from,
            };
        };
        let before = tx.state;
        let verdict = tx.on_ack(now, &self.timers, &mut self.out);
        self.settle(now, id, before);
        match verdict {
            AckVerdict::Accepted => Incoming::Ack {
                invite: Some(id),
                msg,
                from,
            },
            AckVerdict::Absorb => Incoming::Absorbed,
        }
    }

    fn incoming_response(&mut self, now: Instant, msg: Message, from: Peer) -> Incoming {
        let Some(branch) = msg.top_via().branch else {
            return Incoming::StrayResponse { msg, from };
        };
        key::client(&mut self.scratch, &msg.cseq().method, branch);
        let found = self.client_keys.get(self.scratch.as_str()).copied();
        let Some((id, tx)) = found.and_then(|id| Some((id, self.txs.get_mut(id)?))) else {
            tracing::trace!(peer = %from.addr, "stray response");
            return Incoming::StrayResponse { msg, from };
        };
        let before = tx.state;
        let verdict = tx.on_response(now, &msg, &self.timers, &mut self.out);
        self.settle(now, id, before);
        match verdict {
            Verdict::PassUp => Incoming::Response { tx: id, msg },
            Verdict::Absorb => Incoming::Absorbed,
            Verdict::Stray => Incoming::StrayResponse { msg, from },
        }
    }

    /// Follows up a state change of `id` that affects other transactions or the indexes: a client
    /// INVITE's held CANCEL is sent on its first provisional and dropped on its final or end; the
    /// request is dropped once past the final response; a terminated transaction is removed.
    fn settle(&mut self, now: Instant, id: TxId, before: State) {
        let Some(tx) = self.txs.get_mut(id) else {
            return;
        };
        let (after, cancel) = (tx.state, tx.cancel);
        if after.past_final() {
            tx.request = None;
        }
        if let Some(cancel) = cancel {
            if before == State::Calling && after == State::Proceeding {
                self.release_cancel(now, id, cancel);
            } else if before.awaits_final() && !after.awaits_final() {
                self.drop_held(cancel);
            }
        }
        if after == State::Terminated {
            self.remove(id);
        }
    }

    /// Sends CANCEL `cancel` (if still held) and gives INVITE `invite` 64·T1 to end (§9.1).
    fn release_cancel(&mut self, now: Instant, invite: TxId, cancel: TxId) {
        let Some(tx) = self.txs.get_mut(cancel).filter(|t| t.state == State::Held) else {
            return;
        };
        tx.state = State::Trying;
        tx.launch(now, &self.timers, &mut self.out);
        if let Some(tx) = self.txs.get_mut(invite) {
            tx.arm(Slot::Deadline, now, 64 * self.timers.t1, &mut self.out);
        }
    }

    /// Ends CANCEL `cancel` if it was never sent.
    fn drop_held(&mut self, cancel: TxId) {
        if let Some(tx) = self.txs.get_mut(cancel).filter(|t| t.state == State::Held) {
            tx.terminate();
            self.remove(cancel);
        }
    }

    /// Removes a transaction and every index entry that still points at it.
    fn remove(&mut self, id: TxId) {
        let Some(tx) = self.txs.remove(id) else {
            return;
        };
        if tx.kind.is_client() {
            let dest = (tx.peer.transport, tx.peer.addr);
            if let Some(set) = self.client_dests.get_mut(&dest) {
                set.remove(&id);
                if set.is_empty() {
                    self.client_dests.remove(&dest);
                }
            }
            if let Some(key) = &tx.key {
                remove_if_points_to(&mut self.client_keys, key, id);
            }
        } else if let Some(key) = &tx.key {
            remove_if_points_to(&mut self.server_keys, key, id);
        }
        if let Some(key) = &tx.ack_key {
            remove_if_points_to(&mut self.ack_keys, key, id);
        }
        self.terminated(id);
    }

    fn terminated(&mut self, id: TxId) {
        self.out.events.push_back(TxEvent::Terminated { tx: id });
    }

    /// Drops cancelled timers from the top of the heap (so `poll_timeout` is exact) and compacts the
    /// heap when cancelled entries pile up.
    fn tidy(&mut self) {
        let txs = &self.txs;
        let live = |at: Instant, id: TxId, slot: Slot| {
            txs.get(id).is_some_and(|t| t.timer(slot) == Some(at))
        };
        self.out.timers.drop_stale_heads(live);
        self.out.timers.compact(2 * txs.len(), live);
    }
}

/// Removes `key` unless a newer transaction took it over (one hash and probe: the key is shared).
fn remove_if_points_to<S: std::hash::BuildHasher>(
    map: &mut HashMap<Key, TxId, S>,
    key: &Key,
    id: TxId,
) {
    if let Entry::Occupied(entry) = map.entry(Key::clone(key)) {
        if *entry.get() == id {
            entry.remove();
        }
    }
}
