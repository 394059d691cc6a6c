//! The active side of the replication stream, for the standby peer.
//!
//! Every change the core hands out ([`Core::poll_replication`]) goes in through [`Outbox::push`],
//! whether a standby is connected or not: the outbox keeps the most recent deltas in a bounded ring
//! so that a standby that reconnects under the same epoch resumes where it stopped. A standby that
//! cannot resume — its `applied_seq` is older than the ring, it speaks another epoch, or it fell
//! behind (too many unacknowledged deltas, or the oldest too old) and is marked *stale* — is
//! resynchronised by a snapshot: [`Outbox::poll_need_snapshot`] says so, the shell takes
//! [`Core::replication_snapshot`] and passes it to [`Outbox::begin_snapshot`]. Nothing here blocks
//! or grows without bound: the ring has a fixed capacity and a stale standby gets no more deltas.
//!
//! The shell drives it like this:
//!
//! ```text
//! while let Some(r) = core.poll_replication_view(|seq, change| outbox.push_view(now, unix_ms, seq, change)) {}
//! if outbox.poll_need_snapshot() { outbox.begin_snapshot(now, unix_ms, core.replication_snapshot(now)) }
//! while stream has room { let Some(msg) = outbox.poll_send() else { break }; send(msg) }
//! on Ack: if let Some(seq) = outbox.handle_ack(now, &ack) { core.handle_replication_ack(now, seq) }
//! core.set_durability(now, if outbox.synced() { Sync { .. } } else { Async })
//! ```
//!
//! Changes must be pushed before a snapshot is taken, so that the snapshot's `seq` is the last
//! change the outbox has seen.
//!
//! [`Core::poll_replication`]: tandem_core::Core::poll_replication
//! [`Core::replication_snapshot`]: tandem_core::Core::replication_snapshot

pub use crate::ack_latency::{AckLatency, ACK_LATENCY_BOUNDS_US};
use crate::convert::snapshot_to_chunks;
use crate::outgoing::Outgoing;
use crate::view_encode;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tandem_core::{ChangeView, ReplicaSnapshot, ReplicationChange};
use tandem_proto::replication::v1::SnapshotChunk;
use tandem_proto::replication::v1::{active_message::Kind, Ack, ActiveMessage, Hello};

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Recent deltas kept for a reconnecting standby to resume from.
    pub ring_capacity: usize,
    /// Calls per snapshot chunk.
    pub chunk_calls: usize,
    /// More deltas than this sent or waiting but not acknowledged: the standby is stale.
    pub max_unacked: u64,
    /// The oldest unacknowledged delta older than this: the standby is stale.
    pub max_ack_delay: Duration,
    /// A snapshot not acknowledged within this time: the standby is stale (a fresh one follows).
    pub snapshot_timeout: Duration,
    /// Longest a delta waits to be sent with others. A delta an answer waits for
    /// ([`Outbox::send_through`]) goes at once and takes every earlier one along; zero sends each
    /// delta at once.
    pub batch_window: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            ring_capacity: 50_000,
            chunk_calls: 500,
            max_unacked: 10_000,
            max_ack_delay: Duration::from_secs(1),
            snapshot_timeout: Duration::from_secs(30),
            batch_window: Duration::from_millis(1),
        }
    }
}

/// What the outbox does with a standby's Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOutcome {
    /// Deltas continue right after the standby's `applied_seq`.
    Resumed {
        /// The first sequence number that will be sent.
        from: u64,
    },
    /// The standby gets a snapshot ([`Outbox::poll_need_snapshot`] is true).
    Snapshot,
    /// The standby knows a higher epoch than this node: nothing is sent. The shell hands the Hello
    /// to the role machine, which fences this node.
    Refused {
        /// The standby's epoch.
        their_epoch: u64,
    },
}

/// Why a call into the outbox was not taken as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// A pushed change is not the one after the previous (the ring restarts at it; a connected
    /// standby is resynchronised).
    #[error("change {got} pushed after {last}")]
    OutOfOrder {
        /// The previous change pushed.
        last: u64,
        /// The change pushed now.
        got: u64,
    },
    /// A snapshot was given while no standby is connected.
    #[error("no standby connected")]
    NotConnected,
    /// A snapshot was given that is older than the ring: the deltas right after it are gone.
    #[error("snapshot at {seq} predates the ring (oldest kept: {oldest})")]
    SnapshotTooOld {
        /// The snapshot's sequence number.
        seq: u64,
        /// The oldest delta the ring still holds.
        oldest: u64,
    },
}

