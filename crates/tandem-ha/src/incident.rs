//! The incident timeline: every role change and takeover, step by step, for the admin API and the
//! logs. The role machine opens incidents and records its own steps (detected, confirmed,
//! promoted, …); the shell adds the steps only it can see (address taken, calls resumed).

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tandem_proto::admin::v1 as admin;

/// Maps the monotonic clock to wall-clock Unix milliseconds from one reading of both, taken by the
/// shell (and taken again whenever it likes, e.g. every minute, to follow clock adjustments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    base: Instant,
    base_unix_ms: u64,
}

impl WallClock {
    /// `unix_ms` is the wall-clock time at `now`.
    pub fn new(now: Instant, unix_ms: u64) -> WallClock {
        WallClock {
            base: now,
            base_unix_ms: unix_ms,
        }
    }

    /// Unix milliseconds at `at`.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        if at >= self.base {
            self.base_unix_ms
                .saturating_add(millis(at.saturating_duration_since(self.base)))
        } else {
            self.base_unix_ms
                .saturating_sub(millis(self.base.saturating_duration_since(at)))
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What kind of role change an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    /// The standby found the active gone and took over.
    Takeover,
    /// Planned handover between the two nodes.
    Switchover,
    /// This node became active by command or at start.
    Promote,
    /// This node stepped down by command.
    Demote,
    /// This node saw a higher epoch while active and stepped down.
    Fenced,
    /// This node joined as standby and completed its mirror.
    Rejoined,
}

impl IncidentKind {
    /// The admin API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Takeover => "takeover",
            IncidentKind::Switchover => "switchover",
            IncidentKind::Promote => "promote",
            IncidentKind::Demote => "demote",
            IncidentKind::Fenced => "fenced",
            IncidentKind::Rejoined => "rejoined",
        }
    }
}

/// One step of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepName {
    /// The peer stopped answering (heartbeats missed or the stream closed).
    Detected,
    /// The second path confirmed the peer dead.
    Confirmed,
    /// This node became active.
    Promoted,
    /// The shell took the service address (reported by the shell).
    AddressTaken,
    /// The restored calls run on this node (reported by the shell, with their count).
    CallsResumed,
    /// An operator asked for the change.
    Requested,
    /// The standby acknowledged every change (switchover).
    Flushed,
    /// This node handed the active role over.
    Released,
    /// The change was given up (switchover that did not flush in time).
    Aborted,
    /// This node became standby.
    Demoted,
    /// A higher epoch was seen.
    Fenced,
    /// The standby's mirror became complete.
    Synced,
}

impl StepName {
    /// The admin API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Detected => "detected",
            StepName::Confirmed => "confirmed",
            StepName::Promoted => "promoted",
            StepName::AddressTaken => "address-taken",
            StepName::CallsResumed => "calls-resumed",
            StepName::Requested => "requested",
            StepName::Flushed => "flushed",
            StepName::Released => "released",
            StepName::Aborted => "aborted",
            StepName::Demoted => "demoted",
            StepName::Fenced => "fenced",
            StepName::Synced => "synced",
        }
    }
}

/// One step of an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What happened.
    pub name: StepName,
    /// When.
    pub at: Instant,
    /// When, in Unix milliseconds.
    pub at_unix_ms: u64,
    /// Free text.
    pub detail: String,
    /// Calls concerned (e.g. calls resumed).
    pub calls: u64,
}

/// One role change or takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Increasing from 1 within this process.
    pub id: u64,
    /// The kind.
    pub kind: IncidentKind,
    /// One line for humans.
    pub summary: String,
    /// The timeline, in the order recorded.
    pub steps: Vec<Step>,
}

impl Incident {
    /// Time from the first step to `step`.
    pub fn offset(&self, step: &Step) -> Duration {
        self.steps
            .first()
            .map(|first| step.at.saturating_duration_since(first.at))
            .unwrap_or_default()
    }

    /// The first step named `name`.
    pub fn step(&self, name: StepName) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The admin API's form.
    pub fn to_proto(&self) -> admin::Incident {
        admin::Incident {
            id: self.id,
            kind: self.kind.as_str().to_owned(),
            summary: self.summary.clone(),
            steps: self
                .steps
                .iter()
                .map(|step| admin::IncidentStep {
                    name: step.name.as_str().to_owned(),
                    at_unix_ms: step.at_unix_ms,
                    after_ms: millis(self.offset(step)),
                    detail: step.detail.clone(),
                    calls: step.calls,
                })
                .collect(),
        }
    }
}

/// The last incidents of this node.
#[derive(Debug)]
pub struct IncidentLog {
    capacity: usize,
    clock: WallClock,
    next_id: u64,
    incidents: VecDeque<Incident>,
}

impl IncidentLog {
    /// A log keeping the last `capacity` incidents, stamping steps with `clock`.
    pub fn new(capacity: usize, clock: WallClock) -> IncidentLog {
        IncidentLog {
            capacity: capacity.max(1),
            clock,
            next_id: 1,
            incidents: VecDeque::new(),
        }
    }

    /// Re-anchors the wall clock.
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// Opens an incident; returns its id.
    pub fn open(&mut self, kind: IncidentKind, summary: impl Into<String>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let summary = summary.into();
        tracing::info!(id, kind = kind.as_str(), summary = %summary, "incident");
        self.incidents.push_back(Incident {
            id,
            kind,
            summary,
            steps: Vec::new(),
        });
        while self.incidents.len() > self.capacity {
            self.incidents.pop_front();
        }
        id
    }

    /// Adds a step to incident `id`; false when that incident is no longer kept.
    pub fn step(
        &mut self,
        id: u64,
        at: Instant,
        name: StepName,
        detail: impl Into<String>,
        calls: u64,
    ) -> bool {
        let at_unix_ms = self.clock.unix_ms(at);
        let Some(incident) = self.incidents.iter_mut().find(|i| i.id == id) else {
            return false;
        };
        let step = Step {
            name,
            at,
            at_unix_ms,
            detail: detail.into(),
            calls,
        };
        tracing::info!(
            id,
            kind = incident.kind.as_str(),
            step = name.as_str(),
            after_ms = millis(incident.offset(&step)),
            calls,
            detail = %step.detail,
            "incident step"
        );
        incident.steps.push(step);
        true
    }

    /// The newest incident.
    pub fn latest(&self) -> Option<&Incident> {
        self.incidents.back()
    }

    /// Incident `id`, if still kept.
    pub fn get(&self, id: u64) -> Option<&Incident> {
        self.incidents.iter().find(|i| i.id == id)
    }

    /// Kept incidents, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter().rev()
    }

    /// The admin API's list: newest first, at most `limit` (0: all).
    pub fn to_proto(&self, limit: usize) -> Vec<admin::Incident> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.newest_first()
            .take(limit)
            .map(Incident::to_proto)
            .collect()
    }
}
