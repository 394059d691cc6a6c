//! Latency histogram with fixed buckets: recording is an index computation and an increment, no
//! allocation after construction.

/// Bucket width below [`FINE_LIMIT_US`].
const FINE_WIDTH_US: u64 = 1;
/// Up to here (exclusive) buckets are 1 µs wide.
const FINE_LIMIT_US: u64 = 10_000;
/// Above [`FINE_LIMIT_US`], buckets are 100 µs wide up to this limit; anything later counts in the
/// last bucket.
const COARSE_LIMIT_US: u64 = 1_000_000;
const COARSE_WIDTH_US: u64 = 100;
const FINE_BUCKETS: usize = (FINE_LIMIT_US / FINE_WIDTH_US) as usize;
const COARSE_BUCKETS: usize = ((COARSE_LIMIT_US - FINE_LIMIT_US) / COARSE_WIDTH_US) as usize;

/// Counts of latencies in microseconds: 1 µs resolution up to 10 ms, 100 µs up to 1 s.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; FINE_BUCKETS + COARSE_BUCKETS + 1].into_boxed_slice(),
            count: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, us: u64) {
        let index = if us < FINE_LIMIT_US {
            (us / FINE_WIDTH_US) as usize
        } else if us < COARSE_LIMIT_US {
            FINE_BUCKETS + ((us - FINE_LIMIT_US) / COARSE_WIDTH_US) as usize
        } else {
            FINE_BUCKETS + COARSE_BUCKETS
        };
        if let Some(bucket) = self.buckets.get_mut(index) {
            *bucket += 1;
        }
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest latency recorded.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The latency below or at which `quantile` (0..=1) of the samples lie: the upper edge of the
    /// bucket holding that rank (at most the maximum seen). 0 with no samples.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper_us(index).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// The largest latency that lands in bucket `index`.
fn bucket_upper_us(index: usize) -> u64 {
    let index = index as u64;
    if index < FINE_BUCKETS as u64 {
        (index + 1) * FINE_WIDTH_US - 1
    } else if index < (FINE_BUCKETS + COARSE_BUCKETS) as u64 {
        FINE_LIMIT_US + (index - FINE_BUCKETS as u64 + 1) * COARSE_WIDTH_US - 1
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(us);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile_us(0.5), 500);
        assert_eq!(h.quantile_us(0.99), 990);
        assert_eq!(h.quantile_us(1.0), 1000);
        assert_eq!(h.max_us(), 1000);
    }

    #[test]
    fn coarse_and_overflow_buckets() {
        let mut h = Histogram::default();
        h.record(25_050);
        assert_eq!(h.quantile_us(0.5), 25_050);
        h.record(5_000_000);
        assert_eq!(h.quantile_us(1.0), 5_000_000);
        assert_eq!(Histogram::default().quantile_us(0.99), 0);
    }
}
