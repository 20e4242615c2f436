//! The operations, one per [`Store`](taskmill_core::Store) call, as changes to the
//! [`State`]. The store runs each under its one lock, which makes every move atomic.

use crate::layout::{State, Topic};
use rustc_hash::FxHashSet;
use std::collections::BinaryHeap;
use std::sync::Arc;
use taskmill_core::raw::{RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired,
    LeaseRef, ListOptions, Outcome, Page, Progress, PruneOptions, Recovered, ScheduleEntry,
    ScheduleState, Tick, TopicClaim, Waiting,
};
use taskmill_core::{Event, Lease, Queue, Stats, Task, TaskId, TaskRecord, Timestamp};

impl State {
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
                events.push(Event::enqueued(&record));
            }
            let topic = State::topic(&mut self.topics, &record.topic);
            if let Some(key) = &record.unique_key {
                topic.unique.insert(key.clone(), id);
            }
            topic.counters.enqueued += 1;
            let list = topic.push_input(&record, opts.now, true);
            State::mark_waiting(&mut self.waiting, list, &record.topic);
            self.tasks.insert(id, record);
            results.push(Enqueued::New(id));
        }
        results
    }

    pub fn claim(&mut self, req: &ClaimOptions) -> Vec<Claimed> {
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        let deadline = req.deadline();
        self.wake_topics(req.now);
        // Only the waiting topics can give a task. When few of the claim's topics wait,
        // sort those into its order; otherwise walk its order, which stops once the claim
        // is full, and step over the rest.
        let (mut sparse, mut dense);
        let wanted_topics: &mut dyn Iterator<Item = &TopicClaim> =
            if self.waiting.len() * 8 < req.topics.len() {
                sparse = req
                    .due_in_order(self.waiting.iter().map(|t| &**t))
                    .into_iter();
                &mut sparse
            } else {
                dense = req.in_order();
                &mut dense
            };
        for wanted in wanted_topics {
            let remaining = req.limit - claimed.len();
            if remaining == 0 {
                break;
            }
            let Some(topic) = self.topics.get_mut(&wanted.topic) else {
                continue;
            };
            if !topic.listed {
                continue;
            }
            if topic.paused {
                Self::unlist(&mut self.waiting, topic);
                continue;
            }
            let allowed = match wanted.max_running {
                Some(max) => (max as usize)
                    .saturating_sub(topic.work.len())
                    .min(remaining),
                None => remaining,
            };
            topic.promote(req.now, &self.tasks);
            let mut taken = 0;
            while taken < allowed {
                let Some(id) = topic.pop_ready(&self.tasks) else {
                    break;
                };
                taken += 1;
                let record = self.tasks.get_mut(&id).expect("indexed tasks exist");
                self.last_token += 1;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token: self.last_token,
                    deadline,
                };
                record.claim(lease, req.now, wanted.max_retries, &mut topic.counters);
                topic.work.insert(id);
                claimed.push(Claimed::Ready(record.clone()));
            }
            if taken < allowed {
                // Nothing due is left: off the list until a task comes, or falls due.
                if let Some(at) = topic.next_scheduled() {
                    self.sleeping.insert((at, topic.name.clone()));
                }
                Self::unlist(&mut self.waiting, topic);
            }
        }
        claimed
    }

    /// Takes `topic` off the waiting list.
    fn unlist(waiting: &mut FxHashSet<Arc<str>>, topic: &mut Topic) {
        if topic.listed {
            topic.listed = false;
            waiting.remove(&topic.name);
        }
    }

    pub fn renew(&mut self, leases: &[LeaseRef], deadline: Timestamp) -> Vec<Applied> {
        leases
            .iter()
            .map(|l| match self.tasks.get_mut(&l.id) {
                Some(record) if record.is_owned_by(l.token) => {
                    if record.is_cancel_requested() {
                        // The deadline stays, so a run that ignores the cancel loses its lease.
                        return Applied::Cancelled;
                    }
                    if let Some(lease) = record.lease.as_mut() {
                        lease.deadline = deadline;
                    }
                    Applied::Done
                }
                _ => Applied::Stale,
            })
            .collect()
    }

    pub fn progress(&mut self, updates: &[Progress]) -> Vec<Applied> {
        updates
            .iter()
            .map(|update| match self.tasks.get_mut(&update.lease.id) {
                Some(record) if record.is_owned_by(update.lease.token) => {
                    record.progress = Some(update.value.clone());
                    if record.is_cancel_requested() {
                        Applied::Cancelled
                    } else {
                        Applied::Done
                    }
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
            let cancelled = record.is_cancel_requested();
            topic.work.remove(&id);
            match record.apply_outcome(outcome, now, &mut topic.counters) {
                None => {
                    // Finished and not kept: dropped where it lies.
                    topic.release_key(record);
                    self.tasks.discard(&id);
                }
                Some(queue) => {
                    let list = topic.push(record, now);
                    State::mark_waiting(&mut self.waiting, list, &topic.name);
                    requeued |= queue == Queue::Input;
                }
            }
            applied.push(if cancelled {
                Applied::Cancelled
            } else {
                Applied::Done
            });
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
                let list = topic.push(record, now);
                State::mark_waiting(&mut self.waiting, list, &topic.name);
                recovered.push(Recovered {
                    id,
                    topic: topic.name.clone(),
                    queue,
                });
            }
            if recovered.len() >= limit {
                break;
            }
        }
        recovered
    }

    pub fn prune(&mut self, opts: &PruneOptions) -> u64 {
        let mut pruned = 0;
        for topic in self.topics.values_mut() {
            if pruned >= opts.limit {
                break;
            }
            let cutoff = opts.cutoff_of(&topic.name);
            while pruned < opts.limit {
                let Some(id) = topic.finished.pop_due(cutoff, &self.tasks) else {
                    break;
                };
                let record = self.tasks.get(&id).expect("indexed tasks exist");
                topic.unindex(record);
                topic.release_key(record);
                self.tasks.discard(&id);
                pruned += 1;
            }
        }
        pruned as u64
    }

    pub fn stats(&mut self, now: Timestamp) -> Stats {
        let tasks = &self.tasks;
        Stats::from_topics(
            self.topics
                .iter_mut()
                .map(|(name, topic)| (name.to_string(), topic.stats(now, tasks)))
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
        // One more than the page, to know whether another follows.
        let limit = query.limit.clamp(1, usize::MAX - 1);
        let matches_topic = |r: &TaskRecord| query.topic.as_ref().is_none_or(|t| *t == r.topic);
        let topics = self
            .topics
            .values()
            .filter(|t| query.topic.as_ref().is_none_or(|q| *q == t.name));
        let ids = match (query.queue, query.waiting) {
            // Not yet due: the entries of `scheduled` after `now` (the index stats count),
            // checked against their record (an entry may outlive its task's stay in
            // INPUT); never a due task.
            (Queue::Input, Some((kind, now))) if kind != Waiting::Pending => {
                use std::ops::Bound::{Excluded, Unbounded};
                let after = (Excluded((now, TaskId::new(u64::MAX))), Unbounded);
                let tasks = &self.tasks;
                smallest(
                    topics.flat_map(|t| {
                        t.scheduled.range(after).filter_map(move |&(run_at, id)| {
                            let r = tasks.get(&id)?;
                            let live = r.queue == Queue::Input && r.run_at == run_at;
                            (live && id >= start && kind.holds(r.run_at, r.attempt, now))
                                .then_some(id)
                        })
                    }),
                    limit + 1,
                )
            }
            // No ordered index of INPUT is kept: it would cost every enqueue and completion
            // to serve listing, which is rare. A page is a scan instead (skipping the tasks
            // not yet due for `Pending`).
            (Queue::Input, waiting) => smallest(
                self.tasks
                    .values()
                    .filter(|r| {
                        r.queue == Queue::Input
                            && r.id >= start
                            && matches_topic(r)
                            && waiting
                                .is_none_or(|(kind, now)| kind.holds(r.run_at, r.attempt, now))
                    })
                    .map(|r| r.id),
                limit + 1,
            ),
            // WORK holds about as many tasks as there are workers.
            (Queue::Work, _) => smallest(
                topics.flat_map(|t| t.work.iter().copied().filter(|id| *id >= start)),
                limit + 1,
            ),
            (Queue::Dead, _) => smallest(
                topics.flat_map(|t| t.dead.range(start..).take(limit + 1).copied()),
                limit + 1,
            ),
            // History is kept in the order pruning needs (finished_at), and an id index
            // beside it would cost every completion: a page is a scan of it instead.
            (queue, _) => smallest(
                topics.flat_map(|t| {
                    let ids = t.finished.ids(queue, &self.tasks);
                    ids.filter(|id| *id >= start)
                }),
                limit + 1,
            ),
        };
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
                let list = topic.push_input(record, now, false);
                State::mark_waiting(&mut self.waiting, list, &topic.name);
                true
            })
            .collect()
    }

    pub fn delete(&mut self, ids: &[TaskId]) -> Vec<bool> {
        ids.iter().map(|id| self.remove(*id).is_some()).collect()
    }

    /// Cancels tasks; the ids of running ones whose cancel was requested go to `running`.
    pub fn cancel(
        &mut self,
        ids: &[TaskId],
        opts: &CancelOptions,
        mut events: Option<&mut Vec<Event>>,
        running: &mut Vec<TaskId>,
    ) -> Vec<Cancellation> {
        ids.iter()
            .map(|id| {
                let Some(record) = self.tasks.get_mut(id) else {
                    return Cancellation::NotFound;
                };
                let topic = self
                    .topics
                    .get_mut(&record.topic)
                    .expect("a stored task's topic exists");
                let cancellation = record.cancel(opts.now, &opts.by, &mut topic.counters);
                match cancellation {
                    Cancellation::Cancelled => {
                        // Out of INPUT: its scheduled entry goes; a ready one is skipped
                        // when it surfaces.
                        topic.leave_input(record);
                        // To CANCELLED: nothing to list.
                        let _ = topic.push(record, opts.now);
                        if let Some(events) = events.as_deref_mut() {
                            events.push(Event::TaskCancelled {
                                id: *id,
                                topic: record.topic.clone(),
                                by: Some(opts.by.clone()),
                                was_running: false,
                            });
                        }
                    }
                    Cancellation::Requested => running.push(*id),
                    _ => {}
                }
                cancellation
            })
            .collect()
    }

    pub fn set_paused(&mut self, name: &str, paused: bool) {
        let name: Arc<str> = Arc::from(name);
        let topic = State::topic(&mut self.topics, &name);
        topic.paused = paused;
        // A paused topic leaves `waiting` when a claim meets it; resumed, it is back.
        if !paused && !topic.listed && topic.input > 0 {
            topic.listed = true;
            self.waiting.insert(name);
        }
    }
}

