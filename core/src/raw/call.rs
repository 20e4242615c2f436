//! Stores that run every call on a thread of their own (SQLite's connection, sled's
//! writer): one [`Call`] per [`Store`](crate::Store) method, and the `Store` impl that
//! sends them, written once.
//!
//! A backend implements [`CallThread`] (how a call reaches its thread, and its in-process
//! bus) and invokes [`store_via_calls!`](crate::store_via_calls) for its store type; its
//! thread then matches on [`Call`] and answers each call's [`Reply`]. The generated impl
//! does what every such store does before a call leaves the caller: empty batches answer
//! at once without a trip to the thread, topics are validated, and events and wake-ups
//! go through the bus.

use crate::error::{Error, Result};
use crate::raw::LocalBus;
use crate::stats::Stats;
use crate::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, Capabilities, ClaimOptions, Claimed,
    EnqueueOptions, Enqueued, Fired, LeaseRef, ListOptions, Outcome, Page, Progress, PruneOptions,
    PruneSchedulesOptions, RecoverOptions, Recovered, RegisterOptions, RenewOptions,
    RequeueOptions, ScheduleEntry, ScheduleState, StatsOptions, Tick,
};
use crate::task::{Task, TaskId, TaskRecord};
use async_trait::async_trait;
use tokio::sync::oneshot;

/// Where a call's result goes: the caller waits on the other end.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// One call of a store, owning its arguments, with the sender of its result.
///
/// The variants mirror the [`Store`](crate::Store) methods that reach the thread, with the
/// same arguments; the bus methods never leave the caller. Exhaustive on purpose: a new
/// store method is a new variant, and every thread that serves calls must then answer it.
#[derive(Debug)]
pub enum Call {
    /// [`Store::enqueue`](crate::Store::enqueue), with at least one task.
    Enqueue {
        /// The tasks.
        tasks: Vec<Task>,
        /// Its options.
        opts: EnqueueOptions,
        /// Where the result goes.
        reply: Reply<Vec<Enqueued>>,
    },
    /// [`Store::claim`](crate::Store::claim), with a limit and a topic.
    Claim {
        /// Its options.
        opts: ClaimOptions,
        /// Where the result goes.
        reply: Reply<Vec<Claimed>>,
    },
    /// [`Store::renew`](crate::Store::renew), with at least one lease.
    Renew {
        /// The leases.
        leases: Vec<LeaseRef>,
        /// Its options.
        opts: RenewOptions,
        /// Where the result goes.
        reply: Reply<Vec<Applied>>,
    },
    /// [`Store::progress`](crate::Store::progress), with at least one update.
    Progress {
        /// The updates.
        updates: Vec<Progress>,
        /// Where the result goes.
        reply: Reply<Vec<Applied>>,
    },
    /// [`Store::apply`](crate::Store::apply), with at least one outcome.
    Apply {
        /// The outcomes.
        outcomes: Vec<Outcome>,
        /// Its options.
        opts: ApplyOptions,
        /// Where the result goes.
        reply: Reply<Vec<Applied>>,
    },
    /// [`Store::recover`](crate::Store::recover), with a limit above zero.
    Recover {
        /// Its options.
        opts: RecoverOptions,
        /// Where the result goes.
        reply: Reply<Vec<Recovered>>,
    },
    /// [`Store::prune`](crate::Store::prune), with a limit above zero.
    Prune {
        /// Its options.
        opts: PruneOptions,
        /// Where the result goes.
        reply: Reply<u64>,
    },
    /// [`Store::stats`](crate::Store::stats).
    Stats {
        /// Its options.
        opts: StatsOptions,
        /// Where the result goes.
        reply: Reply<Stats>,
    },
    /// [`Store::get`](crate::Store::get).
    Get {
        /// The task.
        id: TaskId,
        /// Where the result goes.
        reply: Reply<Option<TaskRecord>>,
    },
    /// [`Store::list`](crate::Store::list).
    List {
        /// Its options.
        opts: ListOptions,
        /// Where the result goes.
        reply: Reply<Page>,
    },
    /// [`Store::requeue`](crate::Store::requeue), with at least one id.
    Requeue {
        /// The tasks.
        ids: Vec<TaskId>,
        /// Its options.
        opts: RequeueOptions,
        /// Where the result goes.
        reply: Reply<Vec<bool>>,
    },
    /// [`Store::delete`](crate::Store::delete), with at least one id.
    Delete {
        /// The tasks.
        ids: Vec<TaskId>,
        /// Where the result goes.
        reply: Reply<Vec<bool>>,
    },
    /// [`Store::cancel`](crate::Store::cancel), with at least one id.
    Cancel {
        /// The tasks.
        ids: Vec<TaskId>,
        /// Its options.
        opts: CancelOptions,
        /// Where the result goes.
        reply: Reply<Vec<Cancellation>>,
    },
    /// [`Store::set_paused`](crate::Store::set_paused), with a valid topic.
    SetPaused {
        /// The topic.
        topic: String,
        /// Pause (`true`) or resume.
        paused: bool,
        /// Where the result goes.
        reply: Reply<()>,
    },
    /// [`Store::register_schedules`](crate::Store::register_schedules), with at least one
    /// entry.
    RegisterSchedules {
        /// The entries.
        entries: Vec<ScheduleEntry>,
        /// Its options.
        opts: RegisterOptions,
        /// Where the result goes.
        reply: Reply<Vec<ScheduleState>>,
    },
    /// [`Store::fire`](crate::Store::fire), with at least one tick.
    Fire {
        /// The ticks.
        ticks: Vec<Tick>,
        /// Its options.
        opts: EnqueueOptions,
        /// Where the result goes.
        reply: Reply<Vec<Fired>>,
    },
    /// [`Store::schedules`](crate::Store::schedules).
    Schedules {
        /// Where the result goes.
        reply: Reply<Vec<ScheduleState>>,
    },
    /// [`Store::set_schedule_paused`](crate::Store::set_schedule_paused).
    SetSchedulePaused {
        /// The schedule's name.
        name: String,
        /// Pause (`true`) or resume.
        paused: bool,
        /// Where the result goes.
        reply: Reply<bool>,
    },
    /// [`Store::prune_schedules`](crate::Store::prune_schedules).
    PruneSchedules {
        /// Its options.
        opts: PruneSchedulesOptions,
        /// Where the result goes.
        reply: Reply<u64>,
    },
}

