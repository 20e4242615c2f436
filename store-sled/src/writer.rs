//! The writer thread: every change to the database is made here, one request at a time.
//!
//! Why one dedicated thread rather than `spawn_blocking` per call:
//! - sled's transactions cannot scan a range, and a claim must scan (the first ready
//!   tasks of a topic). With a single writer, a scan outside the transaction stays true
//!   until the transaction commits, so the scan-then-transact pattern is race-free and
//!   sled never has to retry a conflicting transaction.
//! - Group commit: the thread takes every request waiting in its channel, commits each as
//!   its own transaction, then makes them durable with one `flush` (an fsync) before it
//!   answers any of them. Under load many claims and outcome batches share one fsync,
//!   which is what makes flush-on-every-write affordable.
//! - One hop per batch, never per task, and no blocking-pool thread is parked on a lock.
//!
//! Events and wake-ups are sent after the flush and before the replies, so a watcher sees a
//! task's enqueue before any claim of it returns, and never sees an enqueue that failed.

use crate::codec::{self, WorkEntry};
use crate::read;
use crate::trees::{Plan, Trees, LAST_ID, LAST_TOKEN, T};
use crate::{sled_error, FlushPolicy};
use std::sync::mpsc;
use std::sync::Arc;
use taskmill_core::store::{
    Applied, ClaimRequest, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListQuery, LocalBus,
    Outcome, Page, Recovered,
};
use taskmill_core::{
    Error, Event, Lease, Payload, Queue, QueueSizes, Result, Stats, Task, TaskId, TaskRecord,
    Timestamp,
};
use tokio::sync::oneshot;

/// At most this many requests share one flush, so a flood of them still gets answers.
const MAX_GROUP: usize = 128;
/// Scheduled tasks promoted to ready per transaction, so a burst of due tasks does not
/// build one huge transaction.
const PROMOTE_CHUNK: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T>>;

/// A change to make, and where to send its result.
pub(crate) enum Request {
    Enqueue(Vec<Task>, EnqueueOptions, Reply<Vec<Enqueued>>),
    Claim(ClaimRequest, Reply<Vec<Claimed>>),
    Renew(Vec<LeaseRef>, Timestamp, Reply<Vec<Applied>>),
    Apply(Vec<Outcome>, Timestamp, Reply<Vec<Applied>>),
    Recover(Timestamp, usize, Reply<Vec<Recovered>>),
    Requeue(Vec<TaskId>, Timestamp, Reply<Vec<bool>>),
    Delete(Vec<TaskId>, Reply<Vec<bool>>),
    SetPaused(String, bool, Reply<()>),
    /// Reads are made here too, between transactions, so they never see half of a move.
    Stats(Reply<Stats>),
    Get(TaskId, Reply<Option<TaskRecord>>),
    List(ListQuery, Reply<Page>),
    /// Flushes everything committed so far, whatever the policy.
    Flush(Reply<()>),
}

/// Finishes a request once its group's flush is done, given the flush's error if any.
type Finish = Box<dyn FnOnce(Option<&Error>) + Send>;

/// What to do once the group's flush is done: send events, wake managers, reply.
struct Deferred {
    durable: bool,
    finish: Finish,
}

fn defer<V: Send + 'static>(
    durable: bool,
    reply: Reply<V>,
    result: Result<V>,
    after: impl FnOnce() + Send + 'static,
) -> Deferred {
    Deferred {
        durable,
        finish: Box::new(move |flush_error| {
            let result = match (result, flush_error) {
                (Ok(_), Some(e)) if durable => Err(Error::storage(format!(
                    "the change was made but could not be flushed to disk: {e}"
                ))),
                (Ok(v), _) => {
                    after();
                    Ok(v)
                }
                (Err(e), _) => Err(e),
            };
            // The caller may have given up (its future was dropped): nothing to do.
            let _ = reply.send(result);
        }),
    }
}