/// How far the standby is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Deltas sent or waiting but not acknowledged (during a snapshot: deltas since it).
    pub deltas: u64,
    /// Age of the oldest of them (during a snapshot: time since it began).
    pub oldest: Duration,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxMetrics {
    /// Snapshots begun.
    pub snapshots: u64,
    /// Sessions that resumed from the ring.
    pub resumes: u64,
    /// Times the standby was marked stale.
    pub stale: u64,
    /// Deltas handed to the shell to send.
    pub deltas_sent: u64,
}

/// A delta kept for sending and resuming, encoded once (an `ActiveMessage` carrying it).
#[derive(Debug)]
struct Kept {
    seq: u64,
    pushed: Instant,
    encoded: Bytes,
}

/// Where the connected standby is.
#[derive(Debug)]
enum Session {
    /// No standby.
    Disconnected,
    /// The standby needs a snapshot; the shell has not given it yet.
    NeedSnapshot,
    /// Snapshot at `seq` under way (`chunks` still to send), deltas after it follow.
    Snapshot {
        seq: u64,
        began: Instant,
        chunks: VecDeque<SnapshotChunk>,
    },
    /// The standby has a complete mirror (since `since`) and receives deltas.
    Streaming { since: Instant },
}

/// The active node's replication sender toward its standby peer. Lives as long as the node is
/// active (one epoch); a reconnecting standby is a new session of the same outbox.
#[derive(Debug)]
pub struct Outbox {
    config: OutboxConfig,
    epoch: u64,
    ring: VecDeque<Kept>,
    /// The last change pushed (0: none yet).
    last_seq: u64,
    /// The next delta to send in this session.
    cursor: u64,
    /// Deltas up to this one may be sent now; later ones wait for the batch window.
    send_through: u64,
    /// When the deltas waiting for the batch window must go.
    batch_due: Option<Instant>,
    /// The standby's cumulative ack in this session.
    acked: u64,
    session: Session,
    stale: bool,
    metrics: OutboxMetrics,
    ack_latency: AckLatency,
}

impl Outbox {
    /// An outbox for the node's epoch `epoch` (the one it became active with).
    pub fn new(config: OutboxConfig, epoch: u64) -> Outbox {
        Outbox {
            config,
            epoch,
            ring: VecDeque::new(),
            last_seq: 0,
            cursor: 1,
            send_through: 0,
            batch_due: None,
            acked: 0,
            session: Session::Disconnected,
            stale: false,
            metrics: OutboxMetrics::default(),
            ack_latency: AckLatency::default(),
        }
    }

    /// The epoch every message carries.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The last change pushed.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The standby's cumulative acknowledgement in the current session.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Deltas kept in the ring for a reconnecting standby.
    pub fn kept(&self) -> usize {
        self.ring.len()
    }

    /// Whether a standby is connected (has said Hello).
    pub fn connected(&self) -> bool {
        !matches!(self.session, Session::Disconnected)
    }

