//! How long an answered call may live: the session timer its endpoints negotiated (RFC 4028) and
//! the configured maximum duration. When either runs out Tandem ends the call itself, with a BYE on
//! both legs, so that a call whose endpoints vanished (or that nobody hangs up) does not hold a
//! media server, an agent and relay ports for ever. Both deadlines are part of the call's
//! replicated record: a standby that takes over keeps them.

use super::{CallTimer, Core};
use crate::call::{CallKey, CallState};
use std::cmp::Reverse;
use std::time::{Duration, Instant};
use tandem_sip::{HeaderName, Message};

/// Session intervals Tandem believes. RFC 4028 sets no upper bound and a 90 s minimum that the
/// endpoints enforce between themselves (422); Tandem only ignores values no endpoint would mean.
const SESSION_INTERVALS: std::ops::RangeInclusive<u64> = 1..=7 * 24 * 3600;

/// The session interval a 2xx to an INVITE or UPDATE carries (`Session-Expires: 1800;refresher=uac`,
/// compact `x`), if any: `None` means the session has no timer (RFC 4028 §9: a 2xx without the
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
        let answered = now.saturating_duration_since(call.created);
        call.times.answered = Some(answered);
        call.times.max_duration = limit.map(|limit| answered.saturating_add(limit));
        call.times.session_expires = session_interval(answer).map(|i| answered + i);
        self.arm_call_timer(key, CallTimer::MaxDuration);
        self.arm_call_timer(key, CallTimer::SessionExpiry);
    }

    /// A 2xx to a re-INVITE or UPDATE of call `key` went through at `now`: the session is refreshed
    /// with the interval it carries, or has no timer any more when it carries none.
    pub(super) fn refresh_session(&mut self, now: Instant, key: CallKey, answer: &Message) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let at = now.saturating_duration_since(call.created);
        call.times.session_expires = session_interval(answer).map(|i| at + i);
        self.arm_call_timer(key, CallTimer::SessionExpiry);
    }

    /// Queues the timer of `kind` at the call's deadline for it (if it has one). An earlier queued
    /// one finds a later deadline when it fires and does nothing.
    pub(super) fn arm_call_timer(&mut self, key: CallKey, kind: CallTimer) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if let Some(deadline) = call_deadline(call, kind) {
            self.call_timers.push(Reverse((deadline, key, 0, kind)));
        }
    }

    /// A session-expiry or maximum-duration timer fired: the call ends if that deadline (not a
    /// later one set by a refresh since) has passed.
    pub(super) fn on_call_deadline(&mut self, now: Instant, key: CallKey, kind: CallTimer) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.state != CallState::Confirmed {
            return;
        }
        match call_deadline(call, kind) {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        let call_id = call.caller.call_id.clone();
        let reason = match kind {
            CallTimer::SessionExpiry => {
                self.metrics.calls_session_expired += 1;
                "session-expired"
            }
            CallTimer::MaxDuration => {
                self.metrics.calls_max_duration += 1;
                "max-duration"
            }
            CallTimer::Failover | CallTimer::SetupLimit => return,
        };
        tracing::info!(%call_id, reason, "ending the call");
        self.hang_up_both(now, key, reason);
    }
}

/// When call `call` ends by the timer of `kind`, if it has that deadline.
fn call_deadline(call: &crate::call::Call, kind: CallTimer) -> Option<Instant> {
    let offset = match kind {
        CallTimer::SessionExpiry => call.times.session_expires,
        CallTimer::MaxDuration => call.times.max_duration,
        CallTimer::Failover | CallTimer::SetupLimit => None,
    }?;
    call.created.checked_add(offset)
}
