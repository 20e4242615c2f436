//! Where every task is: the queues, claim order, leases and cancel requests, the finished
//! tasks in pruning order, unique keys and the chunk that holds each task's record, kept in
//! memory by the writer thread; and the schedules' states.
//!
//! None of the tasks' indexes is stored. The records are the truth (each says its queue, due and finish
//! times, lease, cancel request and whether it keeps its unique key once finished), and one
//! scan of the chunks at open rebuilds all of this. That is sound because
//! sled admits one process per database and every change goes through the writer thread,
//! so nothing changes the records behind the indexes' back. It is what makes each change
//! one write per chunk it touches, in one tree, instead of a record plus an index entry per
//! queue.
//!
//! The schedules' states are stored (one `r` entry each) and kept here as they are stored,
//! as the topics' counters are: every change to one writes its entry in the same batch.
//! Listing them reads no task, and a fire decides from memory (the state here, the queue
//! of its last task from the slots).

use crate::codec::{self, Chunk, KeyParts, State};
use crate::error::backend_error;
use crate::layout;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use taskmill_core::raw::{IdHasher, IdMap};
use taskmill_core::store::{ScheduleState, Waiting};
use taskmill_core::{Queue, Result, Stats, TaskId, TaskRecord, Timestamp, TopicStats};

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// In INPUT, due since `run_at` (`None` for a record that cannot be decoded, whose
    /// due time is unknown: it counts in no earliest `run_at`): in its topic's claim order,
    /// and in its lane when `lane` (see [`Lane`]), else in its topic's due-time order.
    Ready {
        run_at: Option<Timestamp>,
        lane: bool,
    },
    /// In INPUT, due at this time but not known to be due at the last claim's `now`;
    /// `true` when it ran before (retrying while not yet due).
    Scheduled(Timestamp, bool),
    /// In WORK under this claim; `cancel` when a cancel was requested.
    Work {
        token: u64,
        deadline: Timestamp,
        cancel: bool,
    },
    Dead,
    /// Kept in COMPLETED since this time, in its topic's pruning order.
    Completed(Timestamp),
    /// Kept in CANCELLED since this time, in its topic's pruning order.
    Cancelled(Timestamp),
}

impl At {
    pub fn queue(self) -> Queue {
        match self {
            At::Ready { .. } | At::Scheduled(..) => Queue::Input,
            At::Work { .. } => Queue::Work,
            At::Dead => Queue::Dead,
            At::Completed(_) => Queue::Completed,
            At::Cancelled(_) => Queue::Cancelled,
        }
    }

    /// Where a task in `state` goes, a task in INPUT being due when it is at `now`.
    pub fn of(state: &State, now: Timestamp) -> At {
        // A finished record without a finish time is as old as can be: pruned first.
        let finished_at = state.finished_at.unwrap_or(Timestamp::EPOCH);
        match (state.queue, state.lease) {
            (Queue::Input, _) if state.run_at <= now => At::Ready {
                run_at: Some(state.run_at),
                lane: false,
            },
            (Queue::Input, _) => At::Scheduled(state.run_at, state.ran),
            (Queue::Work, Some((token, deadline))) => At::Work {
                token,
                deadline,
                cancel: state.cancel_requested,
            },
            // A claim without a lease cannot be fenced: expired at once, so the reaper
            // takes it.
            (Queue::Work, None) => At::Work {
                token: 0,
                deadline: Timestamp::EPOCH,
                cancel: state.cancel_requested,
            },
            (Queue::Dead, _) => At::Dead,
            (Queue::Completed, _) => At::Completed(finished_at),
            (Queue::Cancelled, _) => At::Cancelled(finished_at),
            // `Queue` is non-exhaustive; the codec reads no other queue.
            (_, _) => At::Dead,
        }
    }

    /// Where the task of `record` goes (see [`At::of`]).
    pub fn of_record(record: &TaskRecord, now: Timestamp) -> At {
        At::of(&State::of(record), now)
    }
}

