//! Reads: a task by id, a page of a queue. They run on the writer thread, between
//! transactions, so they see each task in exactly one queue.

use crate::codec::{self, WorkEntry};
use crate::sled_error;
use crate::trees::{Trees, T};
use taskmill_core::store::{ListQuery, Page};
use taskmill_core::{Queue, Result, TaskId, TaskRecord};

/// The task with this id as it is now: its stored record, joined with its claim when it
/// is in WORK. `Corrupt` when the record cannot be decoded.
pub(crate) fn get(trees: &Trees, id: TaskId) -> Result<Option<TaskRecord>> {
    let key = codec::id_key(id);
    let Some(bytes) = trees.tree(T::Tasks).get(key).map_err(sled_error)? else {
        return Ok(None);
    };
    let record = codec::decode_record(id, &bytes)?;
    match trees.tree(T::Work).get(key).map_err(sled_error)? {
        Some(entry) => Ok(Some(WorkEntry::decode(&entry)?.apply_to(record))),
        None => Ok(Some(record)),
    }
}

/// One page of a queue, in id order.
///
/// Records that cannot be decoded are left out (with a warning): `get` reports them as
/// `Corrupt`, and a claim sends them to DEAD.
pub(crate) fn list(trees: &Trees, query: &ListQuery) -> Result<Page> {
    let start = query.after.map_or(0, |a| a.get().saturating_add(1));
    let limit = query.limit.max(1);
    let topic = query.topic.as_deref();
    let mut ids: Vec<TaskId> = Vec::with_capacity(limit.min(1024) + 1);
    let mut tasks: Vec<TaskRecord> = Vec::with_capacity(limit.min(1024) + 1);
    let decode = |id: TaskId, bytes: &[u8]| match codec::decode_record(id, bytes) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(%id, %error, "leaving an undecodable task out of a list");
            None
        }
    };
    match query.queue {
        // INPUT is most of the store, so a scan of the records in id order fills a page
        // quickly.
        Queue::Input => {
            for entry in trees.tree(T::Tasks).range(start.to_be_bytes()..) {
                let (key, bytes) = entry.map_err(sled_error)?;
                let Some(id) = codec::id_of(&key) else {
                    continue;
                };
                let Some(record) = decode(id, &bytes) else {
                    continue;
                };
                // A task in WORK keeps its INPUT record (see `WorkEntry`).
                let in_input = record.queue == Queue::Input
                    && !trees.tree(T::Work).contains_key(&key).map_err(sled_error)?;
                if in_input && topic.is_none_or(|t| *t == *record.topic) {
                    tasks.push(record);
                    if tasks.len() > limit {
                        break;
                    }
                }
            }
        }
        Queue::Work => {
            for entry in trees.tree(T::Work).range(start.to_be_bytes()..) {
                let (key, value) = entry.map_err(sled_error)?;
                let (Some(id), Ok(work)) = (codec::id_of(&key), WorkEntry::decode(&value)) else {
                    continue;
                };
                if topic.is_none_or(|t| *t == *work.topic) {
                    ids.push(id);
                    if ids.len() > limit {
                        break;
                    }
                }
            }
        }
        Queue::Dead => {
            let topics: Vec<String> = match topic {
                Some(t) => vec![t.to_owned()],
                None => trees
                    .tree(T::Stats)
                    .iter()
                    .keys()
                    .map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sled_error)?,
            };
            for t in topics {
                let prefix = codec::topic_prefix(&t);
                let from = codec::dead_key(&t, TaskId::new(start));
                for key in trees.tree(T::Dead).range(from..).keys().take(limit + 1) {
                    let key = key.map_err(sled_error)?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    ids.extend(codec::id_at_end(&key));
                }
            }
            ids.sort_unstable();
            ids.truncate(limit + 1);
        }
    }
    // WORK and DEAD pages are decided by their ids, so a record left out below does not
    // end the paging early.
    let mut next = None;
    if ids.len() > limit {
        ids.truncate(limit);
        next = ids.last().copied();
    }
    for id in ids {
        if let Some(bytes) = trees
            .tree(T::Tasks)
            .get(codec::id_key(id))
            .map_err(sled_error)?
        {
            let record = match (query.queue, decode(id, &bytes)) {
                (Queue::Work, Some(record)) => {
                    let entry = trees
                        .tree(T::Work)
                        .get(codec::id_key(id))
                        .map_err(sled_error)?;
                    match entry.map(|e| WorkEntry::decode(&e)).transpose() {
                        Ok(entry) => entry.map(|e| e.apply_to(record)),
                        Err(_) => None,
                    }
                }
                (_, record) => record,
            };
            tasks.extend(record.filter(|r| r.queue == query.queue));
        }
    }
    if tasks.len() > limit {
        tasks.truncate(limit);
        next = tasks.last().map(|t| t.id);
    }
    Ok(Page { tasks, next })
}
