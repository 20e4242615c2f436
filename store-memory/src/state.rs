//! The memory store's data: every task by id, and per-topic indexes of each queue.

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use taskmill_core::store::{
    Applied, ClaimRequest, Claimed, EnqueueOptions, Enqueued, ListQuery, Outcome, Page, Recovered,
};
use taskmill_core::{
    Counters, Event, Lease, Queue, Stats, Task, TaskId, TaskRecord, Timestamp, TopicStats,
};

#[derive(Debug, Default)]
pub(crate) struct State {
    last_id: u64,
    last_token: u64,
    tasks: BTreeMap<TaskId, TaskRecord>,
    topics: FxHashMap<Arc<str>, Topic>,
    unique: FxHashMap<String, TaskId>,
}

/// One topic's indexes. A task is in exactly one of `ready`, `scheduled`, `work`, `dead`,
/// matching its record's queue (INPUT is split by whether the task was due when last
/// looked at).
#[derive(Debug, Default)]
struct Topic {
    name: Arc<str>,
    /// Due INPUT tasks, in claim order.
    ready: BTreeSet<(i16, TaskId)>,
    /// INPUT tasks not yet known to be due, by due time.
    scheduled: BTreeSet<(Timestamp, TaskId)>,
    work: BTreeSet<TaskId>,
    dead: BTreeSet<TaskId>,
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

    /// Indexes a task that entered INPUT.
    fn push_input(&mut self, record: &TaskRecord, now: Timestamp) {
        if record.run_at <= now {
            self.ready.insert((record.priority, record.id));
        } else {
            self.scheduled.insert((record.run_at, record.id));
        }
    }

    fn remove_input(&mut self, record: &TaskRecord) {
        if !self.ready.remove(&(record.priority, record.id)) {
            self.scheduled.remove(&(record.run_at, record.id));
        }
    }

    fn index_of(&mut self, queue: Queue) -> Option<&mut BTreeSet<TaskId>> {
        match queue {
            Queue::Input => None,
            Queue::Work => Some(&mut self.work),
            Queue::Dead => Some(&mut self.dead),
        }
    }

    /// Moves scheduled tasks that are due by `now` to `ready`.
    fn promote(&mut self, now: Timestamp, tasks: &BTreeMap<TaskId, TaskRecord>) {
        while let Some(&(run_at, id)) = self.scheduled.first() {
            if run_at > now {
                break;
            }
            self.scheduled.pop_first();
            let priority = tasks.get(&id).map_or(0, |t| t.priority);
            self.ready.insert((priority, id));
        }
    }

    fn stats(&self) -> TopicStats {
        TopicStats {
            counters: self.counters,
            sizes: taskmill_core::QueueSizes {
                input: (self.ready.len() + self.scheduled.len()) as u64,
                work: self.work.len() as u64,
                dead: self.dead.len() as u64,
            },
            paused: self.paused,
        }
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
            if let Some(&existing) = task.unique_key_ref().and_then(|k| self.unique.get(k)) {
                results.push(Enqueued::Duplicate(existing));
                continue;
            }
            self.last_id += 1;
            let id = TaskId::new(self.last_id);
            let record = task.into_record(id, opts);
            if let Some(key) = &record.unique_key {
                self.unique.insert(key.clone(), id);
            }
            if let Some(events) = events.as_deref_mut() {
                events.push(Event::TaskEnqueue {
                    id,
                    topic: record.topic.clone(),
                    run_at: record.run_at,
                });
            }
            let topic = self.topic(&record.topic);
            topic.counters.enqueued += 1;
            topic.push_input(&record, opts.now);
            self.tasks.insert(id, record);
            results.push(Enqueued::New(id));
        }
        results
    }

    pub fn claim(&mut self, req: &ClaimRequest) -> Vec<Claimed> {
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
                let Some((_, id)) = topic.ready.pop_first() else {
                    break;
                };
                let record = self.tasks.get_mut(&id).expect("indexed tasks exist");
                self.last_token += 1;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token: self.last_token,
                    deadline,
                };
                record.start(lease, &mut topic.counters);
                topic.work.insert(id);
                claimed.push(Claimed::Ready(record.clone()));
            }
        }
        claimed
    }

    pub fn renew(
        &mut self,
        leases: &[taskmill_core::store::LeaseRef],
        deadline: Timestamp,
    ) -> Vec<Applied> {
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
            match record.finish(&outcome.kind, now, &mut topic.counters) {
                None => {
                    let record = self.tasks.remove(&id).expect("just looked up");
                    if let Some(key) = &record.unique_key {
                        self.unique.remove(key);
                    }
                }
                Some(Queue::Input) => {
                    topic.push_input(record, now);
                    requeued = true;
                }
                Some(queue) => {
                    topic.index_of(queue).expect("not input").insert(id);
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
                let queue = record.expire(now, &mut topic.counters);
                match queue {
                    Queue::Input => topic.push_input(record, now),
                    _ => {
                        topic.dead.insert(id);
                    }
                }
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

    pub fn list(&self, query: &ListQuery) -> Page {
        let start = query
            .after
            .map_or(TaskId::new(0), |a| TaskId::new(a.get().saturating_add(1)));
        let limit = query.limit.max(1);
        let mut tasks: Vec<TaskRecord> = Vec::with_capacity(limit.min(1024));
        let matches_topic = |r: &TaskRecord| query.topic.as_ref().is_none_or(|t| *t == r.topic);
        match query.queue {
            // INPUT is most of the store, so a scan in id order finds a page quickly.
            Queue::Input => tasks.extend(
                self.tasks
                    .range(start..)
                    .map(|(_, r)| r)
                    .filter(|r| r.queue == Queue::Input && matches_topic(r))
                    .take(limit + 1)
                    .cloned(),
            ),
            queue => {
                let mut ids: Vec<TaskId> = self
                    .topics
                    .values()
                    .filter(|t| query.topic.as_ref().is_none_or(|q| *q == t.name))
                    .flat_map(|t| {
                        let index = if queue == Queue::Work {
                            &t.work
                        } else {
                            &t.dead
                        };
                        index.range(start..).take(limit + 1).copied()
                    })
                    .collect();
                ids.sort_unstable();
                ids.truncate(limit + 1);
                tasks.extend(ids.iter().filter_map(|id| self.tasks.get(id).cloned()));
            }
        }
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
                topic.push_input(record, now);
                true
            })
            .collect()
    }

    pub fn delete(&mut self, ids: &[TaskId]) -> Vec<bool> {
        ids.iter()
            .map(|id| {
                let Some(record) = self.tasks.remove(id) else {
                    return false;
                };
                let topic = self
                    .topics
                    .get_mut(&record.topic)
                    .expect("a stored task's topic exists");
                match topic.index_of(record.queue) {
                    Some(index) => {
                        index.remove(id);
                    }
                    None => topic.remove_input(&record),
                }
                if let Some(key) = &record.unique_key {
                    self.unique.remove(key);
                }
                true
            })
            .collect()
    }

    pub fn set_paused(&mut self, name: &str, paused: bool) {
        let name: Arc<str> = Arc::from(name);
        self.topic(&name).paused = paused;
    }
}
