//! The standby side of the replication stream: a full copy of the active node's replicated state.
//!
//! A snapshot arrives in chunks and replaces the whole mirror once its final chunk is in (until
//! then the previous mirror stays, so a forced promotion in the middle of a resync still has the
//! last complete state). Deltas then apply strictly in order. A delta that skips a sequence number,
//! carries another epoch than the snapshot, comes before any snapshot, or holds a record that cannot
//! be read puts the mirror in [`MirrorState::NeedsResync`]: the shell says Hello again (the mirror's
//! [`Mirror::hello`] then asks for a snapshot with `applied_seq` 0), on the same stream or a new one.
//!
//! Acknowledgements are cumulative and coalesced: after handing a batch of received messages to
//! [`Mirror::handle_message`], the shell sends what [`Mirror::poll_ack`] returns (at most one Ack).
//! On promotion, [`Mirror::to_snapshot`] is what `Core::restore` takes.

use crate::convert::{call_from_record, ConvertError};
use std::collections::BTreeMap;
use std::time::Duration;
use tandem_core::media::CallMedia;
use tandem_core::{CallSnapshot, ReplicaSnapshot};
use tandem_proto::replication::v1 as wire;
use wire::{active_message::Kind, delta::Change};

/// Where the mirror is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MirrorState {
    /// Nothing received yet.
    #[default]
    Empty,
    /// A snapshot is expected or arriving.
    Loading,
    /// A complete snapshot and every delta since are applied.
    Synced,
    /// The stream broke its order: a new Hello (with `applied_seq` 0) is needed.
    NeedsResync,
}

/// Why a message broke the mirror (it is then in [`MirrorState::NeedsResync`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// A delta skipped a sequence number.
    #[error("delta {got} after {applied}: gap")]
    Gap {
        /// The last applied.
        applied: u64,
        /// The delta received.
        got: u64,
    },
    /// A delta of another epoch than the mirror's snapshot.
    #[error("delta of epoch {got}, mirror is of epoch {mirror}")]
    EpochMismatch {
        /// The snapshot's epoch.
        mirror: u64,
        /// The delta's.
        got: u64,
    },
    /// A delta arrived while no complete snapshot was applied.
    #[error("delta {seq} before a complete snapshot")]
    DeltaBeforeSnapshot {
        /// The delta's sequence number.
        seq: u64,
    },
    /// A record could not be read.
    #[error(transparent)]
    BadRecord(#[from] ConvertError),
}

/// A mirrored call and when it started.
#[derive(Debug, Clone)]
struct Mirrored {
    call: CallSnapshot,
    created_unix_ms: u64,
}

/// Replicated state as of one sequence number.
#[derive(Debug, Clone, Default)]
struct State {
    epoch: u64,
    seq: u64,
    calls: BTreeMap<u64, Mirrored>,
    servers: Vec<(String, bool)>,
    next_call_key: u64,
}

impl State {
    fn apply_call(&mut self, record: wire::CallRecord) -> Result<(), ConvertError> {
        // Converted at its own creation time: age 0 now, recomputed in `to_snapshot`.
        let created_unix_ms = record.created_unix_ms;
        let call = call_from_record(record, created_unix_ms)?;
        self.next_call_key = self.next_call_key.max(call.key.saturating_add(1));
        self.calls.insert(
            call.key,
            Mirrored {
                call,
                created_unix_ms,
            },
        );
        Ok(())
    }

