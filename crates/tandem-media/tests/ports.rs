#![allow(clippy::unwrap_used)]
//! Relay port allocation: range validation, reuse order, errors instead of panics, and a property test
//! that no pair is ever handed out twice.

use std::collections::BTreeSet;

use proptest::prelude::*;
use tandem_media::ports::{Exhausted, PairError, PortAllocator, PortPair, PortRangeError};

fn pair(rtp: u16) -> PortPair {
    PortPair::from_rtp(rtp).unwrap()
}

#[test]
fn pairs_are_even_rtp_and_next_odd_rtcp() {
    let mut alloc = PortAllocator::new(10001, 10008).unwrap();
    // 10001 is odd and 10008 has no successor in range: pairs 10002, 10004, 10006.
    assert_eq!(alloc.capacity(), 3);
    let first = alloc.allocate().unwrap();
    assert_eq!((first.rtp(), first.rtcp()), (10002, 10003));
    assert_eq!(alloc.allocate().unwrap().rtp(), 10004);
    assert_eq!(alloc.allocate().unwrap().rtp(), 10006);
    assert_eq!(alloc.allocate(), Err(Exhausted { capacity: 3 }));
    assert_eq!(alloc.in_use(), 3);
}

#[test]
fn invalid_ranges_are_refused() {
    assert!(matches!(
        PortAllocator::new(20, 10),
        Err(PortRangeError::Empty { .. })
    ));
    assert!(matches!(
        PortAllocator::new(0, 10),
        Err(PortRangeError::ZeroPort { .. })
    ));
    assert!(matches!(
        PortAllocator::new(10, 10),
        Err(PortRangeError::NoPair { .. })
    ));
    assert!(matches!(
        PortAllocator::new(11, 12),
        Err(PortRangeError::NoPair { .. })
    ));
    assert!(matches!(
        PortAllocator::new(65535, 65535),
        Err(PortRangeError::NoPair { .. })
    ));
    assert_eq!(PortAllocator::new(10, 11).unwrap().capacity(), 1);
    assert_eq!(PortAllocator::new(1, 65535).unwrap().capacity(), 32767);
}

#[test]
fn port_pair_rejects_odd_zero_and_top_port() {
    assert!(PortPair::from_rtp(0).is_none());
    assert!(PortPair::from_rtp(10001).is_none());
    assert!(PortPair::from_rtp(65535).is_none());
    assert_eq!(pair(65534).rtcp(), 65535);
    assert_eq!(pair(40000).to_string(), "40000/40001");
}

#[test]
fn released_pair_is_reused_last() {
    let mut alloc = PortAllocator::new(30000, 30009).unwrap(); // 5 pairs
    let a = alloc.allocate().unwrap();
    alloc.release(a).unwrap();
    // The four never-used pairs come first, then the just-released one.
    let next: Vec<u16> = (0..5).map(|_| alloc.allocate().unwrap().rtp()).collect();
    assert_eq!(next, [30002, 30004, 30006, 30008, 30000]);
}

#[test]
fn release_order_is_reuse_order() {
    let mut alloc = PortAllocator::new(30000, 30005).unwrap(); // 3 pairs
    let pairs = alloc.allocate_many(3).unwrap();
    alloc.release(pairs[2]).unwrap();
    alloc.release(pairs[0]).unwrap();
    alloc.release(pairs[1]).unwrap();
    let again = alloc.allocate_many(3).unwrap();
    assert_eq!(again, [pairs[2], pairs[0], pairs[1]]);
}

#[test]
fn double_release_and_foreign_pairs_are_errors() {
    let mut alloc = PortAllocator::new(30000, 30009).unwrap();
    let a = alloc.allocate().unwrap();
    alloc.release(a).unwrap();
    assert_eq!(alloc.release(a), Err(PairError::NotInUse(a)));
    assert_eq!(
        alloc.release(pair(30010)),
        Err(PairError::Foreign(pair(30010)))
    );
    assert_eq!(
        alloc.release(pair(29998)),
        Err(PairError::Foreign(pair(29998)))
    );
    assert_eq!(alloc.reserve(pair(2)), Err(PairError::Foreign(pair(2))));
    assert_eq!(alloc.in_use(), 0);
}

