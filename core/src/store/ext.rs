//! [`StoreExt`]: conveniences built only from [`Store`] methods.

use super::{EnqueueOptions, Enqueued, ListOptions, RequeueOptions, Store};
use crate::error::{Error, Result};
use crate::task::{Queue, Task, TaskId, TaskRecord};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// Conveniences built from [`Store`]; implemented for every store.
///
/// Nothing here is part of the contract a backend implements: each method is written
/// once, in terms of the [`Store`] methods, and cannot be overridden.
#[async_trait]
pub trait StoreExt: Store {
    /// Enqueues one task.
    async fn enqueue_one(&self, task: Task, opts: &EnqueueOptions) -> Result<Enqueued> {
        let mut results = self.enqueue(vec![task], opts).await?;
        results
            .pop()
            .ok_or_else(|| Error::storage("the store returned no result for an enqueue"))
    }

    /// Every task of a queue (and topic), paging through [`Store::list`].
    async fn list_all(&self, queue: Queue, topic: Option<&str>) -> Result<Vec<TaskRecord>> {
        let mut opts = ListOptions::new(queue).limit(1000);
        opts.topic = topic.map(Arc::from);
        let mut all = Vec::new();
        loop {
            let page = self.list(&opts).await?;
            all.extend(page.tasks);
            match page.next {
                Some(next) => opts.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Requeues every dead task (of `topic`, if given) at `now`; returns how many moved.
    async fn requeue_all_dead(&self, topic: Option<&str>, now: Timestamp) -> Result<u64> {
        let ids: Vec<TaskId> = self
            .list_all(Queue::Dead, topic)
            .await?
            .iter()
            .map(|t| t.id)
            .collect();
        let moved = self.requeue(&ids, &RequeueOptions::new(now)).await?;
        Ok(moved.into_iter().filter(|m| *m).count() as u64)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
