//! The [`Store`] implementation: every call is a request to the writer thread (see
//! `writer.rs`), reads too, so a read never sees half of a move.

use crate::writer::Request;
use crate::SledStore;
use taskmill_core::raw::validate_topic;
use taskmill_core::store::{
    Applied, ApplyOptions, Capabilities, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef,
    ListOptions, Outcome, Page, RecoverOptions, Recovered, RenewOptions, RequeueOptions,
    WakeStream,
};
use taskmill_core::{
    async_trait, Error, Event, EventStream, Result, Stats, Store, Task, TaskId, TaskRecord,
};
use tokio::sync::oneshot;

impl SledStore {
    /// Sends a request to the writer thread and waits for its answer.
    pub(crate) async fn call<V>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<V>>) -> Request,
    ) -> Result<V> {
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

    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
        if opts.limit == 0 || opts.topics.is_empty() {
            return Ok(Vec::new());
        }
        let req = opts.clone();
        self.call(|reply| Request::Claim(req, reply)).await
    }

    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
        let deadline = opts.deadline;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        self.call(|reply| Request::Renew(leases, deadline, reply))
            .await
    }

    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
        let now = opts.now;
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = outcomes.to_vec();
        self.call(|reply| Request::Apply(outcomes, now, reply))
            .await
    }

    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
        let (now, limit) = (opts.now, opts.limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(|reply| Request::Recover(now, limit, reply)).await
    }

    async fn stats(&self) -> Result<Stats> {
        self.call(Request::Stats).await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.call(|reply| Request::Get(id, reply)).await
    }

    async fn list(&self, opts: &ListOptions) -> Result<Page> {
        let query = opts.clone();
        self.call(|reply| Request::List(query, reply)).await
    }

    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
        let now = opts.now;
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

    fn has_subscribers(&self) -> bool {
        self.shared.bus.has_subscribers()
    }

    async fn subscribe(&self) -> Result<EventStream> {
        Ok(self.shared.bus.subscribe())
    }

    async fn wakeups(&self) -> Result<WakeStream> {
        Ok(self.shared.bus.wakeups())
    }
}
