//! A topic's finished tasks (COMPLETED and CANCELLED), in the order pruning takes them.

use crate::records::Records;
use std::collections::{BTreeSet, VecDeque};
use taskmill_core::{Queue, TaskId, TaskRecord, Timestamp};

/// Finished tasks of one topic, by `finished_at`.
///
/// Tasks finish at the time of the outcome that ends them, which mostly only grows, so
/// appending them to a FIFO keeps it in time order at O(1) per task and no allocation but
/// the FIFO's own growth: a completion that is kept costs next to nothing more than one
/// that is not. Only a task that finishes before the newest one (an outcome applied with
/// an older `now`, such as another manager's clock behind this one's) goes to an ordered
/// set instead, and pruning takes the older of the two heads, stopping at the first that
/// is not due: its cost does not grow with the history kept.
///
/// Sizes are counted. A deleted task's FIFO entry is not removed; it is skipped when it
/// surfaces (ids are never reused, and a finished task never leaves but by removal, so an
/// entry whose id names no finished record is stale).
#[derive(Debug, Default)]
pub(crate) struct Finished {
    in_order: VecDeque<(Timestamp, TaskId)>,
    out_of_order: BTreeSet<(Timestamp, TaskId)>,
    completed: u64,
    cancelled: u64,
}

impl Finished {
    /// Files a task that just finished; its record is in COMPLETED or CANCELLED with
    /// `finished_at` set.
    pub fn insert(&mut self, record: &TaskRecord) {
        *self.count_mut(record.queue) += 1;
        let at = finished_at(record);
        match self.in_order.back() {
            Some((newest, _)) if at < *newest => {
                self.out_of_order.insert((at, record.id));
            }
            _ => self.in_order.push_back((at, record.id)),
        }
    }

    /// Forgets a finished task whose record is being removed.
    pub fn remove(&mut self, record: &TaskRecord) {
        *self.count_mut(record.queue) -= 1;
        // An entry in the FIFO stays, and is skipped when it surfaces.
        self.out_of_order.remove(&(finished_at(record), record.id));
    }

    /// Takes the entry of the task that finished first, if it finished at or before
    /// `cutoff`, and returns its id; the caller removes the task. Stale entries on the way
    /// are dropped.
    pub fn pop_due(&mut self, cutoff: Timestamp, tasks: &Records) -> Option<TaskId> {
        loop {
            let fifo = self.in_order.front().copied();
            let set = self.out_of_order.first().copied();
            let (at, id) = match (fifo, set) {
                (Some(f), Some(s)) if s.0 < f.0 => s,
                (Some(f), _) => f,
                (None, Some(s)) => s,
                (None, None) => return None,
            };
            if at > cutoff {
                return None;
            }
            if fifo == Some((at, id)) {
                self.in_order.pop_front();
            } else {
                self.out_of_order.pop_first();
            }
            if tasks.get(&id).is_some_and(|r| r.queue.is_finished()) {
                return Some(id);
            }
        }
    }

    /// The ids of the tasks of `queue` (COMPLETED or CANCELLED), in no particular order.
    pub fn ids<'a>(
        &'a self,
        queue: Queue,
        tasks: &'a Records,
    ) -> impl Iterator<Item = TaskId> + 'a {
        self.in_order
            .iter()
            .chain(&self.out_of_order)
            .map(|(_, id)| *id)
            .filter(move |id| tasks.get(id).is_some_and(|r| r.queue == queue))
    }

    /// How many tasks `queue` (COMPLETED or CANCELLED) holds.
    pub fn len(&self, queue: Queue) -> u64 {
        match queue {
            Queue::Completed => self.completed,
            Queue::Cancelled => self.cancelled,
            _ => 0,
        }
    }

    fn count_mut(&mut self, queue: Queue) -> &mut u64 {
        match queue {
            Queue::Cancelled => &mut self.cancelled,
            _ => &mut self.completed,
        }
    }
}

fn finished_at(record: &TaskRecord) -> Timestamp {
    record.finished_at.unwrap_or(Timestamp::EPOCH)
}

#[cfg(test)]
mod tests {
    use super::Finished;
    use crate::records::Records;
    use std::collections::BTreeSet;
    use taskmill_core::raw::TaskExt;
    use taskmill_core::store::EnqueueOptions;
    use taskmill_core::{Queue, Task, TaskId, TaskRecord, Timestamp};

