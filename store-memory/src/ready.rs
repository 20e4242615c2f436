//! A topic's due tasks, in claim order: lowest priority value first, then lowest id.

use crate::records::Records;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use taskmill_core::{Queue, TaskId};

/// Due tasks of one topic.
///
/// New tasks get ever-growing ids, so appending them to a FIFO per priority keeps claim
/// order at O(1) per task however long the backlog. Only tasks that come back (retried,
/// released, recovered, requeued, or scheduled and now due) can be older than what is
/// queued; they go to a heap, and a claim takes the smaller of the two heads.
///
/// Entries of deleted tasks are not removed here; they are skipped when they surface.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    fresh: BTreeMap<i16, VecDeque<TaskId>>,
    returned: BinaryHeap<Reverse<(i16, TaskId)>>,
}

impl ReadyQueue {
    /// Queues a task just enqueued: its id is the largest so far.
    pub fn push_new(&mut self, priority: i16, id: TaskId) {
        self.fresh.entry(priority).or_default().push_back(id);
    }

    /// Queues a task that was in the store before.
    pub fn push_returned(&mut self, priority: i16, id: TaskId) {
        self.returned.push(Reverse((priority, id)));
    }

    /// Takes the next task to claim.
    pub fn pop(&mut self, tasks: &Records) -> Option<TaskId> {
        let is_input = |id: &TaskId| tasks.get(id).is_some_and(|t| t.queue == Queue::Input);
        let mut fresh_head = None;
        for (priority, lane) in self.fresh.iter_mut() {
            while lane.front().is_some_and(|id| !is_input(id)) {
                lane.pop_front();
            }
            if let Some(id) = lane.front() {
                fresh_head = Some((*priority, *id));
                break;
            }
        }
        while self
            .returned
            .peek()
            .is_some_and(|Reverse((_, id))| !is_input(id))
        {
            self.returned.pop();
        }
        let returned_head = self.returned.peek().map(|Reverse(head)| *head);
        match (fresh_head, returned_head) {
            (Some(fresh), Some(returned)) if returned < fresh => self.pop_returned(),
            (Some((priority, _)), _) => self.fresh.get_mut(&priority).and_then(VecDeque::pop_front),
            (None, Some(_)) => self.pop_returned(),
            (None, None) => None,
        }
    }

