//! The [`Store`] implementation: the operations are script calls (see `ops.rs`); here are
//! the wake-ups that follow them, and the events and cancel requests, which cross
//! processes on the namespace's channels.

use crate::codec::{array, int};
use crate::conn::Conn;
use crate::{ops, RedisStore};
use std::time::{Duration, Instant};
use taskmill_core::raw::validate_topic;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, CancelStream, Cancellation, Capabilities, ClaimOptions,
    Claimed, EnqueueOptions, Enqueued, Fired, LeaseRef, ListOptions, Outcome, OutcomeKind, Page,
    Progress, PruneOptions, PruneSchedulesOptions, RecoverOptions, Recovered, RegisterOptions,
    RenewOptions, RequeueOptions, ScheduleEntry, ScheduleState, StatsOptions, Tick, WakeStream,
};
use taskmill_core::{
    async_trait, Event, EventStream, Queue, Result, Stats, Store, Task, TaskId, TaskRecord,
};

/// How long the answer to "does another process listen to events?" is trusted.
const LISTENER_CHECK: Duration = Duration::from_secs(1);

/// The subscriber count of a `PUBSUB NUMSUB` reply for one channel.
fn subscribers(reply: redis::Value) -> Result<i64> {
    match array(reply, "PUBSUB NUMSUB")?.get(1) {
        Some(v) => int(v, "PUBSUB NUMSUB"),
        None => Ok(0),
    }
}

impl RedisStore {
    /// Whether an event published now may reach anyone: someone in this process
    /// subscribed, or another process did when last asked (at most a second ago).
    async fn anyone_listening(&self) -> Result<bool> {
        if let Some(listening) = self.listening_as_known() {
            return Ok(listening);
        }
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB").arg(&self.shared.keys.events);
        let listening = match &self.shared.conn {
            Conn::Single(_) => subscribers(self.shared.conn.command(&cmd).await?)? > 0,
            // A node counts its own subscribers only: ask each.
            Conn::Cluster(cluster) => {
                let nodes = cluster.nodes(false).await?;
                let counts = futures_util::future::join_all(
                    nodes
                        .iter()
                        .map(|(host, port)| cluster.command_on_node(&cmd, host, *port)),
                )
                .await;
                let mut any = false;
                for count in counts {
                    any |= subscribers(count?)? > 0;
                }
                any
            }
        };
        self.note_listeners(listening);
        Ok(listening)
    }

    /// Whether an event published now may reach anyone, if that is known without asking
    /// Redis: yes with a subscriber in this process, else the last check while it is fresh.
    fn listening_as_known(&self) -> Option<bool> {
        if self.shared.bus.has_local_subscribers() {
            return Some(true);
        }
        let cached = *self
            .shared
            .remote_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cached
            .filter(|(at, _)| at.elapsed() < LISTENER_CHECK)
            .map(|(_, listening)| listening)
    }

    /// On a cluster, publishes the events `build` makes, if anyone listens: the scripts
    /// there publish none (see `Keys::events_for_scripts`). Best effort, as a script's
    /// publish is: the call they follow was applied, so a failure to publish is logged, not
    /// returned.
    pub(crate) async fn publish_for_scripts(&self, build: impl FnOnce() -> Vec<Event>) {
        if !self.shared.conn.is_cluster() {
            return;
        }
        let published = async {
            if self.anyone_listening().await? {
                let events = build();
                if !events.is_empty() {
                    self.publish_now(&events).await?;
                }
            }
            Ok::<(), taskmill_core::Error>(())
        };
        if let Err(error) = published.await {
            tracing::warn!(%error, "cannot publish the events of a store call");
        }
    }

    /// Publishes `events` on the event channel: on a cluster always through the node that
    /// serves the channel name's slot, so that all of a store's events leave from one node
    /// and reach subscribers in the order published.
    async fn publish_now(&self, events: &[Event]) -> Result<()> {
        let json = serde_json::to_string(events)
            .map_err(|e| taskmill_core::Error::misuse("cannot serialize events").with_source(e))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.shared.keys.events).arg(json);
        match &self.shared.conn {
            Conn::Single(_) => {
                let receivers = self.shared.conn.command(&cmd).await?;
                self.note_listeners(int(&receivers, "PUBLISH")? > 0);
            }
            // A node counts the receivers it serves itself, not those on other nodes.
            Conn::Cluster(cluster) => {
                cluster
                    .command_on_slot_of(&cmd, &self.shared.keys.events)
                    .await?;
            }
        }
        Ok(())
    }

    fn note_listeners(&self, listening: bool) {
        *self
            .shared
            .remote_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), listening));
    }
}