pub(crate) struct Writer {
    trees: Arc<Trees>,
    bus: Arc<LocalBus>,
    policy: FlushPolicy,
    /// Whether the request being handled committed anything.
    dirty: bool,
    /// Set when a flush or a transaction failed: the database may hold changes that are
    /// not on disk, or half a transaction in memory, so every later write fails fast with
    /// this until the store is reopened.
    poisoned: Option<String>,
}

impl Writer {
    pub fn new(trees: Arc<Trees>, bus: Arc<LocalBus>, policy: FlushPolicy) -> Self {
        Writer {
            trees,
            bus,
            policy,
            dirty: false,
            poisoned: None,
        }
    }

    /// Serves requests until every sender is gone, then flushes one last time.
    pub fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Ok(first) = rx.recv() {
            group.push(self.handle(first));
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(next) => group.push(self.handle(next)),
                    Err(_) => break,
                }
            }
            let flush_error = if group.iter().any(|d| d.durable) {
                self.trees.db.flush().err().map(|e| {
                    let e = sled_error(e);
                    tracing::error!(error = %e, "sled flush failed; the store refuses writes from now on");
                    self.poisoned = Some(e.to_string());
                    e
                })
            } else {
                None
            };
            for deferred in group.drain(..) {
                (deferred.finish)(flush_error.as_ref());
            }
        }
        if let Err(e) = self.trees.db.flush() {
            tracing::error!(error = %sled_error(e), "final sled flush failed");
        }
    }

    fn durable(&self, always: bool) -> bool {
        self.dirty
            && match self.policy {
                FlushPolicy::Always => true,
                FlushPolicy::Enqueues => always,
                FlushPolicy::Periodic => false,
            }
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(e) => Err(Error::storage(format!(
                "the sled store failed to write earlier ({e}); reopen it"
            ))),
            None => Ok(()),
        }
    }

    fn handle(&mut self, request: Request) -> Deferred {
        self.dirty = false;
        match request {
            Request::Enqueue(tasks, opts, reply) => {
                let result = self.check().and_then(|()| self.enqueue(tasks, &opts));
                let (result, events) = match result {
                    Ok((r, e)) => (Ok(r), e),
                    Err(e) => (Err(e), Vec::new()),
                };
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !events.is_empty() {
                        bus.publish(events);
                    }
                    bus.wake();
                })
            }
            Request::Claim(req, reply) => {
                let result = self.check().and_then(|()| self.claim(&req));
                // A claim lost in a crash leaves its tasks in INPUT, where they run again:
                // what a flushed claim would give too, after its lease expired. Its
                // transaction reaches the disk with the next flush (sled's log is
                // sequential), so an fsync here would buy nothing.
                defer(false, reply, result, || {})
            }
            Request::Renew(leases, deadline, reply) => {
                let result = self.check().and_then(|()| self.renew(&leases, deadline));
                // A lost renewal only makes a lease end sooner after a crash, and a crash
                // ends every lease of this process anyway: never worth an fsync.
                defer(false, reply, result, || {})
            }
            Request::Apply(outcomes, now, reply) => {
                let result = self.check().and_then(|()| self.apply(&outcomes, now));
                let (result, wake) = split(result);
                let bus = self.bus.clone();
                defer(self.durable(false), reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Request::Recover(now, limit, reply) => {
                // Like a claim: a recovery lost in a crash is made again by the next reaper.
                let result = self.check().and_then(|()| self.recover(now, limit));
                let wake = result.as_ref().is_ok_and(|r| r.iter().any(|r| !r.dead));
                let bus = self.bus.clone();
                defer(false, reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Request::Requeue(ids, now, reply) => {
                let result = self.check().and_then(|()| self.requeue(&ids, now));
                let wake = result.as_ref().is_ok_and(|r| r.contains(&true));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Request::Delete(ids, reply) => {
                let result = self.check().and_then(|()| self.delete(&ids));
                defer(self.durable(true), reply, result, || {})
            }
            Request::SetPaused(topic, paused, reply) => {
                let result = self.check().and_then(|()| self.set_paused(&topic, paused));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !paused {
                        bus.wake()
                    }
                })
            }
            Request::Stats(reply) => defer(false, reply, self.stats(), || {}),
            Request::Flush(reply) => {
                self.dirty = true;
                defer(true, reply, Ok(()), || {})
            }
            Request::Get(id, reply) => defer(false, reply, read::get(&self.trees, id), || {}),
            Request::List(query, reply) => {
                defer(false, reply, read::list(&self.trees, &query), || {})
            }
        }
    }

    fn commit(&mut self, plan: Plan<'_>) -> Result<()> {
        if !plan.is_empty() {
            self.dirty = true;
        }
        plan.commit().inspect_err(|e| {
            // sled applies a transaction's writes in memory one by one and does not undo
            // them when one fails: only a reopen (recovery from the log, where the
            // transaction is whole or absent) is consistent again.
            tracing::error!(error = %e, "sled transaction failed; the store refuses writes from now on");
            self.poisoned = Some(e.to_string());
        })
    }

    fn enqueue(
        &mut self,
        tasks: Vec<Task>,
        opts: &EnqueueOptions,
    ) -> Result<(Vec<Enqueued>, Vec<Event>)> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        let mut results = Vec::with_capacity(tasks.len());
        let mut events = Vec::new();
        let with_events = self.bus.has_subscribers();
        for task in tasks {
            if let Some(key) = task.unique_key_ref() {
                if let Some(existing) =
                    plan.get(T::Unique, &codec::unique_key(task.topic(), key))?
                {
                    let id = TaskId::new(codec::decode_u64(&existing)?);
                    results.push(Enqueued::Duplicate(id));
                    continue;
                }
            }
            let id = TaskId::new(plan.next(LAST_ID)?);
            let record = task.into_record(id, opts);
            if let Some(key) = &record.unique_key {
                plan.put(
                    T::Unique,
                    codec::unique_key(&record.topic, key),
                    codec::id_key(id),
                );
            }
            index_input(&mut plan, &record, opts.now);
            plan.row(&record.topic)?.counters.enqueued += 1;
            plan.row(&record.topic)?.sizes.input += 1;
            if with_events {
                events.push(Event::TaskEnqueue {
                    id,
                    topic: record.topic.clone(),
                    run_at: record.run_at,
                });
            }
            plan.put(T::Tasks, codec::id_key(id), codec::encode_record(&record)?);
            results.push(Enqueued::New(id));
        }
        self.commit(plan)?;
        Ok((results, events))
    }

    /// Moves a topic's scheduled tasks that are due at `now` to `ready`.
    fn promote(&mut self, topic: &str, now: Timestamp) -> Result<()> {
        let trees = self.trees.clone();
        let start = codec::topic_prefix(topic);
        let end = codec::scheduled_due_end(topic, now);
        loop {
            let mut plan = Plan::new(&trees);
            let mut moved = 0;
            for entry in trees
                .tree(T::Scheduled)
                .range(start.as_slice()..end.as_slice())
            {
                let (key, value) = entry.map_err(sled_error)?;
                plan.del(T::Scheduled, key.to_vec());
                if let Some(id) = codec::id_at_end(&key) {
                    let priority = codec::priority_of(&value);
                    plan.put(T::Ready, codec::ready_key(topic, priority, id), []);
                }
                moved += 1;
                if moved == PROMOTE_CHUNK {
                    break;
                }
            }
            self.commit(plan)?;
            if moved < PROMOTE_CHUNK {
                return Ok(());
            }
        }
    }

    fn claim(&mut self, req: &ClaimRequest) -> Result<Vec<Claimed>> {
        let trees = self.trees.clone();
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        let deadline = req.deadline();
        // A topic without a stats row has never held a task.
        let mut topics = Vec::with_capacity(req.topics.len());
        for wanted in &req.topics {
            if trees.row(&wanted.topic)?.is_some_and(|row| !row.paused) {
                self.promote(&wanted.topic, req.now)?;
                topics.push(wanted);
            }
        }
        // One transaction for the whole claim: the scans below read committed state (the
        // promotions are committed), and each topic's keys are its own.
        let mut plan = Plan::new(&trees);
        for wanted in topics {
            if claimed.len() >= req.limit {
                break;
            }
            let remaining = req.limit - claimed.len();
            let allowed = match wanted.max_running {
                Some(max) => (max as u64)
                    .saturating_sub(plan.row(&wanted.topic)?.sizes.work)
                    .min(remaining as u64) as usize,
                None => remaining,
            };
            if allowed == 0 {
                continue;
            }
            let prefix = codec::topic_prefix(&wanted.topic);
            let mut taken = 0;
            for key in trees.tree(T::Ready).scan_prefix(&prefix).keys() {
                if taken == allowed {
                    break;
                }
                let key = key.map_err(sled_error)?;
                // Taken already, by this claim naming the topic twice.
                if plan.is_removed(T::Ready, &key) {
                    continue;
                }
                taken += 1;
                plan.del(T::Ready, key.to_vec());
                let Some(id) = codec::id_at_end(&key) else {
                    continue;
                };
                let Some(bytes) = plan.get(T::Tasks, &codec::id_key(id))? else {
                    tracing::warn!(%id, "dropping a ready entry whose task is gone");
                    continue;
                };
                let token = plan.next(LAST_TOKEN)?;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token,
                    deadline,
                };
                let row = plan.row(&wanted.topic)?;
                row.sizes.input = row.sizes.input.saturating_sub(1);
                row.sizes.work += 1;
                match codec::decode_record(id, &bytes) {
                    Ok(mut record) => {
                        record.start(lease, &mut row.counters);
                        // The record itself stays as it was: the work entry holds the
                        // claim (see `WorkEntry`).
                        let entry = WorkEntry {
                            token,
                            deadline,
                            priority: record.priority,
                            attempt: record.attempt,
                            topic: record.topic.clone(),
                            owner: req.owner.clone(),
                        };
                        plan.put(T::Work, codec::id_key(id), entry.encode());
                        claimed.push(Claimed::Ready(record));
                    }
                    Err(error) => {
                        // The record stays as it is (garbage); the work entry carries the
                        // lease, so the outcome the manager sends is fenced like any other.
                        row.counters.started += 1;
                        let priority = key
                            .get(prefix.len()..prefix.len() + 2)
                            .map_or(0, codec::priority_of);
                        let entry = WorkEntry {
                            token,
                            deadline,
                            priority,
                            attempt: 1,
                            topic: wanted.topic.clone(),
                            owner: req.owner.clone(),
                        };
                        plan.put(T::Work, codec::id_key(id), entry.encode());
                        tracing::warn!(%id, %error, "claimed a task whose record cannot be decoded");
                        claimed.push(Claimed::Corrupt {
                            lease: LeaseRef {
                                id,
                                topic: wanted.topic.clone(),
                                token,
                            },
                            error,
                        });
                    }
                }
            }
        }
        self.commit(plan)?;
        Ok(claimed)
    }

    fn renew(&mut self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        let mut applied = Vec::with_capacity(leases.len());
        for l in leases {
            // The lease lives in the work entry alone (see `WorkEntry`).
            match plan.work(l.id)?.filter(|w| w.token == l.token) {
                Some(mut entry) => {
                    entry.deadline = deadline;
                    plan.put(T::Work, codec::id_key(l.id), entry.encode());
                    applied.push(Applied::Done);
                }
                None => applied.push(Applied::Stale),
            }
        }
        self.commit(plan)?;
        Ok(applied)
    }

    /// Returns one [`Applied`] per outcome, and whether any task went back to INPUT.
    fn apply(&mut self, outcomes: &[Outcome], now: Timestamp) -> Result<(Vec<Applied>, bool)> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        let mut applied = Vec::with_capacity(outcomes.len());
        let mut requeued = false;
        for outcome in outcomes {
            let (id, token) = (outcome.lease.id, outcome.lease.token);
            let key = codec::id_key(id);
            let Some(entry) = plan.work(id)?.filter(|w| w.token == token) else {
                applied.push(Applied::Stale);
                continue;
            };
            let Some(mut record) = owned_record(&mut plan, id, &entry, now)? else {
                applied.push(Applied::Stale);
                continue;
            };
            plan.del(T::Work, key);
            let row = plan.row(&entry.topic)?;
            let to = record.finish(&outcome.kind, now, &mut row.counters);
            move_size(&mut row.sizes, Some(Queue::Work), to);
            match to {
                None => {
                    plan.del(T::Tasks, key);
                    free_unique(&mut plan, &record)?;
                }
                Some(Queue::Dead) => {
                    plan.put(T::Dead, codec::dead_key(&record.topic, id), []);
                    plan.put(T::Tasks, key, codec::encode_record(&record)?);
                }
                Some(_) => {
                    index_input(&mut plan, &record, now);
                    plan.put(T::Tasks, key, codec::encode_record(&record)?);
                    requeued = true;
                }
            }
            applied.push(Applied::Done);
        }
        self.commit(plan)?;
        Ok((applied, requeued))
    }

    fn recover(&mut self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
        let trees = self.trees.clone();
        let mut expired = Vec::new();
        // WORK holds at most the running tasks of this process, so a scan is cheap.
        for entry in trees.tree(T::Work).iter() {
            if expired.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(sled_error)?;
            let (Some(id), Ok(work)) = (codec::id_of(&key), WorkEntry::decode(&value)) else {
                tracing::warn!(key = ?key, "skipping an undecodable work entry");
                continue;
            };
            if work.deadline < now {
                expired.push((id, work));
            }
        }
        let mut plan = Plan::new(&trees);
        let mut recovered = Vec::with_capacity(expired.len());
        for (id, entry) in expired {
            let owned = owned_record(&mut plan, id, &entry, now)?;
            let Some(mut record) = owned.filter(|r| r.is_expired(now)) else {
                continue;
            };
            let key = codec::id_key(id);
            plan.del(T::Work, key);
            let row = plan.row(&entry.topic)?;
            let to = record.expire(now, &mut row.counters);
            move_size(&mut row.sizes, Some(Queue::Work), Some(to));
            if to == Queue::Dead {
                plan.put(T::Dead, codec::dead_key(&record.topic, id), []);
            } else {
                index_input(&mut plan, &record, now);
            }
            plan.put(T::Tasks, key, codec::encode_record(&record)?);
            recovered.push(Recovered {
                id,
                topic: record.topic.clone(),
                dead: to == Queue::Dead,
            });
        }
        self.commit(plan)?;
        Ok(recovered)
    }

    fn requeue(&mut self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        let mut moved = Vec::with_capacity(ids.len());
        for &id in ids {
            let key = codec::id_key(id);
            let record = match plan.get(T::Tasks, &key)? {
                Some(bytes) => codec::decode_record(id, &bytes).ok(),
                None => None,
            };
            let Some(mut record) = record.filter(|r| r.queue == Queue::Dead) else {
                moved.push(false);
                continue;
            };
            plan.del(T::Dead, codec::dead_key(&record.topic, id));
            let row = plan.row(&record.topic)?;
            record.requeue(now, &mut row.counters);
            move_size(&mut row.sizes, Some(Queue::Dead), Some(Queue::Input));
            index_input(&mut plan, &record, now);
            plan.put(T::Tasks, key, codec::encode_record(&record)?);
            moved.push(true);
        }
        self.commit(plan)?;
        Ok(moved)
    }

    fn delete(&mut self, ids: &[TaskId]) -> Result<Vec<bool>> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        let mut deleted = Vec::with_capacity(ids.len());
        for &id in ids {
            let key = codec::id_key(id);
            let Some(bytes) = plan.get(T::Tasks, &key)? else {
                deleted.push(false);
                continue;
            };
            plan.del(T::Tasks, key);
            if let Some(entry) = plan.work(id)? {
                // In WORK: the stored record still says INPUT (see `WorkEntry`).
                plan.del(T::Work, key);
                move_size(&mut plan.row(&entry.topic)?.sizes, Some(Queue::Work), None);
                if let Ok(record) = codec::decode_record(id, &bytes) {
                    free_unique(&mut plan, &record)?;
                } else if let Some(entry) = unique_entry_of(&plan, id)? {
                    plan.del(T::Unique, entry);
                }
                deleted.push(true);
                continue;
            }
            match codec::decode_record(id, &bytes) {
                Ok(record) => {
                    match record.queue {
                        Queue::Input => {
                            // One of the two exists; removing a missing key is a no-op.
                            plan.del(
                                T::Ready,
                                codec::ready_key(&record.topic, record.priority, id),
                            );
                            plan.del(
                                T::Scheduled,
                                codec::scheduled_key(&record.topic, record.run_at, id),
                            );
                        }
                        Queue::Work => plan.del(T::Work, key),
                        Queue::Dead => plan.del(T::Dead, codec::dead_key(&record.topic, id)),
                    }
                    move_size(
                        &mut plan.row(&record.topic)?.sizes,
                        Some(record.queue),
                        None,
                    );
                    free_unique(&mut plan, &record)?;
                }
                Err(_) => delete_corrupt(&mut plan, id)?,
            }
            deleted.push(true);
        }
        self.commit(plan)?;
        Ok(deleted)
    }

    fn set_paused(&mut self, topic: &str, paused: bool) -> Result<()> {
        let trees = self.trees.clone();
        let mut plan = Plan::new(&trees);
        plan.row(topic)?.paused = paused;
        self.commit(plan)
    }

    fn stats(&self) -> Result<Stats> {
        let mut topics = std::collections::BTreeMap::new();
        for entry in self.trees.tree(T::Stats).iter() {
            let (key, value) = entry.map_err(sled_error)?;
            let topic = String::from_utf8_lossy(&key).into_owned();
            topics.insert(topic, codec::decode_row(&value)?);
        }
        Ok(Stats::from_topics(topics))
    }
}

