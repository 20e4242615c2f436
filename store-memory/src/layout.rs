//! The data layout: every task by id, and per-topic indexes of each queue. Nothing
//! outlives the process, so the layout has no version.
//!
//! Shaped for the hot path (claim and complete at millions per second): records live in a
//! dense array found by id (see [`Records`]); due tasks wait in a [`ReadyQueue`], scheduled ones
//! in a set ordered by due time (so stats count the tasks not yet due from `now` on,
//! without visiting a due one). The ready queue cannot remove from the middle, so a deleted or cancelled task's entry
//! stays until it surfaces and is skipped then ("lazy deletion"); sizes are counted, not
//! read off them. Finished tasks (COMPLETED and CANCELLED) stay where their record lies,
//! named once more in their topic's [`Finished`] index, in the order pruning takes them;
//! that index skips a deleted task's entry the same way.

use crate::finished::Finished;
use crate::ready::ReadyQueue;
use crate::records::Records;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use taskmill_core::raw::IdSet;
use taskmill_core::store::ScheduleState;
use taskmill_core::{Counters, Queue, TaskId, TaskRecord, Timestamp, TopicStats};

/// Everything the store holds, under its one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The last task id handed out.
    pub last_id: u64,
    /// The last fencing token handed out.
    pub last_token: u64,
    /// Every task's record, by id.
    pub tasks: Records,
    /// Every topic that ever held a task or was paused, with its indexes.
    pub topics: FxHashMap<Arc<str>, Topic>,
    /// The topics a claim looks at: every unpaused topic with due INPUT tasks is here
    /// (and [`Topic::listed`]), so a claim costs nothing for the topics with nothing due.
    /// A topic may stay listed after its last task leaves INPUT, until a claim finds it so.
    pub waiting: FxHashSet<Arc<str>>,
    /// Topics taken off `waiting` because their INPUT tasks were all scheduled for later,
    /// by the earliest such time: each is listed again when that time comes.
    pub sleeping: BTreeSet<(Timestamp, Arc<str>)>,
    /// Every schedule registered or fired, by name (ordered, as listing returns them).
    pub schedules: BTreeMap<Arc<str>, ScheduleState>,
}

/// One topic's indexes. A live task has exactly one entry, in the index of its queue
/// (INPUT is split by whether the task was due when last looked at).
#[derive(Debug, Default)]
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// Due INPUT tasks, in claim order.
    pub ready: ReadyQueue,
    /// INPUT tasks not yet known to be due, by due time: exactly those, an entry leaving
    /// with its task (promoted, cancelled, deleted).
    pub scheduled: BTreeSet<(Timestamp, TaskId)>,
    /// The tasks of `scheduled` that ran before (`attempt > 0`), by due time: with it,
    /// stats split the tasks not yet due into scheduled and retrying by counting two
    /// ranges, reading no record.
    pub retrying: BTreeSet<(Timestamp, TaskId)>,
    pub input: u64,
    pub work: IdSet,
    pub dead: BTreeSet<TaskId>,
    pub finished: Finished,
    /// Unique key → the task holding it (keys are per topic): only tasks that
    /// [hold](TaskRecord::holds_unique_key) their key are here.
    pub unique: FxHashMap<Box<str>, TaskId>,
    pub counters: Counters,
    pub paused: bool,
    /// Whether the topic is in [`State::waiting`].
    pub listed: bool,
}

impl Topic {
    pub fn new(name: Arc<str>) -> Self {
        Topic {
            name,
            ..Topic::default()
        }
    }

    /// Indexes a task that entered INPUT; `new` when it was just enqueued. True when the
    /// topic must now be added to [`State::waiting`] (see [`State::mark_waiting`]).
    #[must_use = "a topic with INPUT tasks must be listed as waiting"]
    pub fn push_input(&mut self, record: &TaskRecord, now: Timestamp, new: bool) -> bool {
        self.input += 1;
        let list = !self.listed && !self.paused;
        self.listed |= list;
        if record.run_at > now {
            self.scheduled.insert((record.run_at, record.id));
            if record.attempt > 0 {
                self.retrying.insert((record.run_at, record.id));
            }
        } else if new {
            self.ready
                .push_new(record.priority, record.id, record.run_at);
        } else {
            self.ready
                .push_returned(record.priority, record.id, record.run_at);
        }
        list
    }

    /// Moves scheduled tasks that are due by `now` to `ready`.
    pub fn promote(&mut self, now: Timestamp, tasks: &Records) {
        while let Some(&(run_at, id)) = self.scheduled.first() {
            if run_at > now {
                break;
            }
            self.scheduled.pop_first();
            self.retrying.remove(&(run_at, id));
            if let Some(task) = tasks.get(&id).filter(|t| t.queue == Queue::Input) {
                self.ready.push_returned(task.priority, id, task.run_at);
            }
        }
    }

    /// The earliest due time of the scheduled tasks (an entry of a task since deleted or
    /// moved may answer, which only wakes the topic early).
    pub fn next_scheduled(&self) -> Option<Timestamp> {
        self.scheduled.first().map(|(run_at, _)| *run_at)
    }

    /// The next due task.
    pub fn pop_ready(&mut self, tasks: &Records) -> Option<TaskId> {
        let id = self.ready.pop(tasks)?;
        self.input -= 1;
        Some(id)
    }