/// A task's entry: the unchanging part of its record, its chunk, and where it is.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its topic's number (see [`Index::topic`]).
    pub topic: u32,
    /// The first id of its chunk (see [`Index::chunk`]).
    pub chunk: u64,
    pub priority: i16,
    /// The unique key while the task [holds it](TaskRecord::holds_unique_key).
    pub unique: Option<Box<str>>,
    pub at: At,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// Due INPUT tasks in claim order: lowest priority value, then lowest id.
    ready: BTreeSet<(i16, TaskId)>,
    /// Where the earliest `run_at` in INPUT is found: the due tasks that joined the claim
    /// order as they were enqueued, per priority (see [`Lane`])…
    lanes: Vec<(i16, Lane)>,
    /// …the other due tasks (back from WORK or DEAD, once scheduled, or enqueued due
    /// earlier than their lane's last) by due time, and `scheduled`. Each holds its
    /// earliest first.
    due: BTreeSet<(Timestamp, TaskId)>,
    /// INPUT tasks not yet due, by due time.
    scheduled: BTreeSet<(Timestamp, TaskId)>,
    /// The tasks of `scheduled` that ran before (`attempt > 0`), by due time: with it,
    /// stats split the tasks not yet due into scheduled and retrying by two range counts.
    retrying: BTreeSet<(Timestamp, TaskId)>,
    /// Finished tasks kept (COMPLETED and CANCELLED) by finish time: what pruning takes
    /// first, without looking at those not due.
    finished: Finished,
    /// Unique key → the task holding it (keys are per topic).
    unique: HashMap<Box<str>, TaskId>,
    /// Counters and paused as stored; sizes as counted here.
    pub stats: TopicStats,
    /// Whether counters or paused changed since the row was last written.
    pub dirty: bool,
}

/// Tasks of one topic and priority enqueued due, in id order, their due times never
/// decreasing from front to back (a task due earlier than the lane's last goes to the
/// topic's due-time order instead): the front's `run_at` is the lane's earliest. Joining
/// costs a push and leaving, as claims do in id order, a pop, where an ordered set by due
/// time would cost a search and a rebalance each way on the hot path.
///
/// A task that leaves from the middle (deleted, cancelled) stays until it reaches the
/// front, which is always a task still in the lane: each removal pops the tasks gone.
#[derive(Debug, Default)]
struct Lane {
    ids: VecDeque<TaskId>,
    last_run_at: Timestamp,
}

impl Topic {
    /// Puts a task just enqueued due at `run_at` (its id the largest so far) in the lane of
    /// its priority, if its due time keeps the lane's order; whether it did.
    fn join_lane(&mut self, priority: i16, id: TaskId, run_at: Timestamp) -> bool {
        let lane = match self.lanes.iter_mut().position(|(p, _)| *p == priority) {
            Some(i) => &mut self.lanes[i].1,
            None => {
                self.lanes.push((priority, Lane::default()));
                &mut self.lanes.last_mut().expect("just pushed").1
            }
        };
        let fits = match lane.ids.back() {
            None => true,
            Some(&last) => last < id && lane.last_run_at <= run_at,
        };
        if fits {
            lane.ids.push_back(id);
            lane.last_run_at = run_at;
        }
        fits
    }

    /// After task `id` left the lane of `priority` (its slot already says where it went,
    /// or is gone), pops the tasks no longer in it from the lane's front, so that the front
    /// is one that is. A claim takes the front itself, known gone without a lookup.
    fn leave_lane(&mut self, priority: i16, id: TaskId, slots: &IdMap<Slot>) {
        let Some((_, lane)) = self.lanes.iter_mut().find(|(p, _)| *p == priority) else {
            return;
        };
        if lane.ids.front() == Some(&id) {
            lane.ids.pop_front();
        }
        while let Some(front) = lane.ids.front() {
            let in_lane = matches!(
                slots.get(front),
                Some(Slot {
                    at: At::Ready { lane: true, .. },
                    ..
                })
            );
            if in_lane {
                break;
            }
            lane.ids.pop_front();
        }
    }
}

/// A topic's finished tasks kept (COMPLETED and CANCELLED), by finish time.
///
/// Tasks finish in time order almost always, so most go on a FIFO: a push, where an
/// ordered set costs a search and a rebalance on the hot path of kept history. One that
/// finishes before the FIFO's last goes to an ordered set instead, and pruning takes the
/// earlier of the two heads. A finished task leaves only by being removed (pruned or
/// deleted), and ids are never reused, so a FIFO entry whose task is no longer indexed is
/// stale: the front is always live (each removal pops the stale entries there), the others
/// are skipped when met, and the FIFO is compacted when they outnumber the live ones.
#[derive(Debug, Default)]
struct Finished {
    fifo: VecDeque<(Timestamp, TaskId)>,
    late: BTreeSet<(Timestamp, TaskId)>,
}