#[test]
fn reserve_takes_a_specific_pair_out_of_the_queue() {
    let mut alloc = PortAllocator::new(30000, 30009).unwrap();
    alloc.reserve(pair(30004)).unwrap();
    assert_eq!(
        alloc.reserve(pair(30004)),
        Err(PairError::AlreadyInUse(pair(30004)))
    );
    assert!(alloc.is_in_use(pair(30004)));
    let rest: Vec<u16> = alloc
        .allocate_many(4)
        .unwrap()
        .iter()
        .map(|p| p.rtp())
        .collect();
    assert_eq!(rest, [30000, 30002, 30006, 30008]);
    assert_eq!(alloc.pairs_in_use().count(), 5);
}

#[test]
fn allocate_many_is_all_or_nothing() {
    let mut alloc = PortAllocator::new(30000, 30005).unwrap(); // 3 pairs
    assert_eq!(alloc.allocate_many(4), Err(Exhausted { capacity: 3 }));
    assert_eq!(alloc.in_use(), 0);
    assert_eq!(alloc.allocate_many(3).unwrap().len(), 3);
}

#[test]
fn standby_rebuilds_the_same_state_from_replicated_pairs() {
    let mut active = PortAllocator::new(40000, 40099).unwrap();
    let held = active.allocate_many(7).unwrap();
    let mut standby = PortAllocator::new(40000, 40099).unwrap();
    for p in active.pairs_in_use() {
        standby.reserve(p).unwrap();
    }
    assert_eq!(standby.in_use(), 7);
    assert!(held.iter().all(|p| standby.is_in_use(*p)));
    // A fresh allocation on the standby never collides with a replicated one.
    let fresh = standby.allocate().unwrap();
    assert!(!held.contains(&fresh));
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    /// Release the n-th held pair (modulo how many are held), or a random pair.
    Release(usize),
    ReleaseAny(u16),
    Reserve(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Allocate),
        2 => any::<usize>().prop_map(Op::Release),
        1 => (0u16..200).prop_map(Op::ReleaseAny),
        1 => (0u16..200).prop_map(Op::Reserve),
    ]
}

proptest! {
    #[test]
    fn no_pair_is_handed_out_twice(first in 1u16..120, len in 0u16..40, ops in prop::collection::vec(op(), 0..300)) {
        let last = first.saturating_add(len);
        let Ok(mut alloc) = PortAllocator::new(first, last) else { return Ok(()); };
        let mut held: BTreeSet<PortPair> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Allocate => match alloc.allocate() {
                    Ok(p) => {
                        prop_assert!(held.insert(p), "{p} handed out twice");
                        prop_assert!(p.rtp() >= first && p.rtcp() <= last);
                    }
                    Err(_) => prop_assert_eq!(held.len(), alloc.capacity()),
                },
                Op::Release(n) => {
                    if let Some(p) = held.iter().nth(n % held.len().max(1)).copied() {
                        prop_assert!(alloc.release(p).is_ok());
                        held.remove(&p);
                    }
                }
                Op::ReleaseAny(rtp) => {
                    if let Some(p) = PortPair::from_rtp(rtp) {
                        let result = alloc.release(p);
                        prop_assert_eq!(result.is_ok(), held.remove(&p));
                    }
                }
                Op::Reserve(rtp) => {
                    if let Some(p) = PortPair::from_rtp(rtp) {
                        let result = alloc.reserve(p);
                        let fits = p.rtp() >= first && p.rtcp() <= last;
                        prop_assert_eq!(result.is_ok(), fits && !held.contains(&p));
                        if result.is_ok() {
                            held.insert(p);
                        }
                    }
                }
            }
            prop_assert_eq!(alloc.in_use(), held.len());
            prop_assert_eq!(alloc.in_use() + alloc.free(), alloc.capacity());
            prop_assert!(alloc.pairs_in_use().eq(held.iter().copied()));
        }
        // The free queue really holds `free()` distinct pairs, none of them held.
        let mut drain = alloc.clone();
        let mut drained = BTreeSet::new();
        while let Ok(p) = drain.allocate() {
            prop_assert!(!held.contains(&p) && drained.insert(p));
        }
        prop_assert_eq!(drained.len(), alloc.free());
    }
}