    /// Files a task under the queue it just moved to, and frees its unique key if it no
    /// longer holds it (a finished task that does not hold it while kept). True as
    /// [`push_input`](Self::push_input) says.
    #[must_use = "a topic with INPUT tasks must be listed as waiting"]
    pub fn push(&mut self, record: &TaskRecord, now: Timestamp) -> bool {
        match record.queue {
            Queue::Input => return self.push_input(record, now, false),
            Queue::Work => {
                self.work.insert(record.id);
            }
            Queue::Dead => {
                self.dead.insert(record.id);
            }
            // COMPLETED or CANCELLED.
            _ => {
                self.finished.insert(record);
                if !record.holds_unique_key() {
                    self.release_key(record);
                }
            }
        }
        false
    }

    /// Counts a task out of INPUT (cancelled or removed), with its scheduled entry if it
    /// has one: the ready queue keeps its entry, skipped when it surfaces. `record` is as
    /// it was in INPUT, or has kept its `run_at` and `attempt` since.
    pub fn leave_input(&mut self, record: &TaskRecord) {
        self.input -= 1;
        let entry = (record.run_at, record.id);
        if self.scheduled.remove(&entry) {
            self.retrying.remove(&entry);
        }
    }

    /// Takes a task's entry out of the index of its queue, for a record about to be
    /// removed.
    pub fn unindex(&mut self, record: &TaskRecord) {
        match record.queue {
            Queue::Input => self.leave_input(record),
            Queue::Work => {
                self.work.remove(&record.id);
            }
            Queue::Dead => {
                self.dead.remove(&record.id);
            }
            // COMPLETED or CANCELLED.
            _ => self.finished.remove(record),
        }
    }

    /// Frees `record`'s unique key if it is the task holding it: a finished task that
    /// stopped holding its key may have seen another task take it since.
    pub fn release_key(&mut self, record: &TaskRecord) {
        if let Some(key) = &record.unique_key {
            if self.unique.get(key) == Some(&record.id) {
                self.unique.remove(key);
            }
        }
    }

    /// The earliest `run_at` in INPUT: of the due tasks, or the first scheduled one.
    /// Drops the stale entries it meets on the way, as claims do.
    fn earliest_run_at(&mut self, tasks: &Records) -> Option<Timestamp> {
        let due = self.ready.earliest_run_at(tasks);
        while let Some(&(run_at, id)) = self.scheduled.first() {
            if tasks
                .get(&id)
                .is_some_and(|t| t.queue == Queue::Input && t.run_at == run_at)
            {
                return Some(due.map_or(run_at, |d| d.min(run_at)));
            }
            self.scheduled.pop_first();
            self.retrying.remove(&(run_at, id));
        }
        due
    }

    /// The tasks of INPUT not yet due at `now`, first runs and runs again: the entries of
    /// `scheduled` and of `retrying` after `now`, counted (O(entries after `now`), no
    /// record read, no due task visited). The ready queue never holds a task not yet due
    /// at a `now` no earlier than the one that filed it.
    fn not_yet_due(&self, now: Timestamp) -> (u64, u64) {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = (Excluded((now, TaskId::new(u64::MAX))), Unbounded);
        let later = self.scheduled.range(after).count() as u64;
        let retrying = self.retrying.range(after).count() as u64;
        (later.saturating_sub(retrying), retrying)
    }

    pub fn stats(&mut self, now: Timestamp, tasks: &Records) -> TopicStats {
        let mut stats = TopicStats::default();
        stats.earliest_run_at = self.earliest_run_at(tasks);
        (stats.sizes.scheduled, stats.sizes.retrying) = self.not_yet_due(now);
        stats.counters = self.counters;
        stats.sizes.input = self.input;
        stats.sizes.work = self.work.len() as u64;
        stats.sizes.dead = self.dead.len() as u64;
        stats.sizes.completed = self.finished.len(Queue::Completed);
        stats.sizes.cancelled = self.finished.len(Queue::Cancelled);
        stats.paused = self.paused;
        stats
    }
}

impl State {
    /// Adds topic `name` to [`waiting`](Self::waiting), after [`Topic::push_input`] or
    /// [`Topic::push`] said so (they set [`Topic::listed`]).
    pub fn mark_waiting(waiting: &mut FxHashSet<Arc<str>>, list: bool, name: &Arc<str>) {
        if list {
            waiting.insert(name.clone());
        }
    }

    /// Lists the sleeping topics whose time has come.
    pub fn wake_topics(&mut self, now: Timestamp) {
        while let Some(entry) = self.sleeping.first() {
            if entry.0 > now {
                break;
            }
            let (_, name) = self.sleeping.pop_first().expect("an entry was seen");
            if let Some(topic) = self.topics.get_mut(&name) {
                if !topic.listed && !topic.paused && topic.input > 0 {
                    topic.listed = true;
                    self.waiting.insert(name);
                }
            }
        }
    }

    /// The indexes of topic `name` in `topics`, made on first use. (Over the map alone,
    /// so [`waiting`](Self::waiting) can be changed while the topic is held.)
    pub fn topic<'a>(topics: &'a mut FxHashMap<Arc<str>, Topic>, name: &Arc<str>) -> &'a mut Topic {
        topics
            .entry(name.clone())
            .or_insert_with(|| Topic::new(name.clone()))
    }

    /// Removes a task: its record, its queue index entry and the unique key it holds.
    pub fn remove(&mut self, id: TaskId) -> Option<TaskRecord> {
        let record = self.tasks.remove(&id)?;
        if let Some(topic) = self.topics.get_mut(&record.topic) {
            topic.unindex(&record);
            topic.release_key(&record);
        }
        Some(record)
    }
}