/// The `n` smallest of `ids`, ascending, keeping no more than `n` at a time.
impl State {
    pub fn register_schedules(
        &mut self,
        entries: &[ScheduleEntry],
        now: Timestamp,
    ) -> Vec<ScheduleState> {
        entries
            .iter()
            .map(|entry| {
                let state = self
                    .schedules
                    .entry(entry.name.clone())
                    .and_modify(|s| s.register(entry, now))
                    .or_insert_with(|| ScheduleState::new(entry, now));
                state.clone()
            })
            .collect()
    }

    /// Fires each tick in turn; the one lock makes each decision and its enqueue one step.
    pub fn fire(
        &mut self,
        ticks: Vec<Tick>,
        opts: &EnqueueOptions,
        mut events: Option<&mut Vec<Event>>,
    ) -> Vec<Fired> {
        let mut fired = Vec::with_capacity(ticks.len());
        for tick in ticks {
            let mut state = self
                .schedules
                .remove(&tick.schedule)
                .unwrap_or_else(|| ScheduleState::unregistered(&tick, opts.now));
            let tasks = &self.tasks;
            let decided = state.decide(&tick, |id| {
                tasks
                    .get(&id)
                    .is_some_and(|r| matches!(r.queue, Queue::Input | Queue::Work))
            });
            let answer = match decided {
                Some(answer) => answer,
                None => {
                    let task = tick.task.clone();
                    let enqueued = self.enqueue(vec![task], opts, events.as_deref_mut())[0];
                    state.fired(&tick, enqueued, opts.now);
                    Fired::Enqueued(enqueued)
                }
            };
            self.schedules.insert(tick.schedule.clone(), state);
            fired.push(answer);
        }
        fired
    }

