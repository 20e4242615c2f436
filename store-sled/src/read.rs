//! Reads: a task by id, a page of a queue. They run on the writer thread, between
//! batches, so they see each task in exactly one queue.

use crate::codec::{self, KeyParts};
use crate::index::Index;
use crate::sled_error;
use taskmill_core::store::{ListQuery, Page};
use taskmill_core::{Result, TaskId, TaskRecord};

/// The stored record of `id`, found through the index; `Corrupt` when it cannot be decoded.
pub(crate) fn get(tree: &sled::Tree, index: &Index, id: TaskId) -> Result<Option<TaskRecord>> {
    let Some(key) = index.key(id) else {
        return Ok(None);
    };
    let Some(bytes) = tree.get(&key).map_err(sled_error)? else {
        return Ok(None);
    };
    let parts = KeyParts::decode(&key).expect("the index makes valid keys");
    let topic = index.slot(id).map(|slot| index.topic_of(slot));
    let topic = topic.expect("the key came from the slot");
    codec::decode_record(&parts, topic, &bytes).map(Some)
}

/// One page of a queue, in id order.
///
/// Records that cannot be decoded are left out (with a warning): `get` reports them as
/// `Corrupt`, and a claim sends them to DEAD. The page is decided by the index, so one
/// left out does not end the paging early.
pub(crate) fn list(tree: &sled::Tree, index: &Index, query: &ListQuery) -> Result<Page> {
    let after = query.after.unwrap_or(TaskId::new(0));
    let limit = query.limit.max(1);
    let from_records = || {
        let mut start = codec::TASKS.to_vec();
        start.extend_from_slice(&after.get().saturating_add(1).to_be_bytes());
        tree.range(start..)
            .keys()
            .filter_map(|key| key.ok())
            .take_while(|key| key.starts_with(codec::TASKS))
            .filter_map(|key| KeyParts::decode(&key).map(|parts| parts.id))
    };
    let ids: Box<dyn Iterator<Item = TaskId>> = match index.ids(query.queue, after) {
        Some(ids) => Box::new(ids),
        None => Box::new(from_records()),
    };
    let mut ids = ids.filter(|id| index.is_in(*id, query.queue, query.topic.as_deref()));
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
