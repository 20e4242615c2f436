//! The [`Store`] implementation: each call is one critical section over the state.

use crate::MemoryStore;
use taskmill_core::raw::validate_topic;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, CancelStream, Cancellation, Capabilities, ClaimOptions,
    Claimed, EnqueueOptions, Enqueued, Fired, LeaseRef, ListOptions, Outcome, Page, Progress,
    PruneOptions, PruneSchedulesOptions, RecoverOptions, Recovered, RegisterOptions, RenewOptions,
    RequeueOptions, ScheduleEntry, ScheduleState, StatsOptions, Tick, WakeStream,
};
use taskmill_core::{
    async_trait, Event, EventStream, Queue, Result, Stats, Store, Task, TaskId, TaskRecord,
};

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::IN_PROCESS
    }

    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        let bus = &self.shared.bus;
        let mut events = bus.has_subscribers().then(Vec::new);
        let results = {
            let mut state = self.state();
            let results = state.enqueue(tasks, opts, events.as_mut());
            // Published under the lock: no claim can return these tasks before their
            // enqueue events are out.
            if let Some(events) = events {
                bus.publish(events);
            }
            results
        };
        if results.iter().any(|r| r.is_new()) {
            bus.wake();
        }
        Ok(results)
    }

    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
        Ok(self.state().claim(opts))
    }

    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
        Ok(self.state().renew(leases, opts.deadline))
    }

    async fn progress(&self, updates: &[Progress]) -> Result<Vec<Applied>> {
        Ok(self.state().progress(updates))
    }

    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
        let mut applied = Vec::with_capacity(outcomes.len());
        if self.state().apply(outcomes, opts.now, &mut applied) {
            self.shared.bus.wake();
        }
        Ok(applied)
    }

    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
        let recovered = self.state().recover(opts.now, opts.limit);
        if recovered.iter().any(|r| r.queue == Queue::Input) {
            self.shared.bus.wake();
        }
        Ok(recovered)
    }

    async fn prune(&self, opts: &PruneOptions) -> Result<u64> {
        Ok(self.state().prune(opts))
    }

    async fn stats(&self, opts: &StatsOptions) -> Result<Stats> {
        Ok(self.state().stats(opts.now))
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        Ok(self.state().get(id))
    }

    async fn list(&self, opts: &ListOptions) -> Result<Page> {
        opts.validate()?;
        Ok(self.state().list(opts))
    }

    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
        let moved = self.state().requeue(ids, opts.now);
        if moved.contains(&true) {
            self.shared.bus.wake();
        }
        Ok(moved)
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        Ok(self.state().delete(ids))
    }

    async fn cancel(&self, ids: &[TaskId], opts: &CancelOptions) -> Result<Vec<Cancellation>> {
        let bus = &self.shared.bus;
        let mut events = bus.has_subscribers().then(Vec::new);
        let mut running = Vec::new();
        let cancellations = {
            let mut state = self.state();
            let cancellations = state.cancel(ids, opts, events.as_mut(), &mut running);
            // Published under the lock, as the enqueue events are: in the order of the
            // moves they report.
            if let Some(events) = events {
                bus.publish(events);
            }
            cancellations
        };
        bus.request_cancel(running);
        Ok(cancellations)
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        validate_topic(topic)?;
        self.state().set_paused(topic, paused);
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
        Ok(self.state().register_schedules(entries, opts.now))
    }

    async fn fire(&self, ticks: Vec<Tick>, opts: &EnqueueOptions) -> Result<Vec<Fired>> {
        let bus = &self.shared.bus;
        let mut events = bus.has_subscribers().then(Vec::new);
        let fired = {
            let mut state = self.state();
            let fired = state.fire(ticks, opts, events.as_mut());
            if let Some(events) = events {
                bus.publish(events);
            }
            fired
        };
        if fired
            .iter()
            .any(|f| matches!(f, Fired::Enqueued(e) if e.is_new()))
        {
            bus.wake();
        }
        Ok(fired)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>> {
        Ok(self.state().schedules.values().cloned().collect())
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
        Ok(self.state().set_schedule_paused(name, paused))
    }

    async fn prune_schedules(&self, opts: &PruneSchedulesOptions) -> Result<u64> {
        Ok(self.state().prune_schedules(opts.seen_before))
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

    async fn cancellations(&self) -> Result<CancelStream> {
        Ok(self.shared.bus.cancellations())
    }
}