impl Finished {
    /// Every task here, in no order, with deleted ones (see [`is_finished`]).
    fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        let fifo = self.fifo.iter().map(|&(_, id)| id);
        fifo.chain(self.late.iter().map(|&(_, id)| id))
    }

    /// Puts every task on the FIFO, in finish order, without the deleted ones.
    fn settle(&mut self, slots: &IdMap<Slot>) {
        if self.late.is_empty() {
            return;
        }
        let mut all: Vec<_> = self.fifo.drain(..).collect();
        all.extend(std::mem::take(&mut self.late));
        all.retain(|(_, id)| is_finished(slots, id));
        all.sort_unstable();
        self.fifo = all.into();
    }

    fn add(&mut self, at: Timestamp, id: TaskId) {
        match self.fifo.back() {
            Some(&(last, _)) if last > at => {
                self.late.insert((at, id));
            }
            _ => self.fifo.push_back((at, id)),
        }
    }

    /// After task `id`, finished at `at`, was removed from `slots` (`kept` finished tasks
    /// are left).
    fn remove(&mut self, at: Timestamp, id: TaskId, kept: u64, slots: &IdMap<Slot>) {
        if !self.late.is_empty() && self.late.remove(&(at, id)) {
            return;
        }
        if self.fifo.front() == Some(&(at, id)) {
            self.fifo.pop_front();
        }
        while let Some((_, front)) = self.fifo.front() {
            if is_finished(slots, front) {
                break;
            }
            self.fifo.pop_front();
        }
        if self.fifo.len() as u64 > 2 * kept + 1024 {
            self.fifo.retain(|(_, id)| is_finished(slots, id));
        }
    }
}

/// Whether task `id` is indexed as finished and kept: whether its entry in
/// [`Finished::fifo`] is live.
fn is_finished(slots: &IdMap<Slot>, id: &TaskId) -> bool {
    matches!(
        slots.get(id),
        Some(Slot {
            at: At::Completed(_) | At::Cancelled(_),
            ..
        })
    )
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub last_id: u64,
    pub last_token: u64,
    /// Hashed rather than ordered: a claim and a completion look a task up several times,
    /// and with a million tasks every level of a tree is a cache miss. Hashed by id so
    /// that neighbouring ids, which move together, share cache lines.
    slots: IdMap<Slot>,
    topics: Vec<Topic>,
    /// Hashed with Fx: topic names are the application's, not its users', and an enqueue
    /// looks one up per task.
    by_name: FxHashMap<Arc<str>, u32>,
    /// Every task in WORK (for the reaper) and in DEAD, in id order for `list`.
    work: BTreeSet<TaskId>,
    dead: BTreeSet<TaskId>,
    /// Every stored chunk: first id → last id, which make its key.
    chunks: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
    /// Every schedule's state, as stored under its `r` key, by name (byte order, which is
    /// `str`'s order): what `schedules` lists and `fire` decides on.
    pub schedules: BTreeMap<Arc<str>, ScheduleState>,
}

