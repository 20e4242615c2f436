//! A topic's due tasks, in claim order: lowest priority value first, then lowest id.

use crate::records::Records;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use taskmill_core::{Queue, TaskId, Timestamp};

/// Due tasks of one topic.
///
/// New tasks get ever-growing ids, so appending them to a FIFO per priority keeps claim
/// order at O(1) per task however long the backlog. Only tasks that come back (retried,
/// released, recovered, requeued, or scheduled and now due) can be older than what is
/// queued; they go to a heap, and a claim takes the smaller of the two heads.
///
/// The earliest `run_at` (for queue latency) is found the same way: a lane's `run_at`s
/// never decrease from front to back (a new task due earlier than its lane's last joins
/// the returned tasks instead, which claims in the same order), so a lane's earliest is
/// its first live entry; returned tasks are also kept in a heap by `run_at`.
///
/// Entries of deleted tasks are not removed here; they are skipped when they surface.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    fresh: BTreeMap<i16, Lane>,
    returned: BinaryHeap<Reverse<(i16, TaskId)>>,
    /// The returned tasks by `run_at`. A claim takes entries out of `returned` only, so
    /// this heap drops an entry when it surfaces with its task no longer due at that time,
    /// and is rebuilt from `returned` when it holds too many such entries.
    returned_by_time: BinaryHeap<Reverse<(Timestamp, TaskId)>>,
}

/// New tasks of one priority, in id order, their `run_at`s never decreasing.
#[derive(Debug, Default)]
struct Lane {
    ids: VecDeque<TaskId>,
    last_run_at: Timestamp,
}

/// Whether `id` is in INPUT due at `run_at`: an index entry that is not is stale.
fn is_waiting(tasks: &Records, id: &TaskId, run_at: Timestamp) -> bool {
    tasks
        .get(id)
        .is_some_and(|t| t.queue == Queue::Input && t.run_at == run_at)
}

impl ReadyQueue {
    /// Queues a task just enqueued: its id is the largest so far.
    pub fn push_new(&mut self, priority: i16, id: TaskId, run_at: Timestamp) {
        let lane = self.fresh.entry(priority).or_default();
        if lane.ids.is_empty() || lane.last_run_at <= run_at {
            lane.ids.push_back(id);
            lane.last_run_at = run_at;
        } else {
            self.push_returned(priority, id, run_at);
        }
    }

    /// Queues a task that was in the store before.
    pub fn push_returned(&mut self, priority: i16, id: TaskId, run_at: Timestamp) {
        self.returned.push(Reverse((priority, id)));
        self.returned_by_time.push(Reverse((run_at, id)));
    }

    /// The earliest `run_at` of the tasks queued here.
    pub fn earliest_run_at(&mut self, tasks: &Records) -> Option<Timestamp> {
        let is_input = |id: &TaskId| tasks.get(id).is_some_and(|t| t.queue == Queue::Input);
        let mut earliest = None;
        for lane in self.fresh.values_mut() {
            while lane.ids.front().is_some_and(|id| !is_input(id)) {
                lane.ids.pop_front();
            }
            if let Some(run_at) = lane
                .ids
                .front()
                .and_then(|id| tasks.get(id))
                .map(|t| t.run_at)
            {
                earliest = Some(earliest.map_or(run_at, |e: Timestamp| e.min(run_at)));
            }
        }
        if self.returned_by_time.len() > 2 * self.returned.len() + 1024 {
            self.rebuild_by_time(tasks);
        }
        while let Some(&Reverse((run_at, id))) = self.returned_by_time.peek() {
            if is_waiting(tasks, &id, run_at) {
                earliest = Some(earliest.map_or(run_at, |e: Timestamp| e.min(run_at)));
                break;
            }
            self.returned_by_time.pop();
        }
        earliest
    }

    fn rebuild_by_time(&mut self, tasks: &Records) {
        self.returned_by_time = self
            .returned
            .iter()
            .filter_map(|Reverse((_, id))| tasks.get(id).filter(|t| t.queue == Queue::Input))
            .map(|t| Reverse((t.run_at, t.id)))
            .collect();
    }

