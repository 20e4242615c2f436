//! Hash maps keyed by task id, for stores that index their tasks in memory.

use crate::task::TaskId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by task id, hashed by [`IdHasher`].
pub type IdMap<V> = HashMap<TaskId, V, BuildHasherDefault<IdHasher>>;
/// A set of task ids, hashed by [`IdHasher`].
pub type IdSet = HashSet<TaskId, BuildHasherDefault<IdHasher>>;

/// Hashes a task id (or any `u64`) so that consecutive ids land in consecutive buckets.
///
/// Ids are handed out in order and tasks mostly move through the queues in that order, so
/// with a scattering hash (SipHash, Fx) every lookup in a backlog of a million tasks is a
/// cache miss, and a store's claims slow down as its queue grows; with this one, neighbours
/// share cache lines. The table takes the bucket from the low bits of the hash, which stay
/// the id's own, and a 7-bit tag from the top bits, which are mixed so that neighbouring
/// ids get different tags.
///
/// Not for keys an adversary picks: task ids come from the store, never from users.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Task ids hash through `write_u64`; anything else still gets a usable hash.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(MIX);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0.wrapping_mul(MIX) & TAG_BITS)
    }
}

/// An odd constant with well-spread bits (2^64 / golden ratio).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
/// The bits the table takes its tag from.
const TAG_BITS: u64 = 0x7F << 57;

#[cfg(test)]
mod tests {
    use super::IdHasher;
    use crate::task::TaskId;
    use std::collections::HashSet;
    use std::hash::{Hash, Hasher};

    fn hash(id: u64) -> u64 {
        let mut hasher = IdHasher::default();
        TaskId::new(id).hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn consecutive_ids_get_consecutive_buckets_and_spread_tags() {
        let low_bits = (1u64 << 57) - 1;
        let tags: HashSet<u64> = (1_000..1_128)
            .map(|id| {
                assert_eq!(hash(id) & low_bits, id, "id {id} must keep its low bits");
                hash(id) >> 57
            })
            .collect();
        assert!(
            tags.len() > 64,
            "only {} distinct tags in 128 ids",
            tags.len()
        );
    }
}
