//! Where every task is: the queues, claim order, leases, unique keys and the chunk that
//! holds each task's record, kept in memory by the writer thread.
//!
//! None of it is stored. The records are the truth (each says its queue, due time and
//! lease), and one scan of the chunks at open rebuilds all of this. That is sound because
//! sled admits one process per database and every change goes through the writer thread,
//! so nothing changes the records behind the indexes' back. It is what makes each change
//! one write per chunk it touches, in one tree, instead of a record plus an index entry per
//! queue.

use crate::codec::{self, Chunk, KeyParts, State};
use crate::sled_error;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use taskmill_core::raw::{IdHasher, IdMap};
use taskmill_core::{Queue, Result, Stats, TaskId, Timestamp, TopicStats};

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// In INPUT, due: in its topic's claim order.
    Ready,
    /// In INPUT, not known to be due at the last claim's `now`.
    Scheduled(Timestamp),
    /// In WORK under this claim.
    Work {
        token: u64,
        deadline: Timestamp,
    },
    Dead,
}

impl At {
    pub fn queue(self) -> Queue {
        match self {
            At::Ready | At::Scheduled(_) => Queue::Input,
            At::Work { .. } => Queue::Work,
            At::Dead => Queue::Dead,
        }
    }

    /// Where a task entering `queue` goes, given its record.
    pub fn of(
        queue: Queue,
        run_at: Timestamp,
        now: Timestamp,
        lease: Option<(u64, Timestamp)>,
    ) -> At {
        match (queue, lease) {
            (Queue::Input, _) if run_at <= now => At::Ready,
            (Queue::Input, _) => At::Scheduled(run_at),
            (Queue::Work, Some((token, deadline))) => At::Work { token, deadline },
            // A claim without a lease cannot be fenced: expired at once, so the reaper
            // takes it.
            (Queue::Work, None) => At::Work {
                token: 0,
                deadline: Timestamp::EPOCH,
            },
            (Queue::Dead, _) => At::Dead,
        }
    }
}

/// A task's entry: the unchanging part of its record, its chunk, and where it is.
#[derive(Debug)]
pub(crate) struct Slot {
    topic: u32,
    /// The first id of its chunk (see [`Index::chunk`]).
    pub chunk: u64,
    pub priority: i16,
    pub unique: Option<Box<str>>,
    pub at: At,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// Due INPUT tasks in claim order: lowest priority value, then lowest id.
    ready: BTreeSet<(i16, TaskId)>,
    /// INPUT tasks not yet due, by due time.
    scheduled: BTreeSet<(Timestamp, TaskId)>,
    /// Unique key → the task holding it (keys are per topic).
    unique: HashMap<Box<str>, TaskId>,
    /// Counters and paused as stored; sizes as counted here.
    pub stats: TopicStats,
    /// Whether counters or paused changed since the row was last written.
    pub dirty: bool,
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
    by_name: HashMap<Arc<str>, u32>,
    /// Every task in WORK (for the reaper) and in DEAD, in id order for `list`.
    work: BTreeSet<TaskId>,
    dead: BTreeSet<TaskId>,
    /// Every stored chunk: first id → last id, which make its key.
    chunks: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
}

impl Index {
    /// Rebuilds the indexes from the tree: one scan of every record.
    pub fn load(tree: &sled::Tree) -> Result<Index> {
        let mut index = Index::default();
        let counter = |key: &[u8]| -> Result<u64> {
            tree.get(key)
                .map_err(sled_error)?
                .map_or(Ok(0), |v| codec::decode_u64(&v))
        };
        index.last_id = counter(codec::LAST_ID)?;
        index.last_token = counter(codec::LAST_TOKEN)?;
        for entry in tree.scan_prefix(codec::ROWS) {
            let (key, value) = entry.map_err(sled_error)?;
            let name = String::from_utf8_lossy(&key[1..]);
            let (counters, paused) = codec::decode_row(&value)?;
            let topic = index.topic_id(&name);
            let stats = &mut index.topics[topic as usize].stats;
            stats.counters = counters;
            stats.paused = paused;
        }
        for entry in tree.scan_prefix(codec::CHUNKS) {
            let (key, value) = entry.map_err(sled_error)?;
            let Some((first, last)) = codec::decode_chunk_key(&key) else {
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
                let at = match codec::decode_state(record) {
                    Some(State {
                        queue,
                        run_at,
                        lease,
                    }) => At::of(queue, run_at, Timestamp::EPOCH, lease),
                    None => At::Ready,
                };
                let topic = index.topic_id(parts.topic);
                if let At::Work { token, .. } = at {
                    index.last_token = index.last_token.max(token);
                }
                let unique = parts.unique.map(Box::from);
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
            scheduled: BTreeSet::new(),
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
        let sizes = &mut topic.stats.sizes;
        let size = match at.queue() {
            Queue::Input => &mut sizes.input,
            Queue::Work => &mut sizes.work,
            Queue::Dead => &mut sizes.dead,
        };
        *size = if add {
            *size + 1
        } else {
            size.saturating_sub(1)
        };
        match (at, add) {
            (At::Ready, true) => drop(topic.ready.insert((priority, id))),
            (At::Ready, false) => drop(topic.ready.remove(&(priority, id))),
            (At::Scheduled(t), true) => drop(topic.scheduled.insert((t, id))),
            (At::Scheduled(t), false) => drop(topic.scheduled.remove(&(t, id))),
            (At::Work { .. }, true) => drop(self.work.insert(id)),
            (At::Work { .. }, false) => drop(self.work.remove(&id)),
            (At::Dead, true) => drop(self.dead.insert(id)),
            (At::Dead, false) => drop(self.dead.remove(&id)),
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
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.at = At::Ready;
                t.ready.insert((slot.priority, id));
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

    /// Ids in WORK or DEAD after `after`, in id order; `None` for INPUT, which is most of
    /// the store: its pages come from the records, already in id order.
    pub fn ids(&self, queue: Queue, after: TaskId) -> Option<impl Iterator<Item = TaskId> + '_> {
        let set = match queue {
            Queue::Input => return None,
            Queue::Work => &self.work,
            Queue::Dead => &self.dead,
        };
        Some(set.range(after..).copied().filter(move |id| *id > after))
    }

    /// Whether the task is in `queue`, and in `topic` when one is given.
    pub fn is_in(&self, id: TaskId, queue: Queue, topic: Option<&str>) -> bool {
        self.slots.get(&id).is_some_and(|slot| {
            slot.at.queue() == queue && topic.is_none_or(|t| **self.topic_of(slot) == *t)
        })
    }

    pub fn stats(&self) -> Stats {
        Stats::from_topics(
            self.topics
                .iter()
                .map(|t| (t.name.to_string(), t.stats))
                .collect(),
        )
    }
}
