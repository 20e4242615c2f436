//! Reads: a task by id, a page of a queue. They run on the writer thread, between
//! batches, so they see each task in exactly one queue.

use crate::codec::{self, Chunk, KeyParts};
use crate::index::Index;
use crate::sled_error;
use taskmill_core::store::{ListQuery, Page};
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
        return Ok(match (chunk.placeholder, chunk.broken_at) {
            (Some(p), Some(at)) if p == id => Some(codec::placeholder(first, last, id, &value, at)),
            _ => None,
        });
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
pub(crate) fn list(tree: &sled::Tree, index: &Index, query: &ListQuery) -> Result<Page> {
    let after = query.after.unwrap_or(TaskId::new(0));
    let limit = query.limit.max(1);
    let from_chunks = || {
        // Start at the chunk that holds the next id: the last one that starts at or before
        // it.
        let next = after.get().saturating_add(1);
        let probe = codec::chunk_key(next, u64::MAX).to_vec();
        let start = tree
            .range(codec::CHUNKS.to_vec()..=probe)
            .keys()
            .next_back()
            .and_then(|key| key.ok())
            .map_or_else(|| codec::CHUNKS.to_vec(), |key| key.to_vec());
        tree.range(start..)
            .filter_map(|entry| entry.ok())
            .take_while(|(key, _)| key.starts_with(codec::CHUNKS))
            .flat_map(move |(key, value)| {
                let ids = codec::decode_chunk_key(&key).map(|(first, last)| {
                    let chunk = Chunk::parse(first, last, &value);
                    chunk.entries.into_iter().map(|(id, _)| id)
                });
                ids.into_iter().flatten().filter(move |id| *id > after)
            })
    };
    let ids: Box<dyn Iterator<Item = TaskId>> = match index.ids(query.queue, after) {
        Some(ids) => Box::new(ids),
        None => Box::new(from_chunks()),
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
