//! The operations, one per [`Store`](taskmill_core::Store) call, on the tree and the
//! in-memory indexes, run by the writer thread (see `conn.rs`).
//!
//! Each change is one `apply_batch` on the tree: every chunk the command touches is read
//! once, changed in memory, and written once, with the stats rows and counters it moved.
//! Reads (a task by id, a page of a queue) run on the same thread, between commands, so
//! they see each task in exactly one queue.

use crate::codec::{self, Chunk, KeyParts};
use crate::error::backend_error;
use crate::index::{At, Index};
use crate::layout;
use rustc_hash::FxHashMap;
use sled::Batch;
use std::collections::BTreeSet;
use std::ops::Range;
use taskmill_core::raw::{PayloadExt, RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired,
    LeaseRef, ListOptions, Outcome, OutcomeKind, Page, Progress, PruneOptions, Recovered,
    ScheduleEntry, ScheduleState, Tick, Waiting,
};
use taskmill_core::{
    Error, Event, Lease, Payload, Queue, Result, Stats, Task, TaskId, TaskRecord, Timestamp,
};

/// The state the operations work on: the tree, the indexes, and the scratch space of the
/// command being run. Owned by the writer thread (see `conn.rs`).
pub(crate) struct Writer {
    /// The one tree (see `layout.rs`); every change is one `apply_batch` on it.
    tree: sled::Tree,
    index: Index,
    /// The writes of the command being run, and how many.
    batch: Batch,
    writes: usize,
    buf: Vec<u8>,
    /// The chunks the command being run read, by first id: each is read once and
    /// written once per command, however many of its tasks the command changes.
    touched: FxHashMap<u64, Touched>,
    /// The new entry (without its length) of each task the command changed, as a range of
    /// `entries`; `None` when it removed the task.
    changed: FxHashMap<TaskId, Option<Range<usize>>>,
    entries: Vec<u8>,
    /// Buffers of chunks an enqueue filled, for the next one.
    spare: Vec<Vec<u8>>,
    /// The counters as last written, to write them only when they moved.
    stored_ids: (u64, u64),
    /// Whether the command being run committed anything.
    pub dirty: bool,
}

impl Writer {
    pub fn new(tree: sled::Tree, index: Index) -> Self {
        Writer {
            tree,
            stored_ids: (index.last_id, index.last_token),
            index,
            batch: Batch::default(),
            writes: 0,
            buf: Vec::new(),
            touched: FxHashMap::default(),
            changed: FxHashMap::default(),
            entries: Vec::new(),
            spare: Vec::new(),
            dirty: false,
        }
    }

    /// Drops what a failed command left in the scratch space.
    pub fn reset(&mut self) {
        self.batch = Batch::default();
        self.writes = 0;
        self.touched.clear();
        self.changed.clear();
        self.entries.clear();
    }

    /// [`Store::stats`](taskmill_core::Store::stats), from the indexes.
    pub fn stats(&self, now: Timestamp) -> Stats {
        self.index.stats(now)
    }

