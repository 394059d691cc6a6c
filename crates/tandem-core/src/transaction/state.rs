//! One transaction's state and the effects it queues (transmits, events, timers).

use super::timer::{Slot, TimerQueue};
use super::{TxEvent, TxId};
use crate::{Peer, Transmit};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tandem_sip::Message;

/// A matching key (see `key`), allocated once and shared by an index and its transaction.
pub(super) type Key = Arc<str>;

/// What the layer queued for the I/O shell and the TU.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<TxEvent>,
    pub(super) timers: TimerQueue,
}

/// The four transaction machines of RFC 3261 §17.
#[allow(clippy::enum_variant_names)] // the RFC's own names
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

impl Kind {
    pub(super) fn is_client(self) -> bool {
        matches!(self, Kind::ClientInvite | Kind::ClientNonInvite)
    }
}

/// States of Figures 5–8 (with RFC 6026's Accepted), plus `Held` for a CANCEL waiting for a
/// provisional to its INVITE (§9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Held,
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

impl State {
    /// A client transaction still waiting for its final response.
    pub(super) fn awaits_final(self) -> bool {
        matches!(self, State::Calling | State::Trying | State::Proceeding)
    }

    /// The final response has been received (client) or sent (server): only matching and
    /// retransmission remain, which need the keys and `resend`, not the request.
    pub(super) fn past_final(self) -> bool {
        !matches!(
            self,
            State::Held | State::Calling | State::Trying | State::Proceeding
        )
    }
}

/// The request that created a transaction, kept until the final response: its bytes (sent again by
/// a client) and its parsed form (given by the peer's message, or parsed on first use when the TU
/// built the request).
#[derive(Debug)]
pub(super) struct Request {
    bytes: Bytes,
    parsed: OnceLock<Option<Message>>,
}

impl Request {
    pub(super) fn parsed(msg: Message) -> Box<Request> {
        Box::new(Request {
            bytes: msg.as_bytes().clone(),
            parsed: OnceLock::from(Some(msg)),
        })
    }

    pub(super) fn built(bytes: Bytes) -> Box<Request> {
        Box::new(Request {
            bytes,
            parsed: OnceLock::new(),
        })
    }

    pub(super) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The parsed request if it was parsed already (for tests).
    #[cfg(test)]
    pub(super) fn parsed_yet(&self) -> Option<&Option<Message>> {
        self.parsed.get()
    }

    /// The parsed request (`None` only if the TU built one that does not parse).
    pub(super) fn message(&self) -> Option<&Message> {
        self.parsed
            .get_or_init(|| Message::parse(self.bytes.clone()).ok())
            .as_ref()
    }
}

/// What the layer does with a response that reached a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Pass it to the TU.
    PassUp,
    /// Consumed (a retransmission).
    Absorb,
    /// Not for this transaction after all (e.g. a CANCEL never sent).
    Stray,
}

#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) id: TxId,
    pub(super) kind: Kind,
    pub(super) state: State,
    /// The request that created the transaction; dropped once the state is past the final response.
    pub(super) request: Option<Box<Request>>,
    /// Client: where the request goes. Server: where the request came from (responses go there).
    pub(super) peer: Peer,
    /// What a retransmission from the peer is answered with: a server's last response, or the ACK a
    /// client INVITE sent for its non-2xx final.
    pub(super) resend: Option<Bytes>,
    /// Current retransmission interval.
    pub(super) interval: Duration,
    retransmit_at: Option<Instant>,
    deadline_at: Option<Instant>,
    /// Client INVITE: the CANCEL transaction created for it.
    pub(super) cancel: Option<TxId>,
    /// Its entry in the layer's client or server key index (shared with the index).
    pub(super) key: Option<Key>,
    /// Server INVITE in Accepted: its entry in the 2xx-ACK index.
    pub(super) ack_key: Option<Key>,
    /// Server INVITE in Accepted: an ACK for the 2xx arrived.
    pub(super) acked: bool,
}

impl Transaction {
    pub(super) fn new(
        id: TxId,
        kind: Kind,
        state: State,
        request: Box<Request>,
        peer: Peer,
        key: Option<Key>,
    ) -> Self {
        Transaction {
            id,
            kind,
            state,
            request: Some(request),
            peer,
            resend: None,
            interval: Duration::ZERO,
            retransmit_at: None,
            deadline_at: None,
            cancel: None,
            key,
            ack_key: None,
            acked: false,
        }
    }

    pub(super) fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    /// A wait that only absorbs retransmissions: `unreliable` over UDP, nothing over TCP (timers D,
    /// I, J, K).
    pub(super) fn absorb_wait(&self, unreliable: Duration) -> Duration {
        if self.reliable() {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    pub(super) fn timer(&self, slot: Slot) -> Option<Instant> {
        match slot {
            Slot::Retransmit => self.retransmit_at,
            Slot::Deadline => self.deadline_at,
        }
    }

    /// Arms `slot` for `now + after` (replacing what it held).
    pub(super) fn arm(&mut self, slot: Slot, now: Instant, after: Duration, out: &mut Output) {
        let at = out.timers.push(now, after, self.id, slot);
        match slot {
            Slot::Retransmit => self.retransmit_at = Some(at),
            Slot::Deadline => self.deadline_at = Some(at),
        }
    }

    /// Arms the retransmission timer `interval` from now and remembers the interval.
    pub(super) fn arm_retransmit(&mut self, now: Instant, interval: Duration, out: &mut Output) {
        self.interval = interval;
        self.arm(Slot::Retransmit, now, interval, out);
    }

    pub(super) fn disarm(&mut self, slot: Slot) {
        match slot {
            Slot::Retransmit => self.retransmit_at = None,
            Slot::Deadline => self.deadline_at = None,
        }
    }

    pub(super) fn terminate(&mut self) {
        self.retransmit_at = None;
        self.deadline_at = None;
        self.state = State::Terminated;
    }

    pub(super) fn send(&self, payload: &Bytes, out: &mut Output) {
        out.transmits.push_back(Transmit {
            dest: self.peer,
            payload: payload.clone(),
        });
    }

    pub(super) fn send_request(&self, out: &mut Output) {
        if let Some(request) = &self.request {
            self.send(request.bytes(), out);
        }
    }

    /// The parsed request, while it is kept.
    pub(super) fn request_message(&self) -> Option<&Message> {
        self.request.as_deref().and_then(Request::message)
    }

    pub(super) fn resend_last(&self, out: &mut Output) {
        if let Some(payload) = &self.resend {
            self.send(payload, out);
        }
    }
}
