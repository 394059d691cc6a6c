//! Relay port pairs: an even RTP port and the RTCP port right above it, handed out from a configured
//! inclusive range.
//!
//! Free pairs wait in a first-in first-out queue, so the pair released longest ago is handed out next and
//! a just-released pair is not reused at once (late packets of the old call would land in the new one).
//! Every operation is O(1): the queue is a doubly linked list threaded through one slot per pair, which
//! also lets [`PortAllocator::reserve`] take a pair out of the middle of the queue when a standby rebuilds
//! the allocations replicated from the active node.
//!
//! Which pairs belong to which call, leg and m-line is the caller's business.

use std::fmt;

/// One relay port pair: RTP on an even port, RTCP on the next (odd) port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortPair {
    rtp: u16,
}

impl PortPair {
    /// The pair whose RTP port is `rtp`; `None` unless `rtp` is even, non-zero and below 65535.
    pub fn from_rtp(rtp: u16) -> Option<Self> {
        (rtp != 0 && rtp & 1 == 0 && rtp < u16::MAX).then_some(Self { rtp })
    }

    /// The RTP port (even).
    pub fn rtp(self) -> u16 {
        self.rtp
    }

    /// The RTCP port (RTP + 1).
    pub fn rtcp(self) -> u16 {
        self.rtp + 1
    }
}

impl fmt::Display for PortPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.rtp, self.rtcp())
    }
}

/// A port range that cannot serve as a relay range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    /// The first port is above the last one.
    #[error("port range {first}-{last} is empty")]
    Empty {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// The range starts at port 0, which cannot be bound to a fixed port.
    #[error("port range {first}-{last} includes port 0")]
    ZeroPort {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// The range holds no even port whose successor is also in the range.
    #[error("port range {first}-{last} holds no even/odd RTP/RTCP pair")]
    NoPair {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
}

/// Every pair of the range is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {capacity} relay port pairs are in use")]
pub struct Exhausted {
    /// How many pairs the range holds.
    pub capacity: usize,
}

/// A release or reservation the allocator refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The pair is not one of this allocator's pairs.
    #[error("port pair {0} is outside the relay range")]
    Foreign(PortPair),
    /// The pair is not in use (released twice, or never handed out).
    #[error("port pair {0} is not in use")]
    NotInUse(PortPair),
    /// The pair is already in use and cannot be reserved.
    #[error("port pair {0} is already in use")]
    AlreadyInUse(PortPair),
}

/// Marks "no slot" in the free-queue links.
const NIL: u32 = u32::MAX;

/// One pair's place: in use, or free with its neighbours in the free queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    InUse,
    Free { prev: u32, next: u32 },
}

/// Hands out [`PortPair`]s from an inclusive port range, least recently released first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAllocator {
    /// RTP port of slot 0; slot `i` is the pair `first_rtp + 2 * i`.
    first_rtp: u16,
    slots: Vec<Slot>,
    /// Oldest free slot (handed out next), or [`NIL`].
    head: u32,
    /// Newest free slot (released last), or [`NIL`].
    tail: u32,
    in_use: usize,
}

