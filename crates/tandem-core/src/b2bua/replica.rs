//! What a standby needs to carry calls on: every answered call as plain data, an ordered stream of
//! changes with sequence numbers, a snapshot to start from, the restore that turns a mirror into
//! live calls on promotion, and the `sync` durability gate that holds a call's 2xx until the
//! standby has it.

use super::{CallEvent, Core};
use crate::call::{Call, CallKey, CallState, CallTimes, Leg, Side};
use crate::media::CallMedia;
use crate::transaction::TxId;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An answered call, as the standby mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSnapshot {
    pub key: CallKey,
    pub state: CallState,
    pub caller: Leg,
    pub server: Leg,
    /// The media server's configured name.
    pub server_name: Option<String>,
    pub media: CallMedia,
    /// Time since the caller's INVITE, when the snapshot was taken.
    pub age: Duration,
    /// Answer time and deadlines, as offsets from the caller's INVITE.
    pub times: CallTimes,
}

impl CallSnapshot {
    /// The snapshot seen as the core hands out a live call.
    pub fn view(&self) -> CallView<'_> {
        CallView {
            key: self.key,
            state: self.state,
            caller: &self.caller,
            server: &self.server,
            server_name: self.server_name.as_deref(),
            media: &self.media,
            age: self.age,
            times: self.times,
        }
    }
}

/// An answered call as the standby mirrors it, borrowed from the core (or from a
/// [`CallSnapshot`]): what the HA layer encodes without copying the call first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallView<'a> {
    pub key: CallKey,
    pub state: CallState,
    pub caller: &'a Leg,
    pub server: &'a Leg,
    /// The media server's configured name.
    pub server_name: Option<&'a str>,
    pub media: &'a CallMedia,
    /// Time since the caller's INVITE, when the change was made.
    pub age: Duration,
    /// Answer time and deadlines, as offsets from the caller's INVITE.
    pub times: CallTimes,
}

impl CallView<'_> {
    /// An owned copy.
    pub fn to_snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            key: self.key,
            state: self.state,
            caller: self.caller.clone(),
            server: self.server.clone(),
            server_name: self.server_name.map(str::to_owned),
            media: self.media.clone(),
            age: self.age,
            times: self.times,
        }
    }
}

/// One change of replicated state as [`Core::poll_replication_view`] hands it out: borrowed
/// from the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeView<'a> {
    /// An answered call was created or changed; the record replaces the standby's copy.
    Call(CallView<'a>),
    /// A replicated call ended.
    CallRemoved { key: CallKey, reason: &'a str },
    /// A media server changed health.
    ServerHealth { name: &'a str, up: bool },
}

impl ChangeView<'_> {
    /// An owned copy.
    pub fn to_change(&self) -> ReplicationChange {
        match *self {
            ChangeView::Call(call) => ReplicationChange::Call(Box::new(call.to_snapshot())),
            ChangeView::CallRemoved { key, reason } => ReplicationChange::CallRemoved {
                key,
                reason: reason.to_owned(),
            },
            ChangeView::ServerHealth { name, up } => ReplicationChange::ServerHealth {
                name: name.to_owned(),
                up,
            },
        }
    }
}

/// One change of replicated state, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationChange {
    /// An answered call was created or changed; the record replaces the standby's copy.
    Call(Box<CallSnapshot>),
    /// A replicated call ended.
    CallRemoved { key: CallKey, reason: String },
    /// A media server changed health.
    ServerHealth { name: String, up: bool },
}

impl ReplicationChange {
    /// The change seen as the core hands it out borrowed.
    pub fn view(&self) -> ChangeView<'_> {
        match self {
            ReplicationChange::Call(call) => ChangeView::Call(call.view()),
            ReplicationChange::CallRemoved { key, reason } => {
                ChangeView::CallRemoved { key: *key, reason }
            }
            ReplicationChange::ServerHealth { name, up } => {
                ChangeView::ServerHealth { name, up: *up }
            }
        }
    }
}

/// The whole replicated state at sequence number `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSnapshot {
    /// The last change included (the stream continues at `seq + 1`).
    pub seq: u64,
    pub calls: Vec<CallSnapshot>,
    pub servers: Vec<(String, bool)>,
    /// The next call key the node would assign.
    pub next_call_key: CallKey,
}