fn split<V>(result: Result<(V, bool)>) -> (Result<V>, bool) {
    match result {
        Ok((v, flag)) => (Ok(v), flag),
        Err(e) => (Err(e), false),
    }
}

/// Indexes a task that is entering INPUT: `ready` when due at `now`, else `scheduled`.
fn index_input(plan: &mut Plan<'_>, record: &TaskRecord, now: Timestamp) {
    if record.run_at <= now {
        plan.put(
            T::Ready,
            codec::ready_key(&record.topic, record.priority, record.id),
            [],
        );
    } else {
        plan.put(
            T::Scheduled,
            codec::scheduled_key(&record.topic, record.run_at, record.id),
            codec::priority_value(record.priority),
        );
    }
}

fn size_of(sizes: &mut QueueSizes, queue: Queue) -> &mut u64 {
    match queue {
        Queue::Input => &mut sizes.input,
        Queue::Work => &mut sizes.work,
        Queue::Dead => &mut sizes.dead,
    }
}

fn move_size(sizes: &mut QueueSizes, from: Option<Queue>, to: Option<Queue>) {
    if let Some(q) = from {
        let n = size_of(sizes, q);
        *n = n.saturating_sub(1);
    }
    if let Some(q) = to {
        *size_of(sizes, q) += 1;
    }
}