    fn apply_server(&mut self, name: &str, up: bool) {
        match self.servers.iter_mut().find(|(n, _)| n == name) {
            Some(server) => server.1 = up,
            None => self.servers.push((name.to_owned(), up)),
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorMetrics {
    /// Snapshots completely applied.
    pub snapshots: u64,
    /// Deltas applied.
    pub deltas: u64,
    /// Times the mirror broke and needed a resync.
    pub resyncs: u64,
}

/// The standby's copy of the active node's replicated state.
#[derive(Debug, Default)]
pub struct Mirror {
    /// The last complete state.
    current: State,
    /// A snapshot being received.
    loading: Option<State>,
    state: MirrorState,
    ack_due: bool,
    metrics: MirrorMetrics,
    /// Keys of the calls added, changed or removed in the current state since the last
    /// `take_call_changes` (may repeat).
    changed: Vec<u64>,
    /// The media servers' health changed since the last `take_server_changes`.
    servers_changed: bool,
}

/// A call of the mirror that changed, for the standby's relay ([`Mirror::take_call_changes`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    /// The call's media as mirrored now.
    Present(Box<MirroredMedia>),
    /// The call with this key left the mirror.
    Gone(u64),
}

/// What a standby's relay needs of a mirrored call.
#[derive(Debug, Clone, PartialEq)]
pub struct MirroredMedia {
    /// The call's key.
    pub key: u64,
    /// The caller leg's Call-ID (for the relay's logs).
    pub call_id: String,
    /// Its media: relay ports, remotes, latches, outbound streams.
    pub media: CallMedia,
    /// Its age when taken.
    pub age: Duration,
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Mirror {
        Mirror::default()
    }

    /// The Hello that opens a session (on a new stream or again on the current one). `node` is this
    /// node's name, `known_epoch` the highest epoch it has seen. It asks to resume after the last
    /// applied delta when the mirror is synced under that epoch, for a snapshot otherwise.
    pub fn hello(&mut self, node: &str, known_epoch: u64) -> wire::Hello {
        let epoch = known_epoch.max(self.current.epoch);
        let resume = self.state == MirrorState::Synced && self.current.epoch == epoch;
        self.loading = None;
        self.ack_due = false;
        if !resume {
            self.state = MirrorState::Loading;
        }
        wire::Hello {
            node: node.to_owned(),
            epoch,
            applied_seq: if resume { self.current.seq } else { 0 },
            schema_version: 1,
        }
    }

    /// Applies one message from the active. Heartbeats are handed back for the role machine.
    pub fn handle_message(
        &mut self,
        message: wire::ActiveMessage,
    ) -> Result<Option<wire::Heartbeat>, MirrorError> {
        match message.kind {
            Some(Kind::Snapshot(chunk)) => self.handle_chunk(chunk).map(|()| None),
            Some(Kind::Delta(delta)) => self.handle_delta(delta).map(|()| None),
            Some(Kind::Heartbeat(heartbeat)) => Ok(Some(heartbeat)),
            None => Ok(None),
        }
    }

    /// Applies one snapshot chunk. A chunk of another snapshot than the one arriving starts over;
    /// chunks of the same snapshot merge by call key, so a snapshot sent again is harmless.
    pub fn handle_chunk(&mut self, chunk: wire::SnapshotChunk) -> Result<(), MirrorError> {
        let same = self
            .loading
            .as_ref()
            .is_some_and(|l| l.epoch == chunk.epoch && l.seq == chunk.seq);
        if !same {
            self.loading = Some(State {
                epoch: chunk.epoch,
                seq: chunk.seq,
                ..State::default()
            });
        }
        self.state = MirrorState::Loading;
        let Some(loading) = self.loading.as_mut() else {
            return Ok(());
        };
        for record in chunk.calls {
            if let Err(error) = loading.apply_call(record) {
                return Err(self.break_stream(error.into()));
            }
        }
        for server in &chunk.servers {
            loading.apply_server(&server.name, server.up);
        }
        if chunk.last {
            loading.next_call_key = loading.next_call_key.max(chunk.next_call_key);
            if let Some(complete) = self.loading.take() {
                self.changed.extend(self.current.calls.keys());
                self.changed.extend(complete.calls.keys());
                tracing::info!(
                    epoch = complete.epoch,
                    seq = complete.seq,
                    calls = complete.calls.len(),
                    "mirror loaded a snapshot"
                );
                self.current = complete;
                self.servers_changed = true;
            }
            self.state = MirrorState::Synced;
            self.ack_due = true;
            self.metrics.snapshots += 1;
        }
        Ok(())
    }

    /// Applies one delta.
    pub fn handle_delta(&mut self, delta: wire::Delta) -> Result<(), MirrorError> {
        match self.state {
            MirrorState::NeedsResync => return Ok(()),
            MirrorState::Synced => {}
            MirrorState::Empty | MirrorState::Loading => {
                return Err(self.break_stream(MirrorError::DeltaBeforeSnapshot { seq: delta.seq }))
            }
        }
        if delta.epoch != self.current.epoch {
            return Err(self.break_stream(MirrorError::EpochMismatch {
                mirror: self.current.epoch,
                got: delta.epoch,
            }));
        }
        if delta.seq <= self.current.seq {
            return Ok(());
        }
        if delta.seq != self.current.seq + 1 {
            return Err(self.break_stream(MirrorError::Gap {
                applied: self.current.seq,
                got: delta.seq,
            }));
        }
        match delta.change {
            Some(Change::Call(record)) => {
                let key = record.key;
                if let Err(error) = self.current.apply_call(record) {
                    return Err(self.break_stream(error.into()));
                }
                self.changed.push(key);
            }
            Some(Change::CallRemoved(removed)) => {
                self.current.calls.remove(&removed.key);
                self.changed.push(removed.key);
            }
            Some(Change::Server(server)) => {
                self.current.apply_server(&server.name, server.up);
                self.servers_changed = true;
            }
            // Registrations and agents are not mirrored yet; their sequence numbers still count.
            Some(Change::Registration(_) | Change::RegistrationRemoved(_) | Change::Agent(_))
            | None => {}
        }
        self.current.seq = delta.seq;
        self.ack_due = true;
        self.metrics.deltas += 1;
        Ok(())
    }

    /// The cumulative Ack to send after the batch just handled, if anything new was applied.
    pub fn poll_ack(&mut self) -> Option<wire::Ack> {
        if !std::mem::take(&mut self.ack_due) || self.state != MirrorState::Synced {
            return None;
        }
        Some(wire::Ack {
            epoch: self.current.epoch,
            seq: self.current.seq,
        })
    }

    /// The mirrored state for `Core::restore` on promotion, with call ages as of `now_unix_ms`
    /// (calls ordered by key).
    pub fn to_snapshot(&self, now_unix_ms: u64) -> ReplicaSnapshot {
        ReplicaSnapshot {
            seq: self.current.seq,
            calls: self
                .current
                .calls
                .values()
                .map(|m| CallSnapshot {
                    age: Duration::from_millis(now_unix_ms.saturating_sub(m.created_unix_ms)),
                    ..m.call.clone()
                })
                .collect(),
            servers: self.current.servers.clone(),
            next_call_key: self.current.next_call_key,
        }
    }

    /// The calls added, changed or removed since the last call, each once, by key, with ages as
    /// of `now_unix_ms`: what a standby's relay prepares or closes.
    pub fn take_call_changes(&mut self, now_unix_ms: u64) -> Vec<CallChange> {
        let mut keys = std::mem::take(&mut self.changed);
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|key| match self.current.calls.get(&key) {
                Some(m) => CallChange::Present(Box::new(MirroredMedia {
                    key,
                    call_id: m.call.caller.call_id.clone(),
                    media: m.call.media.clone(),
                    age: Duration::from_millis(now_unix_ms.saturating_sub(m.created_unix_ms)),
                })),
                None => CallChange::Gone(key),
            })
            .collect()
    }

    /// The media servers' health as the active node sees it, when it changed since the last call
    /// (a snapshot loaded, or a delta changed a server).
    pub fn take_server_changes(&mut self) -> Option<&[(String, bool)]> {
        std::mem::take(&mut self.servers_changed).then_some(self.current.servers.as_slice())
    }

    /// Forgets the changes noted so far (a standby without a relay has no use for them).
    pub fn discard_call_changes(&mut self) {
        self.changed.clear();
    }

    /// Forgets everything (the node became active, or its mirror belongs to an old epoch).
    pub fn reset(&mut self) {
        *self = Mirror::default();
    }

    /// Where the mirror is.
    pub fn state(&self) -> MirrorState {
        self.state
    }

    /// A complete snapshot and every delta since are applied.
    pub fn synced(&self) -> bool {
        self.state == MirrorState::Synced
    }

    /// The stream broke its order: say Hello again.
    pub fn needs_resync(&self) -> bool {
        self.state == MirrorState::NeedsResync
    }

    /// Calls in the (last complete) mirror.
    pub fn calls(&self) -> usize {
        self.current.calls.len()
    }

    /// The last sequence number applied.
    pub fn applied_seq(&self) -> u64 {
        self.current.seq
    }

    /// The epoch of the mirrored state.
    pub fn epoch(&self) -> u64 {
        self.current.epoch
    }

    /// Counters.
    pub fn metrics(&self) -> MirrorMetrics {
        self.metrics
    }

    fn break_stream(&mut self, error: MirrorError) -> MirrorError {
        tracing::warn!(%error, applied = self.current.seq, "mirror needs a resync");
        self.loading = None;
        self.state = MirrorState::NeedsResync;
        self.ack_due = false;
        self.metrics.resyncs += 1;
        error
    }
}
