//! The [`Store`] implementation: each call is one job on the connection thread, and each
//! job that writes is one transaction.

use crate::codec::map_err;
use crate::{ops, SqliteStore};
use taskmill_core::raw::validate_topic;
use taskmill_core::store::{
    Applied, ApplyOptions, Capabilities, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef,
    ListOptions, Outcome, Page, RecoverOptions, Recovered, RenewOptions, RequeueOptions,
    WakeStream,
};
use taskmill_core::{
    async_trait, Event, EventStream, Result, Stats, Store, Task, TaskId, TaskRecord,
};

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::DURABLE
    }

    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let opts = opts.clone();
        self.call(move |conn, bus| {
            let done = ops::enqueue(conn, tasks, &opts, bus.has_subscribers())
                .map_err(|e| map_err(e, "cannot enqueue tasks"))?;
            // Published on the connection thread, before it runs any later claim: a
            // watcher sees a task's enqueue before its start.
            bus.publish(done.events);
            if done.results.iter().any(|r| r.is_new()) {
                bus.wake();
            }
            Ok(done.results)
        })
        .await
    }

    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
        let req = opts.clone();
        self.call(move |conn, _| {
            ops::claim(conn, &req).map_err(|e| map_err(e, "cannot claim tasks"))
        })
        .await
    }

    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
        let deadline = opts.deadline;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let leases = leases.to_vec();
        self.call(move |conn, _| {
            ops::renew(conn, &leases, deadline).map_err(|e| map_err(e, "cannot renew leases"))
        })
        .await
    }

    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
        let now = opts.now;
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = outcomes.to_vec();
        self.call(move |conn, bus| {
            let (applied, to_input) = ops::apply(conn, &outcomes, now)
                .map_err(|e| map_err(e, "cannot store task outcomes"))?;
            if to_input {
                bus.wake();
            }
            Ok(applied)
        })
        .await
    }

    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
        let (now, limit) = (opts.now, opts.limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(move |conn, bus| {
            let recovered = ops::recover(conn, now, limit)
                .map_err(|e| map_err(e, "cannot recover expired leases"))?;
            if recovered.iter().any(|r| !r.dead) {
                bus.wake();
            }
            Ok(recovered)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats> {
        self.call(|conn, _| ops::stats(conn).map_err(|e| map_err(e, "cannot read stats")))
            .await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.call(move |conn, _| {
            let decoded = ops::get(conn, id).map_err(|e| map_err(e, "cannot read a task"))?;
            decoded.map(|d| d.strict()).transpose()
        })
        .await
    }

    async fn list(&self, opts: &ListOptions) -> Result<Page> {
        let query = opts.clone();
        self.call(move |conn, _| {
            ops::list(conn, &query).map_err(|e| map_err(e, "cannot list tasks"))
        })
        .await
    }

    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
        let now = opts.now;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call(move |conn, bus| {
            let moved =
                ops::requeue(conn, &ids, now).map_err(|e| map_err(e, "cannot requeue tasks"))?;
            if moved.contains(&true) {
                bus.wake();
            }
            Ok(moved)
        })
        .await
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call(move |conn, _| {
            ops::delete(conn, &ids).map_err(|e| map_err(e, "cannot delete tasks"))
        })
        .await
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        validate_topic(topic)?;
        let topic = topic.to_owned();
        self.call(move |conn, bus| {
            ops::set_paused(conn, &topic, paused)
                .map_err(|e| map_err(e, "cannot pause or resume a topic"))?;
            if !paused {
                bus.wake();
            }
            Ok(())
        })
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
