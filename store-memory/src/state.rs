//! The memory store's data: every task by id, and per-topic indexes of each queue.
//!
//! Shaped for the hot path (claim and complete at millions per second): records live in a
//! dense array found by id (see [`Records`]); due tasks wait in a [`ReadyQueue`], scheduled ones
//! in a heap. Neither can remove from the middle, so a deleted task's entry stays until it
//! surfaces and is skipped then ("lazy deletion"); sizes are counted, not read off them.

use crate::ready::ReadyQueue;
use crate::records::Records;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;
use taskmill_core::raw::{IdSet, RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListOptions, Outcome, Page,
    Recovered,
};
use taskmill_core::{
    Counters, Event, Lease, Queue, Stats, Task, TaskId, TaskRecord, Timestamp, TopicStats,
};

#[derive(Debug, Default)]
pub(crate) struct State {
    last_id: u64,
    last_token: u64,
    tasks: Records,
    topics: FxHashMap<Arc<str>, Topic>,
}

/// One topic's indexes. A live task has exactly one entry, in the index of its queue
/// (INPUT is split by whether the task was due when last looked at).
#[derive(Debug, Default)]
struct Topic {
    name: Arc<str>,
    /// Due INPUT tasks, in claim order.
    ready: ReadyQueue,
    /// INPUT tasks not yet known to be due, by due time.
    scheduled: BinaryHeap<Reverse<(Timestamp, TaskId)>>,
    input: u64,
    work: IdSet,
    dead: BTreeSet<TaskId>,
    /// Unique key → the task holding it (keys are per topic).
    unique: FxHashMap<Box<str>, TaskId>,
    counters: Counters,
    paused: bool,
}

impl Topic {
    fn new(name: Arc<str>) -> Self {
        Topic {
            name,
            ..Topic::default()
        }
    }

    /// Indexes a task that entered INPUT; `new` when it was just enqueued.
    fn push_input(&mut self, record: &TaskRecord, now: Timestamp, new: bool) {
        self.input += 1;
        if record.run_at > now {
            self.scheduled.push(Reverse((record.run_at, record.id)));
        } else if new {
            self.ready.push_new(record.priority, record.id);
        } else {
            self.ready.push_returned(record.priority, record.id);
        }
    }

    /// Moves scheduled tasks that are due by `now` to `ready`.
    fn promote(&mut self, now: Timestamp, tasks: &Records) {
        while let Some(&Reverse((run_at, id))) = self.scheduled.peek() {
            if run_at > now {
                break;
            }
            self.scheduled.pop();
            if let Some(task) = tasks.get(&id).filter(|t| t.queue == Queue::Input) {
                self.ready.push_returned(task.priority, id);
            }
        }
    }

    /// The next due task.
    fn pop_ready(&mut self, tasks: &Records) -> Option<TaskId> {
        let id = self.ready.pop(tasks)?;
        self.input -= 1;
        Some(id)
    }

    /// Files a task under the queue it just moved to.
    fn push(&mut self, queue: Queue, record: &TaskRecord, now: Timestamp) {
        match queue {
            Queue::Input => self.push_input(record, now, false),
            Queue::Work => {
                self.work.insert(record.id);
            }
            Queue::Dead => {
                self.dead.insert(record.id);
            }
        }
    }

    fn stats(&self) -> TopicStats {
        let mut stats = TopicStats::default();
        stats.counters = self.counters;
        stats.sizes.input = self.input;
        stats.sizes.work = self.work.len() as u64;
        stats.sizes.dead = self.dead.len() as u64;
        stats.paused = self.paused;
        stats
    }
}

impl State {
    fn topic(&mut self, name: &Arc<str>) -> &mut Topic {
        self.topics
            .entry(name.clone())
            .or_insert_with(|| Topic::new(name.clone()))
    }

