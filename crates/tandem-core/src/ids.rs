//! Unique identifiers Tandem mints: tags, branches and Call-IDs of the legs it originates.
//!
//! A random node prefix (drawn once, from the standard library's per-process random hash keys, so no
//! clock is read) followed by a counter: unique across restarts and across the two nodes of a pair.

use std::collections::hash_map::RandomState;
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};

/// RFC 3261 §8.1.1.7 magic cookie every branch Tandem mints starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Mints identifiers.
#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    counter: u64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x7a6e_6465_6d00_0001);
        IdGenerator {
            prefix: hasher.finish(),
            counter: 0,
        }
    }
}

impl IdGenerator {
    /// A generator with a fixed prefix (deterministic tests).
    pub fn with_prefix(prefix: u64) -> Self {
        IdGenerator { prefix, counter: 0 }
    }

    fn next(&mut self, lead: &str, capacity: usize) -> String {
        self.counter += 1;
        let mut s = String::with_capacity(capacity);
        s.push_str(lead);
        // Writing into a String cannot fail.
        let _ = write!(s, "{:x}{:x}", self.prefix & 0xffff_ffff, self.counter);
        s
    }

    /// A To/From tag.
    pub fn tag(&mut self) -> String {
        self.next("td", 24)
    }

    /// A Via branch (with the magic cookie).
    pub fn branch(&mut self) -> String {
        self.next(BRANCH_COOKIE, 32)
    }

    /// A Call-ID for a leg Tandem originates.
    pub fn call_id(&mut self) -> String {
        let mut s = self.next("tdc", 40);
        let _ = write!(s, "-{:x}", self.prefix >> 32);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_unique_and_branches_carry_the_cookie() {
        let mut ids = IdGenerator::with_prefix(0xdead_beef_0000_0001);
        let a = ids.branch();
        let b = ids.branch();
        assert_ne!(a, b);
        assert!(a.starts_with(BRANCH_COOKIE));
        assert_ne!(ids.tag(), ids.tag());
        assert_ne!(ids.call_id(), ids.call_id());
    }

    #[test]
    fn two_generators_differ() {
        let mut a = IdGenerator::default();
        let mut b = IdGenerator::default();
        assert_ne!(a.call_id(), b.call_id());
    }
}
