//! How long an answered call may live: the session timer its endpoints negotiated (RFC 4028) and
//! the configured maximum duration. When either runs out Tandem ends the call itself, with a BYE on
//! both legs, so that a call whose endpoints vanished (or that nobody hangs up) does not hold a
//! media server, an agent and relay ports for ever. Both deadlines are part of the call's
//! replicated record: a standby that takes over keeps them.

use super::Core;
use crate::call::{Call, CallDeadline, CallKey, CallState};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tandem_sip::{HeaderName, Message};

/// Session intervals Tandem believes. RFC 4028 sets no upper bound and a 90 s minimum that the
/// endpoints enforce between themselves (422); Tandem only ignores values no endpoint would mean.
const SESSION_INTERVALS: std::ops::RangeInclusive<u64> = 1..=7 * 24 * 3600;

/// The session interval a 2xx to an INVITE or UPDATE carries (`Session-Expires: 1800;refresher=uac`,
/// compact `x`), if any: `None` means the session has no timer (RFC 4028: a 2xx without the
/// header turns it off).
pub(super) fn session_interval(answer: &Message) -> Option<Duration> {
    let value = answer.header(HeaderName::SessionExpires)?;
    let seconds: u64 = value.split(';').next()?.trim().parse().ok()?;
    SESSION_INTERVALS
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

impl Core {
    /// Call `key` was answered at `now` with `answer` (the media server's 2xx): its session timer
    /// and maximum duration start.
    pub(super) fn start_call_times(&mut self, now: Instant, key: CallKey, answer: &Message) {
        let limit = self.config.max_call_duration;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        self.deadlines.forget(call);
        let answered = now.saturating_duration_since(call.created);
        call.times.answered = Some(answered);
        call.times.max_duration = limit.map(|limit| answered.saturating_add(limit));
        call.times.session_expires = session_interval(answer).map(|i| answered + i);
        self.deadlines.arm(call);
    }

    /// A 2xx to a re-INVITE or UPDATE of call `key` went through at `now`: the session is refreshed
    /// with the interval it carries, or has no timer any more when it carries none.
    pub(super) fn refresh_session(&mut self, now: Instant, key: CallKey, answer: &Message) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        self.deadlines.forget(call);
        let at = now.saturating_duration_since(call.created);
        call.times.session_expires = session_interval(answer).map(|i| at + i);
        self.deadlines.arm(call);
    }

    /// Deadlines queued: at most two per answered call (one that ended leaves none behind).
    pub fn queued_call_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// Ends the calls whose session expired or whose maximum duration is reached by `now`.
    pub(super) fn end_overdue_calls(&mut self, now: Instant) {
        while let Some((key, kind)) = self.deadlines.pop_due(now) {
            let Some(call) = self.calls.get(&key) else {
                continue;
            };
            if call.state != CallState::Confirmed {
                continue; // a BYE is under way already
            }
            let call_id = call.caller.call_id.clone();
            match kind {
                CallDeadline::SessionExpiry => self.metrics.calls_session_expired += 1,
                CallDeadline::MaxDuration => self.metrics.calls_max_duration += 1,
            }
            let reason = kind.end_reason();
            tracing::info!(%call_id, reason, "ending the call");
            self.hang_up_both(now, key, reason);
        }
    }
}

/// The deadlines of every answered call, in time order. Unlike the short set-up timers, these run
/// for hours: an entry leaves with its call (or when replaced), so the set holds at most two per
/// live call.
#[derive(Debug, Default)]
pub(super) struct CallDeadlines {
    queue: BTreeSet<(Instant, CallKey, CallDeadline)>,
}

impl CallDeadlines {
    /// Queues `call`'s deadlines.
    pub(super) fn arm(&mut self, call: &Call) {
        for (when, kind) in deadlines(call) {
            self.queue.insert((when, call.key, kind));
        }
    }

    /// Takes `call`'s deadlines out of the queue (it ended, or they are about to change).
    pub(super) fn forget(&mut self, call: &Call) {
        for (when, kind) in deadlines(call) {
            self.queue.remove(&(when, call.key, kind));
        }
    }

    /// Every deadline goes (demotion: the calls left this node).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(when, ..)| *when)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(CallKey, CallDeadline)> {
        let (when, ..) = self.queue.first()?;
        if *when > now {
            return None;
        }
        self.queue.pop_first().map(|(_, key, kind)| (key, kind))
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

/// `call`'s deadlines as instants.
fn deadlines(call: &Call) -> impl Iterator<Item = (Instant, CallDeadline)> + '_ {
    call.times
        .deadlines()
        .filter_map(|(offset, kind)| Some((call.created.checked_add(offset)?, kind)))
}
