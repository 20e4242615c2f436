//! The [`Store`] implementation: changes go to the writer thread, reads run on tokio's
//! blocking pool.

use crate::codec::{self, WorkEntry};
use crate::trees::{Trees, T};
use crate::writer::Request;
use crate::{sled_error, SledStore};
use taskmill_core::store::{
    Applied, Capabilities, ClaimRequest, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListQuery,
    Outcome, Page, Recovered, WakeStream,
};
use taskmill_core::{
    async_trait, validate_topic, Error, Event, EventStream, Queue, Result, Stats, Store, Task,
    TaskId, TaskRecord, Timestamp,
};
use tokio::sync::oneshot;

impl SledStore {
    /// Sends a request to the writer thread and waits for its answer.
    async fn call<V>(&self, make: impl FnOnce(oneshot::Sender<Result<V>>) -> Request) -> Result<V> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Error::unavailable("the sled writer thread has stopped");
        self.shared
            .requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(make(tx))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs a read on the blocking pool: sled may block on disk.
    async fn read<V: Send + 'static>(
        &self,
        f: impl FnOnce(&Trees) -> Result<V> + Send + 'static,
    ) -> Result<V> {
        let trees = self.shared.trees.clone();
        tokio::task::spawn_blocking(move || f(&trees))
            .await
            .map_err(|e| Error::storage("a sled read task failed").with_source(e))?
    }
}

#[async_trait]
impl Store for SledStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::DURABLE
    }

    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let opts = opts.clone();
        self.call(|reply| Request::Enqueue(tasks, opts, reply))
            .await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>> {
        if req.limit == 0 || req.topics.is_empty() {
            return Ok(Vec::new());
        }
        let req = req.clone();
        self.call(|reply| Request::Claim(req, reply)).await
    }

    async fn renew(&self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        self.call(|reply| Request::Renew(leases, deadline, reply))
            .await
    }

    async fn apply(&self, outcomes: &[Outcome], now: Timestamp) -> Result<Vec<Applied>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = outcomes.to_vec();
        self.call(|reply| Request::Apply(outcomes, now, reply))
            .await
    }

    async fn recover(&self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(|reply| Request::Recover(now, limit, reply)).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.call(Request::Stats).await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.read(
            move |trees| match trees.tree(T::Tasks).get(codec::id_key(id)) {
                Ok(Some(bytes)) => codec::decode_record(id, &bytes).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(sled_error(e)),
            },
        )
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page> {
        let query = query.clone();
        self.read(move |trees| list(trees, &query)).await
    }

    async fn requeue(&self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call(|reply| Request::Requeue(ids, now, reply)).await
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call(|reply| Request::Delete(ids, reply)).await
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        validate_topic(topic)?;
        let topic = topic.to_owned();
        self.call(|reply| Request::SetPaused(topic, paused, reply))
            .await
    }

    async fn publish(&self, events: &[Event]) -> Result<()> {
        self.shared.bus.publish(events.iter().cloned());
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream> {
        Ok(self.shared.bus.subscribe())
    }

    async fn wakeups(&self) -> Result<WakeStream> {
        Ok(self.shared.bus.wakeups())
    }
}

/// One page of a queue, in id order.
///
/// Reads committed state outside any transaction, so a page taken while tasks move may
/// miss a task that moved into the queue meanwhile, never shows one twice on a page, and
/// shows each task as its record says. Records that cannot be decoded are left out (with a
/// warning): `get` reports them as `Corrupt`, and a claim sends them to DEAD.
fn list(trees: &Trees, query: &ListQuery) -> Result<Page> {
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
                if record.queue == Queue::Input && topic.is_none_or(|t| *t == *record.topic) {
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
    for id in ids {
        if let Some(bytes) = trees
            .tree(T::Tasks)
            .get(codec::id_key(id))
            .map_err(sled_error)?
        {
            tasks.extend(decode(id, &bytes).filter(|r| r.queue == query.queue));
        }
    }
    let next = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Page { tasks, next })
}