impl Index {
    /// Rebuilds the indexes from the tree: one scan of every record.
    pub fn load(tree: &sled::Tree) -> Result<Index> {
        let mut index = Index::default();
        let counter = |key: &[u8]| -> Result<u64> {
            tree.get(key)
                .map_err(|e| backend_error(e, "cannot read the sled database"))?
                .map_or(Ok(0), |v| codec::decode_u64(&v))
        };
        index.last_id = counter(layout::LAST_ID)?;
        index.last_token = counter(layout::LAST_TOKEN)?;
        for entry in tree.scan_prefix(layout::ROWS) {
            let (key, value) =
                entry.map_err(|e| backend_error(e, "cannot read the sled database"))?;
            let name = String::from_utf8_lossy(&key[1..]);
            let (counters, paused) = codec::decode_row(&value)?;
            let topic = index.topic_id(&name);
            let stats = &mut index.topics[topic as usize].stats;
            stats.counters = counters;
            stats.paused = paused;
        }
        for entry in tree.scan_prefix(layout::SCHEDULES) {
            let (key, value) =
                entry.map_err(|e| backend_error(e, "cannot read the sled database"))?;
            match codec::decode_schedule(&key[layout::SCHEDULES.len()..], &value) {
                Ok(state) => {
                    index.schedules.insert(state.name.clone(), state);
                }
                // Left out rather than refusing to open the store: the schedule is created
                // again, new, by its next registration or tick (which overwrites the
                // value), at the cost of forgetting its last tick and pause.
                Err(error) => {
                    tracing::warn!(key = ?key, %error, "leaving out a schedule whose state cannot be read")
                }
            }
        }
        for entry in tree.scan_prefix(layout::CHUNKS) {
            let (key, value) =
                entry.map_err(|e| backend_error(e, "cannot read the sled database"))?;
            let Some((first, last)) = layout::decode_chunk_key(&key) else {
                tracing::warn!(key = ?key, "skipping an undecodable chunk key");
                continue;
            };
            index.chunks.insert(first, last);
            index.last_id = index.last_id.max(last);
            let chunk = Chunk::parse(first, last, &value);
            for (_, range) in &chunk.entries {
                let (parts, record) = KeyParts::decode(&value[range.clone()]).expect("parsed");
                // Due or not is for a claim to say (stores never read a clock). A record
                // that cannot be decoded goes where a claim finds it, to be salvaged and
                // sent to DEAD.
                let state = codec::decode_state(record);
                let unknown = At::Ready {
                    run_at: None,
                    lane: false,
                };
                let at = state.map_or(unknown, |s| At::of(&s, Timestamp::EPOCH));
                let topic = index.topic_id(parts.topic);
                if let At::Work { token, .. } = at {
                    index.last_token = index.last_token.max(token);
                }
                let holds = !at.queue().is_finished() || state.is_some_and(|s| s.unique_while_kept);
                let unique = parts.unique.filter(|_| holds).map(Box::from);
                index.insert(parts.id, topic, parts.priority, unique, at, first);
            }
            if let Some(at) = chunk.broken_at {
                tracing::warn!(first, last, at, placeholder = ?chunk.placeholder,
                    "a stored chunk cannot be read to its end; the rest is filed in DEAD as one placeholder");
            }
            if let Some(id) = chunk.placeholder {
                let topic = index.topic_id(codec::CORRUPT_TOPIC);
                index.insert(id, topic, 0, None, At::Dead, first);
            }
        }
        // The rows just read are on disk as they are.
        index.topics.iter_mut().for_each(|t| t.dirty = false);
        // Read in id order, the finished tasks are in finish order but for the jitter of
        // concurrent runs, which would leave many in `late`.
        let slots = &index.slots;
        index
            .topics
            .iter_mut()
            .for_each(|t| t.finished.settle(slots));
        Ok(index)
    }