    fn finish(records: &mut Records, id: u64, at: i64, queue: Queue) -> TaskRecord {
        let id = TaskId::new(id);
        let opts = EnqueueOptions::new(Timestamp::from_millis(0));
        let mut record = Task::new("t", &id.get())
            .expect("a valid task")
            .into_record(id, &opts);
        record.queue = queue;
        record.finished_at = Some(Timestamp::from_millis(at));
        records.insert(id, record.clone());
        record
    }

    /// Pops everything due by `cutoff`, removing each record as pruning does.
    fn prune(finished: &mut Finished, records: &mut Records, cutoff: i64) -> Vec<u64> {
        let mut pruned = Vec::new();
        while let Some(id) = finished.pop_due(Timestamp::from_millis(cutoff), records) {
            let record = records.remove(&id).expect("a due entry names a record");
            finished.remove(&record);
            pruned.push(id.get());
        }
        pruned
    }

    #[test]
    fn tasks_finishing_out_of_order_are_pruned_in_time_order() {
        let (mut finished, mut records) = (Finished::default(), Records::default());
        for (id, at) in [(1, 10), (2, 20), (3, 15), (4, 20), (5, 5), (6, 30)] {
            let queue = if id % 2 == 0 {
                Queue::Cancelled
            } else {
                Queue::Completed
            };
            finished.insert(&finish(&mut records, id, at, queue));
        }
        assert_eq!(
            (
                finished.len(Queue::Completed),
                finished.len(Queue::Cancelled)
            ),
            (3, 3)
        );
        assert_eq!(prune(&mut finished, &mut records, 15), [5, 1, 3]);
        assert_eq!(prune(&mut finished, &mut records, 20), [2, 4]);
        assert_eq!(
            (
                finished.len(Queue::Completed),
                finished.len(Queue::Cancelled)
            ),
            (0, 1)
        );
        let left: Vec<TaskId> = finished.ids(Queue::Cancelled, &records).collect();
        assert_eq!(left, [TaskId::new(6)]);
    }

    #[test]
    fn entries_of_deleted_tasks_are_skipped() {
        let (mut finished, mut records) = (Finished::default(), Records::default());
        for (id, at) in [(1, 10), (2, 5), (3, 20)] {
            finished.insert(&finish(&mut records, id, at, Queue::Completed));
        }
        for id in [1, 2] {
            let record = records.remove(&TaskId::new(id)).unwrap();
            finished.remove(&record);
        }
        assert_eq!(finished.len(Queue::Completed), 1);
        assert_eq!(finished.ids(Queue::Completed, &records).count(), 1);
        assert_eq!(prune(&mut finished, &mut records, 100), [3]);
        assert!(finished.in_order.is_empty() && finished.out_of_order.is_empty());
    }

    /// Random finishes (mostly in time order), deletions and prunes, checked against a
    /// sorted set: each prune removes exactly the model's tasks due by its cutoff.
    #[test]
    fn prunes_match_a_sorted_set_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(0xf1_2026);
        let (mut finished, mut records) = (Finished::default(), Records::default());
        let mut model: BTreeSet<(i64, u64)> = BTreeSet::new();
        let (mut next_id, mut clock) = (1, 0i64);
        for _step in 0..20_000 {
            match rng.u8(..100) {
                0..=69 => {
                    clock += rng.i64(0..3);
                    // One in five finishes at a time behind the clock.
                    let at = if rng.u8(..5) == 0 {
                        clock - rng.i64(0..50)
                    } else {
                        clock
                    };
                    let queue = if rng.bool() {
                        Queue::Completed
                    } else {
                        Queue::Cancelled
                    };
                    finished.insert(&finish(&mut records, next_id, at, queue));
                    model.insert((at, next_id));
                    next_id += 1;
                }
                70..=84 if !model.is_empty() => {
                    let entry = *model.iter().nth(rng.usize(..model.len())).unwrap();
                    model.remove(&entry);
                    let record = records.remove(&TaskId::new(entry.1)).unwrap();
                    finished.remove(&record);
                }
                _ => {
                    let cutoff = clock - rng.i64(0..100);
                    let mut pruned = prune(&mut finished, &mut records, cutoff);
                    let mut due: Vec<u64> = model
                        .iter()
                        .take_while(|(at, _)| *at <= cutoff)
                        .map(|e| e.1)
                        .collect();
                    model.retain(|(at, _)| *at > cutoff);
                    pruned.sort_unstable();
                    due.sort_unstable();
                    assert_eq!(pruned, due);
                }
            }
            let kept = finished.len(Queue::Completed) + finished.len(Queue::Cancelled);
            assert_eq!(kept, model.len() as u64);
        }
    }
}
