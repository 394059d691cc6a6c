//! When a busy io_uring shard waits to gather datagrams (`RelayConfig::batch_wait`).
//!
//! A shard that wakes for every datagram or two spends much of its CPU going to sleep and waking
//! up (at 50,000 packets a second: about 7,000 wake-ups a second, and in a profile about a seventh
//! of its CPU in waiting and switching). Once it
//! is busy, it asks the kernel for [`GATHER_COUNT`] completions and waits `batch_wait` at most:
//! most wake-ups then carry dozens of datagrams. A quiet shard keeps waking for the first
//! datagram, so a few calls never wait for the others.

use std::time::{Duration, Instant};

/// Completions a busy shard waits for (beyond its own sends).
pub(crate) const GATHER_COUNT: usize = 64;

/// Datagrams a second above which a shard counts as busy.
const BUSY_RATE: u64 = 10_000;

/// How often the rate is looked at.
const WINDOW: Duration = Duration::from_millis(10);

/// The received-datagram rate of one shard and what it means for its next wait.
#[derive(Debug)]
pub(crate) struct Gather {
    batch_wait: Duration,
    window_start: Instant,
    received: u64,
    busy: bool,
}

impl Gather {
    /// `batch_wait` zero: never gathers.
    pub(crate) fn new(batch_wait: Duration, now: Instant) -> Gather {
        Gather {
            batch_wait,
            window_start: now,
            received: 0,
            busy: false,
        }
    }

    /// `received` datagrams came in a round that ended at `now`.
    pub(crate) fn note(&mut self, now: Instant, received: u64) {
        self.received += received;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let per_second = u128::from(self.received) * 1_000_000 / elapsed.as_micros().max(1);
            self.busy = per_second >= u128::from(BUSY_RATE);
            self.window_start = now;
            self.received = 0;
        }
    }

    /// How long the next wait may gather datagrams; `None`: wake for the first one.
    pub(crate) fn wait(&self) -> Option<Duration> {
        (self.busy && !self.batch_wait.is_zero()).then_some(self.batch_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Rounds of `per_round` datagrams every `every`, for `rounds` rounds from `start`.
    fn feed(gather: &mut Gather, start: Instant, every: Duration, per_round: u64, rounds: u32) {
        for n in 1..=rounds {
            gather.note(start + every * n, per_round);
        }
    }

    #[test]
    fn a_busy_shard_gathers_and_a_quiet_one_does_not() {
        let t0 = Instant::now();
        let mut gather = Gather::new(MS, t0);
        assert_eq!(gather.wait(), None, "quiet at start");
        // 5 datagrams a millisecond: 5,000 a second, quiet.
        feed(&mut gather, t0, MS, 5, 20);
        assert_eq!(gather.wait(), None);
        // 20 a millisecond: 20,000 a second, busy from the next window on.
        feed(&mut gather, t0 + MS * 20, MS, 20, 20);
        assert_eq!(gather.wait(), Some(MS));
        // The calls end: rounds now come at the wait's end with nothing; quiet again.
        feed(&mut gather, t0 + MS * 40, MS, 0, 20);
        assert_eq!(gather.wait(), None);
    }

    #[test]
    fn a_long_sleep_counts_as_quiet_and_zero_never_gathers() {
        let t0 = Instant::now();
        let mut gather = Gather::new(MS, t0);
        feed(&mut gather, t0, MS, 50, 20);
        assert_eq!(gather.wait(), Some(MS));
        // One round of 100 after a second asleep: 100 a second.
        gather.note(t0 + Duration::from_secs(1), 100);
        assert_eq!(gather.wait(), None);

        let mut off = Gather::new(Duration::ZERO, t0);
        feed(&mut off, t0, MS, 500, 20);
        assert_eq!(off.wait(), None);
    }
}
