//! Task records by id, stored densely.

use rustc_hash::FxHashMap;
use slab::Slab;
use taskmill_core::{TaskId, TaskRecord};

/// Records in a slab, found through a small id → slot map.
///
/// A hash map holding ~200-byte records inline wastes half its space whenever it has
/// just doubled; here the map holds 12-byte entries and the records sit in one dense,
/// reused array.
#[derive(Debug, Default)]
pub(crate) struct Records {
    slots: Slab<TaskRecord>,
    index: FxHashMap<TaskId, u32>,
}

impl Records {
    pub fn insert(&mut self, id: TaskId, record: TaskRecord) {
        let slot = self.slots.insert(record);
        let slot = u32::try_from(slot).expect("fewer than 4 billion tasks in memory");
        self.index.insert(id, slot);
    }

    pub fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        self.index.get(id).map(|slot| &self.slots[*slot as usize])
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskRecord> {
        self.index
            .get(id)
            .map(|slot| &mut self.slots[*slot as usize])
    }

    pub fn remove(&mut self, id: &TaskId) -> Option<TaskRecord> {
        self.index
            .remove(id)
            .map(|slot| self.slots.remove(slot as usize))
    }

    pub fn values(&self) -> impl Iterator<Item = &TaskRecord> {
        self.slots.iter().map(|(_, record)| record)
    }
}