/// Frees a task's unique key, if it still names this task.
fn free_unique(plan: &mut Plan<'_>, record: &TaskRecord) -> Result<()> {
    if let Some(key) = &record.unique_key {
        let entry = codec::unique_key(&record.topic, key);
        let holder = plan.get(T::Unique, &entry)?;
        if holder.is_some_and(|v| v.as_ref() == codec::id_key(record.id)) {
            plan.del(T::Unique, entry);
        }
    }
    Ok(())
}

/// The record of a task in WORK under `entry`, ready for a lifecycle transition; `None`
/// when the record is gone or its lease disagrees with the work entry (stale).
///
/// A record that cannot be decoded is salvaged: rebuilt from what the work entry and the
/// `unique` tree know, with the undecodable bytes kept as its arguments (as a JSON string
/// when they are not JSON), so the transition, the counters and the DEAD entry a human
/// inspects are the same as for any task.
fn owned_record(
    plan: &mut Plan<'_>,
    id: TaskId,
    entry: &WorkEntry,
    now: Timestamp,
) -> Result<Option<TaskRecord>> {
    let key = codec::id_key(id);
    let Some(bytes) = plan.get(T::Tasks, &key)? else {
        tracing::warn!(%id, "dropping a work entry whose task is gone");
        plan.del(T::Work, key);
        return Ok(None);
    };
    match codec::decode_record(id, &bytes) {
        Ok(record) => {
            let record = entry.apply_to(record);
            Ok(record.is_owned_by(entry.token).then_some(record))
        }
        Err(_) => Ok(Some(salvage(plan, id, &bytes, entry, now)?)),
    }
}

