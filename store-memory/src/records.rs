//! Task records by id, stored densely.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use taskmill_core::{TaskId, TaskRecord};

/// A map keyed by task id, hashed by [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<TaskId, V, BuildHasherDefault<IdHasher>>;
/// A set of task ids, hashed by [`IdHasher`].
pub(crate) type IdSet = HashSet<TaskId, BuildHasherDefault<IdHasher>>;

/// Hashes a task id so that consecutive ids land in consecutive buckets.
///
/// Ids are handed out in order and tasks mostly move through the queues in that order, so
/// with a scattering hash every lookup in a backlog of a million tasks is a cache miss,
/// which made claims slow down as the queue grew. The table takes the bucket from the low
/// bits of the hash, which stay the id's own, and a 7-bit tag from the top bits, which are
/// mixed so that neighbouring ids get different tags.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

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

/// Records in one dense, reused array, found through a small id → slot map.
///
/// A hash map holding ~200-byte records inline wastes half its space whenever it has
/// just doubled; here the map holds 12-byte entries and the records sit in a `Vec` whose
/// freed slots are reused. A finished task's record is dropped where it lies
/// ([`discard`](Self::discard)): moving 200 bytes out just to drop them was the largest
/// single cost of completing a task.
#[derive(Debug, Default)]
pub(crate) struct Records {
    slots: Vec<Option<TaskRecord>>,
    free: Vec<u32>,
    index: IdMap<u32>,
}

impl Records {
    pub fn insert(&mut self, id: TaskId, record: TaskRecord) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(record);
                slot
            }
            None => {
                self.slots.push(Some(record));
                u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion tasks in memory")
            }
        };
        self.index.insert(id, slot);
    }

    pub fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_ref()
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskRecord> {
        let slot = *self.index.get(id)?;
        self.slots[slot as usize].as_mut()
    }

    pub fn remove(&mut self, id: &TaskId) -> Option<TaskRecord> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        self.slots[slot as usize].take()
    }

    /// Removes a record without moving it out.
    pub fn discard(&mut self, id: &TaskId) {
        if let Some(slot) = self.index.remove(id) {
            self.slots[slot as usize] = None;
            self.free.push(slot);
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &TaskRecord> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::IdHasher;
    use std::collections::HashSet;
    use std::hash::{Hash, Hasher};
    use taskmill_core::TaskId;

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
