//! The standby's watch of the active: detection, the second-path probe, divergence, and the
//! claim rule between two standbys.

use super::{Action, Phase, Role};
use crate::incident::{IncidentKind, StepName};
use std::time::Instant;
use tandem_proto::replication::v1 as wire;

impl Role {
    /// The standby's mirror can carry the active's calls, or there are none to carry.
    pub(super) fn can_take_over(&self) -> bool {
        (self.progress.synced && !self.watch.diverged) || !self.watch.heard_active
    }

    pub(super) fn detection_deadline(&self) -> Instant {
        match self.peer.last_heard {
            Some(heard) => heard + self.config.detection_window(),
            None => self.standby_since + self.config.startup_grace,
        }
    }

    pub(super) fn watch_timers(&mut self, now: Instant) {
        if !self.decides_roles() {
            return;
        }
        if let Some(deadline) = self.watch.probe_deadline {
            if now >= deadline {
                self.watch.probe_deadline = None;
                tracing::info!(peer = %self.config.peer, "probe unanswered: peer counted dead");
                self.probe_answered(now, false);
            }
        } else if now >= self.detection_deadline()
            && !matches!(self.watch.next_probe, Some(at) if now < at)
        {
            self.start_probe(now);
        }
        let tie_over = self
            .watch
            .tie_since
            .is_some_and(|since| now >= since + self.config.startup_grace);
        if self.phase == Phase::Standby && tie_over {
            self.consider_claim(now, false);
        }
    }

    pub(super) fn start_probe(&mut self, now: Instant) {
        self.watch.suspect_since.get_or_insert(now);
        self.watch.probe_deadline = Some(now + self.config.confirm_timeout);
        self.actions.push_back(Action::StartConfirm);
    }

    pub(super) fn probe_answered(&mut self, now: Instant, alive: bool) {
        self.watch.peer_alive = Some(alive);
        self.watch.next_probe = Some(now + self.config.reprobe_interval);
        if alive {
            if self.watch.heard_active && !self.watch.diverged {
                tracing::warn!(peer = %self.config.peer, "replication link lost while the active lives: no promotion, mirror diverged");
                self.watch.diverged = true;
                self.watch.catch_up_to = None;
            }
            return;
        }
        if !self.can_take_over() {
            tracing::warn!(peer = %self.config.peer, synced = self.progress.synced, diverged = self.watch.diverged, "peer dead but this mirror cannot take over: promote with force");
            return;
        }
        let detected = self.watch.suspect_since.unwrap_or(now);
        let (kind, summary) = if self.watch.heard_active {
            (
                IncidentKind::Takeover,
                format!("{} took over from {}", self.config.node, self.config.peer),
            )
        } else {
            (
                IncidentKind::Promote,
                format!(
                    "{} became active: {} unreachable",
                    self.config.node, self.config.peer
                ),
            )
        };
        let id = self.incidents.open(kind, summary);
        let silent_ms = self
            .peer
            .last_heard
            .map(|heard| detected.saturating_duration_since(heard).as_millis())
            .unwrap_or_default();
        self.incidents.step(
            id,
            detected,
            StepName::Detected,
            format!("peer silent for {silent_ms} ms"),
            0,
        );
        self.incidents
            .step(id, now, StepName::Confirmed, "second path: peer dead", 0);
        self.promote_now(now, id);
    }

    /// Two standbys: promote when this node has the better claim.
    pub(super) fn consider_claim(&mut self, now: Instant, handed_over: bool) {
        if !self.decides_roles() {
            return;
        }
        let Some(peer) = self.peer.heartbeat.clone() else {
            return;
        };
        let fresh = self
            .peer
            .last_heard
            .is_some_and(|heard| now < heard + self.config.detection_window());
        if self.phase != Phase::Standby || self.peer.role() != Some(wire::Role::Standby) || !fresh {
            self.watch.tie_since = None;
            return;
        }
        let mine = (
            self.progress.synced && !self.watch.diverged,
            self.epoch,
            self.progress.seq,
        );
        let theirs = (peer.synced, peer.epoch, peer.seq);
        let win = match mine.cmp(&theirs) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => {
                self.watch.tie_since = None;
                false
            }
            std::cmp::Ordering::Equal => {
                let since = *self.watch.tie_since.get_or_insert(now);
                if self.config.prefer_active {
                    true
                } else if now >= since + self.config.startup_grace {
                    // Decided: the loser waits for the winner's heartbeat (no timer left).
                    self.watch.tie_since = None;
                    self.config.node < self.config.peer
                } else {
                    false
                }
            }
        };
        if !win {
            return;
        }
        let kind = if handed_over {
            IncidentKind::Switchover
        } else {
            IncidentKind::Promote
        };
        let id = self.incidents.open(
            kind,
            format!(
                "{} became active; {} is standby",
                self.config.node, self.config.peer
            ),
        );
        let (name, detail) = if handed_over {
            (
                StepName::Released,
                format!(
                    "{} handed over at seq {}",
                    self.config.peer, self.progress.seq
                ),
            )
        } else {
            (
                StepName::Detected,
                "two standbys: this node has the better claim".to_owned(),
            )
        };
        self.incidents.step(id, now, name, detail, 0);
        self.promote_now(now, id);
    }

    pub(super) fn check_caught_up(&mut self) {
        if let Some(target) = self.watch.catch_up_to {
            if self.progress.synced && self.progress.seq >= target {
                tracing::info!(
                    seq = self.progress.seq,
                    "mirror caught up with the active again"
                );
                self.watch.diverged = false;
                self.watch.catch_up_to = None;
            }
        }
    }
}