fn salvage(
    plan: &Plan<'_>,
    id: TaskId,
    bytes: &[u8],
    entry: &WorkEntry,
    now: Timestamp,
) -> Result<TaskRecord> {
    Ok(TaskRecord {
        id,
        queue: Queue::Work,
        topic: entry.topic.clone(),
        external_id: None,
        args: Payload::from_stored(String::from_utf8_lossy(bytes).into_owned()),
        attempt: entry.attempt,
        // Whatever the limit was, it is unknown now: a failure is final.
        max_retries: 0,
        priority: entry.priority,
        enqueued_at: now,
        run_at: now,
        unique_key: unique_entry_of(plan, id)?
            .map(|entry| codec::unique_key_name(&entry).into_boxed_str()),
        last_error: None,
        failed_at: None,
        lease: Some(Lease {
            owner: entry.owner.clone(),
            token: entry.token,
            deadline: entry.deadline,
        }),
    })
}

/// The `unique` entry naming `id`, found by a scan: only for corrupt records, whose own
/// copy of the key is lost.
fn unique_entry_of(plan: &Plan<'_>, id: TaskId) -> Result<Option<Vec<u8>>> {
    let wanted = codec::id_key(id);
    for entry in plan.trees().tree(T::Unique).iter() {
        let (key, value) = entry.map_err(sled_error)?;
        if value.as_ref() == wanted {
            return Ok(Some(key.to_vec()));
        }
    }
    Ok(None)
}

/// Deletes a task not in WORK whose record cannot be decoded: its index entries are found
/// by scanning for its id, since the record no longer says where it is.
fn delete_corrupt(plan: &mut Plan<'_>, id: TaskId) -> Result<()> {
    let trees = plan.trees();
    {
        for (tree, queue) in [
            (T::Ready, Queue::Input),
            (T::Scheduled, Queue::Input),
            (T::Dead, Queue::Dead),
        ] {
            let mut found = None;
            for k in trees.tree(tree).iter().keys() {
                let k = k.map_err(sled_error)?;
                if codec::id_at_end(&k) == Some(id) {
                    found = Some(k);
                    break;
                }
            }
            if let Some(k) = found {
                if let Some(topic) = codec::topic_of(&k) {
                    move_size(&mut plan.row(topic)?.sizes, Some(queue), None);
                }
                plan.del(tree, k.to_vec());
                break;
            }
        }
    }
    if let Some(entry) = unique_entry_of(plan, id)? {
        plan.del(T::Unique, entry);
    }
    Ok(())
}