    /// The topic's number, adding it when new.
    pub fn topic_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.topics.len() as u32;
        let name: Arc<str> = name.into();
        self.by_name.insert(name.clone(), id);
        self.topics.push(Topic {
            name,
            ready: BTreeSet::new(),
            lanes: Vec::new(),
            due: BTreeSet::new(),
            scheduled: BTreeSet::new(),
            retrying: BTreeSet::new(),
            finished: Finished::default(),
            unique: HashMap::new(),
            stats: TopicStats::default(),
            dirty: true,
        });
        id
    }

    pub fn find_topic(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn topic(&mut self, id: u32) -> &mut Topic {
        &mut self.topics[id as usize]
    }

    pub fn topics_mut(&mut self) -> &mut [Topic] {
        &mut self.topics
    }

    pub fn slot(&self, id: TaskId) -> Option<&Slot> {
        self.slots.get(&id)
    }

    pub fn topic_of(&self, slot: &Slot) -> &Arc<str> {
        &self.topics[slot.topic as usize].name
    }

    /// The id range (first, last) of the chunk that holds a task.
    pub fn chunk(&self, id: TaskId) -> Option<(u64, u64)> {
        let first = self.slots.get(&id)?.chunk;
        Some((first, *self.chunks.get(&first)?))
    }

    /// Records that the chunk `first..=last` is stored (`true`) or removed.
    pub fn set_chunk(&mut self, first: u64, last: u64, stored: bool) {
        if stored {
            self.chunks.insert(first, last);
        } else {
            self.chunks.remove(&first);
        }
    }

    /// Whether the task is in WORK under the claim `token`.
    pub fn owns(&self, id: TaskId, token: u64) -> bool {
        matches!(self.slots.get(&id), Some(Slot { at: At::Work { token: t, .. }, .. }) if *t == token)
    }

    /// The holder of a unique key.
    pub fn unique(&self, topic: &str, key: &str) -> Option<TaskId> {
        let topic = &self.topics[*self.by_name.get(topic)? as usize];
        topic.unique.get(key).copied()
    }

    /// Indexes a new task; the caller has checked that its unique key is free.
    pub fn insert(
        &mut self,
        id: TaskId,
        topic: u32,
        priority: i16,
        unique: Option<Box<str>>,
        at: At,
        chunk: u64,
    ) {
        if let Some(key) = &unique {
            self.topics[topic as usize].unique.insert(key.clone(), id);
        }
        let at = match at {
            At::Ready {
                run_at: Some(run_at),
                lane: false,
            } => At::Ready {
                run_at: Some(run_at),
                lane: self.topics[topic as usize].join_lane(priority, id, run_at),
            },
            at => at,
        };
        self.file(id, topic, priority, at, true);
        let slot = Slot {
            topic,
            chunk,
            priority,
            unique,
            at,
        };
        self.slots.insert(id, slot);
    }

    /// Forgets a task, freeing its unique key.
    pub fn remove(&mut self, id: TaskId) {
        if let Some(slot) = self.slots.remove(&id) {
            self.file(id, slot.topic, slot.priority, slot.at, false);
            if let Some(key) = &slot.unique {
                let topic = &mut self.topics[slot.topic as usize];
                if topic.unique.get(key) == Some(&id) {
                    topic.unique.remove(key);
                }
            }
        }
    }

    /// Frees the unique key of a task that no longer holds it (it finished, and does not
    /// keep it while kept), unless another task holds it.
    pub fn release_unique(&mut self, id: TaskId) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if let Some(key) = slot.unique.take() {
            let topic = &mut self.topics[slot.topic as usize];
            if topic.unique.get(&key) == Some(&id) {
                topic.unique.remove(&key);
            }
        }
    }

    /// Whether a cancel was requested for the task, which is in WORK.
    pub fn cancel_requested(&self, id: TaskId) -> bool {
        matches!(
            self.slots.get(&id),
            Some(Slot {
                at: At::Work { cancel: true, .. },
                ..
            })
        )
    }

    /// Moves a task to `at`.
    pub fn move_to(&mut self, id: TaskId, at: At) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let (topic, priority, from) = (slot.topic, slot.priority, slot.at);
        slot.at = at;
        self.file(id, topic, priority, from, false);
        self.file(id, topic, priority, at, true);
    }

    /// Adds (or removes) a task's entry in the index of its queue, and counts it.
    fn file(&mut self, id: TaskId, topic: u32, priority: i16, at: At, add: bool) {
        let topic = &mut self.topics[topic as usize];
        let size = topic.stats.sizes.of_mut(at.queue());
        *size = if add {
            *size + 1
        } else {
            size.saturating_sub(1)
        };
        fn set<T: Ord>(set: &mut BTreeSet<T>, item: T, add: bool) {
            if add {
                set.insert(item);
            } else {
                set.remove(&item);
            }
        }
        match at {
            At::Ready { run_at, lane } => {
                set(&mut topic.ready, (priority, id), add);
                if lane {
                    // Joined in `insert`; left here, with the tasks gone before it.
                    if !add {
                        topic.leave_lane(priority, id, &self.slots);
                    }
                } else if let Some(run_at) = run_at {
                    set(&mut topic.due, (run_at, id), add);
                }
            }
            At::Scheduled(t, ran) => {
                set(&mut topic.scheduled, (t, id), add);
                if ran {
                    set(&mut topic.retrying, (t, id), add);
                }
            }
            At::Work { .. } => set(&mut self.work, id, add),
            At::Dead => set(&mut self.dead, id, add),
            At::Completed(t) | At::Cancelled(t) => {
                if add {
                    topic.finished.add(t, id);
                } else {
                    let kept = topic.stats.sizes.completed + topic.stats.sizes.cancelled;
                    topic.finished.remove(t, id, kept, &self.slots);
                }
            }
        }
    }

    /// The next task a claim of `topic` at `now` takes, once the tasks due by then are
    /// moved to the claim order.
    pub fn next_ready(&mut self, topic: u32, now: Timestamp) -> Option<TaskId> {
        let t = &mut self.topics[topic as usize];
        while let Some(&(run_at, id)) = t.scheduled.first() {
            if run_at > now {
                break;
            }
            t.scheduled.pop_first();
            t.retrying.remove(&(run_at, id));
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.at = At::Ready {
                    run_at: Some(run_at),
                    lane: false,
                };
                t.ready.insert((slot.priority, id));
                t.due.insert((run_at, id));
            }
        }
        t.ready.first().map(|&(_, id)| id)
    }

    /// Tasks in WORK whose lease ended before `now`.
    pub fn expired(&self, now: Timestamp, limit: usize) -> Vec<TaskId> {
        self.work
            .iter()
            .filter(|id| {
                matches!(self.slots.get(id), Some(Slot { at: At::Work { deadline, .. }, .. }) if *deadline < now)
            })
            .take(limit)
            .copied()
            .collect()
    }

    /// The finished tasks of `topic` whose finish time is at or before `cutoff`, oldest
    /// first, at most `limit`: what pruning removes. Costs what it returns, whatever else
    /// is kept.
    pub fn prunable(&self, topic: u32, cutoff: Timestamp, limit: usize) -> Vec<TaskId> {
        let finished = &self.topics[topic as usize].finished;
        let mut fifo = finished
            .fifo
            .iter()
            .filter(|(_, id)| is_finished(&self.slots, id))
            .peekable();
        let mut late = finished.late.iter().peekable();
        let mut ids = Vec::new();
        while ids.len() < limit {
            let next = match (fifo.peek(), late.peek()) {
                (Some(a), Some(b)) if b < a => late.next(),
                (Some(_), _) => fifo.next(),
                (None, _) => late.next(),
            };
            match next {
                Some(&(at, id)) if at <= cutoff => ids.push(id),
                _ => break,
            }
        }
        ids
    }

    /// How many topics there are (their numbers are `0..topic_count()`).
    pub fn topic_count(&self) -> u32 {
        self.topics.len() as u32
    }

    /// Ids in `queue` (and `topic`, when given) after `after`, in id order, and maybe
    /// some that are not in it; `None` for INPUT, COMPLETED and CANCELLED unless the queue
    /// is small and most records are elsewhere (see [`SMALL_QUEUE`]): its pages then come
    /// from the records, already in id order. A filter by queue and topic still applies to
    /// what comes back.
    pub fn ids(
        &self,
        queue: Queue,
        topic: Option<&str>,
        after: TaskId,
    ) -> Option<Box<dyn Iterator<Item = TaskId> + '_>> {
        let topics: Vec<&Topic> = match topic {
            Some(name) => self
                .find_topic(name)
                .map(|t| &self.topics[t as usize])
                .into_iter()
                .collect(),
            None => self.topics.iter().collect(),
        };
        let set = match queue {
            Queue::Work => &self.work,
            Queue::Dead => &self.dead,
            Queue::Input | Queue::Completed | Queue::Cancelled => {
                let size: u64 = topics.iter().map(|t| t.stats.sizes.of(queue)).sum();
                let records: u64 = self.topics.iter().map(|t| t.stats.sizes.total()).sum();
                if size > SMALL_QUEUE || size * 2 >= records {
                    return None;
                }
                let mut ids: Vec<TaskId> = match queue {
                    Queue::Input => topics
                        .iter()
                        .flat_map(|t| {
                            let ready = t.ready.iter().map(|&(_, id)| id);
                            ready.chain(t.scheduled.iter().map(|&(_, id)| id))
                        })
                        .filter(|id| *id > after)
                        .collect(),
                    // Both finished queues, deleted tasks too: the caller's filter sorts
                    // them out.
                    _ => topics
                        .iter()
                        .flat_map(|t| t.finished.ids())
                        .filter(|id| *id > after)
                        .collect(),
                };
                ids.sort_unstable();
                return Some(Box::new(ids.into_iter()));
            }
            // `Queue` is non-exhaustive: a queue this store does not know holds nothing.
            _ => return Some(Box::new(std::iter::empty())),
        };
        Some(Box::new(
            set.range(after..).copied().filter(move |id| *id > after),
        ))
    }

    /// The ids of the INPUT tasks of `topic` (or of all) not yet due at `now` and in
    /// `kind` (`Scheduled` or `Retrying`), after `after`, in id order: read from the
    /// scheduled and retrying orders from `now` on, as stats count them (O(tasks not yet
    /// due) and a sort), no due task visited.
    pub fn not_yet_due(
        &self,
        topic: Option<&str>,
        kind: Waiting,
        now: Timestamp,
        after: TaskId,
    ) -> Vec<TaskId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let range = (Excluded((now, TaskId::new(u64::MAX))), Unbounded);
        let topics: Vec<&Topic> = match topic {
            Some(name) => self
                .find_topic(name)
                .map(|t| &self.topics[t as usize])
                .into_iter()
                .collect(),
            None => self.topics.iter().collect(),
        };
        let mut ids: Vec<TaskId> = topics
            .iter()
            .flat_map(|t| match kind {
                Waiting::Retrying => Box::new(t.retrying.range(range).map(|&(_, id)| id))
                    as Box<dyn Iterator<Item = TaskId>>,
                _ => Box::new(
                    t.scheduled
                        .range(range)
                        .filter(|entry| !t.retrying.contains(entry))
                        .map(|&(_, id)| id),
                ),
            })
            .filter(|id| *id > after)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether the task is in INPUT and in `kind` at `now`: a task in the claim order
    /// is due (it was at a claim's `now`, so is at any later one), one in the scheduled
    /// order is split by its due time and whether it ran before.
    pub fn is_waiting(&self, id: TaskId, kind: Waiting, now: Timestamp) -> bool {
        match self.slots.get(&id).map(|slot| slot.at) {
            Some(At::Ready { .. }) => kind == Waiting::Pending,
            Some(At::Scheduled(run_at, ran)) => kind.holds(run_at, u32::from(ran), now),
            _ => false,
        }
    }

    /// Whether the task is in `queue`, and in `topic` when one is given.
    pub fn is_in(&self, id: TaskId, queue: Queue, topic: Option<&str>) -> bool {
        self.slots.get(&id).is_some_and(|slot| {
            slot.at.queue() == queue && topic.is_none_or(|t| **self.topic_of(slot) == *t)
        })
    }

    /// Counters, sizes and paused flags as kept, and each topic's earliest `run_at` in
    /// INPUT: the earliest of its lanes' fronts, its due-time order's first and its
    /// scheduled order's first (a lookup per priority and two, whatever INPUT holds).
    /// The tasks not yet due at `now` are counted in the scheduled and retrying orders
    /// from `now` on: O(tasks not yet due), no due task visited (a task in the claim
    /// order was due at a claim's `now`, so is due at any later one).
    pub fn stats(&self, now: Timestamp) -> Stats {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = (Excluded((now, TaskId::new(u64::MAX))), Unbounded);
        Stats::from_topics(
            self.topics
                .iter()
                .map(|t| {
                    let mut stats = t.stats;
                    let later = t.scheduled.range(after).count() as u64;
                    stats.sizes.retrying = t.retrying.range(after).count() as u64;
                    stats.sizes.scheduled = later.saturating_sub(stats.sizes.retrying);
                    let due = t.due.first().map(|&(at, _)| at);
                    let scheduled = t.scheduled.first().map(|&(at, _)| at);
                    let lanes = t.lanes.iter().filter_map(|(_, lane)| {
                        match self.slots.get(lane.ids.front()?)?.at {
                            At::Ready { run_at, .. } => run_at,
                            _ => None,
                        }
                    });
                    stats.earliest_run_at = lanes.chain(due).chain(scheduled).min();
                    (t.name.to_string(), stats)
                })
                .collect(),
        )
    }
}

