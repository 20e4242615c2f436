//! The writer thread: every change to the database is made here, one request at a time.
//!
//! Why one dedicated thread rather than `spawn_blocking` per call:
//! - Being the only writer, it can keep the indexes in memory (see `index.rs`): nothing
//!   else changes the records behind them, so each change is one batch of chunk writes.
//! - Group commit: the thread takes every request waiting in its channel, writes each as
//!   its own batch, then makes them durable with one `flush` (an fsync) before it answers
//!   any of them. Under load many claims and outcome batches share one fsync, which is
//!   what makes flush-on-every-write affordable.
//! - One hop per batch, never per task, and no blocking-pool thread is parked on a lock.
//!
//! Events and wake-ups are sent after the flush and before the replies, so a watcher sees a
//! task's enqueue before any claim of it returns, and never sees an enqueue that failed.

use crate::codec::{self, Chunk, KeyParts};
use crate::index::{At, Index};
use crate::read;
use crate::{sled_error, FlushPolicy};
use rustc_hash::FxHashMap;
use sled::Batch;
use std::ops::Range;
use std::sync::mpsc;
use std::sync::Arc;
use taskmill_core::raw::{LocalBus, PayloadExt, RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListOptions, Outcome,
    OutcomeKind, Page, Recovered,
};
use taskmill_core::{
    Error, Event, Lease, Payload, Queue, Result, Stats, Task, TaskId, TaskRecord, Timestamp,
};
use tokio::sync::oneshot;

/// At most this many requests share one flush, so a flood of them still gets answers.
const MAX_GROUP: usize = 128;

type Reply<T> = oneshot::Sender<Result<T>>;

/// A change to make, and where to send its result.
pub(crate) enum Request {
    Enqueue(Vec<Task>, EnqueueOptions, Reply<Vec<Enqueued>>),
    Claim(ClaimOptions, Reply<Vec<Claimed>>),
    Renew(Vec<LeaseRef>, Timestamp, Reply<Vec<Applied>>),
    Apply(Vec<Outcome>, Timestamp, Reply<Vec<Applied>>),
    Recover(Timestamp, usize, Reply<Vec<Recovered>>),
    Requeue(Vec<TaskId>, Timestamp, Reply<Vec<bool>>),
    Delete(Vec<TaskId>, Reply<Vec<bool>>),
    SetPaused(String, bool, Reply<()>),
    /// Reads are made here too, between batches, so they never see half of a move.
    Stats(Reply<Stats>),
    Get(TaskId, Reply<Option<TaskRecord>>),
    List(ListOptions, Reply<Page>),
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
    db: sled::Db,
    /// The one tree (see `codec.rs`); every change is one `apply_batch` on it.
    tree: sled::Tree,
    index: Index,
    bus: Arc<LocalBus>,
    policy: FlushPolicy,
    /// The writes of the request being handled, and how many.
    batch: Batch,
    writes: usize,
    buf: Vec<u8>,
    /// The chunks the request being handled read, by first id: each is read once and
    /// written once per request, however many of its tasks the request changes.
    touched: FxHashMap<u64, Touched>,
    /// The new entry (without its length) of each task the request changed, as a range of
    /// `entries`; `None` when it removed the task.
    changed: FxHashMap<TaskId, Option<Range<usize>>>,
    entries: Vec<u8>,
    /// Buffers of chunks an enqueue filled, for the next one.
    spare: Vec<Vec<u8>>,
    /// The counters as last written, to write them only when they moved.
    stored_ids: (u64, u64),
    /// Whether the request being handled committed anything.
    dirty: bool,
    /// Set when a flush or a write failed: the database may hold changes that are not on
    /// disk, and the indexes changes that are not in the database, so every later write
    /// fails fast with this until the store is reopened.
    poisoned: Option<String>,
}