impl PortAllocator {
    /// An allocator over the ports `first..=last`, all free, to be handed out in ascending order.
    ///
    /// An odd `first` or an even `last` leaves that port unused: pairs start on even ports.
    pub fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError::Empty { first, last });
        }
        if first == 0 {
            return Err(PortRangeError::ZeroPort { first, last });
        }
        let Some(first_rtp) = first.checked_add(first % 2).filter(|rtp| *rtp < last) else {
            return Err(PortRangeError::NoPair { first, last });
        };
        let count = usize::from((last - first_rtp - 1) / 2 + 1);
        let slots = (0..count)
            .map(|i| {
                let prev = if i == 0 { NIL } else { index_u32(i - 1) };
                let next = if i + 1 == count {
                    NIL
                } else {
                    index_u32(i + 1)
                };
                Slot::Free { prev, next }
            })
            .collect();
        Ok(Self {
            first_rtp,
            slots,
            head: 0,
            tail: index_u32(count - 1),
            in_use: 0,
        })
    }

    /// Hands out the free pair released longest ago (or, never used, the lowest).
    pub fn allocate(&mut self) -> Result<PortPair, Exhausted> {
        if self.head == NIL {
            return Err(Exhausted {
                capacity: self.capacity(),
            });
        }
        let index = self.head;
        self.unlink(index);
        Ok(self.pair_at(index))
    }

    /// Hands out `count` pairs, or none at all if fewer than `count` are free.
    pub fn allocate_many(&mut self, count: usize) -> Result<Vec<PortPair>, Exhausted> {
        if count > self.free() {
            return Err(Exhausted {
                capacity: self.capacity(),
            });
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push(self.allocate()?);
        }
        Ok(pairs)
    }

    /// Gives a pair back; it joins the end of the free queue.
    pub fn release(&mut self, pair: PortPair) -> Result<(), PairError> {
        let index = self.index_of(pair)?;
        match self.slots[index as usize] {
            Slot::Free { .. } => Err(PairError::NotInUse(pair)),
            Slot::InUse => {
                self.push_back(index);
                Ok(())
            }
        }
    }

    /// Marks a specific free pair as in use (a standby rebuilding the active node's allocations).
    pub fn reserve(&mut self, pair: PortPair) -> Result<(), PairError> {
        let index = self.index_of(pair)?;
        match self.slots[index as usize] {
            Slot::InUse => Err(PairError::AlreadyInUse(pair)),
            Slot::Free { .. } => {
                self.unlink(index);
                Ok(())
            }
        }
    }

    /// Whether `pair` belongs to this allocator's range.
    pub fn contains(&self, pair: PortPair) -> bool {
        self.index_of(pair).is_ok()
    }

    /// Whether `pair` is currently handed out (false for foreign pairs).
    pub fn is_in_use(&self, pair: PortPair) -> bool {
        self.index_of(pair)
            .is_ok_and(|index| self.slots[index as usize] == Slot::InUse)
    }

    /// How many pairs are handed out.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// How many pairs are free.
    pub fn free(&self) -> usize {
        self.capacity() - self.in_use
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The pairs in use, ascending (what a standby needs to replicate).
    pub fn pairs_in_use(&self) -> impl Iterator<Item = PortPair> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| **slot == Slot::InUse)
            .map(|(i, _)| self.pair_at(index_u32(i)))
    }

    fn pair_at(&self, index: u32) -> PortPair {
        // index < slots.len(), so the port stays within the validated range.
        PortPair {
            rtp: self.first_rtp + 2 * index as u16,
        }
    }

    fn index_of(&self, pair: PortPair) -> Result<u32, PairError> {
        let offset = pair
            .rtp
            .checked_sub(self.first_rtp)
            .ok_or(PairError::Foreign(pair))?;
        let index = usize::from(offset / 2);
        // PortPair guarantees an even rtp and first_rtp is even, so offset is even.
        if index < self.slots.len() {
            Ok(index_u32(index))
        } else {
            Err(PairError::Foreign(pair))
        }
    }

    /// Takes a free slot out of the queue and marks it in use.
    fn unlink(&mut self, index: u32) {
        let Slot::Free { prev, next } = self.slots[index as usize] else {
            return;
        };
        match prev {
            NIL => self.head = next,
            p => self.set_next(p, next),
        }
        match next {
            NIL => self.tail = prev,
            n => self.set_prev(n, prev),
        }
        self.slots[index as usize] = Slot::InUse;
        self.in_use += 1;
    }

    /// Appends an in-use slot to the end of the free queue.
    fn push_back(&mut self, index: u32) {
        let old_tail = self.tail;
        self.slots[index as usize] = Slot::Free {
            prev: old_tail,
            next: NIL,
        };
        match old_tail {
            NIL => self.head = index,
            t => self.set_next(t, index),
        }
        self.tail = index;
        self.in_use -= 1;
    }

    fn set_next(&mut self, index: u32, value: u32) {
        if let Slot::Free { next, .. } = &mut self.slots[index as usize] {
            *next = value;
        }
    }

    fn set_prev(&mut self, index: u32, value: u32) {
        if let Slot::Free { prev, .. } = &mut self.slots[index as usize] {
            *prev = value;
        }
    }
}

/// Slot indices are below 32768 (half the port space), so they always fit.
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(NIL)
}
