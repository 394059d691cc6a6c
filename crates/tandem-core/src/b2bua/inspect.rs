//! Read-only views of the calls for the admin endpoint (never on the packet path).

use super::Core;
use crate::call::{Call, CallKey, CallState, CallTimes};
use std::time::{Duration, Instant};
use tandem_media::session::StreamPlan;

/// One call as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOverview {
    /// Tandem's handle of the call (what the data plane knows it by).
    pub key: CallKey,
    /// The caller leg's Call-ID.
    pub call_id: String,
    pub state: CallState,
    /// The media server's name, once one is chosen.
    pub server: Option<String>,
    /// Time since the caller's INVITE arrived.
    pub age: Duration,
    /// Relay ports and media endpoints, one per m-line.
    pub media: Vec<StreamPlan>,
    /// Answer time and deadlines (offsets from the caller's INVITE, like `age`).
    pub times: CallTimes,
}

impl CallOverview {
    /// Time since the answer; `None` while the call is not answered.
    pub fn talk_time(&self) -> Option<Duration> {
        Some(self.age.saturating_sub(self.times.answered?))
    }

    /// How long until Tandem ends the call itself, and why ("session-expires" or
    /// "max-duration"): the earlier of its deadlines, if it has any.
    pub fn ends_in(&self) -> Option<(Duration, &'static str)> {
        self.times
            .deadlines()
            .map(|(deadline, kind)| (deadline.saturating_sub(self.age), kind.name()))
            .min_by_key(|(left, _)| *left)
    }
}

impl Core {
    /// Every call, oldest first.
    pub fn calls_overview(&self, now: Instant) -> Vec<CallOverview> {
        let mut calls: Vec<CallOverview> =
            self.calls.values().map(|c| self.overview(now, c)).collect();
        calls.sort_by(|a, b| b.age.cmp(&a.age).then(a.key.cmp(&b.key)));
        calls
    }

    /// The call whose caller leg has Call-ID `call_id`.
    pub fn call_overview(&self, now: Instant, call_id: &str) -> Option<CallOverview> {
        self.calls
            .values()
            .find(|c| c.caller.call_id == call_id)
            .map(|c| self.overview(now, c))
    }

    fn overview(&self, now: Instant, c: &Call) -> CallOverview {
        CallOverview {
            key: c.key,
            call_id: c.caller.call_id.clone(),
            state: c.state,
            server: self.server_name(c).map(str::to_owned),
            age: now.saturating_duration_since(c.created),
            media: c.media.streams.clone(),
            times: c.times,
        }
    }
}
