//! Relay-wide counters: each shard adds its batch's plain counts to its own atomics once per batch
//! (one writer per atomic, relaxed ordering); [`crate::Relay::totals`] sums the shards.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many counters [`RelayTotals`] has.
const FIELDS: usize = 13;

/// Counts summed over every shard since the relay started (`sessions` and `streams` are current
/// values, the rest only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Calls with relay state.
    pub sessions: u64,
    /// Streams with bound sockets.
    pub streams: u64,
    /// Datagrams read from relay sockets, whatever became of them.
    pub packets_received: u64,
    /// `recvmmsg` calls (epoll) or loop rounds (io_uring) that returned packets
    /// (`packets_received / recv_batches` is the mean batch).
    pub recv_batches: u64,
    /// Packets (RTP and RTCP) the kernel took for sending.
    pub packets_relayed: u64,
    /// Bytes of those packets.
    pub bytes_relayed: u64,
    /// The RTCP packets among them.
    pub rtcp_relayed: u64,
    /// Packets refused by a latch (not from the signalled IP, or not from the latched source).
    pub dropped_stray: u64,
    /// Packets for a side with neither a latched source nor a signalled address (on hold).
    pub dropped_no_destination: u64,
    /// Packets that are neither RTP nor RTCP, or were cut by the receive buffer.
    pub dropped_malformed: u64,
    /// Late RTP packets from before a source switch (their outbound sequence number was reused).
    pub dropped_stale: u64,
    /// Packets the kernel refused or had no buffer room for.
    pub send_errors: u64,
    /// `MediaEvent::Inactive` reports sent.
    pub inactivity_reports: u64,
}

impl RelayTotals {
    fn fields(&self) -> [u64; FIELDS] {
        [
            self.sessions,
            self.streams,
            self.packets_received,
            self.recv_batches,
            self.packets_relayed,
            self.bytes_relayed,
            self.rtcp_relayed,
            self.dropped_stray,
            self.dropped_no_destination,
            self.dropped_malformed,
            self.dropped_stale,
            self.send_errors,
            self.inactivity_reports,
        ]
    }

    fn from_fields(fields: [u64; FIELDS]) -> Self {
        let [sessions, streams, packets_received, recv_batches, packets_relayed, bytes_relayed, rtcp_relayed, dropped_stray, dropped_no_destination, dropped_malformed, dropped_stale, send_errors, inactivity_reports] =
            fields;
        Self {
            sessions,
            streams,
            packets_received,
            recv_batches,
            packets_relayed,
            bytes_relayed,
            rtcp_relayed,
            dropped_stray,
            dropped_no_destination,
            dropped_malformed,
            dropped_stale,
            send_errors,
            inactivity_reports,
        }
    }

    /// Field-wise sum.
    pub(crate) fn add(&mut self, other: &RelayTotals) {
        let mut fields = self.fields();
        for (total, more) in fields.iter_mut().zip(other.fields()) {
            *total = total.wrapping_add(more);
        }
        *self = Self::from_fields(fields);
    }
}

/// One shard's published counters.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    fields: [AtomicU64; FIELDS],
}

impl ShardCounters {
    /// Adds a batch's counts (its `sessions` and `streams` are ignored).
    pub(crate) fn add(&self, batch: &RelayTotals) {
        for (atomic, value) in self.fields.iter().zip(batch.fields()).skip(2) {
            if value != 0 {
                atomic.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// Publishes the current number of calls and streams.
    pub(crate) fn set_gauges(&self, sessions: usize, streams: usize) {
        self.fields[0].store(sessions as u64, Ordering::Relaxed);
        self.fields[1].store(streams as u64, Ordering::Relaxed);
    }

    /// A snapshot.
    pub(crate) fn load(&self) -> RelayTotals {
        RelayTotals::from_fields(self.fields.each_ref().map(|a| a.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_add_up_and_gauges_are_set() {
        let shard = ShardCounters::default();
        let batch = RelayTotals {
            sessions: 99,
            packets_received: 3,
            packets_relayed: 2,
            dropped_stray: 1,
            ..RelayTotals::default()
        };
        shard.add(&batch);
        shard.add(&batch);
        shard.set_gauges(4, 5);
        let mut total = shard.load();
        assert_eq!(
            (total.sessions, total.streams, total.packets_received),
            (4, 5, 6)
        );
        assert_eq!((total.packets_relayed, total.dropped_stray), (4, 2));
        total.add(&shard.load());
        assert_eq!((total.sessions, total.packets_received), (8, 12));
    }
}
