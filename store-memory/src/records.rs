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
