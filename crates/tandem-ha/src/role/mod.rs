//! The node's role machine: heartbeats, failure detection with a second-path confirmation,
//! promotion with epoch bump, fencing, planned switchover, and the incident timeline.
//!
//! # Rules
//!
//! * **Every node starts as standby**, with the persisted epoch as the highest it has seen. The
//!   configured role is a preference only (it wins ties, below): a node restarted after a crash
//!   must not come up active with an empty state while its peer carries the calls.
//! * **Takeover.** A standby suspects the active when no heartbeat arrived for
//!   `misses × heartbeat_interval`, or at once when the stream closes. It then asks the shell to
//!   probe the peer over a second path ([`Action::StartConfirm`]); no answer within
//!   `confirm_timeout` counts as dead. It promotes automatically only when the probe says dead
//!   and it *can take over*: its mirror is synced and it has not lost the stream while the active
//!   lived (see *divergence*). Defaults: 200 ms + 100 ms ≤ 300 ms from the last heartbeat.
//! * **Divergence.** A probe that finds the peer alive while its heartbeats are missing means only
//!   the replication link is lost: the node never promotes for it, and its mirror no longer
//!   follows the active, so automatic promotion stays disabled until the stream is back and the
//!   mirror caught up with the active's sequence number of the first heartbeat after it. A forced
//!   promotion is always possible.
//! * **Nothing to lose.** A standby that has not heard an active peer since it started (or since
//!   it handed the role over) holds no one's calls: once its probe finds the peer dead, after
//!   the startup grace, it promotes even with an empty mirror. One that has heard an active peer
//!   and holds no synced mirror needs a forced promotion.
//! * **Two standbys.** When the peer says (by heartbeat) that it is a standby too, the node with
//!   the better claim promotes: synced mirror first, then higher epoch, then higher applied
//!   sequence number; on a tie, the node configured active, and after `startup_grace` of tie the
//!   lower node name. This is how a cold start elects its active and how a switchover completes.
//! * **Epochs and fencing.** Promotion sets the epoch to the highest seen + 1 (persisted first,
//!   [`Action::PersistEpoch`]). An active node that sees a heartbeat or Hello with a higher epoch
//!   steps down at once ([`Action::BecomeStandby`], incident `fenced`); two actives of the same
//!   epoch keep the one with the lower node name.
//! * **Switchover** (on the active): needs a connected standby whose mirror is synced. The active
//!   stops taking SIP ([`Action::StopAccepting`]), waits until the standby acknowledged every
//!   change, then becomes standby and says so in a heartbeat; the standby, seeing its peer turn
//!   standby with a claim worse than its own, promotes with epoch + 1. The old active is standby
//!   before the new one is active: never two actives. If the standby does not catch up within
//!   `handover_timeout` the switchover is aborted ([`Action::ResumeAccepting`]).
//! * **Demote** (on the active): the same handover without the flush wait; refused without a
//!   synced standby. **Promote** (on the standby): needs a mirror that can take over unless forced;
//!   an active peer is then fenced by the higher epoch.
//! * **keepalived owns the address** ([`AddressOwner::Keepalived`]): the node that holds the
//!   address is the one to be active, and only keepalived knows which that is. No takeover, no
//!   election between standbys, no probe: the node becomes active only by a promote command (the
//!   notify script on MASTER), and a demote (on BACKUP, FAULT, STOP) steps down at once without a
//!   synced standby, since the address is already gone. A switchover is refused (the address is
//!   moved with keepalived). Replication, heartbeats and epoch fencing are as above, so a node
//!   promoted by keepalived fences the old active as soon as the two hear each other.

mod config;
mod watch;

pub use config::{Action, AddressOwner, NodeRole, Progress, RoleConfig, RoleError, RoleStatus};

use crate::incident::{IncidentKind, IncidentLog, StepName, WallClock};
use std::collections::VecDeque;
use std::time::Instant;
use tandem_proto::replication::v1 as wire;

/// Where the node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    /// Stopped taking SIP; waiting for the standby to acknowledge everything.
    HandingOver {
        deadline: Instant,
        incident: u64,
        /// The shell has taken [`Action::StopAccepting`].
        stopped: bool,
    },
    Standby,
}

/// The last replication progress of the node's current role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Replicated {
    /// Active: the last change pushed. Standby: the last applied.
    seq: u64,
    /// Active: the standby's ack. Standby: as `seq`.
    acked: u64,
    /// Active: the standby is synced. Standby: the mirror is.
    synced: bool,
    calls: u64,
}