    pub fn enqueue(
        &mut self,
        tasks: Vec<Task>,
        opts: &EnqueueOptions,
        mut events: Option<&mut Vec<Event>>,
    ) -> Vec<Enqueued> {
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Some(key) = task.unique_key_ref() {
                let holder = self
                    .topics
                    .get(task.topic())
                    .and_then(|t| t.unique.get(key));
                if let Some(&existing) = holder {
                    results.push(Enqueued::Duplicate(existing));
                    continue;
                }
            }
            self.last_id += 1;
            let id = TaskId::new(self.last_id);
            let record = task.into_record(id, opts);
            if let Some(events) = events.as_deref_mut() {
                events.push(Event::TaskEnqueue {
                    id,
                    topic: record.topic.clone(),
                    run_at: record.run_at,
                });
            }
            let topic = self.topic(&record.topic);
            if let Some(key) = &record.unique_key {
                topic.unique.insert(key.clone(), id);
            }
            topic.counters.enqueued += 1;
            topic.push_input(&record, opts.now, true);
            self.tasks.insert(id, record);
            results.push(Enqueued::New(id));
        }
        results
    }

    pub fn claim(&mut self, req: &ClaimOptions) -> Vec<Claimed> {
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        let deadline = req.deadline();
        for wanted in &req.topics {
            let remaining = req.limit - claimed.len();
            if remaining == 0 {
                break;
            }
            let Some(topic) = self.topics.get_mut(&wanted.topic) else {
                continue;
            };
            if topic.paused {
                continue;
            }
            let allowed = match wanted.max_running {
                Some(max) => (max as usize)
                    .saturating_sub(topic.work.len())
                    .min(remaining),
                None => remaining,
            };
            topic.promote(req.now, &self.tasks);
            for _ in 0..allowed {
                let Some(id) = topic.pop_ready(&self.tasks) else {
                    break;
                };
                let record = self.tasks.get_mut(&id).expect("indexed tasks exist");
                self.last_token += 1;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token: self.last_token,
                    deadline,
                };
                record.claim(lease, &mut topic.counters);
                topic.work.insert(id);
                claimed.push(Claimed::Ready(record.clone()));
            }
        }
        claimed
    }

    pub fn renew(&mut self, leases: &[LeaseRef], deadline: Timestamp) -> Vec<Applied> {
        leases
            .iter()
            .map(|l| match self.tasks.get_mut(&l.id) {
                Some(record) if record.is_owned_by(l.token) => {
                    if let Some(lease) = record.lease.as_mut() {
                        lease.deadline = deadline;
                    }
                    Applied::Done
                }
                _ => Applied::Stale,
            })
            .collect()
    }

    /// Applies outcomes; returns whether any task went back to INPUT.
    pub fn apply(
        &mut self,
        outcomes: &[Outcome],
        now: Timestamp,
        applied: &mut Vec<Applied>,
    ) -> bool {
        let mut requeued = false;
        for outcome in outcomes {
            let id = outcome.lease.id;
            let Some(record) = self
                .tasks
                .get_mut(&id)
                .filter(|r| r.is_owned_by(outcome.lease.token))
            else {
                applied.push(Applied::Stale);
                continue;
            };
            let topic = self
                .topics
                .get_mut(&record.topic)
                .expect("a stored task's topic exists");
            topic.work.remove(&id);
            match record.apply_outcome(&outcome.kind, now, &mut topic.counters) {
                None => {
                    if let Some(key) = &record.unique_key {
                        topic.unique.remove(key);
                    }
                    self.tasks.discard(&id);
                }
                Some(queue) => {
                    topic.push(queue, record, now);
                    requeued |= queue == Queue::Input;
                }
            }
            applied.push(Applied::Done);
        }
        requeued
    }

    pub fn recover(&mut self, now: Timestamp, limit: usize) -> Vec<Recovered> {
        let mut recovered = Vec::new();
        for topic in self.topics.values_mut() {
            let expired: Vec<TaskId> = topic
                .work
                .iter()
                .copied()
                .filter(|id| self.tasks.get(id).is_some_and(|t| t.is_expired(now)))
                .take(limit - recovered.len())
                .collect();
            for id in expired {
                let record = self.tasks.get_mut(&id).expect("indexed tasks exist");
                topic.work.remove(&id);
                let queue = record.recover(now, &mut topic.counters);
                topic.push(queue, record, now);
                recovered.push(Recovered {
                    id,
                    topic: topic.name.clone(),
                    dead: queue == Queue::Dead,
                });
            }
            if recovered.len() >= limit {
                break;
            }
        }
        recovered
    }

    pub fn stats(&self) -> Stats {
        Stats::from_topics(
            self.topics
                .iter()
                .map(|(name, topic)| (name.to_string(), topic.stats()))
                .collect(),
        )
    }

    pub fn get(&self, id: TaskId) -> Option<TaskRecord> {
        self.tasks.get(&id).cloned()
    }

    pub fn list(&self, query: &ListOptions) -> Page {
        let start = query
            .after
            .map_or(TaskId::new(0), |a| TaskId::new(a.get().saturating_add(1)));
        let limit = query.limit.max(1);
        let matches_topic = |r: &TaskRecord| query.topic.as_ref().is_none_or(|t| *t == r.topic);
        let mut ids: Vec<TaskId> = match query.queue {
            // No ordered index of INPUT is kept: it would cost every enqueue and completion
            // to serve listing, which is rare. A page is a scan and a partial sort instead.
            Queue::Input => self
                .tasks
                .values()
                .filter(|r| r.queue == Queue::Input && r.id >= start && matches_topic(r))
                .map(|r| r.id)
                .collect(),
            queue => self
                .topics
                .values()
                .filter(|t| query.topic.as_ref().is_none_or(|q| *q == t.name))
                .flat_map(|t| -> Box<dyn Iterator<Item = TaskId> + '_> {
                    match queue {
                        // WORK holds about as many tasks as there are workers.
                        Queue::Work => Box::new(t.work.iter().copied().filter(|id| *id >= start)),
                        _ => Box::new(t.dead.range(start..).take(limit + 1).copied()),
                    }
                })
                .collect(),
        };
        if ids.len() > limit + 1 {
            ids.select_nth_unstable(limit);
            ids.truncate(limit + 1);
        }
        ids.sort_unstable();
        let mut tasks: Vec<TaskRecord> = ids
            .iter()
            .filter_map(|id| self.tasks.get(id).cloned())
            .collect();
        let next = if tasks.len() > limit {
            tasks.truncate(limit);
            tasks.last().map(|t| t.id)
        } else {
            None
        };
        Page { tasks, next }
    }

    pub fn requeue(&mut self, ids: &[TaskId], now: Timestamp) -> Vec<bool> {
        ids.iter()
            .map(|id| {
                let Some(record) = self.tasks.get_mut(id).filter(|r| r.queue == Queue::Dead) else {
                    return false;
                };
                let topic = self
                    .topics
                    .get_mut(&record.topic)
                    .expect("a stored task's topic exists");
                topic.dead.remove(id);
                record.requeue(now, &mut topic.counters);
                topic.push_input(record, now, false);
                true
            })
            .collect()
    }

    pub fn delete(&mut self, ids: &[TaskId]) -> Vec<bool> {
        ids.iter()
            .map(|id| {
                let Some(record) = self.remove(*id) else {
                    return false;
                };
                let topic = self
                    .topics
                    .get_mut(&record.topic)
                    .expect("a stored task's topic exists");
                // A heap entry of a deleted INPUT task stays, and is skipped when it surfaces.
                match record.queue {
                    Queue::Input => topic.input -= 1,
                    Queue::Work => {
                        topic.work.remove(id);
                    }
                    Queue::Dead => {
                        topic.dead.remove(id);
                    }
                }
                true
            })
            .collect()
    }

    /// Removes a task's record, id and unique key (not its queue index entry).
    fn remove(&mut self, id: TaskId) -> Option<TaskRecord> {
        let record = self.tasks.remove(&id)?;
        if let Some(key) = &record.unique_key {
            if let Some(topic) = self.topics.get_mut(&record.topic) {
                topic.unique.remove(key);
            }
        }
        Some(record)
    }

    pub fn set_paused(&mut self, name: &str, paused: bool) {
        let name: Arc<str> = Arc::from(name);
        self.topic(&name).paused = paused;
    }
}