/// How a call's answer waits for the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No standby: nothing is recorded.
    Off,
    /// Changes stream to the standby; answers never wait.
    Async,
    /// An INVITE's 2xx reaches the caller only once the standby acknowledged the answered call, or
    /// after `wait` (then the answer goes on and the wait is counted as a sync timeout).
    Sync { wait: Duration },
}

/// A 2xx held until the standby has its call.
#[derive(Debug)]
struct ParkedAnswer {
    seq: u64,
    tx: TxId,
    answer: Bytes,
    deadline: Instant,
}

/// A change not handed out yet. A call is described only when handed out (from its state then,
/// at most one batch of core work later), so that it is never copied to be described.
#[derive(Debug)]
enum Pending {
    /// Call `key` changed at `at` (its age is taken as of then).
    Call {
        key: CallKey,
        at: Instant,
    },
    CallRemoved {
        key: CallKey,
        reason: String,
    },
    ServerHealth {
        name: String,
        up: bool,
    },
}

/// Replication bookkeeping of a node.
#[derive(Debug)]
pub(super) struct Replication {
    durability: Durability,
    last_seq: u64,
    acked: u64,
    changes: VecDeque<(u64, Pending)>,
    parked: VecDeque<ParkedAnswer>,
}

impl Replication {
    pub(super) fn new() -> Replication {
        Replication {
            durability: Durability::Off,
            last_seq: 0,
            acked: 0,
            changes: VecDeque::new(),
            parked: VecDeque::new(),
        }
    }

    fn push(&mut self, change: Pending) -> u64 {
        self.last_seq += 1;
        self.changes.push_back((self.last_seq, change));
        self.last_seq
    }
}

impl Core {
    /// Sets how answers wait for the standby (the HA layer calls it as the standby comes and goes).
    /// Leaving `Sync` releases every held answer at once.
    pub fn set_durability(&mut self, now: Instant, durability: Durability) {
        self.replication.durability = durability;
        if !matches!(durability, Durability::Sync { .. }) {
            while let Some(parked) = self.replication.parked.pop_front() {
                self.respond(now, parked.tx, parked.answer);
            }
        }
    }

    pub fn durability(&self) -> Durability {
        self.replication.durability
    }

    /// The next change for the standby, with its sequence number (consecutive from 1).
    pub fn poll_replication(&mut self) -> Option<(u64, ReplicationChange)> {
        self.poll_replication_view(|seq, change| (seq, change.to_change()))
    }