    /// Whether the standby fell behind and is being resynchronised.
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Whether the standby has a complete mirror and keeps up: it acknowledged its snapshot (or
    /// resumed) and is within the bounds. Answers may wait for it (durability `sync`) only then.
    pub fn synced(&self) -> bool {
        matches!(self.session, Session::Streaming { .. }) && !self.stale
    }

    /// Counters.
    pub fn metrics(&self) -> OutboxMetrics {
        self.metrics
    }

    /// How long the standby took to acknowledge deltas, since this outbox was created (the node
    /// became active).
    pub fn ack_latency(&self) -> &AckLatency {
        &self.ack_latency
    }

    /// Records change `seq` of the core (consecutive from the first one pushed).
    pub fn push(
        &mut self,
        now: Instant,
        unix_ms: u64,
        seq: u64,
        change: ReplicationChange,
    ) -> Result<(), OutboxError> {
        self.push_view(now, unix_ms, seq, change.view())
    }

    /// As [`Outbox::push`], for a change borrowed from the core
    /// ([`Core::poll_replication_view`](tandem_core::Core::poll_replication_view)): it is
    /// encoded straight from the core's call, which is not copied (both pushes encode this way).
    pub fn push_view(
        &mut self,
        now: Instant,
        unix_ms: u64,
        seq: u64,
        change: ChangeView<'_>,
    ) -> Result<(), OutboxError> {
        let encoded = view_encode::delta_message(self.epoch, seq, change, unix_ms);
        self.keep(now, seq, encoded)
    }

    /// Keeps delta `seq`, encoded, in the ring.
    fn keep(&mut self, now: Instant, seq: u64, encoded: Bytes) -> Result<(), OutboxError> {
        let mut result = Ok(());
        if self.last_seq != 0 && seq != self.last_seq + 1 {
            result = Err(OutboxError::OutOfOrder {
                last: self.last_seq,
                got: seq,
            });
            tracing::error!(
                last = self.last_seq,
                got = seq,
                "replication change out of order"
            );
            self.ring.clear();
            if self.connected() {
                self.go_stale("changes out of order");
            }
        }
        self.ring.push_back(Kept {
            seq,
            pushed: now,
            encoded,
        });
        self.last_seq = seq;
        self.hold_for_batch(now, seq);
        while self.ring.len() > self.config.ring_capacity.max(1) {
            self.ring.pop_front();
        }
        let needs_cursor = matches!(
            self.session,
            Session::Snapshot { .. } | Session::Streaming { .. }
        );
        if needs_cursor && self.cursor < self.oldest_kept() {
            self.go_stale("ring overran the unsent deltas");
        }
        if matches!(self.session, Session::Streaming { .. })
            && self.last_seq - self.acked > self.config.max_unacked
        {
            self.go_stale("too many unacknowledged deltas");
        }
        result
    }

    /// A standby said Hello (on a new stream, or again on the same one): a new session starts.
    pub fn handle_hello(&mut self, now: Instant, hello: &Hello) -> HelloOutcome {
        if hello.epoch > self.epoch {
            self.session = Session::Disconnected;
            return HelloOutcome::Refused {
                their_epoch: hello.epoch,
            };
        }
        self.stale = false;
        let applied = hello.applied_seq;
        let resumable = hello.epoch == self.epoch
            && applied > 0
            && applied <= self.last_seq
            && applied + 1 >= self.oldest_kept();
        if resumable {
            self.cursor = applied + 1;
            self.send_everything_pushed();
            self.acked = applied;
            self.session = Session::Streaming { since: now };
            self.metrics.resumes += 1;
            tracing::info!(node = %hello.node, from = applied + 1, "standby resumes from the ring");
            HelloOutcome::Resumed { from: applied + 1 }
        } else {
            self.acked = 0;
            self.session = Session::NeedSnapshot;
            tracing::info!(node = %hello.node, applied, their_epoch = hello.epoch, "standby needs a snapshot");
            HelloOutcome::Snapshot
        }
    }

    /// The standby's stream ended.
    pub fn handle_disconnect(&mut self) {
        self.session = Session::Disconnected;
        self.batch_due = None;
        self.stale = false;
    }

    /// Whether the standby waits for a snapshot: true until [`Outbox::begin_snapshot`] is called.
    pub fn poll_need_snapshot(&self) -> bool {
        matches!(self.session, Session::NeedSnapshot)
    }

    /// Starts sending `snapshot` (the core's, taken after every change it handed out was pushed);
    /// the deltas after it follow.
    pub fn begin_snapshot(
        &mut self,
        now: Instant,
        unix_ms: u64,
        snapshot: ReplicaSnapshot,
    ) -> Result<(), OutboxError> {
        if !self.connected() {
            return Err(OutboxError::NotConnected);
        }
        let seq = snapshot.seq;
        if seq < self.last_seq && seq + 1 < self.oldest_kept() {
            return Err(OutboxError::SnapshotTooOld {
                seq,
                oldest: self.oldest_kept(),
            });
        }
        if seq > self.last_seq {
            // Normal right after a promotion (the core continues from the restored sequence
            // number); otherwise the shell took the snapshot before pushing every change.
            if !self.ring.is_empty() {
                tracing::warn!(
                    seq,
                    last = self.last_seq,
                    "snapshot is newer than the changes pushed"
                );
            }
            self.ring.clear();
            self.last_seq = seq;
        }
        let chunks = snapshot_to_chunks(self.epoch, &snapshot, self.config.chunk_calls, unix_ms);
        tracing::info!(
            seq,
            calls = snapshot.calls.len(),
            chunks = chunks.len(),
            "snapshot begins"
        );
        self.cursor = seq + 1;
        self.send_everything_pushed();
        self.acked = 0;
        self.session = Session::Snapshot {
            seq,
            began: now,
            chunks: chunks.into(),
        };
        self.metrics.snapshots += 1;
        Ok(())
    }

    /// Whether [`Outbox::poll_send`] has something to hand out now.
    pub fn has_sendable(&self) -> bool {
        match &self.session {
            Session::Disconnected | Session::NeedSnapshot => false,
            Session::Snapshot { chunks, .. } if !chunks.is_empty() => true,
            Session::Snapshot { .. } | Session::Streaming { .. } => self.delta_due(),
        }
    }

    /// Whether the delta at the cursor was pushed and may go now (not held for a batch).
    fn delta_due(&self) -> bool {
        self.cursor <= self.last_seq.min(self.send_through)
    }

    /// The next message for the standby: snapshot chunks first, then deltas in order. `None` when
    /// there is nothing to send (call again after the next push or snapshot).
    pub fn poll_send(&mut self) -> Option<Outgoing> {
        let kind = match &mut self.session {
            Session::Disconnected | Session::NeedSnapshot => return None,
            Session::Snapshot { chunks, .. } if !chunks.is_empty() => {
                Kind::Snapshot(chunks.pop_front()?)
            }
            Session::Snapshot { .. } | Session::Streaming { .. } => {
                if !self.delta_due() {
                    return None;
                }
                let index = usize::try_from(self.cursor - self.oldest_kept()).ok()?;
                let kept = self.ring.get(index)?;
                self.cursor += 1;
                if self.cursor > self.last_seq {
                    self.batch_due = None;
                }
                self.metrics.deltas_sent += 1;
                return Some(Outgoing::Encoded(kept.encoded.clone()));
            }
        };
        Some(Outgoing::from(ActiveMessage { kind: Some(kind) }))
    }

    /// A cumulative ack from the standby. Returns the sequence number the core may now treat as
    /// replicated ([`Core::handle_replication_ack`](tandem_core::Core::handle_replication_ack)),
    /// `None` when the ack changes nothing (old, other epoch, or acknowledging what was not sent).
    pub fn handle_ack(&mut self, now: Instant, ack: &Ack) -> Option<u64> {
        if ack.epoch != self.epoch || ack.seq >= self.cursor {
            return None;
        }
        match &self.session {
            Session::Snapshot { seq, chunks, .. } if chunks.is_empty() && ack.seq >= *seq => {
                tracing::info!(seq = ack.seq, "standby synced");
                self.session = Session::Streaming { since: now };
                self.stale = false;
            }
            Session::Streaming { since } if ack.seq > self.acked => {
                self.record_ack_latency(now, *since, ack.seq);
            }
            _ => return None,
        }
        self.acked = ack.seq;
        Some(ack.seq)
    }

    /// Changes up to `seq` are awaited (a held answer waits for its call's): they go at once, with
    /// every delta pushed before them.
    pub fn send_through(&mut self, seq: u64) {
        self.send_through = self.send_through.max(seq.min(self.last_seq));
    }

    /// Releases the deltas whose batch window ended, and checks the standby's lag against the
    /// bounds.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.batch_due.is_some_and(|due| now >= due) {
            self.send_everything_pushed();
        }
        if let Some(deadline) = self.stale_deadline() {
            if now >= deadline {
                match self.session {
                    Session::Snapshot { .. } => self.go_stale("snapshot not acknowledged in time"),
                    _ => self.go_stale("acknowledgements too late"),
                }
            }
        }
    }

    /// When batched deltas must go, or the standby turns stale unless it acknowledges first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.batch_due, self.stale_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Delta `seq` was just pushed: it may go at once (no batch window) or waits with those
    /// before it until the window that the first of them opened ends.
    fn hold_for_batch(&mut self, now: Instant, seq: u64) {
        let sending = matches!(
            self.session,
            Session::Snapshot { .. } | Session::Streaming { .. }
        );
        if self.config.batch_window.is_zero() || !sending {
            self.send_through = seq;
        } else if self.batch_due.is_none() {
            self.batch_due = Some(now + self.config.batch_window);
        }
    }

    fn send_everything_pushed(&mut self) {
        self.send_through = self.last_seq;
        self.batch_due = None;
    }

    fn stale_deadline(&self) -> Option<Instant> {
        match &self.session {
            Session::Snapshot { began, .. } => Some(*began + self.config.snapshot_timeout),
            Session::Streaming { since } if self.acked < self.last_seq => self
                .pushed_at(self.acked + 1)
                .map(|pushed| pushed.max(*since) + self.config.max_ack_delay),
            _ => None,
        }
    }

    /// How far the standby is behind (zero when none is connected).
    pub fn lag(&self, now: Instant) -> Lag {
        match &self.session {
            Session::Disconnected | Session::NeedSnapshot => Lag::default(),
            Session::Snapshot { seq, began, .. } => Lag {
                deltas: self.last_seq.saturating_sub(*seq),
                oldest: now.saturating_duration_since(*began),
            },
            Session::Streaming { since } => Lag {
                deltas: self.last_seq - self.acked,
                oldest: self
                    .pushed_at(self.acked + 1)
                    .map(|pushed| now.saturating_duration_since(pushed.max(*since)))
                    .unwrap_or_default(),
            },
        }
    }

    /// Counts the deltas after `self.acked` up to `seq` (all sent, so all in the ring unless it
    /// overran them) into the ack latency.
    fn record_ack_latency(&mut self, now: Instant, since: Instant, seq: u64) {
        let oldest = self.oldest_kept();
        let first = (self.acked + 1).max(oldest);
        let (Ok(from), Ok(to)) = (
            usize::try_from(first - oldest),
            usize::try_from(seq.saturating_sub(oldest)),
        ) else {
            return;
        };
        if first > seq || to >= self.ring.len() {
            return;
        }
        for kept in self.ring.range(from..=to) {
            let latency = now.saturating_duration_since(kept.pushed.max(since));
            self.ack_latency.record(latency);
        }
    }

    fn oldest_kept(&self) -> u64 {
        self.ring
            .front()
            .map(|k| k.seq)
            .unwrap_or(self.last_seq + 1)
    }

    fn pushed_at(&self, seq: u64) -> Option<Instant> {
        let index = usize::try_from(seq.checked_sub(self.oldest_kept())?).ok()?;
        self.ring.get(index).map(|k| k.pushed)
    }

    fn go_stale(&mut self, reason: &'static str) {
        tracing::warn!(
            reason,
            acked = self.acked,
            last = self.last_seq,
            "standby stale: resync by snapshot"
        );
        self.stale = true;
        self.acked = 0;
        self.session = Session::NeedSnapshot;
        self.metrics.stale += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn health(up: bool) -> ReplicationChange {
        ReplicationChange::ServerHealth {
            name: "ms1".to_owned(),
            up,
        }
    }

    /// An outbox (epoch 1) whose standby took an empty snapshot and streams; every delta is sent
    /// at once.
    fn streaming(t0: Instant) -> Outbox {
        streaming_with(t0, Duration::ZERO)
    }

    fn streaming_with(t0: Instant, batch_window: Duration) -> Outbox {
        let config = OutboxConfig {
            batch_window,
            ..OutboxConfig::default()
        };
        let mut outbox = Outbox::new(config, 1);
        let hello = Hello {
            node: "b".to_owned(),
            epoch: 1,
            applied_seq: 0,
            schema_version: 1,
        };
        assert_eq!(outbox.handle_hello(t0, &hello), HelloOutcome::Snapshot);
        outbox
            .begin_snapshot(t0, 0, ReplicaSnapshot::default())
            .unwrap();
        while outbox.poll_send().is_some() {}
        assert_eq!(outbox.handle_ack(t0, &Ack { epoch: 1, seq: 0 }), Some(0));
        assert!(outbox.synced());
        outbox
    }

    #[test]
    fn each_acknowledged_delta_counts_its_latency_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut outbox = streaming(t0);
        for seq in 1..=4 {
            outbox
                .push(t0 + ms(seq), 0, seq, health(seq % 2 == 0))
                .unwrap();
        }
        while outbox.poll_send().is_some() {}
        assert_eq!(
            outbox.ack_latency().count(),
            0,
            "the snapshot's ack counts nothing"
        );

        // deltas 1 and 2 (pushed at +1 and +2 ms) acknowledged at +3 ms: 2 ms and 1 ms
        outbox.handle_ack(t0 + ms(3), &Ack { epoch: 1, seq: 2 });
        // an old ack changes nothing
        outbox.handle_ack(t0 + ms(50), &Ack { epoch: 1, seq: 1 });
        // deltas 3 and 4 (+3, +4 ms) at +404 ms: 401 and 400 ms
        outbox.handle_ack(t0 + ms(404), &Ack { epoch: 1, seq: 4 });

        let latency = outbox.ack_latency();
        assert_eq!(latency.count(), 4);
        assert_eq!(latency.sum(), ms(2 + 1 + 401 + 400));
        let cumulative: Vec<(Option<Duration>, u64)> = latency.cumulative().collect();
        assert_eq!(cumulative.len(), ACK_LATENCY_BOUNDS_US.len() + 1);
        let at = |bound: Duration| {
            cumulative
                .iter()
                .find(|(b, _)| *b == Some(bound))
                .unwrap()
                .1
        };
        assert_eq!(at(ms(1)), 1, "1 ms is in the bucket of 1 ms");
        assert_eq!(at(ms(2)), 2);
        assert_eq!(at(ms(250)), 2);
        assert_eq!(at(ms(500)), 4);
        assert_eq!(cumulative.last(), Some(&(None, 4)));
    }

    fn sent_seqs(outbox: &mut Outbox) -> Vec<u64> {
        std::iter::from_fn(|| outbox.poll_send())
            .map(|message| match message.into_message().unwrap().kind {
                Some(Kind::Delta(delta)) => delta.seq,
                other => panic!("not a delta: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn deltas_nobody_waits_for_go_together_when_the_batch_window_ends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut outbox = streaming_with(t0, ms(5));
        for seq in 1..=3 {
            outbox.push(t0 + ms(seq), 0, seq, health(true)).unwrap();
        }
        assert_eq!(sent_seqs(&mut outbox), Vec::<u64>::new());
        assert_eq!(
            outbox.poll_timeout(),
            Some(t0 + ms(6)),
            "the first delta opened the window"
        );
        outbox.handle_timeout(t0 + ms(5));
        assert_eq!(sent_seqs(&mut outbox), Vec::<u64>::new());
        outbox.handle_timeout(t0 + ms(6));
        assert_eq!(sent_seqs(&mut outbox), vec![1, 2, 3]);
        assert_eq!(
            outbox.poll_timeout(),
            Some(t0 + ms(1) + OutboxConfig::default().max_ack_delay),
            "only the ack deadline is left"
        );

        // the next delta opens a new window
        outbox.push(t0 + ms(20), 0, 4, health(false)).unwrap();
        assert_eq!(outbox.poll_timeout(), Some(t0 + ms(25)));
    }

    #[test]
    fn an_awaited_delta_goes_at_once_and_takes_the_waiting_ones_along() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut outbox = streaming_with(t0, ms(5));
        outbox.push(t0, 0, 1, health(true)).unwrap();
        outbox.push(t0, 0, 2, health(false)).unwrap();
        outbox.push(t0, 0, 3, health(true)).unwrap();
        assert!(!outbox.has_sendable());
        outbox.send_through(2);
        assert!(outbox.has_sendable());
        assert_eq!(sent_seqs(&mut outbox), vec![1, 2]);
        assert!(!outbox.has_sendable());
        assert_eq!(
            outbox.poll_timeout(),
            Some(t0 + ms(5)),
            "delta 3 still waits for the window"
        );
        outbox.send_through(9);
        assert_eq!(
            sent_seqs(&mut outbox),
            vec![3],
            "never beyond what was pushed"
        );
        outbox.push(t0, 0, 4, health(false)).unwrap();
        assert_eq!(sent_seqs(&mut outbox), Vec::<u64>::new());
    }

    #[test]
    fn a_resuming_standby_gets_the_waiting_deltas_at_once() {
        let t0 = Instant::now();
        let mut outbox = streaming_with(t0, Duration::from_millis(5));
        outbox.push(t0, 0, 1, health(true)).unwrap();
        outbox.send_through(1);
        assert_eq!(sent_seqs(&mut outbox), vec![1]);
        outbox.push(t0, 0, 2, health(false)).unwrap();
        outbox.handle_disconnect();
        let hello = Hello {
            node: "b".to_owned(),
            epoch: 1,
            applied_seq: 1,
            schema_version: 1,
        };
        assert_eq!(
            outbox.handle_hello(t0, &hello),
            HelloOutcome::Resumed { from: 2 }
        );
        assert_eq!(sent_seqs(&mut outbox), vec![2]);
    }

    #[test]
    fn without_a_batch_window_every_delta_goes_at_once() {
        let t0 = Instant::now();
        let mut outbox = streaming(t0);
        outbox.push(t0, 0, 1, health(true)).unwrap();
        assert_eq!(sent_seqs(&mut outbox), vec![1]);
        outbox.push(t0, 0, 2, health(false)).unwrap();
        assert_eq!(sent_seqs(&mut outbox), vec![2]);
    }
}