    fn pop_returned(&mut self) -> Option<TaskId> {
        self.returned.pop().map(|Reverse((_, id))| id)
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyQueue;
    use crate::records::Records;
    use std::collections::BTreeSet;
    use taskmill_core::raw::TaskExt;
    use taskmill_core::store::EnqueueOptions;
    use taskmill_core::{Queue, Task, TaskId, Timestamp};

    /// Files a task of `priority` in INPUT under `id`.
    fn insert(records: &mut Records, id: u64, priority: i16) -> TaskId {
        let id = TaskId::new(id);
        let opts = EnqueueOptions::new(Timestamp::from_millis(0));
        let record = Task::new("t", &id.get())
            .expect("a valid task")
            .priority(priority)
            .into_record(id, &opts);
        records.insert(id, record);
        id
    }

    fn set_queue(records: &mut Records, id: TaskId, queue: Queue) {
        records.get_mut(&id).expect("the task exists").queue = queue;
    }

    /// Moves a task that was in the store before back to INPUT; its model entry.
    fn return_to_input(queue: &mut ReadyQueue, records: &mut Records, id: TaskId) -> (i16, TaskId) {
        set_queue(records, id, Queue::Input);
        let priority = records.get(&id).expect("the task exists").priority;
        queue.push_returned(priority, id);
        (priority, id)
    }

    /// Pops until empty, moving each task to WORK as a claim does.
    fn drain(queue: &mut ReadyQueue, records: &mut Records) -> Vec<u64> {
        let mut order = Vec::new();
        while let Some(id) = queue.pop(records) {
            set_queue(records, id, Queue::Work);
            order.push(id.get());
        }
        order
    }

    #[test]
    fn new_tasks_pop_by_priority_then_id() {
        let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
        for (id, priority) in [(1, 5), (2, -3), (3, 0), (4, 5), (5, -3), (6, 0)] {
            queue.push_new(priority, insert(&mut records, id, priority));
        }
        assert_eq!(drain(&mut queue, &mut records), [2, 5, 3, 6, 1, 4]);
        assert_eq!(queue.pop(&records), None);
    }

    #[test]
    fn a_returned_task_takes_its_place_among_new_ones() {
        let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
        let old = insert(&mut records, 1, 0);
        let urgent = insert(&mut records, 2, -1);
        for id in 3..=5 {
            queue.push_new(0, insert(&mut records, id, 0));
        }
        // Older than every new task of its priority: it goes first among them.
        queue.push_returned(0, old);
        // A lower priority value than all: first of all, though returned last.
        queue.push_returned(-1, urgent);
        assert_eq!(drain(&mut queue, &mut records), [2, 1, 3, 4, 5]);
    }

    #[test]
    fn entries_of_tasks_gone_from_input_are_skipped() {
        let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
        for id in 1..=4 {
            queue.push_new(0, insert(&mut records, id, 0));
        }
        let returned = insert(&mut records, 5, -1);
        queue.push_returned(-1, returned);
        records.remove(&TaskId::new(1)); // deleted
        set_queue(&mut records, TaskId::new(3), Queue::Dead); // moved by hand
        records.discard(&returned);
        assert_eq!(drain(&mut queue, &mut records), [2, 4]);
        assert!(queue.fresh.values().all(|lane| lane.is_empty()));
        assert!(queue.returned.is_empty());
    }

    /// Random enqueues, claims, returns, deletions and requeues, checked against a sorted
    /// set of the tasks in INPUT: every pop is the model's smallest (priority, id).
    #[test]
    fn pops_match_a_sorted_set_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(0x7a5c_0011);
        for _round in 0..20 {
            let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
            let mut model: BTreeSet<(i16, TaskId)> = BTreeSet::new();
            let (mut working, mut dead) = (Vec::new(), Vec::new());
            let mut next_id = 1;
            for _step in 0..2_000 {
                match rng.u8(..100) {
                    0..=34 => {
                        let priority = rng.i16(-3..=3);
                        let id = insert(&mut records, next_id, priority);
                        next_id += 1;
                        queue.push_new(priority, id);
                        model.insert((priority, id));
                    }
                    35..=64 => {
                        let popped = queue.pop(&records);
                        assert_eq!(popped, model.pop_first().map(|(_, id)| id));
                        if let Some(id) = popped {
                            set_queue(&mut records, id, Queue::Work);
                            working.push(id);
                        }
                    }
                    65..=79 if !working.is_empty() => {
                        // A retry, release or recovery.
                        let id = working.swap_remove(rng.usize(..working.len()));
                        model.insert(return_to_input(&mut queue, &mut records, id));
                    }
                    80..=86 if !working.is_empty() => {
                        let id = working.swap_remove(rng.usize(..working.len()));
                        set_queue(&mut records, id, Queue::Dead);
                        dead.push(id);
                    }
                    87..=92 if !dead.is_empty() => {
                        // A requeue.
                        let id = dead.swap_remove(rng.usize(..dead.len()));
                        model.insert(return_to_input(&mut queue, &mut records, id));
                    }
                    _ if !model.is_empty() => {
                        // Delete a task waiting in INPUT: its entry goes stale.
                        let nth = rng.usize(..model.len());
                        let entry = *model.iter().nth(nth).unwrap();
                        model.remove(&entry);
                        records.remove(&entry.1);
                    }
                    _ => {}
                }
            }
            let expected: Vec<u64> = model.iter().map(|(_, id)| id.get()).collect();
            assert_eq!(drain(&mut queue, &mut records), expected);
        }
    }
}