/// When at most this many tasks are in INPUT, COMPLETED or CANCELLED (of the topic
/// listed, or in all) and they are under half of the records, `list` gathers their ids
/// from the claim or finish orders and sorts them. Otherwise it pages through the
/// records, which are in id order: with at least half of them in that queue a page costs
/// about twice its length, and past this size at most `records / size` times it, which
/// keeping every queue in id order too would cost on every move instead. Kept history
/// can make the records mostly COMPLETED, and a small INPUT would then cost a scan of all
/// of them; a small history beside a large INPUT likewise.
pub(crate) const SMALL_QUEUE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use taskmill_core::raw::PayloadExt;
    use taskmill_core::Payload;

    /// Where a task in INPUT due at `run_at` goes at `now`.
    fn input_at(id: TaskId, run_at: Timestamp, now: Timestamp) -> At {
        let mut record = TaskRecord::new(id, "t", Payload::from_stored("0"));
        record.run_at = run_at;
        At::of_record(&record, now)
    }

    /// Random finishes (mostly in time order, some earlier, COMPLETED and CANCELLED),
    /// deletions and prunings at random cutoffs and limits: pruning always takes the
    /// earliest finish times a scan finds, and the finish-time FIFO never holds many
    /// deleted tasks.
    #[test]
    fn pruning_takes_the_earliest_finished_like_a_scan() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut index = Index::default();
        let topic = index.topic_id("t");
        let mut model: BTreeMap<TaskId, Timestamp> = BTreeMap::new();
        let (mut now, mut last_id) = (1_000i64, 0u64);
        let mut late_seen = false;
        for _ in 0..20_000 {
            match random(10) {
                0..=5 => {
                    last_id += 1;
                    let id = TaskId::new(last_id);
                    now += random(3) as i64;
                    // One in ten finishes earlier than the last.
                    let at = match random(10) {
                        0 => Timestamp::from_millis(now - random(100) as i64),
                        _ => Timestamp::from_millis(now),
                    };
                    let at = match random(2) {
                        0 => At::Completed(at),
                        _ => At::Cancelled(at),
                    };
                    index.insert(id, topic, 0, None, at, last_id);
                    model.insert(
                        id,
                        match at {
                            At::Completed(t) | At::Cancelled(t) => t,
                            _ => unreachable!(),
                        },
                    );
                }
                6 | 7 => {
                    let from = TaskId::new(random(last_id + 1));
                    if let Some((&id, _)) = model.range(from..).next() {
                        index.remove(id);
                        model.remove(&id);
                    }
                }
                8 if random(20) == 0 => {
                    index.topics[topic as usize].finished.settle(&index.slots);
                }
                _ => {
                    let cutoff = Timestamp::from_millis(now - random(200) as i64);
                    let limit = 1 + random(50) as usize;
                    let pruned = index.prunable(topic, cutoff, limit);
                    let mut want: Vec<Timestamp> = model
                        .values()
                        .filter(|at| **at <= cutoff)
                        .copied()
                        .collect();
                    want.sort();
                    want.truncate(limit);
                    let got: Vec<Timestamp> = pruned.iter().map(|id| model[id]).collect();
                    assert_eq!(got, want);
                    for id in pruned {
                        index.remove(id);
                        model.remove(&id);
                    }
                }
            }
            let finished = &index.topics[topic as usize].finished;
            late_seen |= !finished.late.is_empty();
            assert!(finished.fifo.len() <= 2 * model.len() + 1024 + 1);
            if let Some((_, front)) = finished.fifo.front() {
                assert!(is_finished(&index.slots, front), "a stale front");
            }
            let sizes = index.topics[topic as usize].stats.sizes;
            assert_eq!(sizes.completed + sizes.cancelled, model.len() as u64);
        }
        assert!(late_seen, "no task finished out of order");
    }

    /// Random enqueues (due, overdue or scheduled, at random priorities), claims, returns
    /// to INPUT and deletions, with the clock moving on: the earliest `run_at` in stats is
    /// always a scan's, whichever of the lanes, the due-time and the scheduled orders holds
    /// the task.
    #[test]
    fn the_earliest_run_at_matches_a_scan() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut index = Index::default();
        let topic = index.topic_id("t");
        let mut model: BTreeMap<TaskId, Timestamp> = BTreeMap::new();
        let (mut working, mut now, mut last_id) = (Vec::new(), 0i64, 0u64);
        let mut all_seen = false;
        for _ in 0..8_000 {
            let now_at = Timestamp::from_millis(now);
            let run_at = Timestamp::from_millis(now + random(200) as i64 - 100);
            match random(8) {
                0..=2 => {
                    last_id += 1;
                    let id = TaskId::new(last_id);
                    let priority = random(3) as i16 - 1;
                    let at = input_at(id, run_at, now_at);
                    index.insert(id, topic, priority, None, at, last_id);
                    model.insert(id, run_at);
                }
                3 | 4 => {
                    if let Some(id) = index.next_ready(topic, now_at) {
                        let work = At::Work {
                            token: last_id,
                            deadline: now_at,
                            cancel: false,
                        };
                        index.move_to(id, work);
                        model.remove(&id);
                        working.push(id);
                    }
                }
                5 => {
                    if let Some(id) = working.pop() {
                        index.move_to(id, input_at(id, run_at, now_at));
                        model.insert(id, run_at);
                    }
                }
                6 => {
                    let from = TaskId::new(random(last_id + 1));
                    if let Some((&id, _)) = model.range(from..).next() {
                        index.remove(id);
                        model.remove(&id);
                    }
                }
                _ => now += random(50) as i64,
            }
            let topic = &index.topics[topic as usize];
            let lanes = topic.lanes.iter().any(|(_, lane)| !lane.ids.is_empty());
            all_seen |= lanes && !topic.scheduled.is_empty() && !topic.due.is_empty();
            for (_, lane) in &topic.lanes {
                // Each lane's front is a task in it: what the stats read, and what keeps
                // the lanes from holding tasks gone for long.
                if let Some(front) = lane.ids.front() {
                    let at = index.slots.get(front).map(|slot| slot.at);
                    assert!(matches!(at, Some(At::Ready { lane: true, .. })), "{at:?}");
                }
            }
            let stats = index.stats(Timestamp::from_millis(i64::MAX));
            assert_eq!(
                stats.topic("t").earliest_run_at,
                model.values().min().copied()
            );
            assert_eq!(stats.total.earliest_run_at, model.values().min().copied());
            assert_eq!(stats.topic("t").sizes.input, model.len() as u64);
        }
        assert!(all_seen, "the test never mixed the three orders");
    }
}
