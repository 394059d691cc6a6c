//! The live transactions: a generational slab indexed by [`TxId`], so a lookup is an array index
//! and a transaction costs no allocation of its own.
//!
//! A `TxId` is `generation << 32 | index`. Freeing a slot bumps its generation, so an old id never
//! names a newer transaction (until one slot is reused 2³² times: at 100k transactions a second
//! spread over 100k slots, about 1,400 years).

use super::state::Transaction;
use super::TxId;

#[derive(Debug)]
struct Entry {
    generation: u32,
    tx: Option<Transaction>,
}

#[derive(Debug, Default)]
pub(super) struct TxTable {
    entries: Vec<Entry>,
    free: Vec<u32>,
    len: usize,
}

fn split(id: TxId) -> (usize, u32) {
    ((id.0 & u64::from(u32::MAX)) as usize, (id.0 >> 32) as u32)
}

impl TxTable {
    /// Stores the transaction `make` builds for its new id.
    pub(super) fn insert(&mut self, make: impl FnOnce(TxId) -> Transaction) -> TxId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    tx: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[index as usize];
        let id = TxId(u64::from(entry.generation) << 32 | u64::from(index));
        entry.tx = Some(make(id));
        self.len += 1;
        id
    }

    pub(super) fn get(&self, id: TxId) -> Option<&Transaction> {
        let (index, generation) = split(id);
        self.entries
            .get(index)
            .filter(|e| e.generation == generation)?
            .tx
            .as_ref()
    }

    pub(super) fn get_mut(&mut self, id: TxId) -> Option<&mut Transaction> {
        let (index, generation) = split(id);
        self.entries
            .get_mut(index)
            .filter(|e| e.generation == generation)?
            .tx
            .as_mut()
    }

    pub(super) fn remove(&mut self, id: TxId) -> Option<Transaction> {
        let (index, generation) = split(id);
        let entry = self
            .entries
            .get_mut(index)
            .filter(|e| e.generation == generation)?;
        let tx = entry.tx.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(tx)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}
