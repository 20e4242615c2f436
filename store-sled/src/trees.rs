//! The trees of one database, and [`Plan`]: the writes of one operation, committed as one
//! multi-tree transaction.

use crate::codec::{self, WorkEntry};
use crate::sled_error;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, IVec, Tree};
use std::collections::HashMap;
use taskmill_core::{Error, Result, TopicStats};

/// The trees, by index into [`Trees::all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum T {
    /// id → record JSON.
    Tasks = 0,
    /// (topic, priority, id) → (): due INPUT tasks.
    Ready = 1,
    /// (topic, run_at, id) → priority: INPUT tasks not yet known to be due.
    Scheduled = 2,
    /// id → [`WorkEntry`]: WORK tasks and their leases.
    Work = 3,
    /// (topic, id) → (): DEAD tasks.
    Dead = 4,
    /// topic, NUL, unique key → id (keys are per topic).
    Unique = 5,
    /// topic → stats row (counters, sizes, paused).
    Stats = 6,
    /// name → value: id and token counters, schema version.
    Meta = 7,
}

const TREE_NAMES: [&str; 8] = [
    "tasks",
    "ready",
    "scheduled",
    "work",
    "dead",
    "unique",
    "stats",
    "meta",
];

/// The `meta` key of the last task id handed out.
pub(crate) const LAST_ID: &[u8] = b"last_id";
/// The `meta` key of the last fencing token handed out.
pub(crate) const LAST_TOKEN: &[u8] = b"last_token";
/// The `meta` key of the on-disk layout version.
pub(crate) const SCHEMA: &[u8] = b"schema";
/// The layout this code reads and writes.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// Handles on every tree of one database.
#[derive(Debug)]
pub(crate) struct Trees {
    pub db: sled::Db,
    all: [Tree; 8],
}

impl Trees {
    pub fn open(db: sled::Db) -> Result<Self> {
        let mut all = Vec::with_capacity(TREE_NAMES.len());
        for name in TREE_NAMES {
            all.push(db.open_tree(name).map_err(sled_error)?);
        }
        let all: [Tree; 8] = all.try_into().expect("one tree per name");
        Ok(Trees { db, all })
    }

    pub fn tree(&self, t: T) -> &Tree {
        &self.all[t as usize]
    }

    /// Reads a stats row straight from the tree.
    pub fn row(&self, topic: &str) -> Result<Option<TopicStats>> {
        match self.tree(T::Stats).get(topic).map_err(sled_error)? {
            Some(v) => codec::decode_row(&v).map(Some),
            None => Ok(None),
        }
    }
}

/// The writes of one operation over a consistent view of the trees, applied by
/// [`commit`](Plan::commit) as one transaction.
///
/// Reads see the plan's own writes first, so an operation can touch a key twice (two
/// tasks with one unique key, two outcomes for one task). The plan reads committed state
/// outside any transaction: that is sound because one thread makes every write (see
/// `writer.rs`), so nothing changes between the read and the commit.
pub(crate) struct Plan<'a> {
    trees: &'a Trees,
    writes: [HashMap<Vec<u8>, Option<Vec<u8>>>; 8],
    rows: HashMap<String, TopicStats>,
    counters: HashMap<&'static [u8], u64>,
}

impl<'a> Plan<'a> {
    pub fn new(trees: &'a Trees) -> Self {
        Plan {
            trees,
            writes: Default::default(),
            rows: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    pub fn trees(&self) -> &'a Trees {
        self.trees
    }

    pub fn get(&self, t: T, key: &[u8]) -> Result<Option<IVec>> {
        match self.writes[t as usize].get(key) {
            Some(Some(v)) => Ok(Some(IVec::from(v.as_slice()))),
            Some(None) => Ok(None),
            None => self.trees.tree(t).get(key).map_err(sled_error),
        }
    }

    pub fn put(&mut self, t: T, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes[t as usize].insert(key.into(), Some(value.into()));
    }

    /// Whether this plan removes `key`.
    pub fn is_removed(&self, t: T, key: &[u8]) -> bool {
        matches!(self.writes[t as usize].get(key), Some(None))
    }

    pub fn del(&mut self, t: T, key: impl Into<Vec<u8>>) {
        self.writes[t as usize].insert(key.into(), None);
    }

    /// The work entry of a task, if it is in WORK.
    pub fn work(&self, id: taskmill_core::TaskId) -> Result<Option<WorkEntry>> {
        match self.get(T::Work, &codec::id_key(id))? {
            Some(v) => WorkEntry::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// A topic's stats row, to change; written back at commit.
    pub fn row(&mut self, topic: &str) -> Result<&mut TopicStats> {
        if !self.rows.contains_key(topic) {
            let row = self.trees.row(topic)?.unwrap_or_default();
            self.rows.insert(topic.to_owned(), row);
        }
        Ok(self.rows.get_mut(topic).expect("just inserted"))
    }

    /// Hands out the next value of a `meta` counter (task ids, fencing tokens).
    pub fn next(&mut self, name: &'static [u8]) -> Result<u64> {
        let value = match self.counters.get(name) {
            Some(v) => *v,
            None => match self.trees.tree(T::Meta).get(name).map_err(sled_error)? {
                Some(v) => codec::decode_u64(&v)?,
                None => 0,
            },
        };
        let next = value
            .checked_add(1)
            .ok_or_else(|| Error::storage("the id or token counter is exhausted"))?;
        self.counters.insert(name, next);
        Ok(next)
    }

    pub fn is_empty(&self) -> bool {
        self.writes.iter().all(HashMap::is_empty) && self.rows.is_empty()
    }

    /// Applies every write in one transaction over all trees: all of them reach the disk
    /// (at the next flush) or none do.
    pub fn commit(mut self) -> Result<()> {
        for (topic, row) in self.rows.drain() {
            self.writes[T::Stats as usize]
                .insert(topic.into_bytes(), Some(codec::encode_row(&row)));
        }
        for (name, value) in self.counters.drain() {
            self.writes[T::Meta as usize].insert(name.to_vec(), Some(value.to_be_bytes().to_vec()));
        }
        if self.writes.iter().all(HashMap::is_empty) {
            return Ok(());
        }
        let mut batches: Vec<(usize, Batch)> = Vec::new();
        for (i, writes) in self.writes.iter_mut().enumerate() {
            if writes.is_empty() {
                continue;
            }
            let mut batch = Batch::default();
            for (key, value) in writes.drain() {
                match value {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
            batches.push((i, batch));
        }
        let trees: Vec<&Tree> = batches.iter().map(|(i, _)| &self.trees.all[*i]).collect();
        trees
            .as_slice()
            .transaction(|view| {
                for (tx, (_, batch)) in view.iter().zip(&batches) {
                    tx.apply_batch(batch)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => sled_error(e),
                TransactionError::Abort(()) => Error::storage("the sled transaction was aborted"),
            })
    }
}
