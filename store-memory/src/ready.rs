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