    /// Takes the next task to claim.
    pub fn pop(&mut self, tasks: &Records) -> Option<TaskId> {
        let is_input = |id: &TaskId| tasks.get(id).is_some_and(|t| t.queue == Queue::Input);
        let mut fresh_head = None;
        for (priority, lane) in self.fresh.iter_mut() {
            while lane.ids.front().is_some_and(|id| !is_input(id)) {
                lane.ids.pop_front();
            }
            if let Some(id) = lane.ids.front() {
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
            (Some((priority, _)), _) => self
                .fresh
                .get_mut(&priority)
                .and_then(|lane| lane.ids.pop_front()),
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

    /// The run_at of every test record: enqueued at 0, due at once.
    const T0: Timestamp = Timestamp::from_millis(0);

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
        queue.push_returned(priority, id, T0);
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
            queue.push_new(priority, insert(&mut records, id, priority), T0);
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
            queue.push_new(0, insert(&mut records, id, 0), T0);
        }
        // Older than every new task of its priority: it goes first among them.
        queue.push_returned(0, old, T0);
        // A lower priority value than all: first of all, though returned last.
        queue.push_returned(-1, urgent, T0);
        assert_eq!(drain(&mut queue, &mut records), [2, 1, 3, 4, 5]);
    }

    #[test]
    fn entries_of_tasks_gone_from_input_are_skipped() {
        let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
        for id in 1..=4 {
            queue.push_new(0, insert(&mut records, id, 0), T0);
        }
        let returned = insert(&mut records, 5, -1);
        queue.push_returned(-1, returned, T0);
        records.remove(&TaskId::new(1)); // deleted
        set_queue(&mut records, TaskId::new(3), Queue::Dead); // moved by hand
        records.discard(&returned);
        assert_eq!(drain(&mut queue, &mut records), [2, 4]);
        assert!(queue.fresh.values().all(|lane| lane.ids.is_empty()));
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
                        queue.push_new(priority, id, T0);
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

    /// Random enqueues (due at scattered times), claims, returns and deletions: the
    /// earliest `run_at` always matches the model's.
    #[test]
    fn the_earliest_run_at_matches_a_scan_under_random_operations() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_0042);
        let (mut queue, mut records) = (ReadyQueue::default(), Records::default());
        let mut model: BTreeSet<(i16, TaskId)> = BTreeSet::new();
        let mut working = Vec::new();
        for next_id in 1..5_000u64 {
            match rng.u8(..100) {
                0..=39 => {
                    let priority = rng.i16(-2..=2);
                    let id = insert(&mut records, next_id, priority);
                    let run_at = Timestamp::from_millis(rng.i64(0..1_000));
                    records.get_mut(&id).unwrap().run_at = run_at;
                    queue.push_new(priority, id, run_at);
                    model.insert((priority, id));
                }
                40..=69 => {
                    let popped = queue.pop(&records);
                    assert_eq!(popped, model.pop_first().map(|(_, id)| id));
                    if let Some(id) = popped {
                        set_queue(&mut records, id, Queue::Work);
                        working.push(id);
                    }
                }
                70..=84 if !working.is_empty() => {
                    let id = working.swap_remove(rng.usize(..working.len()));
                    let run_at = Timestamp::from_millis(rng.i64(0..1_000));
                    let record = records.get_mut(&id).unwrap();
                    record.queue = Queue::Input;
                    record.run_at = run_at;
                    let priority = record.priority;
                    queue.push_returned(priority, id, run_at);
                    model.insert((priority, id));
                }
                _ if !model.is_empty() => {
                    let entry = *model.iter().nth(rng.usize(..model.len())).unwrap();
                    model.remove(&entry);
                    records.remove(&entry.1);
                }
                _ => {}
            }
            let expected = model
                .iter()
                .map(|(_, id)| records.get(id).unwrap().run_at)
                .min();
            assert_eq!(
                queue.earliest_run_at(&records),
                expected,
                "after task {next_id}"
            );
        }
    }
}