/// What the node remembers of its peer.
#[derive(Debug, Default)]
struct PeerView {
    connected: bool,
    last_heard: Option<Instant>,
    heartbeat: Option<wire::Heartbeat>,
}

impl PeerView {
    fn role(&self) -> Option<wire::Role> {
        self.heartbeat
            .as_ref()
            .and_then(|h| wire::Role::try_from(h.role).ok())
    }
}

/// Standby-side watch of the active.
#[derive(Debug, Default)]
struct Watch {
    /// An active peer was heard since this node became standby (its calls are in our hands).
    heard_active: bool,
    /// The stream to the live active was lost: the mirror does not follow it.
    diverged: bool,
    /// Divergence ends once the mirror applied this sequence number.
    catch_up_to: Option<u64>,
    /// When the peer was first suspected (the incident's "detected").
    suspect_since: Option<Instant>,
    /// A probe is out; it counts as dead at this deadline.
    probe_deadline: Option<Instant>,
    /// No new probe before this.
    next_probe: Option<Instant>,
    /// The last probe's answer while the peer is unheard.
    peer_alive: Option<bool>,
    /// When two standbys started tying.
    tie_since: Option<Instant>,
    /// The mirror has not been synced yet since this node became standby.
    joining: bool,
}

/// The role machine of one node. Sans-IO: inputs are method calls with the current time,
/// outputs are [`Role::poll_action`] and [`Role::poll_timeout`].
#[derive(Debug)]
pub struct Role {
    config: RoleConfig,
    clock: WallClock,
    phase: Phase,
    epoch: u64,
    standby_since: Instant,
    peer: PeerView,
    watch: Watch,
    progress: Replicated,
    next_heartbeat: Instant,
    actions: VecDeque<Action>,
    incidents: IncidentLog,
    /// The incident of the latest promotion, for the steps the shell reports.
    promotion: Option<u64>,
}

impl Role {
    /// A node starting now (as standby; see the rules), `unix_ms` being the wall clock at `now`.
    pub fn new(config: RoleConfig, now: Instant, unix_ms: u64) -> Role {
        let clock = WallClock::new(now, unix_ms);
        Role {
            incidents: IncidentLog::new(config.incidents_kept, clock),
            epoch: config.epoch,
            config,
            clock,
            phase: Phase::Standby,
            standby_since: now,
            peer: PeerView::default(),
            watch: Watch {
                joining: true,
                ..Watch::default()
            },
            progress: Replicated::default(),
            next_heartbeat: now,
            actions: VecDeque::new(),
            promotion: None,
        }
    }

