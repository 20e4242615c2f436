//! Task records by id, stored densely.

use taskmill_core::raw::IdMap;
use taskmill_core::{TaskId, TaskRecord};

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
    use super::Records;
    use std::collections::HashMap;
    use taskmill_core::raw::TaskExt;
    use taskmill_core::store::EnqueueOptions;
    use taskmill_core::{Task, TaskId, TaskRecord, Timestamp};

    fn record(id: u64) -> TaskRecord {
        let opts = EnqueueOptions::new(Timestamp::from_millis(0));
        Task::new("t", &id)
            .expect("a valid task")
            .into_record(TaskId::new(id), &opts)
    }

    /// Every slot is either a live record found through the index or on the free list.
    fn assert_consistent(records: &Records) {
        let live = records.slots.iter().filter(|s| s.is_some()).count();
        assert_eq!(live, records.index.len(), "live slots vs index");
        assert_eq!(records.slots.len(), live + records.free.len(), "free list");
        for (id, slot) in records.index.iter() {
            let stored = records.slots[*slot as usize].as_ref();
            assert_eq!(stored.map(|r| r.id), Some(*id), "slot {slot}");
        }
    }

    #[test]
    fn a_freed_slot_is_reused() {
        let mut records = Records::default();
        for id in 1..=3 {
            records.insert(TaskId::new(id), record(id));
        }
        assert_eq!(records.remove(&TaskId::new(2)), Some(record(2)));
        records.discard(&TaskId::new(1));
        records.insert(TaskId::new(4), record(4));
        records.insert(TaskId::new(5), record(5));
        assert_eq!(records.slots.len(), 3, "no slot added while two were free");
        assert!(records.get(&TaskId::new(1)).is_none());
        assert!(records.get(&TaskId::new(2)).is_none());
        for id in [3, 4, 5] {
            assert_eq!(records.get(&TaskId::new(id)), Some(&record(id)));
        }
        assert_consistent(&records);
    }

    #[test]
    fn missing_ids_are_none_and_removing_them_changes_nothing() {
        let mut records = Records::default();
        records.insert(TaskId::new(1), record(1));
        assert!(records.get(&TaskId::new(9)).is_none());
        assert!(records.get_mut(&TaskId::new(9)).is_none());
        assert_eq!(records.remove(&TaskId::new(9)), None);
        records.discard(&TaskId::new(9));
        records.discard(&TaskId::new(1));
        records.discard(&TaskId::new(1));
        assert_eq!(records.free, [0], "a slot freed once");
        assert_consistent(&records);
    }

    /// Random inserts, updates, removals and discards, checked against a `HashMap`: the
    /// same records are found, and the slab never holds more slots than the most records
    /// alive at once.
    #[test]
    fn matches_a_hash_map_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(0x51ab_0042);
        let mut records = Records::default();
        let mut model: HashMap<TaskId, TaskRecord> = HashMap::new();
        let mut alive: Vec<TaskId> = Vec::new();
        let (mut next_id, mut peak) = (1, 0);
        for step in 0..20_000 {
            match rng.u8(..10) {
                0..=3 => {
                    let id = TaskId::new(next_id);
                    next_id += 1;
                    records.insert(id, record(id.get()));
                    model.insert(id, record(id.get()));
                    alive.push(id);
                    peak = peak.max(alive.len());
                }
                4..=5 if !alive.is_empty() => {
                    let id = alive[rng.usize(..alive.len())];
                    records.get_mut(&id).unwrap().attempt += 1;
                    model.get_mut(&id).unwrap().attempt += 1;
                }
                6..=7 if !alive.is_empty() => {
                    let id = alive.swap_remove(rng.usize(..alive.len()));
                    assert_eq!(records.remove(&id), model.remove(&id));
                }
                8..=9 if !alive.is_empty() => {
                    let id = alive.swap_remove(rng.usize(..alive.len()));
                    records.discard(&id);
                    model.remove(&id);
                }
                _ => {}
            }
            if let Some(id) = alive.get(rng.usize(..alive.len().max(1))) {
                assert_eq!(records.get(id), model.get(id));
            }
            if step % 1_000 == 0 {
                assert_consistent(&records);
            }
        }
        assert_consistent(&records);
        assert_eq!(records.slots.len(), peak);
        let mut got: Vec<&TaskRecord> = records.values().collect();
        got.sort_by_key(|r| r.id);
        let mut want: Vec<&TaskRecord> = model.values().collect();
        want.sort_by_key(|r| r.id);
        assert_eq!(got, want);
    }
}
