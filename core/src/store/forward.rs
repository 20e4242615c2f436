//! [`Store`] for the pointers that hold a store, `Arc<S>` and `Box<S>` (`S` may be
//! `dyn Store`), forwarding every method to the store inside.
//!
//! One macro writes both impls, so a new trait method is forwarded in one place. A wrapper
//! that changes some calls (a test store injecting faults, a metrics layer) implements
//! [`Store`] by hand instead; it puts `#[warn(clippy::missing_trait_methods)]` on its impl,
//! as these do, so that a method it forgets to forward (one with a default body) fails
//! `cargo clippy -- -D warnings` rather than silently taking the default.

use super::{
    Applied, ApplyOptions, CancelOptions, CancelStream, Cancellation, Capabilities, ClaimOptions,
    Claimed, EnqueueOptions, Enqueued, Fired, LeaseRef, ListOptions, Outcome, Page, Progress,
    PruneOptions, PruneSchedulesOptions, RecoverOptions, Recovered, RegisterOptions, RenewOptions,
    RequeueOptions, ScheduleEntry, ScheduleState, StatsOptions, Store, Tick, WakeStream,
};
use crate::error::Result;
use crate::event::{Event, EventStream};
use crate::stats::Stats;
use crate::task::{Task, TaskId, TaskRecord};
use async_trait::async_trait;
use std::sync::Arc;

/// Implements [`Store`] for a pointer type `$ptr<S>` that dereferences to `S: Store`.
macro_rules! forward_store {
    ($ptr:ident) => {
        #[async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn enqueue(
                &self,
                tasks: Vec<Task>,
                opts: &EnqueueOptions,
            ) -> Result<Vec<Enqueued>> {
                (**self).enqueue(tasks, opts).await
            }
            async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
                (**self).claim(opts).await
            }
            async fn renew(
                &self,
                leases: &[LeaseRef],
                opts: &RenewOptions,
            ) -> Result<Vec<Applied>> {
                (**self).renew(leases, opts).await
            }
            async fn apply(
                &self,
                outcomes: &[Outcome],
                opts: &ApplyOptions,
            ) -> Result<Vec<Applied>> {
                (**self).apply(outcomes, opts).await
            }
            async fn progress(&self, updates: &[Progress]) -> Result<Vec<Applied>> {
                (**self).progress(updates).await
            }
            async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
                (**self).recover(opts).await
            }
            async fn prune(&self, opts: &PruneOptions) -> Result<u64> {
                (**self).prune(opts).await
            }
            async fn stats(&self, opts: &StatsOptions) -> Result<Stats> {
                (**self).stats(opts).await
            }
            async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
                (**self).get(id).await
            }
            async fn list(&self, opts: &ListOptions) -> Result<Page> {
                (**self).list(opts).await
            }
            async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
                (**self).requeue(ids, opts).await
            }
            async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
                (**self).delete(ids).await
            }
            async fn cancel(
                &self,
                ids: &[TaskId],
                opts: &CancelOptions,
            ) -> Result<Vec<Cancellation>> {
                (**self).cancel(ids, opts).await
            }
            async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
                (**self).set_paused(topic, paused).await
            }
            async fn register_schedules(
                &self,
                entries: &[ScheduleEntry],
                opts: &RegisterOptions,
            ) -> Result<Vec<ScheduleState>> {
                (**self).register_schedules(entries, opts).await
            }
            async fn fire(&self, ticks: Vec<Tick>, opts: &EnqueueOptions) -> Result<Vec<Fired>> {
                (**self).fire(ticks, opts).await
            }
            async fn schedules(&self) -> Result<Vec<ScheduleState>> {
                (**self).schedules().await
            }
            async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
                (**self).set_schedule_paused(name, paused).await
            }
            async fn prune_schedules(&self, opts: &PruneSchedulesOptions) -> Result<u64> {
                (**self).prune_schedules(opts).await
            }
            async fn publish(&self, events: &[Event]) -> Result<()> {
                (**self).publish(events).await
            }
            fn has_subscribers(&self) -> bool {
                (**self).has_subscribers()
            }
            async fn subscribe(&self) -> Result<EventStream> {
                (**self).subscribe().await
            }
            async fn wakeups(&self) -> Result<WakeStream> {
                (**self).wakeups().await
            }
            async fn cancellations(&self) -> Result<CancelStream> {
                (**self).cancellations().await
            }
        }
    };
}

forward_store!(Arc);
forward_store!(Box);