    /// Re-anchors the wall clock used for heartbeats and incident steps.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.clock = WallClock::new(now, unix_ms);
        self.incidents.set_clock(self.clock);
    }

    /// The role (a node handing over is still active).
    pub fn role(&self) -> NodeRole {
        match self.phase {
            Phase::Active | Phase::HandingOver { .. } => NodeRole::Active,
            Phase::Standby => NodeRole::Standby,
        }
    }

    /// Active: the epoch served. Standby: the highest seen.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The configuration.
    pub fn config(&self) -> &RoleConfig {
        &self.config
    }

    /// For Status.
    pub fn status(&self) -> RoleStatus {
        RoleStatus {
            role: self.role(),
            epoch: self.epoch,
            peer_connected: self.peer.connected,
            peer_last_heard: self.peer.last_heard,
            peer_alive: self.watch.peer_alive,
            can_take_over: self.phase == Phase::Standby && self.can_take_over(),
            handing_over: matches!(self.phase, Phase::HandingOver { .. }),
        }
    }

    /// The incident timeline.
    pub fn incidents(&self) -> &IncidentLog {
        &self.incidents
    }

    /// Adds a step the shell observed (address taken, calls resumed) to the latest promotion's
    /// incident; false when there is none.
    pub fn record_step(
        &mut self,
        now: Instant,
        name: StepName,
        detail: impl Into<String>,
        calls: u64,
    ) -> bool {
        match self.promotion {
            Some(id) => self.incidents.step(id, now, name, detail, calls),
            None => false,
        }
    }

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front()?;
        if action == Action::StopAccepting {
            if let Phase::HandingOver { stopped, .. } = &mut self.phase {
                *stopped = true;
            }
        }
        Some(action)
    }

    /// When [`Role::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_heartbeat;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        match self.phase {
            Phase::HandingOver { deadline, .. } => consider(Some(deadline)),
            Phase::Active => {}
            Phase::Standby if !self.decides_roles() => {}
            Phase::Standby => {
                consider(self.watch.probe_deadline);
                if self.watch.probe_deadline.is_none() {
                    let detect = self.detection_deadline();
                    consider(Some(
                        self.watch.next_probe.map_or(detect, |p| p.max(detect)),
                    ));
                }
                consider(
                    self.watch
                        .tie_since
                        .map(|since| since + self.config.startup_grace),
                );
            }
        }
        Some(next)
    }

    /// Timers: heartbeats, detection, probe deadline, handover deadline, tie-break.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::HandingOver {
                deadline, incident, ..
            } if now >= deadline => {
                tracing::warn!("switchover aborted: the standby did not acknowledge in time");
                self.incidents.step(
                    incident,
                    now,
                    StepName::Aborted,
                    "standby did not catch up",
                    0,
                );
                self.phase = Phase::Active;
                self.actions.push_back(Action::ResumeAccepting);
            }
            Phase::HandingOver { .. } => self.try_release(now),
            Phase::Active => {}
            Phase::Standby => self.watch_timers(now),
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            self.send_heartbeat(now);
        }
    }

    /// The stream to the peer is up (either direction).
    pub fn handle_peer_connected(&mut self, now: Instant) {
        self.peer.connected = true;
        self.peer.last_heard = Some(now);
        self.send_heartbeat(now);
    }

    /// The stream to the peer closed. A standby following an active probes it at once.
    pub fn handle_peer_disconnected(&mut self, now: Instant) {
        self.peer.connected = false;
        if self.phase == Phase::Standby
            && self.decides_roles()
            && self.watch.heard_active
            && self.watch.probe_deadline.is_none()
        {
            tracing::info!(peer = %self.config.peer, "stream to the active closed; probing it");
            self.start_probe(now);
        }
    }

    /// A heartbeat from the peer.
    pub fn handle_heartbeat(&mut self, now: Instant, heartbeat: &wire::Heartbeat) {
        if heartbeat.node != self.config.peer {
            tracing::warn!(node = %heartbeat.node, "heartbeat from an unknown node ignored");
            return;
        }
        let previous_role = self.peer.role();
        self.peer.last_heard = Some(now);
        self.peer.heartbeat = Some(heartbeat.clone());
        self.watch.probe_deadline = None;
        self.watch.next_probe = None;
        self.watch.suspect_since = None;
        self.watch.peer_alive = None;
        let their_role = self.peer.role();
        self.observe_epoch(now, heartbeat.epoch, their_role == Some(wire::Role::Active));
        if self.phase != Phase::Standby {
            return;
        }
        match their_role {
            Some(wire::Role::Active) if heartbeat.epoch >= self.epoch => {
                self.watch.heard_active = true;
                self.watch.tie_since = None;
                if self.watch.diverged && self.watch.catch_up_to.is_none() {
                    self.watch.catch_up_to = Some(heartbeat.seq);
                    self.check_caught_up();
                }
            }
            Some(wire::Role::Standby) => {
                let handed_over = previous_role == Some(wire::Role::Active);
                self.consider_claim(now, handed_over);
            }
            _ => {}
        }
    }

    /// A Hello from the peer (it dials this node as its active).
    pub fn handle_hello(&mut self, now: Instant, hello: &wire::Hello) {
        if hello.node != self.config.peer {
            tracing::warn!(node = %hello.node, "hello from an unknown node ignored");
            return;
        }
        self.peer.last_heard = Some(now);
        self.observe_epoch(now, hello.epoch, false);
    }

    /// The answer of the second-path probe.
    pub fn handle_confirm_result(&mut self, now: Instant, peer_alive: bool) {
        if self.phase != Phase::Standby || self.watch.probe_deadline.take().is_none() {
            return;
        }
        self.probe_answered(now, peer_alive);
    }

    /// Where replication stands (call after every batch of replication work).
    pub fn set_replication(&mut self, now: Instant, progress: Progress) {
        self.progress = match (progress, self.role()) {
            (
                Progress::Active {
                    last_seq,
                    acked,
                    standby_synced,
                    calls,
                },
                NodeRole::Active,
            ) => Replicated {
                seq: last_seq,
                acked,
                synced: standby_synced,
                calls,
            },
            (
                Progress::Standby {
                    applied_seq,
                    synced,
                    calls,
                },
                NodeRole::Standby,
            ) => Replicated {
                seq: applied_seq,
                acked: applied_seq,
                synced,
                calls,
            },
            _ => return,
        };
        let progress = self.progress;
        match self.phase {
            Phase::HandingOver { .. } => self.try_release(now),
            Phase::Active => {}
            Phase::Standby => {
                self.check_caught_up();
                if progress.synced && self.watch.joining && self.watch.heard_active {
                    self.watch.joining = false;
                    let id = self.incidents.open(
                        IncidentKind::Rejoined,
                        format!("standby of {} (epoch {})", self.config.peer, self.epoch),
                    );
                    self.incidents.step(
                        id,
                        now,
                        StepName::Synced,
                        format!("seq {}", progress.seq),
                        progress.calls,
                    );
                }
            }
        }
    }

    /// Admin: make this node active. Without `force`, refused unless the node can take over.
    pub fn promote(&mut self, now: Instant, force: bool) -> Result<(), RoleError> {
        self.promote_because(now, force, "")
    }

    /// [`Role::promote`] with the requester's reason (e.g. `keepalived: MASTER of tandem`), kept
    /// in the incident; empty: an operator. A node already active stays as it is (Ok).
    pub fn promote_because(
        &mut self,
        now: Instant,
        force: bool,
        reason: &str,
    ) -> Result<(), RoleError> {
        match self.phase {
            Phase::Active => return Ok(()),
            Phase::HandingOver { .. } => return Err(RoleError::Busy),
            Phase::Standby => {}
        }
        if !force && !self.can_take_over() {
            return Err(RoleError::NotSynced);
        }
        let id = self.incidents.open(
            IncidentKind::Promote,
            with_reason(format!("{} promoted by command", self.config.node), reason),
        );
        let how = if force { "forced" } else { "operator" };
        self.incidents
            .step(id, now, StepName::Requested, requested(how, reason), 0);
        self.promote_now(now, id);
        Ok(())
    }

    /// Admin: hand the active role to the standby at once (no flush wait).
    pub fn demote(&mut self, now: Instant) -> Result<(), RoleError> {
        self.demote_because(now, "")
    }

    /// [`Role::demote`] with the requester's reason, kept in the incident. A standby stays as it is
    /// (Ok). When keepalived owns the address the node steps down at once, synced standby or not.
    pub fn demote_because(&mut self, now: Instant, reason: &str) -> Result<(), RoleError> {
        match self.phase {
            Phase::Standby => Ok(()),
            Phase::HandingOver { .. } => Err(RoleError::Busy),
            Phase::Active => {
                let summary = if self.decides_roles() {
                    self.check_handover_peer()?;
                    format!("{} hands over to {}", self.config.node, self.config.peer)
                } else {
                    format!("{} steps down", self.config.node)
                };
                let id = self
                    .incidents
                    .open(IncidentKind::Demote, with_reason(summary, reason));
                self.incidents.step(
                    id,
                    now,
                    StepName::Requested,
                    requested("operator", reason),
                    self.progress.calls,
                );
                self.release(now, id);
                Ok(())
            }
        }
    }

    /// Admin: planned handover to the synced standby (see the rules).
    pub fn switchover(&mut self, now: Instant) -> Result<(), RoleError> {
        if !self.decides_roles() {
            return Err(RoleError::KeepalivedOwnsAddress);
        }
        match self.phase {
            Phase::Standby => Err(RoleError::NotActive),
            Phase::HandingOver { .. } => Err(RoleError::Busy),
            Phase::Active => {
                self.check_handover_peer()?;
                let id = self.incidents.open(
                    IncidentKind::Switchover,
                    format!("{} hands over to {}", self.config.node, self.config.peer),
                );
                self.incidents.step(
                    id,
                    now,
                    StepName::Requested,
                    "operator",
                    self.progress.calls,
                );
                self.phase = Phase::HandingOver {
                    deadline: now + self.config.handover_timeout,
                    incident: id,
                    stopped: false,
                };
                self.actions.push_back(Action::StopAccepting);
                Ok(())
            }
        }
    }

    /// The pair decides its roles itself (takeover, election); false when keepalived does.
    fn decides_roles(&self) -> bool {
        self.config.address_owner == AddressOwner::Tandem
    }

    fn check_handover_peer(&self) -> Result<(), RoleError> {
        let peer_is_standby = self.peer.role() == Some(wire::Role::Standby);
        if self.peer.connected && peer_is_standby && self.progress.synced {
            Ok(())
        } else {
            Err(RoleError::NoSyncedStandby)
        }
    }

    fn promote_now(&mut self, now: Instant, incident: u64) {
        self.epoch += 1;
        let epoch = self.epoch;
        tracing::info!(node = %self.config.node, epoch, calls = self.progress.calls, "becoming active");
        self.actions.push_back(Action::PersistEpoch { epoch });
        self.actions.push_back(Action::BecomeActive { epoch });
        self.incidents.step(
            incident,
            now,
            StepName::Promoted,
            format!("epoch {epoch}"),
            self.progress.calls,
        );
        self.promotion = Some(incident);
        self.phase = Phase::Active;
        self.progress.synced = false;
        self.progress.acked = 0;
        self.watch = Watch::default();
        self.send_heartbeat(now);
    }

    /// The switchover's flush is done once the shell stopped taking SIP and the standby
    /// acknowledged everything.
    fn try_release(&mut self, now: Instant) {
        let Phase::HandingOver {
            incident,
            stopped: true,
            ..
        } = self.phase
        else {
            return;
        };
        if self.progress.synced && self.progress.acked >= self.progress.seq {
            self.incidents.step(
                incident,
                now,
                StepName::Flushed,
                format!("seq {}", self.progress.seq),
                self.progress.calls,
            );
            self.release(now, incident);
        }
    }

    /// Hands the active role over: standby at once, the peer promotes on the next heartbeat.
    fn release(&mut self, now: Instant, incident: u64) {
        tracing::info!(node = %self.config.node, epoch = self.epoch, "handing the active role over");
        self.incidents.step(
            incident,
            now,
            StepName::Released,
            format!("epoch {}", self.epoch),
            self.progress.calls,
        );
        self.enter_standby(now, false);
        self.send_heartbeat(now);
        self.actions
            .push_back(Action::BecomeStandby { epoch: self.epoch });
    }

    fn enter_standby(&mut self, now: Instant, heard_active: bool) {
        self.phase = Phase::Standby;
        self.standby_since = now;
        self.progress = Replicated::default();
        self.watch = Watch {
            heard_active,
            joining: true,
            ..Watch::default()
        };
    }

    /// Fencing and epoch bookkeeping for an epoch the peer announced.
    fn observe_epoch(&mut self, now: Instant, their_epoch: u64, they_are_active: bool) {
        let active = self.phase != Phase::Standby;
        if their_epoch > self.epoch {
            self.epoch = their_epoch;
            self.actions
                .push_back(Action::PersistEpoch { epoch: their_epoch });
            if active {
                self.fence(
                    now,
                    format!("{} announced epoch {their_epoch}", self.config.peer),
                    they_are_active,
                );
            }
        } else if active
            && they_are_active
            && their_epoch == self.epoch
            && self.config.peer < self.config.node
        {
            self.fence(
                now,
                format!(
                    "{} is active with the same epoch {their_epoch} and the lower name",
                    self.config.peer
                ),
                true,
            );
        }
    }

    fn fence(&mut self, now: Instant, detail: String, they_are_active: bool) {
        tracing::warn!(node = %self.config.node, epoch = self.epoch, detail = %detail, "fenced: stepping down");
        let id = self.incidents.open(
            IncidentKind::Fenced,
            format!("{} stepped down: {}", self.config.node, detail),
        );
        self.incidents
            .step(id, now, StepName::Fenced, detail, self.progress.calls);
        self.incidents.step(
            id,
            now,
            StepName::Demoted,
            format!("epoch {}", self.epoch),
            0,
        );
        self.enter_standby(now, they_are_active);
        self.actions
            .push_back(Action::BecomeStandby { epoch: self.epoch });
        self.send_heartbeat(now);
    }

    fn send_heartbeat(&mut self, now: Instant) {
        if !self.peer.connected {
            return;
        }
        let role = self.role();
        let synced = match role {
            NodeRole::Active => true,
            NodeRole::Standby => self.progress.synced && !self.watch.diverged,
        };
        self.actions
            .push_back(Action::SendHeartbeat(wire::Heartbeat {
                node: self.config.node.clone(),
                epoch: self.epoch,
                role: role.to_wire() as i32,
                seq: self.progress.seq,
                sent_unix_ms: self.clock.unix_ms(now),
                synced,
            }));
    }
}

/// An incident summary with the requester's reason in brackets, if any.
fn with_reason(summary: String, reason: &str) -> String {
    match reason.trim() {
        "" => summary,
        reason => format!("{summary} ({reason})"),
    }
}

/// The detail of a command's `requested` step: how (`operator`, `forced`), after the reason if any.
fn requested(how: &str, reason: &str) -> String {
    match reason.trim() {
        "" => how.to_owned(),
        reason if how == "operator" => reason.to_owned(),
        reason => format!("{reason}; {how}"),
    }
}
