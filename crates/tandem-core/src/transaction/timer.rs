//! Timer queue: one FIFO lane per timer duration, with lazy cancellation.
//!
//! Every timer is `now + d` for `d` from a small set (T1·2ᵏ, T2, T4, 64·T1, 32 s, 0), and `now`
//! never goes back, so the entries of one duration arrive in deadline order: a lane per duration is
//! a sorted queue with O(1) push and pop, and the earliest timer is the earliest of ~10 lane heads.
//! (Should a caller's clock step back, the entry is inserted in order, at O(lane) cost.)
//!
//! A transaction remembers the deadline of each of its two slots; disarming or re-arming a slot only
//! changes that memory, and the stale entry is skipped when it surfaces. The layer drops stale lane
//! heads after each call, so [`TimerQueue::next`] is exact, and compacts the lanes when stale entries
//! may outnumber live ones, so memory stays proportional to the live transactions.

use super::TxId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The two timers a transaction can have armed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Slot {
    /// Retransmission: A, E (requests), G and the 2xx retransmission of Accepted (responses).
    Retransmit,
    /// End of the current state: B, F, H, L (timeouts) and D, I, J, K, M (cleanup); also the
    /// 64·T1 guard of a cancelled INVITE (§9.1).
    Deadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    at: Instant,
    tx: TxId,
    slot: Slot,
}

#[derive(Debug)]
struct Lane {
    duration: Duration,
    entries: VecDeque<Entry>,
}

/// Deadline-ordered lanes; see the module docs.
#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    lanes: Vec<Lane>,
    len: usize,
}

impl TimerQueue {
    /// Arms `slot` of `tx` for `now + after`.
    pub(super) fn push(&mut self, now: Instant, after: Duration, tx: TxId, slot: Slot) -> Instant {
        let entry = Entry {
            at: now + after,
            tx,
            slot,
        };
        let i = match self.lanes.iter().position(|l| l.duration == after) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    duration: after,
                    entries: VecDeque::new(),
                });
                self.lanes.len() - 1
            }
        };
        let lane = &mut self.lanes[i].entries;
        match lane.back() {
            Some(last) if last.at > entry.at => {
                let i = lane.partition_point(|e| e.at <= entry.at);
                lane.insert(i, entry);
            }
            _ => lane.push_back(entry),
        }
        self.len += 1;
        entry.at
    }

    /// The lane whose head is due first.
    fn first_lane(&self) -> Option<usize> {
        let heads = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((l.entries.front()?.at, i)));
        heads.min().map(|(_, i)| i)
    }

    /// Deadline of the earliest entry (live, once [`TimerQueue::drop_stale_heads`] ran).
    pub(super) fn next(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| l.entries.front())
            .map(|e| e.at)
            .min()
    }

    /// Pops the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TxId, Slot)> {
        let first = self.first_lane()?;
        let lane = &mut self.lanes[first].entries;
        let e = lane.front().filter(|e| e.at <= now).copied()?;
        lane.pop_front();
        self.len -= 1;
        Some((e.at, e.tx, e.slot))
    }

    /// Pops the earliest entries while `is_live` says they were cancelled, so that
    /// [`TimerQueue::next`] names a live timer. (Stale heads of later lanes wait their turn.)
    pub(super) fn drop_stale_heads(&mut self, is_live: impl Fn(Instant, TxId, Slot) -> bool) {
        while let Some(first) = self.first_lane() {
            let lane = &mut self.lanes[first].entries;
            match lane.front() {
                Some(e) if !is_live(e.at, e.tx, e.slot) => {
                    lane.pop_front();
                    self.len -= 1;
                }
                _ => return,
            }
        }
    }

    /// Drops every cancelled entry when they may outnumber the live ones. `max_live` is an upper
    /// bound on live entries (two per transaction).
    pub(super) fn compact(
        &mut self,
        max_live: usize,
        is_live: impl Fn(Instant, TxId, Slot) -> bool,
    ) {
        if self.len > 2 * max_live + 1024 {
            for lane in &mut self.lanes {
                lane.entries.retain(|e| is_live(e.at, e.tx, e.slot));
            }
            self.len = self.lanes.iter().map(|l| l.entries.len()).sum();
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn pops_across_lanes_in_deadline_order_and_skips_stale_heads() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0, secs(3), TxId(1), Slot::Deadline);
        q.push(t0, secs(1), TxId(2), Slot::Retransmit);
        q.push(t0 + secs(1), secs(1), TxId(3), Slot::Retransmit);
        q.push(t0, secs(2), TxId(4), Slot::Retransmit);
        assert_eq!(q.next(), Some(t0 + secs(1)));
        q.drop_stale_heads(|_, tx, _| tx != TxId(2) && tx != TxId(3));
        assert_eq!(q.next(), Some(t0 + secs(2)));
        assert_eq!(
            q.len(),
            2,
            "both stale entries due before the first live one are gone"
        );
        assert_eq!(q.pop_due(t0 + Duration::from_millis(1999)), None);
        assert_eq!(q.pop_due(t0 + secs(2)).map(|e| e.1), Some(TxId(4)));
        assert_eq!(q.pop_due(t0 + secs(2)), None);
        assert_eq!(q.pop_due(t0 + secs(3)).map(|e| e.1), Some(TxId(1)));
        assert_eq!((q.next(), q.len()), (None, 0));
    }

    #[test]
    fn a_clock_that_steps_back_still_yields_deadline_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0 + secs(5), secs(1), TxId(1), Slot::Deadline);
        q.push(t0, secs(1), TxId(2), Slot::Deadline);
        assert_eq!(q.pop_due(t0 + secs(10)).map(|e| e.1), Some(TxId(2)));
        assert_eq!(q.pop_due(t0 + secs(10)).map(|e| e.1), Some(TxId(1)));
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for i in 0..5000u64 {
            q.push(
                t0 + Duration::from_millis(i),
                secs(i % 3),
                TxId(i),
                Slot::Deadline,
            );
        }
        q.compact(3000, |_, _, _| false);
        assert_eq!(
            q.len(),
            5000,
            "compaction waits until stale entries are plentiful"
        );
        q.compact(10, |_, tx, _| tx.0 % 1000 == 0);
        assert_eq!(q.len(), 5);
    }
}
