//! Reads: a task by id, a page of a queue. They run on the writer thread, between
//! batches, so they see each task in exactly one queue.

use crate::codec::{self, Chunk, KeyParts};
use crate::index::Index;
use crate::sled_error;
use std::collections::BTreeSet;
use taskmill_core::store::{ListOptions, Page};
use taskmill_core::{Result, TaskId, TaskRecord};

/// The stored record of `id`, found through the index; `Corrupt` when it cannot be decoded.
/// The placeholder of a chunk's unreadable part reads as the DEAD record it stands for.
pub(crate) fn get(tree: &sled::Tree, index: &Index, id: TaskId) -> Result<Option<TaskRecord>> {
    let Some((first, last)) = index.chunk(id) else {
        return Ok(None);
    };
    let Some(value) = tree
        .get(codec::chunk_key(first, last))
        .map_err(sled_error)?
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
pub(crate) fn list(tree: &sled::Tree, index: &Index, query: &ListOptions) -> Result<Page> {
    let after = query.after.unwrap_or(TaskId::new(0));
    let limit = query.limit.max(1);
    let ids: Box<dyn Iterator<Item = TaskId>> = match index.ids(query.queue, after) {
        Some(ids) => Box::new(ids),
        None => Box::new(chunk_ids(tree, after)),
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

/// The ids after `after` in the chunks, in id order. The chunks of one enqueue overlap (one
/// per topic), so they are merged: an id is given out once the next chunk starts after it,
/// as every later chunk holds only ids from its start on. A chunk holding an id after
/// `after` starts at most [`codec::MAX_CHUNK_SPAN`] before it, so the reading starts there.
fn chunk_ids(tree: &sled::Tree, after: TaskId) -> impl Iterator<Item = TaskId> + '_ {
    let next = after.get().saturating_add(1);
    let start = codec::chunk_key(next.saturating_sub(codec::MAX_CHUNK_SPAN), 0);
    let mut chunks = tree
        .range(start.to_vec()..)
        .filter_map(|entry| entry.ok())
        .take_while(|(key, _)| key.starts_with(codec::CHUNKS))
        .peekable();
    let mut pending = BTreeSet::<TaskId>::new();
    std::iter::from_fn(move || loop {
        let next_start = chunks
            .peek()
            .map(|(key, _)| codec::decode_chunk_key(key).map_or(0, |(first, _)| first));
        if let Some(&min) = pending.first() {
            if next_start.is_none_or(|start| min.get() < start) {
                return pending.pop_first();
            }
        }
        let (key, value) = chunks.next()?;
        if let Some((first, last)) = codec::decode_chunk_key(&key) {
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