    pub fn set_schedule_paused(&mut self, name: &str, paused: bool) -> bool {
        match self.schedules.get_mut(name) {
            Some(state) => {
                state.paused = paused;
                true
            }
            None => false,
        }
    }

    pub fn prune_schedules(&mut self, seen_before: Timestamp) -> u64 {
        let before = self.schedules.len();
        self.schedules.retain(|_, s| s.seen_at >= seen_before);
        (before - self.schedules.len()) as u64
    }
}

fn smallest(ids: impl Iterator<Item = TaskId>, n: usize) -> Vec<TaskId> {
    let mut kept: BinaryHeap<TaskId> = BinaryHeap::with_capacity(n.min(1024));
    for id in ids {
        if kept.len() < n {
            kept.push(id);
        } else if kept.peek().is_some_and(|largest| id < *largest) {
            kept.pop();
            kept.push(id);
        }
    }
    kept.into_sorted_vec()
}

#[cfg(test)]
mod tests {
    use super::State;
    use std::time::Duration;
    use taskmill_core::store::{ClaimOptions, Claimed, EnqueueOptions, TopicClaim};
    use taskmill_core::{Task, Timestamp};

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    /// The topics of the tasks `opts` claims, in claim order.
    fn claimed_topics(state: &mut State, opts: &ClaimOptions) -> Vec<String> {
        state
            .claim(opts)
            .into_iter()
            .map(|c| match c {
                Claimed::Ready(r) => r.topic.to_string(),
                Claimed::Corrupt { .. } => panic!("corrupt"),
            })
            .collect()
    }