impl Writer {
    pub fn new(
        db: sled::Db,
        tree: sled::Tree,
        index: Index,
        bus: Arc<LocalBus>,
        policy: FlushPolicy,
    ) -> Self {
        Writer {
            db,
            tree,
            stored_ids: (index.last_id, index.last_token),
            index,
            bus,
            policy,
            batch: Batch::default(),
            writes: 0,
            buf: Vec::new(),
            touched: FxHashMap::default(),
            changed: FxHashMap::default(),
            entries: Vec::new(),
            spare: Vec::new(),
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
                self.db.flush().err().map(|e| {
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
        if let Err(e) = self.db.flush() {
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

    /// Runs a change, unless an earlier one failed.
    fn write<V>(&mut self, change: impl FnOnce(&mut Self) -> Result<V>) -> Result<V> {
        if let Some(e) = &self.poisoned {
            return Err(Error::storage(format!(
                "the sled store failed to write earlier ({e}); reopen it"
            )));
        }
        change(self).inspect_err(|e| {
            // A change that fails midway (a read refused by the disk) has moved the
            // indexes of the tasks before it: only a reopen rebuilds them from the disk.
            if self.poisoned.is_none() {
                tracing::error!(error = %e, "sled change failed; the store refuses writes from now on");
                self.poisoned = Some(e.to_string());
            }
            self.batch = Batch::default();
            self.writes = 0;
            self.touched.clear();
            self.changed.clear();
            self.entries.clear();
        })
    }

    fn handle(&mut self, request: Request) -> Deferred {
        self.dirty = false;
        match request {
            Request::Enqueue(tasks, opts, reply) => {
                let result = self.write(|w| w.enqueue(tasks, &opts));
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
                let result = self.write(|w| w.claim(&req));
                // A claim lost in a crash leaves its tasks in INPUT, where they run again:
                // what a flushed claim would give too, after its lease expired. Its
                // batch reaches the disk with the next flush (sled's log is
                // sequential), so an fsync here would buy nothing.
                defer(false, reply, result, || {})
            }
            Request::Renew(leases, deadline, reply) => {
                let result = self.write(|w| w.renew(&leases, deadline));
                // A lost renewal only makes a lease end sooner after a crash, and a crash
                // ends every lease of this process anyway: never worth an fsync.
                defer(false, reply, result, || {})
            }
            Request::Apply(outcomes, now, reply) => {
                let result = self.write(|w| w.apply(&outcomes, now));
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
                let result = self.write(|w| w.recover(now, limit));
                let wake = result.as_ref().is_ok_and(|r| r.iter().any(|r| !r.dead));
                let bus = self.bus.clone();
                defer(false, reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Request::Requeue(ids, now, reply) => {
                let result = self.write(|w| w.requeue(&ids, now));
                let wake = result.as_ref().is_ok_and(|r| r.contains(&true));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if wake {
                        bus.wake()
                    }
                })
            }
            Request::Delete(ids, reply) => {
                let result = self.write(|w| w.delete(&ids));
                defer(self.durable(true), reply, result, || {})
            }
            Request::SetPaused(topic, paused, reply) => {
                let result = self.write(|w| w.set_paused(&topic, paused));
                let bus = self.bus.clone();
                defer(self.durable(true), reply, result, move || {
                    if !paused {
                        bus.wake()
                    }
                })
            }
            Request::Stats(reply) => defer(false, reply, Ok(self.index.stats()), || {}),
            Request::Flush(reply) => {
                self.dirty = true;
                defer(true, reply, Ok(()), || {})
            }
            Request::Get(id, reply) => {
                defer(false, reply, read::get(&self.tree, &self.index, id), || {})
            }
            Request::List(query, reply) => defer(
                false,
                reply,
                read::list(&self.tree, &self.index, &query),
                || {},
            ),
        }
    }

    /// Writes the request's batch, with the stats rows and counters it moved, as one
    /// `apply_batch`: sled's recovery replays it whole or not at all.
    fn commit(&mut self) -> Result<()> {
        self.write_chunks();
        for topic in self.index.topics_mut().iter_mut().filter(|t| t.dirty) {
            topic.dirty = false;
            let row = codec::encode_row(&topic.stats.counters, topic.stats.paused);
            self.batch.insert(codec::row_key(&topic.name), row);
            self.writes += 1;
        }
        let ids = (self.index.last_id, self.index.last_token);
        if ids.0 != self.stored_ids.0 {
            self.batch.insert(codec::LAST_ID, &ids.0.to_be_bytes());
            self.writes += 1;
        }
        if ids.1 != self.stored_ids.1 {
            self.batch.insert(codec::LAST_TOKEN, &ids.1.to_be_bytes());
            self.writes += 1;
        }
        self.stored_ids = ids;
        let batch = std::mem::take(&mut self.batch);
        if std::mem::take(&mut self.writes) == 0 {
            return Ok(());
        }
        self.dirty = true;
        // On failure, `write` poisons the store: the indexes already moved, and sled may
        // hold part of the batch in memory; only a reopen (recovery from the log, where the
        // batch is whole or absent) is consistent again.
        self.tree.apply_batch(batch).map_err(sled_error)
    }

    /// Adds to the batch each chunk the request touched, rewritten with its changes, or its
    /// removal when none of its tasks is left.
    fn write_chunks(&mut self) {
        for (first, t) in self.touched.drain() {
            codec::start_chunk(&mut self.buf);
            let mut kept = 0;
            for (id, range) in &t.chunk.entries {
                let entry = match self.changed.get(id) {
                    Some(Some(new)) => &self.entries[new.clone()],
                    Some(None) => continue,
                    None => &t.value[range.clone()],
                };
                self.buf
                    .extend_from_slice(&(entry.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(entry);
                kept += 1;
            }
            // The unreadable part of a chunk is kept as its placeholder, now readable, for a
            // human to see and delete; the bytes that follow it go.
            if let Some(record) = t.chunk.placeholder(first, t.last, &t.value) {
                if self.index.slot(record.id).is_some() {
                    KeyParts::of(&record).encode_entry(&record, &mut self.buf);
                    kept += 1;
                }
            }
            codec::end_chunk(&mut self.buf, kept);
            let key = codec::chunk_key(first, t.last);
            if kept == 0 {
                self.batch.remove(&key[..]);
            } else {
                self.batch.insert(&key[..], self.buf.as_slice());
            }
            self.index.set_chunk(first, t.last, kept > 0);
            self.writes += 1;
        }
        self.changed.clear();
        self.entries.clear();
    }

    /// Reads the chunk of a task, once per request; its first id. `None`, and the task
    /// forgotten, when the chunk is gone.
    fn touch(&mut self, id: TaskId) -> Result<Option<u64>> {
        let Some((first, last)) = self.index.chunk(id) else {
            if self.index.slot(id).is_some() {
                tracing::warn!(%id, "forgetting an indexed task without a chunk");
                self.index.remove(id);
            }
            return Ok(None);
        };
        if !self.touched.contains_key(&first) {
            let key = codec::chunk_key(first, last);
            let Some(value) = self.tree.get(key).map_err(sled_error)? else {
                tracing::warn!(%id, first, last, "forgetting an indexed task whose chunk is gone");
                self.index.set_chunk(first, last, false);
                self.index.remove(id);
                return Ok(None);
            };
            let chunk = Chunk::parse(first, last, &value);
            self.touched.insert(first, Touched { last, value, chunk });
        }
        Ok(Some(first))
    }

    /// Stores a task's record (in its chunk, which `load` has read).
    fn put(&mut self, record: &TaskRecord) {
        // Encoded into a reused buffer, copied into the chunk at the commit: the hot path
        // is bound by the allocator.
        let start = self.entries.len();
        KeyParts::of(record).encode_entry(record, &mut self.entries);
        // Kept without the length, which the commit writes.
        self.changed
            .insert(record.id, Some(start + 4..self.entries.len()));
    }

    /// Removes a task from its chunk. No decoding: even a corrupt record goes cleanly.
    fn del(&mut self, id: TaskId) -> Result<()> {
        if self.touch(id)?.is_some() {
            self.changed.insert(id, None);
        }
        Ok(())
    }

    /// Counts a transition in a topic's row, which the commit then writes.
    fn counters(&mut self, topic: &str) -> &mut taskmill_core::Counters {
        let id = self.index.topic_id(topic);
        let topic = self.index.topic(id);
        topic.dirty = true;
        &mut topic.stats.counters
    }

    fn enqueue(
        &mut self,
        tasks: Vec<Task>,
        opts: &EnqueueOptions,
    ) -> Result<(Vec<Enqueued>, Vec<Event>)> {
        let mut results = Vec::with_capacity(tasks.len());
        let mut events = Vec::new();
        let with_events = self.bus.has_subscribers();
        // The tasks go into new chunks, one open per topic: one new sled key per chunk.
        let mut open: FxHashMap<u32, Open> = FxHashMap::default();
        for task in tasks {
            if let Some(key) = task.unique_key_ref() {
                if let Some(id) = self.index.unique(task.topic(), key) {
                    results.push(Enqueued::Duplicate(id));
                    continue;
                }
            }
            let id = self
                .index
                .last_id
                .checked_add(1)
                .ok_or_else(|| Error::storage("the task id counter is exhausted"))?;
            self.index.last_id = id;
            let topic = self.index.topic_id(task.topic());
            let full = open.get(&topic).is_some_and(|o| {
                o.count >= codec::MAX_CHUNK_TASKS
                    || o.buf.len() >= codec::MAX_CHUNK_BYTES
                    || id - o.first >= codec::MAX_CHUNK_SPAN
            });
            if full {
                let full = open.remove(&topic).expect("checked");
                self.close_chunk(full);
            }
            let chunk = open.entry(topic).or_insert_with(|| {
                let mut buf = self.spare.pop().unwrap_or_default();
                codec::start_chunk(&mut buf);
                Open {
                    first: id,
                    last: id,
                    count: 0,
                    buf,
                }
            });
            chunk.last = id;
            chunk.count += 1;
            let first = chunk.first;
            let id = TaskId::new(id);
            let record = task.into_record(id, opts);
            self.counters(&record.topic).enqueued += 1;
            let at = At::of(Queue::Input, record.run_at, opts.now, None);
            let unique = record.unique_key.clone();
            self.index
                .insert(id, topic, record.priority, unique, at, first);
            if with_events {
                events.push(Event::TaskEnqueue {
                    id,
                    topic: record.topic.clone(),
                    run_at: record.run_at,
                });
            }
            let chunk = open.get_mut(&topic).expect("opened above");
            KeyParts::of(&record).encode_entry(&record, &mut chunk.buf);
            results.push(Enqueued::New(id));
        }
        for (_, chunk) in open {
            self.close_chunk(chunk);
        }
        self.commit()?;
        Ok((results, events))
    }

    /// Adds a chunk an enqueue filled to the batch.
    fn close_chunk(&mut self, mut chunk: Open) {
        codec::end_chunk(&mut chunk.buf, chunk.count);
        let key = codec::chunk_key(chunk.first, chunk.last);
        self.batch.insert(&key[..], chunk.buf.as_slice());
        self.writes += 1;
        self.index.set_chunk(chunk.first, chunk.last, true);
        // Kept for the next enqueue: the hot path is bound by the allocator.
        if self.spare.len() < 64 {
            self.spare.push(chunk.buf);
        }
    }

    fn claim(&mut self, req: &ClaimOptions) -> Result<Vec<Claimed>> {
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        let deadline = req.deadline();
        for wanted in &req.topics {
            let Some(topic) = self.index.find_topic(&wanted.topic) else {
                continue;
            };
            let stats = self.index.topic(topic).stats;
            if stats.paused {
                continue;
            }
            let remaining = req.limit - claimed.len();
            let allowed = match wanted.max_running {
                Some(max) => (max as u64)
                    .saturating_sub(stats.sizes.work)
                    .min(remaining as u64) as usize,
                None => remaining,
            };
            for _ in 0..allowed {
                let Some(id) = self.index.next_ready(topic, req.now) else {
                    break;
                };
                let Some(found) = self.load(id, req.now)? else {
                    continue;
                };
                self.index.last_token += 1;
                let token = self.index.last_token;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token,
                    deadline,
                };
                self.index.move_to(id, At::Work { token, deadline });
                match found {
                    Ok(mut record) => {
                        record.claim(lease, self.counters(&wanted.topic));
                        self.put(&record);
                        claimed.push(Claimed::Ready(record));
                    }
                    Err((mut salvaged, error)) => {
                        // Stored salvaged, so the outcome the manager sends (DEAD) is
                        // fenced and applied like any other.
                        salvaged.claim(lease, self.counters(&wanted.topic));
                        self.put(&salvaged);
                        tracing::warn!(%id, %error, "claimed a task whose record cannot be decoded");
                        claimed.push(Claimed::Corrupt {
                            lease: LeaseRef::of(&salvaged),
                            error,
                        });
                    }
                }
            }
            if claimed.len() >= req.limit {
                break;
            }
        }
        self.commit()?;
        Ok(claimed)
    }

    /// A task's record as stored (or as this request changed it). A record that cannot be
    /// decoded comes back salvaged, with the error; so does the placeholder of a chunk's
    /// unreadable part. `None`, and the task forgotten, when its record is gone.
    fn load(&mut self, id: TaskId, now: Timestamp) -> Result<Option<Loaded>> {
        let Some(first) = self.touch(id)? else {
            return Ok(None);
        };
        let t = &self.touched[&first];
        let entry = match self.changed.get(&id) {
            Some(Some(new)) => Some(&self.entries[new.clone()]),
            Some(None) => None,
            None => t.chunk.find(id).map(|range| &t.value[range]),
        };
        let slot = self.index.slot(id).expect("touch checked the slot");
        let Some(entry) = entry else {
            let placeholder = t.chunk.placeholder(first, t.last, &t.value);
            if let Some(record) = placeholder.filter(|p| p.id == id) {
                let error = Error::corrupt(format!(
                    "task {id} stands for the unreadable part of a stored chunk"
                ));
                return Ok(Some(Err((record, error))));
            }
            tracing::warn!(%id, "forgetting an indexed task whose record is gone");
            self.index.remove(id);
            return Ok(None);
        };
        let (parts, bytes) = KeyParts::decode(entry).expect("parsed or written here");
        let topic = self.index.topic_of(slot);
        let found = codec::decode_record(&parts, topic, bytes)
            .map_err(|error| (salvage(&parts, bytes, slot.at, now), error));
        Ok(Some(found))
    }

    /// The record of a task in WORK under the claim `token` (salvaged if it cannot be
    /// decoded); `None` when the claim no longer owns it.
    fn owned(&mut self, id: TaskId, token: u64, now: Timestamp) -> Result<Option<TaskRecord>> {
        if !self.index.owns(id, token) {
            return Ok(None);
        }
        let found = self.load(id, now)?;
        Ok(found.map(|found| found.unwrap_or_else(|(salvaged, _)| salvaged)))
    }

    fn renew(&mut self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
        let mut applied = Vec::with_capacity(leases.len());
        for l in leases {
            let Some(mut record) = self.owned(l.id, l.token, deadline)? else {
                applied.push(Applied::Stale);
                continue;
            };
            if let Some(lease) = &mut record.lease {
                lease.deadline = deadline;
            }
            let at = At::Work {
                token: l.token,
                deadline,
            };
            self.index.move_to(l.id, at);
            self.put(&record);
            applied.push(Applied::Done);
        }
        self.commit()?;
        Ok(applied)
    }

    /// Returns one [`Applied`] per outcome, and whether any task went back to INPUT.
    fn apply(&mut self, outcomes: &[Outcome], now: Timestamp) -> Result<(Vec<Applied>, bool)> {
        let mut applied = Vec::with_capacity(outcomes.len());
        let mut requeued = false;
        for outcome in outcomes {
            let (id, token) = (outcome.lease.id, outcome.lease.token);
            if matches!(outcome.kind, OutcomeKind::Complete { .. }) {
                // The hot path decodes no record: the index knows the claim.
                let owned = self.index.slot(id).filter(|_| self.index.owns(id, token));
                match owned.map(|slot| self.index.topic_of(slot).clone()) {
                    Some(topic) => {
                        self.counters(&topic).completed += 1;
                        self.del(id)?;
                        self.index.remove(id);
                        applied.push(Applied::Done);
                    }
                    None => applied.push(Applied::Stale),
                }
                continue;
            }
            let Some(mut record) = self.owned(id, token, now)? else {
                applied.push(Applied::Stale);
                continue;
            };
            let topic = record.topic.clone();
            match record.apply_outcome(&outcome.kind, now, self.counters(&topic)) {
                None => {
                    self.del(id)?;
                    self.index.remove(id);
                }
                Some(queue) => {
                    requeued |= queue == Queue::Input;
                    let at = At::of(queue, record.run_at, now, None);
                    self.index.move_to(id, at);
                    self.put(&record);
                }
            }
            applied.push(Applied::Done);
        }
        self.commit()?;
        Ok((applied, requeued))
    }

    fn recover(&mut self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
        let mut recovered = Vec::new();
        for id in self.index.expired(now, limit) {
            let Some(At::Work { token, .. }) = self.index.slot(id).map(|s| s.at) else {
                continue;
            };
            let Some(mut record) = self.owned(id, token, now)? else {
                continue;
            };
            let topic = record.topic.clone();
            let to = record.recover(now, self.counters(&topic));
            self.index.move_to(id, At::of(to, record.run_at, now, None));
            self.put(&record);
            recovered.push(Recovered {
                id,
                topic,
                dead: to == Queue::Dead,
            });
        }
        self.commit()?;
        Ok(recovered)
    }

    fn requeue(&mut self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
        let mut moved = Vec::with_capacity(ids.len());
        for &id in ids {
            let dead = self.index.slot(id).is_some_and(|s| s.at == At::Dead);
            let found = if dead { self.load(id, now)? } else { None };
            // A placeholder (see `codec::placeholder`) stands for lost tasks whose topics
            // and arguments are unknown: there is nothing to run, only to delete. It reads
            // as an error until its chunk is rewritten, then by its topic.
            let found =
                found.filter(|f| f.as_ref().is_ok_and(|r| &*r.topic != codec::CORRUPT_TOPIC));
            let Some(Ok(mut record)) = found else {
                moved.push(false);
                continue;
            };
            let topic = record.topic.clone();
            record.requeue(now, self.counters(&topic));
            self.index
                .move_to(id, At::of(Queue::Input, record.run_at, now, None));
            self.put(&record);
            moved.push(true);
        }
        self.commit()?;
        Ok(moved)
    }

    fn delete(&mut self, ids: &[TaskId]) -> Result<Vec<bool>> {
        let mut deleted = Vec::with_capacity(ids.len());
        for &id in ids {
            // The index knows all it needs, so even a corrupt record goes cleanly.
            let known = self.index.slot(id).is_some();
            deleted.push(known);
            if known {
                self.del(id)?;
                self.index.remove(id);
            }
        }
        self.commit()?;
        Ok(deleted)
    }

    fn set_paused(&mut self, topic: &str, paused: bool) -> Result<()> {
        let id = self.index.topic_id(topic);
        let topic = self.index.topic(id);
        topic.stats.paused = paused;
        topic.dirty = true;
        self.commit()
    }
}

/// A chunk an enqueue is filling: one topic's tasks, ids `first..=last`.
struct Open {
    first: u64,
    last: u64,
    count: usize,
    buf: Vec<u8>,
}

/// A chunk read by the request being handled.
struct Touched {
    last: u64,
    value: sled::IVec,
    chunk: Chunk,
}

/// A record as loaded: decoded, or salvaged with the reason it could not be.
type Loaded = std::result::Result<TaskRecord, (TaskRecord, Error)>;

fn split<V>(result: Result<(V, bool)>) -> (Result<V>, bool) {
    match result {
        Ok((v, flag)) => (Ok(v), flag),
        Err(e) => (Err(e), false),
    }
}

/// A record rebuilt around stored bytes that cannot be decoded, from what its key and the
/// index know; the bytes are kept as its arguments for a human to inspect.
fn salvage(key: &KeyParts<'_>, bytes: &[u8], at: At, now: Timestamp) -> TaskRecord {
    let lease = match at {
        At::Work { token, deadline } => Some(Lease {
            owner: "(unknown: the record was corrupt)".into(),
            token,
            deadline,
        }),
        _ => None,
    };
    let args = Payload::from_stored(String::from_utf8_lossy(bytes).into_owned());
    let mut record = TaskRecord::new(key.id, key.topic, args);
    record.queue = at.queue();
    record.attempt = u32::from(lease.is_some());
    // Whatever the limit was, it is unknown now: a failure is final.
    record.max_retries = 0;
    record.priority = key.priority;
    record.enqueued_at = now;
    record.run_at = now;
    record.unique_key = key.unique.map(Box::from);
    record.lease = lease;
    record
}