    /// The next change for the standby, with its sequence number, handed to `describe` borrowed
    /// from the core (the hot path: the HA layer encodes it without copying the call). A call is
    /// described as it is now, which may already include later changes (each has its own number
    /// and comes next); a call that ended before being handed out is handed out as removed (its
    /// removal follows, so the standby sees both as one).
    pub fn poll_replication_view<R>(
        &mut self,
        describe: impl FnOnce(u64, ChangeView<'_>) -> R,
    ) -> Option<R> {
        let (seq, pending) = self.replication.changes.pop_front()?;
        let described = match &pending {
            Pending::Call { key, at } => match self.calls.get(key) {
                Some(call) => describe(seq, ChangeView::Call(self.call_view(*at, call))),
                None => describe(
                    seq,
                    ChangeView::CallRemoved {
                        key: *key,
                        reason: "ended",
                    },
                ),
            },
            Pending::CallRemoved { key, reason } => {
                describe(seq, ChangeView::CallRemoved { key: *key, reason })
            }
            Pending::ServerHealth { name, up } => {
                describe(seq, ChangeView::ServerHealth { name, up: *up })
            }
        };
        Some(described)
    }

    /// The standby applied every change up to `seq`: held answers up to it go out.
    pub fn handle_replication_ack(&mut self, now: Instant, seq: u64) {
        self.replication.acked = self.replication.acked.max(seq);
        while let Some(front) = self.replication.parked.front() {
            if front.seq > self.replication.acked {
                break;
            }
            if let Some(parked) = self.replication.parked.pop_front() {
                self.respond(now, parked.tx, parked.answer);
            }
        }
    }

    /// Everything replicated, as of the last change handed out by [`Core::poll_replication`].
    pub fn replication_snapshot(&self, now: Instant) -> ReplicaSnapshot {
        let pending = self.replication.changes.len() as u64;
        ReplicaSnapshot {
            seq: self.replication.last_seq.saturating_sub(pending),
            calls: self
                .calls
                .values()
                .filter(|c| c.replicated)
                .map(|c| self.call_snapshot(now, c))
                .collect(),
            servers: self
                .pool
                .servers()
                .iter()
                .map(|s| (s.config.name.clone(), s.up))
                .collect(),
            next_call_key: self.next_call_key,
        }
    }

    /// Promotion: the mirror's calls become live calls of this node. Their relay ports are reserved
    /// and handed to the data plane, their dialogs answer in-dialog requests, BYEs and re-INVITEs.
    /// Calls whose key is already live are skipped. Returns how many calls were restored.
    pub fn restore(&mut self, now: Instant, snapshot: ReplicaSnapshot) -> usize {
        let mut restored = 0;
        self.next_call_key = self.next_call_key.max(snapshot.next_call_key);
        self.replication.last_seq = self.replication.last_seq.max(snapshot.seq);
        for (name, up) in &snapshot.servers {
            if let Some(index) = self.pool.index_of_name(name) {
                self.pool.set_up(index, *up);
            }
        }
        for record in snapshot.calls {
            if self.calls.contains_key(&record.key) {
                continue;
            }
            let key = record.key;
            self.next_call_key = self.next_call_key.max(key + 1);
            let server_index = record
                .server_name
                .as_deref()
                .and_then(|name| self.pool.index_of_name(name));
            if let Some(server) = server_index {
                self.pool.call_started(server);
            }
            if let Some(anchor) = self.media.as_mut() {
                if let Err(error) = anchor.reserve(&record.media) {
                    tracing::error!(call_id = %record.caller.call_id, %error, "restored call's relay ports are taken");
                }
                anchor.apply(key, &record.caller.call_id, &record.media, record.age);
            }
            self.dialogs
                .insert(record.caller.local_tag.clone(), (key, Side::Caller));
            self.dialogs
                .insert(record.server.local_tag.clone(), (key, Side::Server));
            self.calls.insert(
                key,
                Call {
                    key,
                    state: record.state,
                    caller: record.caller,
                    server: record.server,
                    server_index,
                    tried: server_index.into_iter().collect(),
                    caller_invite_tx: None,
                    server_invite_tx: None,
                    server_responded: true,
                    initial_invite: None,
                    invite_mapping: None,
                    server_ack: None,
                    caller_ack: None,
                    failover_generation: 0,
                    tcp_for_size: false,
                    setup_deadline: None,
                    created: now.checked_sub(record.age).unwrap_or(now),
                    times: record.times,
                    media: record.media,
                    server_offer: None,
                    replicated: true,
                },
            );
            // A deadline that passed while the call was on the way here ends it at the next turn.
            if let Some(call) = self.calls.get(&key) {
                self.deadlines.arm(call);
            }
            restored += 1;
        }
        restored
    }

    /// Whether this node anchors media (has a relay to prepare calls on).
    pub fn anchors_media(&self) -> bool {
        self.media.is_some()
    }

    /// On a standby: the mirror holds (a new version of) the media of call `key`, which the active
    /// node carries and which is `age` old. With media anchored its relay ports are bound now, so
    /// that the relay forwards from the moment this node takes the service address; the call
    /// itself stays out of the core until `restore`. Ignored on a node that carries the call.
    pub fn prepare_standby_media(
        &mut self,
        key: CallKey,
        call_id: &str,
        media: &CallMedia,
        age: Duration,
    ) {
        if self.calls.contains_key(&key) {
            return;
        }
        if let Some(anchor) = self.media.as_mut() {
            anchor.prepare(key, call_id, media, age);
        }
    }

    /// On a standby: the call `key` left the mirror (it ended on the active node): its prepared
    /// relay ports are closed. Ignored on a node that carries the call itself.
    pub fn forget_standby_media(&mut self, key: CallKey) {
        if self.calls.contains_key(&key) {
            return;
        }
        if let Some(anchor) = self.media.as_mut() {
            anchor.unprepare(key);
        }
    }

    /// Demotion: every call is forgotten without a BYE (the new active carries them on); their
    /// relay ports are released and the data plane told to close them. Returns how many.
    pub fn drop_all_calls(&mut self) -> usize {
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in &keys {
            if let Some(c) = self.calls.remove(key) {
                self.dialogs.remove(&c.caller.local_tag);
                self.dialogs.remove(&c.server.local_tag);
                if let Some(server) = c.server_index {
                    self.pool.call_ended(server);
                }
                self.release_media(*key, &c.media);
            }
        }
        self.deadlines.clear();
        self.replication.changes.clear();
        while let Some(parked) = self.replication.parked.pop_front() {
            drop(parked);
        }
        keys.len()
    }

    /// Records call `key` for the standby if it is answered (set-up attempts are not replicated:
    /// their transactions die with the node anyway). Returns the change's sequence number.
    pub(super) fn replicate_call(&mut self, now: Instant, key: CallKey) -> Option<u64> {
        let call = self.calls.get_mut(&key)?;
        if !matches!(call.state, CallState::Confirmed | CallState::Terminating) {
            return None;
        }
        // Marked even without a standby: a standby that connects later gets it in its snapshot.
        call.replicated = true;
        if self.replication.durability == Durability::Off {
            return None;
        }
        Some(self.replication.push(Pending::Call { key, at: now }))
    }

    /// A replicated call ended.
    pub(super) fn replicate_removal(&mut self, call: &Call, reason: &str) {
        if call.replicated && self.replication.durability != Durability::Off {
            self.replication.push(Pending::CallRemoved {
                key: call.key,
                reason: reason.to_owned(),
            });
        }
    }

    pub(super) fn replicate_health(&mut self, event: &CallEvent) {
        if let (CallEvent::ServerHealthChanged { server, up }, true) =
            (event, self.replication.durability != Durability::Off)
        {
            self.replication.push(Pending::ServerHealth {
                name: server.clone(),
                up: *up,
            });
        }
    }

    /// Sends `answer` (a 2xx on the caller's INVITE transaction `tx`) now, or holds it until the
    /// standby acknowledged change `seq` when durability is `sync`.
    pub(super) fn answer_when_replicated(
        &mut self,
        now: Instant,
        tx: TxId,
        answer: Bytes,
        seq: Option<u64>,
    ) {
        match (self.replication.durability, seq) {
            (Durability::Sync { wait }, Some(seq)) if seq > self.replication.acked => {
                self.replication.parked.push_back(ParkedAnswer {
                    seq,
                    tx,
                    answer,
                    deadline: now + wait,
                });
            }
            _ => self.respond(now, tx, answer),
        }
    }

    /// Held answers whose wait ran out go on; each counts as a sync timeout (an alarm: the standby
    /// may miss the call).
    pub(super) fn release_overdue_answers(&mut self, now: Instant) {
        while let Some(front) = self.replication.parked.front() {
            if front.deadline > now {
                break;
            }
            if let Some(parked) = self.replication.parked.pop_front() {
                self.metrics.replication_sync_timeouts += 1;
                tracing::warn!(
                    seq = parked.seq,
                    "standby did not confirm an answered call in time; answering anyway"
                );
                self.respond(now, parked.tx, parked.answer);
            }
        }
    }

    pub(super) fn next_parked_deadline(&self) -> Option<Instant> {
        self.replication.parked.front().map(|p| p.deadline)
    }

    /// Answers held for the standby right now.
    pub fn answers_waiting_for_standby(&self) -> usize {
        self.replication.parked.len()
    }

    /// The last change a held answer waits for: the HA layer sends everything up to it at once,
    /// and may batch what follows.
    pub fn awaited_replication(&self) -> Option<u64> {
        self.replication.parked.back().map(|parked| parked.seq)
    }

    fn call_snapshot(&self, now: Instant, c: &Call) -> CallSnapshot {
        self.call_view(now, c).to_snapshot()
    }

    fn call_view<'a>(&'a self, now: Instant, c: &'a Call) -> CallView<'a> {
        CallView {
            key: c.key,
            state: c.state,
            caller: &c.caller,
            server: &c.server,
            server_name: self.server_name(c),
            media: &c.media,
            age: now.saturating_duration_since(c.created),
            times: c.times,
        }
    }
}