    fn claim(state: &mut State, topics: &[&str], now: Timestamp) -> Vec<String> {
        let opts = ClaimOptions::new(topics.iter().map(|t| TopicClaim::new(*t)), 100, "m", now);
        claimed_topics(state, &opts)
    }

    fn enqueue(state: &mut State, task: Task, now: Timestamp) {
        state.enqueue(vec![task], &EnqueueOptions::new(now), None);
    }

    /// The index of waiting topics follows every way a topic gains or loses due work:
    /// a topic found empty leaves it, one whose tasks are all later sleeps until then, a
    /// paused one leaves it and comes back on resume, and a new task lists it again.
    #[test]
    fn the_waiting_index_follows_due_work() {
        let mut state = State::default();
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        let topics: Vec<&str> = names.iter().map(String::as_str).collect();
        enqueue(&mut state, Task::new("t03", &1).unwrap(), T0);
        let later = T0 + Duration::from_secs(60);
        enqueue(&mut state, Task::new("t07", &2).unwrap().run_at(later), T0);
        enqueue(&mut state, Task::new("t09", &3).unwrap(), T0);
        state.set_paused("t09", true);

        assert_eq!(claim(&mut state, &topics, T0), ["t03"]);
        // t03 is empty and t07 waits for later: neither is listed; t09 is paused.
        assert!(state.waiting.is_empty(), "{:?}", state.waiting);
        assert_eq!(state.sleeping.len(), 1);
        assert!(claim(&mut state, &topics, T0).is_empty());

        // Due time comes: t07 is listed again and claimed.
        assert_eq!(claim(&mut state, &topics, later), ["t07"]);
        assert!(state.sleeping.is_empty());

        // Resumed, t09 is listed again.
        state.set_paused("t09", false);
        assert!(state.waiting.contains("t09"));
        // A new task lists an empty topic again.
        enqueue(&mut state, Task::new("t03", &4).unwrap(), later);
        let mut got = claim(&mut state, &topics, later);
        got.sort();
        assert_eq!(got, ["t03", "t09"]);
        assert!(state.waiting.is_empty());
    }

    /// When few topics wait, the claim still takes them in its order, from its first.
    #[test]
    fn a_sparse_claim_keeps_the_claim_order() {
        let mut state = State::default();
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        let topics: Vec<&str> = names.iter().map(String::as_str).collect();
        for topic in ["t30", "t05", "t12"] {
            enqueue(&mut state, Task::new(topic, &0).unwrap(), T0);
        }
        let opts =
            ClaimOptions::new(topics.iter().map(|t| TopicClaim::new(*t)), 100, "m", T0).first(10);
        let order = claimed_topics(&mut state, &opts);
        assert_eq!(order, ["t12", "t30", "t05"]);
    }
}
