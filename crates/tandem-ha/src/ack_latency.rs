//! How long the standby took to acknowledge the active's deltas, in fixed buckets (the
//! `tandem_replication_ack_latency_seconds` histogram).

use std::time::Duration;

/// Upper bounds of the [`AckLatency`] buckets in microseconds, 0.25 ms to 1 s (a last bucket
/// holds everything above).
pub const ACK_LATENCY_BOUNDS_US: [u64; 20] = [
    250, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000,
    50_000, 75_000, 100_000, 150_000, 250_000, 500_000, 1_000_000,
];

/// How long the standby took to acknowledge each delta: from [`Outbox::push`](crate::Outbox::push) (or the start of
/// the session, for a delta pushed before the standby connected) to the cumulative ack covering
/// it, counted in fixed buckets ([`ACK_LATENCY_BOUNDS_US`]) so that recording never allocates.
/// Deltas acknowledged while streaming count; those covered by a snapshot's ack do not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckLatency {
    /// `buckets[i]`: latencies above bound `i - 1` and at most bound `i`; the last: above all.
    buckets: [u64; ACK_LATENCY_BOUNDS_US.len() + 1],
    count: u64,
    sum_us: u64,
}

impl AckLatency {
    /// Counts one delta acknowledged `latency` after it was pushed.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = ACK_LATENCY_BOUNDS_US.partition_point(|bound| *bound < us);
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Deltas counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their latencies added up (microsecond resolution).
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// Cumulative counts as a Prometheus histogram has them: `(upper bound, deltas at most that
    /// late)` for each bound, then `(None, count)` for +Inf.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = ACK_LATENCY_BOUNDS_US
            .iter()
            .map(|us| Some(Duration::from_micros(*us)))
            .chain([None]);
        bounds.zip(self.buckets.iter().scan(0, |total, n| {
            *total += n;
            Some(*total)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_cover_fractions_of_a_millisecond_and_beyond_a_second() {
        let mut latency = AckLatency::default();
        latency.record(Duration::from_micros(100));
        latency.record(Duration::from_micros(251));
        latency.record(Duration::from_secs(3));
        let cumulative: Vec<u64> = latency.cumulative().map(|(_, n)| n).collect();
        assert_eq!(cumulative[0], 1, "0.1 ms: at most 0.25 ms");
        assert_eq!(cumulative[1], 2, "0.251 ms: at most 0.5 ms");
        assert_eq!(
            cumulative[ACK_LATENCY_BOUNDS_US.len() - 1],
            2,
            "3 s: above 1 s"
        );
        assert_eq!(cumulative[ACK_LATENCY_BOUNDS_US.len()], 3);
    }
}