#[async_trait]
impl Store for RedisStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::SHARED
    }

    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let results = ops::enqueue(self, tasks, opts).await?;
        if results.iter().any(|r| r.is_new()) {
            self.shared.bus.wake();
        }
        Ok(results)
    }

    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
        ops::claim(self, opts).await
    }

    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
        ops::renew(self, leases, opts.deadline).await
    }

    async fn progress(&self, updates: &[Progress]) -> Result<Vec<Applied>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        ops::progress(self, updates).await
    }

    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
        let applied = ops::apply(self, outcomes, opts.now).await?;
        let to_input = outcomes.iter().zip(&applied).any(|(o, a)| {
            *a == Applied::Done
                && matches!(
                    o.kind,
                    OutcomeKind::Retry { .. } | OutcomeKind::Release { .. }
                )
        });
        if to_input {
            self.shared.bus.wake();
        }
        Ok(applied)
    }

    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
        let recovered = ops::recover(self, opts.now, opts.limit).await?;
        if recovered.iter().any(|r| r.queue == Queue::Input) {
            self.shared.bus.wake();
        }
        Ok(recovered)
    }

    async fn prune(&self, opts: &PruneOptions) -> Result<u64> {
        ops::prune(self, opts).await
    }

    async fn stats(&self, opts: &StatsOptions) -> Result<Stats> {
        ops::stats(self, opts.now).await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        ops::get(self, id).await
    }

    async fn list(&self, opts: &ListOptions) -> Result<Page> {
        ops::list(self, opts).await
    }

    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
        let moved = ops::requeue(self, ids, opts.now).await?;
        if moved.contains(&true) {
            self.shared.bus.wake();
        }
        Ok(moved)
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        ops::delete(self, ids).await
    }

    async fn cancel(&self, ids: &[TaskId], opts: &CancelOptions) -> Result<Vec<Cancellation>> {
        ops::cancel(self, ids, opts).await
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        validate_topic(topic)?;
        ops::set_paused(self, topic, paused).await?;
        if !paused {
            self.shared.bus.wake();
        }
        Ok(())
    }

    async fn register_schedules(
        &self,
        entries: &[ScheduleEntry],
        opts: &RegisterOptions,
    ) -> Result<Vec<ScheduleState>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        ops::register_schedules(self, entries, opts).await
    }

    async fn fire(&self, ticks: Vec<Tick>, opts: &EnqueueOptions) -> Result<Vec<Fired>> {
        let fired = ops::fire(self, ticks, opts).await?;
        if fired
            .iter()
            .any(|f| matches!(f, Fired::Enqueued(e) if e.is_new()))
        {
            self.shared.bus.wake();
        }
        Ok(fired)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>> {
        ops::schedules(self).await
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
        ops::set_schedule_paused(self, name, paused).await
    }

    async fn prune_schedules(&self, opts: &PruneSchedulesOptions) -> Result<u64> {
        ops::prune_schedules(self, opts).await
    }

    /// What `publish` would decide without asking Redis; unknown (no check yet, or one a
    /// second old) is yes, so that the next `publish` asks again. A manager then builds no
    /// events, and takes no event-order lock, while nobody anywhere watches.
    fn has_subscribers(&self) -> bool {
        self.listening_as_known().unwrap_or(true)
    }

    async fn publish(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() || !self.anyone_listening().await? {
            return Ok(());
        }
        self.publish_now(events).await
    }

    async fn subscribe(&self) -> Result<EventStream> {
        self.shared.bus.subscribe().await
    }

    async fn wakeups(&self) -> Result<WakeStream> {
        Ok(self.shared.bus.wakeups().await)
    }

    async fn cancellations(&self) -> Result<CancelStream> {
        Ok(self.shared.bus.cancellations().await)
    }
}