    /// [`Store::get`](taskmill_core::Store::get).
    pub fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        get(&self.tree, &self.index, id)
    }

    /// [`Store::list`](taskmill_core::Store::list).
    pub fn list(&self, query: &ListOptions) -> Result<Page> {
        list(&self.tree, &self.index, query)
    }

    /// `apply_batch`: sled's recovery replays it whole or not at all.
    fn commit(&mut self) -> Result<()> {
        self.write_chunks();
        for topic in self.index.topics_mut().iter_mut().filter(|t| t.dirty) {
            topic.dirty = false;
            let row = codec::encode_row(&topic.stats.counters, topic.stats.paused);
            self.batch.insert(layout::row_key(&topic.name), row);
            self.writes += 1;
        }
        let ids = (self.index.last_id, self.index.last_token);
        if ids.0 != self.stored_ids.0 {
            self.batch.insert(layout::LAST_ID, &ids.0.to_be_bytes());
            self.writes += 1;
        }
        if ids.1 != self.stored_ids.1 {
            self.batch.insert(layout::LAST_TOKEN, &ids.1.to_be_bytes());
            self.writes += 1;
        }
        self.stored_ids = ids;
        let batch = std::mem::take(&mut self.batch);
        if std::mem::take(&mut self.writes) == 0 {
            return Ok(());
        }
        self.dirty = true;
        // On failure, the writer thread poisons the store (see `conn.rs`): the indexes
        // already moved, and sled may
        // hold part of the batch in memory; only a reopen (recovery from the log, where the
        // batch is whole or absent) is consistent again.
        self.tree
            .apply_batch(batch)
            .map_err(|e| backend_error(e, "cannot write to the sled database"))
    }

    /// Adds to the batch each chunk the command touched, rewritten with its changes, or its
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
            let key = layout::chunk_key(first, t.last);
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

    /// Reads the chunk of a task, once per command; its first id. `None`, and the task
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
            let key = layout::chunk_key(first, last);
            let Some(value) = self
                .tree
                .get(key)
                .map_err(|e| backend_error(e, "cannot read a chunk"))?
            else {
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

    /// Counts a transition in the row of topic number `topic`, which the commit then
    /// writes. By number: hashing the name once per task was a tenth of processing.
    fn counters(&mut self, topic: u32) -> &mut taskmill_core::Counters {
        let topic = self.index.topic(topic);
        topic.dirty = true;
        &mut topic.stats.counters
    }

    /// [`counters`](Self::counters) of the topic of task `id`, which the index holds.
    fn counters_of(&mut self, id: TaskId) -> &mut taskmill_core::Counters {
        let topic = self.index.slot(id).expect("an indexed task").topic;
        self.counters(topic)
    }

    /// [`Store::enqueue`](taskmill_core::Store::enqueue), with the enqueue events when
    /// `with_events`.
    pub fn enqueue(
        &mut self,
        tasks: Vec<Task>,
        opts: &EnqueueOptions,
        with_events: bool,
    ) -> Result<(Vec<Enqueued>, Vec<Event>)> {
        let mut results = Vec::with_capacity(tasks.len());
        let mut events = with_events.then(Vec::new);
        // The tasks go into new chunks, one open per topic: one new sled key per chunk.
        let mut open = Opened::default();
        for task in tasks {
            results.push(self.add(task, opts, &mut open, events.as_mut())?);
        }
        self.close_chunks(open);
        self.commit()?;
        Ok((results, events.unwrap_or_default()))
    }

    /// Adds one task to INPUT, as [`enqueue`](Self::enqueue) does, into `open`, the chunks
    /// this command is filling (which [`close_chunks`](Self::close_chunks) then adds to the
    /// batch), pushing its enqueue event to `events` if given. What an enqueue and a fire
    /// share: the unique key check, a fresh id, the counters and the indexes.
    fn add(
        &mut self,
        task: Task,
        opts: &EnqueueOptions,
        open: &mut Opened,
        events: Option<&mut Vec<Event>>,
    ) -> Result<Enqueued> {
        if let Some(key) = task.unique_key_ref() {
            if let Some(id) = self.index.unique(task.topic(), key) {
                return Ok(Enqueued::Duplicate(id));
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
            o.count >= layout::MAX_CHUNK_TASKS
                || o.buf.len() >= layout::MAX_CHUNK_BYTES
                || id - o.first >= layout::MAX_CHUNK_SPAN
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
        self.counters(topic).enqueued += 1;
        let at = At::of_record(&record, opts.now);
        let unique = record.unique_key.clone();
        self.index
            .insert(id, topic, record.priority, unique, at, first);
        if let Some(events) = events {
            events.push(Event::enqueued(&record));
        }
        let chunk = open.get_mut(&topic).expect("opened above");
        KeyParts::of(&record).encode_entry(&record, &mut chunk.buf);
        Ok(Enqueued::New(id))
    }

    /// Adds the chunks a command filled to the batch.
    fn close_chunks(&mut self, open: Opened) {
        for (_, chunk) in open {
            self.close_chunk(chunk);
        }
    }

    /// Adds a chunk an enqueue filled to the batch.
    fn close_chunk(&mut self, mut chunk: Open) {
        codec::end_chunk(&mut chunk.buf, chunk.count);
        let key = layout::chunk_key(chunk.first, chunk.last);
        self.batch.insert(&key[..], chunk.buf.as_slice());
        self.writes += 1;
        self.index.set_chunk(chunk.first, chunk.last, true);
        // Kept for the next enqueue: the hot path is bound by the allocator.
        if self.spare.len() < 64 {
            self.spare.push(chunk.buf);
        }
    }

    /// [`Store::claim`](taskmill_core::Store::claim).
    pub fn claim(&mut self, req: &ClaimOptions) -> Result<Vec<Claimed>> {
        let mut claimed = Vec::with_capacity(req.limit.min(1024));
        let deadline = req.deadline();
        for wanted in req.in_order() {
            let remaining = req.limit - claimed.len();
            if remaining == 0 {
                break;
            }
            let Some(topic) = self.index.find_topic(&wanted.topic) else {
                continue;
            };
            let stats = self.index.topic(topic).stats;
            // Nothing in INPUT: nothing to take, so an idle topic costs this lookup.
            if stats.paused || stats.sizes.input == 0 {
                continue;
            }
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
                let at = At::Work {
                    token,
                    deadline,
                    cancel: false,
                };
                self.index.move_to(id, at);
                let retries = wanted.max_retries;
                match found {
                    Ok(mut record) => {
                        record.claim(lease, req.now, retries, self.counters(topic));
                        self.put(&record);
                        claimed.push(Claimed::Ready(record));
                    }
                    Err((mut salvaged, error)) => {
                        // Stored salvaged, so the outcome the manager sends (DEAD) is
                        // fenced and applied like any other.
                        salvaged.claim(lease, req.now, retries, self.counters(topic));
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

    /// A task's record as stored (or as this command changed it). A record that cannot be
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

    /// [`Store::renew`](taskmill_core::Store::renew).
    pub fn renew(&mut self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
        let mut applied = Vec::with_capacity(leases.len());
        for l in leases {
            if !self.index.owns(l.id, l.token) {
                applied.push(Applied::Stale);
                continue;
            }
            // Not extended: the lease runs out, and the reaper ends the task CANCELLED if
            // the run does not end first.
            if self.index.cancel_requested(l.id) {
                applied.push(Applied::Cancelled);
                continue;
            }
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
                cancel: false,
            };
            self.index.move_to(l.id, at);
            self.put(&record);
            applied.push(Applied::Done);
        }
        self.commit()?;
        Ok(applied)
    }

    /// [`Store::progress`](taskmill_core::Store::progress).
    pub fn progress(&mut self, updates: &[Progress]) -> Result<Vec<Applied>> {
        let mut applied = Vec::with_capacity(updates.len());
        for update in updates {
            let (id, token) = (update.lease.id, update.lease.token);
            // The time only matters to a salvaged record, which has no due time to keep.
            let Some(mut record) = self.owned(id, token, Timestamp::EPOCH)? else {
                applied.push(Applied::Stale);
                continue;
            };
            record.progress = Some(update.value.clone());
            self.put(&record);
            applied.push(match record.is_cancel_requested() {
                true => Applied::Cancelled,
                false => Applied::Done,
            });
        }
        self.commit()?;
        Ok(applied)
    }

    /// [`Store::apply`](taskmill_core::Store::apply): one [`Applied`] per outcome, and
    /// whether any task went back to INPUT.
    pub fn apply(&mut self, outcomes: &[Outcome], now: Timestamp) -> Result<(Vec<Applied>, bool)> {
        let mut applied = Vec::with_capacity(outcomes.len());
        let mut requeued = false;
        for outcome in outcomes {
            let (id, token) = (outcome.lease.id, outcome.lease.token);
            let Some((slot, cancel)) = self.index.slot(id).and_then(|slot| match slot.at {
                At::Work {
                    token: t, cancel, ..
                } if t == token => Some((slot, cancel)),
                _ => None,
            }) else {
                applied.push(Applied::Stale);
                continue;
            };
            if !outcome.keep && (cancel || matches!(outcome.kind, OutcomeKind::Complete { .. })) {
                // The hot path decodes no record: the task finishes and is not kept, and
                // the index knows its claim, its cancel request and its unique key.
                let counters = self.counters(slot.topic);
                if cancel {
                    counters.cancelled += 1;
                } else {
                    counters.completed += 1;
                }
                self.del(id)?;
                self.index.remove(id);
                applied.push(if cancel {
                    Applied::Cancelled
                } else {
                    Applied::Done
                });
                continue;
            }
            if let OutcomeKind::Complete { result, .. } = &outcome.kind {
                // The hot path of kept history: the record's bytes rewritten, not decoded.
                let topic = slot.topic;
                if !cancel && outcome.progress.is_none() {
                    let result = result.as_ref().map(Payload::as_str);
                    if self.complete_kept(id, topic, result, now)? {
                        applied.push(Applied::Done);
                        continue;
                    }
                }
            }
            let Some(mut record) = self.owned(id, token, now)? else {
                applied.push(Applied::Stale);
                continue;
            };
            match record.apply_outcome(outcome, now, self.counters_of(id)) {
                None => {
                    self.del(id)?;
                    self.index.remove(id);
                }
                Some(queue) => {
                    requeued |= queue == Queue::Input;
                    self.moved(&record, now);
                }
            }
            applied.push(match record.is_cancel_requested() {
                true => Applied::Cancelled,
                false => Applied::Done,
            });
        }
        self.commit()?;
        Ok((applied, requeued))
    }

    /// Completes the task `id` of topic number `topic`, kept, with `result`, on its stored
    /// bytes (see [`codec::complete_in_place`]): what decoding it, applying the outcome and
    /// storing it does, without the decoding. `false`, and nothing done, for a record that
    /// takes the decoding way: one this command changed already, a placeholder, or one
    /// `complete_in_place` does not handle.
    fn complete_kept(
        &mut self,
        id: TaskId,
        topic: u32,
        result: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        if self.changed.contains_key(&id) {
            return Ok(false);
        }
        let Some(first) = self.touch(id)? else {
            return Ok(false);
        };
        let t = &self.touched[&first];
        let Some(entry) = t.chunk.find(id).map(|range| &t.value[range]) else {
            return Ok(false);
        };
        let (_, bytes) = KeyParts::decode(entry).expect("parsed");
        let start = self.entries.len();
        // The entry's head is the task's unchanging part: copied as it is.
        self.entries
            .extend_from_slice(&entry[..entry.len() - bytes.len()]);
        let Some(keeps_unique) = codec::complete_in_place(bytes, now, result, &mut self.entries)
        else {
            self.entries.truncate(start);
            return Ok(false);
        };
        self.changed.insert(id, Some(start..self.entries.len()));
        self.counters(topic).completed += 1;
        self.index.move_to(id, At::Completed(now));
        if !keeps_unique {
            self.index.release_unique(id);
        }
        Ok(true)
    }

    /// Files a task that a transition moved where its record now says, frees its unique
    /// key if it no longer holds it, and stores the record.
    fn moved(&mut self, record: &TaskRecord, now: Timestamp) {
        self.index.move_to(record.id, At::of_record(record, now));
        if !record.holds_unique_key() {
            self.index.release_unique(record.id);
        }
        self.put(record);
    }

    /// [`Store::recover`](taskmill_core::Store::recover).
    pub fn recover(&mut self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
        let mut recovered = Vec::new();
        for id in self.index.expired(now, limit) {
            let Some(At::Work { token, .. }) = self.index.slot(id).map(|s| s.at) else {
                continue;
            };
            let Some(mut record) = self.owned(id, token, now)? else {
                continue;
            };
            let topic = record.topic.clone();
            let queue = record.recover(now, self.counters_of(id));
            self.moved(&record, now);
            recovered.push(Recovered { id, topic, queue });
        }
        self.commit()?;
        Ok(recovered)
    }

    /// [`Store::prune`](taskmill_core::Store::prune): per topic, the finished tasks due
    /// for pruning, oldest first, from the index's finish-time order; the records are not
    /// decoded.
    pub fn prune(&mut self, opts: &PruneOptions) -> Result<u64> {
        let mut pruned = 0;
        for topic in 0..self.index.topic_count() {
            let left = opts.limit.saturating_sub(pruned);
            if left == 0 {
                break;
            }
            let cutoff = opts.cutoff_of(&self.index.topic(topic).name);
            for id in self.index.prunable(topic, cutoff, left) {
                self.del(id)?;
                self.index.remove(id);
                pruned += 1;
            }
        }
        self.commit()?;
        Ok(pruned as u64)
    }

    /// [`Store::cancel`](taskmill_core::Store::cancel): what became of each task, the
    /// `TaskCancelled` events of those cancelled at once when `with_events`, and the ids of
    /// the running ones whose managers are to be told.
    pub fn cancel(
        &mut self,
        ids: &[TaskId],
        opts: &CancelOptions,
        with_events: bool,
    ) -> Result<(Vec<Cancellation>, Vec<Event>, Vec<TaskId>)> {
        let mut cancellations = Vec::with_capacity(ids.len());
        let (mut events, mut running) = (Vec::new(), Vec::new());
        for &id in ids {
            let Some(queue) = self.index.slot(id).map(|s| s.at.queue()) else {
                cancellations.push(Cancellation::NotFound);
                continue;
            };
            if !matches!(queue, Queue::Input | Queue::Work) {
                cancellations.push(Cancellation::Refused(queue));
                continue;
            }
            // A record that cannot be decoded is cancelled salvaged, its bytes kept as its
            // arguments, as a claim would have done.
            let Some(found) = self.load(id, opts.now)? else {
                cancellations.push(Cancellation::NotFound);
                continue;
            };
            let mut record = found.unwrap_or_else(|(salvaged, _)| salvaged);
            let topic = record.topic.clone();
            let cancellation = record.cancel(opts.now, &opts.by, self.counters_of(id));
            match cancellation {
                Cancellation::Cancelled if with_events => events.push(Event::TaskCancelled {
                    id,
                    topic,
                    by: Some(opts.by.clone()),
                    was_running: false,
                }),
                Cancellation::Requested => running.push(id),
                _ => {}
            }
            self.moved(&record, opts.now);
            cancellations.push(cancellation);
        }
        self.commit()?;
        Ok((cancellations, events, running))
    }

    /// [`Store::requeue`](taskmill_core::Store::requeue).
    pub fn requeue(&mut self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
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
            record.requeue(now, self.counters_of(id));
            self.moved(&record, now);
            moved.push(true);
        }
        self.commit()?;
        Ok(moved)
    }

    /// [`Store::delete`](taskmill_core::Store::delete).
    pub fn delete(&mut self, ids: &[TaskId]) -> Result<Vec<bool>> {
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

    /// [`Store::set_paused`](taskmill_core::Store::set_paused).
    pub fn set_paused(&mut self, topic: &str, paused: bool) -> Result<()> {
        let id = self.index.topic_id(topic);
        let topic = self.index.topic(id);
        topic.stats.paused = paused;
        topic.dirty = true;
        self.commit()
    }

    /// [`Store::schedules`](taskmill_core::Store::schedules), from memory.
    pub fn schedules(&self) -> Vec<ScheduleState> {
        self.index.schedules.values().cloned().collect()
    }

    /// Stores a schedule's state, in memory and in the batch.
    fn put_schedule(&mut self, state: ScheduleState) {
        let value = codec::encode_schedule(&state);
        self.batch.insert(layout::schedule_key(&state.name), value);
        self.writes += 1;
        self.index.schedules.insert(state.name.clone(), state);
    }

    /// [`Store::register_schedules`](taskmill_core::Store::register_schedules).
    pub fn register_schedules(
        &mut self,
        entries: &[ScheduleEntry],
        now: Timestamp,
    ) -> Result<Vec<ScheduleState>> {
        let mut states = Vec::with_capacity(entries.len());
        for entry in entries {
            let state = match self.index.schedules.get(&entry.name) {
                Some(known) => {
                    let mut state = known.clone();
                    state.register(entry, now);
                    state
                }
                None => ScheduleState::new(entry, now),
            };
            states.push(state.clone());
            self.put_schedule(state);
        }
        self.commit()?;
        Ok(states)
    }

    /// [`Store::fire`](taskmill_core::Store::fire), with the enqueue events when
    /// `with_events`. Every tick is decided, its task added (as an enqueue adds one) and
    /// its state stored in the command's one batch: the writer thread runs one command at
    /// a time, so nothing comes between the decision and the enqueue, and sled's recovery
    /// replays the batch whole or not at all.
    pub fn fire(
        &mut self,
        ticks: Vec<Tick>,
        opts: &EnqueueOptions,
        with_events: bool,
    ) -> Result<(Vec<Fired>, Vec<Event>)> {
        let mut fired = Vec::with_capacity(ticks.len());
        let mut events = with_events.then(Vec::new);
        let mut open = Opened::default();
        for tick in ticks {
            let mut state = match self.index.schedules.get(&tick.schedule) {
                Some(known) => known.clone(),
                None => ScheduleState::unregistered(&tick, opts.now),
            };
            // The queue of the last task from the slots: a task this command added is
            // there already, so a later tick of the same schedule in the batch sees it.
            let slots = &self.index;
            let unfinished = |id| {
                slots
                    .slot(id)
                    .is_some_and(|s| matches!(s.at.queue(), Queue::Input | Queue::Work))
            };
            let answer = match state.decide(&tick, unfinished) {
                // Nothing changed: nothing to write.
                Some(stale @ Fired::Stale { .. }) => {
                    fired.push(stale);
                    continue;
                }
                Some(answer) => answer,
                None => {
                    let task = tick.task.clone();
                    let enqueued = self.add(task, opts, &mut open, events.as_mut())?;
                    state.fired(&tick, enqueued, opts.now);
                    Fired::Enqueued(enqueued)
                }
            };
            self.put_schedule(state);
            fired.push(answer);
        }
        self.close_chunks(open);
        self.commit()?;
        Ok((fired, events.unwrap_or_default()))
    }

    /// [`Store::set_schedule_paused`](taskmill_core::Store::set_schedule_paused).
    pub fn set_schedule_paused(&mut self, name: &str, paused: bool) -> Result<bool> {
        let Some(known) = self.index.schedules.get(name) else {
            return Ok(false);
        };
        let mut state = known.clone();
        state.paused = paused;
        self.put_schedule(state);
        self.commit()?;
        Ok(true)
    }

    /// [`Store::prune_schedules`](taskmill_core::Store::prune_schedules). The tasks of the
    /// schedules removed stay.
    pub fn prune_schedules(&mut self, seen_before: Timestamp) -> Result<u64> {
        let stale: Vec<_> = self
            .index
            .schedules
            .values()
            .filter(|s| s.seen_at < seen_before)
            .map(|s| s.name.clone())
            .collect();
        for name in &stale {
            self.index.schedules.remove(name);
            self.batch.remove(layout::schedule_key(name));
            self.writes += 1;
        }
        self.commit()?;
        Ok(stale.len() as u64)
    }
}

/// The chunks a command is filling, one per topic (by number).
type Opened = FxHashMap<u32, Open>;

/// A chunk an enqueue is filling: one topic's tasks, ids `first..=last`.
struct Open {
    first: u64,
    last: u64,
    count: usize,
    buf: Vec<u8>,
}

/// A chunk read by the command being handled.
struct Touched {
    last: u64,
    value: sled::IVec,
    chunk: Chunk,
}

/// A record as loaded: decoded, or salvaged with the reason it could not be.
type Loaded = std::result::Result<TaskRecord, (TaskRecord, Error)>;

/// A record rebuilt around stored bytes that cannot be decoded, from what its key and the
/// index know; the bytes are kept as its arguments for a human to inspect.
fn salvage(key: &KeyParts<'_>, bytes: &[u8], at: At, now: Timestamp) -> TaskRecord {
    let lease = match at {
        At::Work {
            token, deadline, ..
        } => Some(Lease {
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
    record.max_retries = Some(0);
    record.priority = key.priority;
    record.enqueued_at = now;
    record.run_at = now;
    record.unique_key = key.unique.map(Box::from);
    record.lease = lease;
    record
}

/// The stored record of `id`, found through the index; `Corrupt` when it cannot be decoded.
/// The placeholder of a chunk's unreadable part reads as the DEAD record it stands for.
fn get(tree: &sled::Tree, index: &Index, id: TaskId) -> Result<Option<TaskRecord>> {
    let Some((first, last)) = index.chunk(id) else {
        return Ok(None);
    };
    let Some(value) = tree
        .get(layout::chunk_key(first, last))
        .map_err(|e| backend_error(e, "cannot read a chunk"))?
    else {
        return Ok(None);
    };
    let chunk = Chunk::parse(first, last, &value);
    let Some(range) = chunk.find(id) else {
        let placeholder = chunk.placeholder(first, last, &value);
        return Ok(placeholder.filter(|p| p.id == id));
    };
    let (parts, bytes) = KeyParts::decode(&value[range]).expect("parsed");
    let topic = index.slot(id).map(|slot| index.topic_of(slot));
    let topic = topic.expect("the chunk came from the slot");
    codec::decode_record(&parts, topic, bytes).map(Some)
}

/// One page of a queue, in id order.
///
/// Records that cannot be decoded are left out (with a warning): `get` reports them as
/// `Corrupt`, and a claim sends them to DEAD. The page is decided by the index, so one
/// left out does not end the paging early.
fn list(tree: &sled::Tree, index: &Index, query: &ListOptions) -> Result<Page> {
    let after = query.after.unwrap_or(TaskId::new(0));
    let limit = query.limit.max(1);
    query.validate()?;
    let topic = query.topic.as_deref();
    let ids = match query.waiting {
        // Not yet due: from the scheduled orders, never a due task.
        Some((kind, now)) if kind != Waiting::Pending => {
            Box::new(index.not_yet_due(topic, kind, now, after).into_iter())
        }
        // Pending: INPUT as an unfiltered page walks it, the tasks not yet due skipped.
        _ => match index.ids(query.queue, topic, after) {
            Some(ids) => ids,
            None => Box::new(chunk_ids(tree, after)),
        },
    };
    let mut ids = ids.filter(|id| {
        index.is_in(*id, query.queue, topic)
            && query
                .waiting
                .is_none_or(|(kind, now)| index.is_waiting(*id, kind, now))
    });
    let mut tasks = Vec::with_capacity(limit.min(1024));
    let mut last = None;
    for id in ids.by_ref() {
        last = Some(id);
        match get(tree, index, id) {
            Ok(Some(record)) => tasks.push(record),
            Ok(None) => {}
            Err(error) => tracing::warn!(%id, %error, "leaving an undecodable task out of a list"),
        }
        if tasks.len() == limit {
            break;
        }
    }
    let next = last.filter(|_| ids.next().is_some());
    Ok(Page { tasks, next })
}

/// The ids after `after` in the chunks, in id order. The chunks of one enqueue overlap (one
/// per topic), so they are merged: an id is given out once the next chunk starts after it,
/// as every later chunk holds only ids from its start on. A chunk holding an id after
/// `after` starts at most [`layout::MAX_CHUNK_SPAN`] before it, so the reading starts there.
fn chunk_ids(tree: &sled::Tree, after: TaskId) -> impl Iterator<Item = TaskId> + '_ {
    let next = after.get().saturating_add(1);
    let start = layout::chunk_key(next.saturating_sub(layout::MAX_CHUNK_SPAN), 0);
    let mut chunks = tree
        .range(start.to_vec()..)
        .filter_map(|entry| entry.ok())
        .take_while(|(key, _)| key.starts_with(layout::CHUNKS))
        .peekable();
    let mut pending = BTreeSet::<TaskId>::new();
    std::iter::from_fn(move || loop {
        let next_start = chunks
            .peek()
            .map(|(key, _)| layout::decode_chunk_key(key).map_or(0, |(first, _)| first));
        if let Some(&min) = pending.first() {
            if next_start.is_none_or(|start| min.get() < start) {
                return pending.pop_first();
            }
        }
        let (key, value) = chunks.next()?;
        if let Some((first, last)) = layout::decode_chunk_key(&key) {
            let chunk = Chunk::parse(first, last, &value);
            pending.extend(
                chunk
                    .entries
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| *id > after),
            );
        }
    })
}