/// A store whose calls run on a thread of its own: how a [`Call`] reaches that thread, and
/// the in-process bus its events, wake-ups and cancel requests go through. With it,
/// [`store_via_calls!`](crate::store_via_calls) writes the store's whole
/// [`Store`](crate::Store) impl.
#[async_trait]
pub trait CallThread: Send + Sync + 'static {
    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// The in-process bus its events and wake-ups go through.
    fn bus(&self) -> &LocalBus;

    /// Hands `call` to the thread (in the caller's tracing span), waiting for room when
    /// its channel is full. Fails with `Unavailable` when the thread has stopped.
    ///
    /// # Cancel safety
    /// A call dropped before it was handed over never runs; once handed over it runs to
    /// its end, and its reply is dropped.
    async fn send(&self, call: Call) -> Result<()>;
}

/// Sends the call `make` builds around its reply sender, and waits for the result.
#[doc(hidden)]
pub async fn call<S: CallThread + ?Sized, T>(
    store: &S,
    make: impl FnOnce(Reply<T>) -> Call,
) -> Result<T> {
    let (reply, answer) = oneshot::channel();
    store.send(make(reply)).await?;
    answer.await.map_err(|_| {
        Error::storage("the store's thread failed while running this call (see its log)")
    })?
}

/// Implements [`Store`](crate::Store) for a type that implements
/// [`CallThread`](crate::raw::CallThread): every queue, inspection and admin method
/// becomes one [`Call`](crate::raw::Call), the bus methods use
/// [`CallThread::bus`](crate::raw::CallThread::bus).
///
/// ```text
/// taskmill_core::store_via_calls!(SqliteStore);
/// ```
#[macro_export]
macro_rules! store_via_calls {
    ($store:ty) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl $crate::Store for $store {
            fn capabilities(&self) -> $crate::store::Capabilities {
                $crate::raw::CallThread::capabilities(self)
            }

            async fn enqueue(
                &self,
                tasks: ::std::vec::Vec<$crate::Task>,
                opts: &$crate::store::EnqueueOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Enqueued>> {
                if tasks.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::Enqueue {
                    tasks,
                    opts,
                    reply,
                })
                .await
            }

            async fn claim(
                &self,
                opts: &$crate::store::ClaimOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Claimed>> {
                if opts.limit == 0 || opts.topics.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::Claim { opts, reply }).await
            }

            async fn renew(
                &self,
                leases: &[$crate::store::LeaseRef],
                opts: &$crate::store::RenewOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Applied>> {
                if leases.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let (leases, opts) = (leases.to_vec(), opts.clone());
                $crate::raw::call(self, |reply| $crate::raw::Call::Renew {
                    leases,
                    opts,
                    reply,
                })
                .await
            }

            async fn apply(
                &self,
                outcomes: &[$crate::store::Outcome],
                opts: &$crate::store::ApplyOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Applied>> {
                if outcomes.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let (outcomes, opts) = (outcomes.to_vec(), opts.clone());
                $crate::raw::call(self, |reply| $crate::raw::Call::Apply {
                    outcomes,
                    opts,
                    reply,
                })
                .await
            }

            async fn progress(
                &self,
                updates: &[$crate::store::Progress],
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Applied>> {
                if updates.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let updates = updates.to_vec();
                $crate::raw::call(self, |reply| $crate::raw::Call::Progress { updates, reply })
                    .await
            }

            async fn prune(&self, opts: &$crate::store::PruneOptions) -> $crate::Result<u64> {
                if opts.limit == 0 {
                    return Ok(0);
                }
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::Prune { opts, reply }).await
            }

            async fn recover(
                &self,
                opts: &$crate::store::RecoverOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Recovered>> {
                if opts.limit == 0 {
                    return Ok(::std::vec::Vec::new());
                }
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::Recover { opts, reply }).await
            }

            async fn stats(
                &self,
                opts: &$crate::store::StatsOptions,
            ) -> $crate::Result<$crate::Stats> {
                let opts = *opts;
                $crate::raw::call(self, |reply| $crate::raw::Call::Stats { opts, reply }).await
            }

            async fn get(
                &self,
                id: $crate::TaskId,
            ) -> $crate::Result<::std::option::Option<$crate::TaskRecord>> {
                $crate::raw::call(self, |reply| $crate::raw::Call::Get { id, reply }).await
            }

            async fn list(
                &self,
                opts: &$crate::store::ListOptions,
            ) -> $crate::Result<$crate::store::Page> {
                opts.validate()?;
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::List { opts, reply }).await
            }

            async fn requeue(
                &self,
                ids: &[$crate::TaskId],
                opts: &$crate::store::RequeueOptions,
            ) -> $crate::Result<::std::vec::Vec<bool>> {
                if ids.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let (ids, opts) = (ids.to_vec(), opts.clone());
                $crate::raw::call(self, |reply| $crate::raw::Call::Requeue {
                    ids,
                    opts,
                    reply,
                })
                .await
            }

            async fn delete(
                &self,
                ids: &[$crate::TaskId],
            ) -> $crate::Result<::std::vec::Vec<bool>> {
                if ids.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let ids = ids.to_vec();
                $crate::raw::call(self, |reply| $crate::raw::Call::Delete { ids, reply }).await
            }

            async fn cancel(
                &self,
                ids: &[$crate::TaskId],
                opts: &$crate::store::CancelOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Cancellation>> {
                if ids.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let (ids, opts) = (ids.to_vec(), opts.clone());
                $crate::raw::call(self, |reply| $crate::raw::Call::Cancel { ids, opts, reply })
                    .await
            }

            async fn set_paused(&self, topic: &str, paused: bool) -> $crate::Result<()> {
                $crate::raw::validate_topic(topic)?;
                let topic = topic.to_owned();
                $crate::raw::call(self, |reply| $crate::raw::Call::SetPaused {
                    topic,
                    paused,
                    reply,
                })
                .await
            }

            async fn register_schedules(
                &self,
                entries: &[$crate::store::ScheduleEntry],
                opts: &$crate::store::RegisterOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::ScheduleState>> {
                if entries.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let (entries, opts) = (entries.to_vec(), opts.clone());
                $crate::raw::call(self, |reply| $crate::raw::Call::RegisterSchedules {
                    entries,
                    opts,
                    reply,
                })
                .await
            }

            async fn fire(
                &self,
                ticks: ::std::vec::Vec<$crate::store::Tick>,
                opts: &$crate::store::EnqueueOptions,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::Fired>> {
                if ticks.is_empty() {
                    return Ok(::std::vec::Vec::new());
                }
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::Fire { ticks, opts, reply })
                    .await
            }

            async fn schedules(
                &self,
            ) -> $crate::Result<::std::vec::Vec<$crate::store::ScheduleState>> {
                $crate::raw::call(self, |reply| $crate::raw::Call::Schedules { reply }).await
            }

            async fn set_schedule_paused(&self, name: &str, paused: bool) -> $crate::Result<bool> {
                let name = name.to_owned();
                $crate::raw::call(self, |reply| $crate::raw::Call::SetSchedulePaused {
                    name,
                    paused,
                    reply,
                })
                .await
            }

            async fn prune_schedules(
                &self,
                opts: &$crate::store::PruneSchedulesOptions,
            ) -> $crate::Result<u64> {
                let opts = opts.clone();
                $crate::raw::call(self, |reply| $crate::raw::Call::PruneSchedules {
                    opts,
                    reply,
                })
                .await
            }

            async fn publish(&self, events: &[$crate::Event]) -> $crate::Result<()> {
                $crate::raw::CallThread::bus(self).publish(events.iter().cloned());
                Ok(())
            }

            fn has_subscribers(&self) -> bool {
                $crate::raw::CallThread::bus(self).has_subscribers()
            }

            async fn subscribe(&self) -> $crate::Result<$crate::EventStream> {
                Ok($crate::raw::CallThread::bus(self).subscribe())
            }

            async fn wakeups(&self) -> $crate::Result<$crate::store::WakeStream> {
                Ok($crate::raw::CallThread::bus(self).wakeups())
            }

            async fn cancellations(&self) -> $crate::Result<$crate::store::CancelStream> {
                Ok($crate::raw::CallThread::bus(self).cancellations())
            }
        }
    };
}
