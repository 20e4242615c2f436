//! The Manager: claims tasks from a store, runs them on a bounded pool of workers, and
//! records their outcomes.
//!
//! - this file: the [`Manager`] handle and its life (registering, running, closed), and
//!   the [`Client`] it owns for everything that is not running tasks;
//! - `config`: the builder and the settings;
//! - `processor`: what users register ([`Processor`], [`TaskContext`], [`TaskError`]);
//! - `run`: one run of a task, shared by its worker and its processor, and the
//!   cancel/return race;
//! - `exchange`: the hand-offs between the claimer, the workers and the flusher;
//! - `runtime`: the loops of a started manager, the shutdown steps and the event order;
//! - `sync`: the primitives `run` and `exchange` use, swapped for loom's in model checks.

mod config;
mod exchange;
mod processor;
mod run;
mod runtime;
mod sync;

pub use config::{ManagerBuilder, TopicOptions, DEFAULT_MAX_RESULT_BYTES, DEFAULT_RETENTION};
pub use processor::{Processor, TaskContext, TaskError, Typed};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::EventStream;
use crate::schedule::Schedule;
use crate::stats::Stats;
use crate::store::{Enqueued, Store};
use crate::task::{Task, TaskId, TaskRecord};
use config::Config;
use runtime::{Runtime, Shutdown};
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs registered processors on the tasks of a [`Store`].
///
/// A cheap handle: clones share one manager. A started manager runs in tokio tasks until
/// [`close`](Self::close) or [`close_with_timeout`](Self::close_with_timeout): dropping
/// every handle does not stop it (like dropping a `JoinHandle`), and a runtime shut down
/// under it abandons its runs, whose tasks come back when their leases expire.
///
/// ```
/// use taskmill_core::{Manager, Task, TaskContext, TaskError};
/// # async fn demo(store: impl taskmill_core::Store) -> taskmill_core::Result<()> {
/// let manager = Manager::builder(store).concurrency(10).build();
/// manager.register("resize", |ctx: TaskContext| async move {
///     let (w, h): (u32, u32) = ctx.args()?;
///     println!("resizing to {w}x{h}");
///     Ok::<_, TaskError>(())
/// })?;
/// manager.start().await?;
/// manager.enqueue(Task::new("resize", &(640, 480))?).await?;
/// manager.close_with_timeout(std::time::Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    id: Arc<str>,
    store: Arc<dyn Store>,
    /// On `store`, with the manager's clock, cancelling as the manager.
    client: Client,
    config: Arc<Config>,
    state: Mutex<State>,
}

/// Where the manager is in its life. Every change is one step under `Inner::state`, with
/// no await in between, so `start` and `close` are linearizable.
enum State {
    /// Built; taking registrations of processors and schedules.
    Registering(FxHashMap<Arc<str>, Arc<dyn Processor>>, Vec<Schedule>),
    /// Started: its loops run.
    Running(Runtime),
    /// Closed for good. `Some` when it had started: the shutdown, under way or over, that
    /// every close waits on.
    Closed(Option<Shutdown>),
}

impl Manager {
    /// Starts building a manager on `store`.
    pub fn builder(store: impl Store) -> ManagerBuilder {
        ManagerBuilder::new(Arc::new(store))
    }

    /// Starts building a manager on a shared store.
    pub fn builder_shared(store: Arc<dyn Store>) -> ManagerBuilder {
        ManagerBuilder::new(store)
    }

    fn from_parts(store: Arc<dyn Store>, mut config: Config) -> Self {
        let schedules = std::mem::take(&mut config.schedules);
        let id = config
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let id: Arc<str> = id.into();
        let client = config.middleware.iter().fold(
            Client::shared(store.clone())
                .clock(config.clock.clone())
                .by(id.clone()),
            |client, middleware| client.middleware_shared(middleware.clone()),
        );
        Manager {
            inner: Arc::new(Inner {
                id,
                store,
                client,
                config: Arc::new(config),
                state: Mutex::new(State::Registering(FxHashMap::default(), schedules)),
            }),
        }
    }

    /// The manager's id: the owner written into its leases.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The store the manager works on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The manager's [`Client`] on its store, with its clock, cancelling on behalf of the
    /// manager's id (`manager.client().clone().by("alice")` for another name): status
    /// lookups, lists, cancels, requeues, pauses. It works before `start` and after
    /// `close` too.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Registers the processor of `topic`.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) when the topic is
    /// invalid, already registered, or the manager has started.
    pub fn register(&self, topic: impl Into<Arc<str>>, processor: impl Processor) -> Result<()> {
        let topic = topic.into();
        crate::task::validate_topic(&topic)?;
        let mut state = self.lock_state();
        let State::Registering(processors, _) = &mut *state else {
            return Err(Error::misuse(format!(
                "cannot register topic {topic:?}: the manager has already started"
            )));
        };
        if processors.contains_key(&topic) {
            return Err(Error::misuse(format!(
                "topic {topic:?} is already registered"
            )));
        }
        processors.insert(topic, Arc::new(processor));
        Ok(())
    }

    /// Registers a schedule: from `start` on, the manager fires its ticks (see
    /// [`Schedule`] for the guarantee that a tick fires once however many managers
    /// register it). A manager may run schedules and no processor at all.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) when a schedule of the
    /// same name is registered already, or the manager has started.
    pub fn schedule(&self, schedule: Schedule) -> Result<()> {
        let mut state = self.lock_state();
        let State::Registering(_, schedules) = &mut *state else {
            return Err(Error::misuse(format!(
                "cannot register schedule {:?}: the manager has already started",
                schedule.name()
            )));
        };
        if schedules.iter().any(|s| s.name() == schedule.name()) {
            return Err(Error::misuse(format!(
                "schedule {:?} is already registered",
                schedule.name()
            )));
        }
        schedules.push(schedule);
        Ok(())
    }

    /// Registers a processor that gets the arguments deserialized into `T`.
    ///
    /// A task whose arguments do not decode into `T` goes to DEAD with the decode error,
    /// without retries.
    pub fn register_typed<T, F, Fut, E>(&self, topic: impl Into<Arc<str>>, f: F) -> Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        self.register(topic, Typed::new(f))
    }

    /// Starts claiming and running tasks of the registered topics.
    ///
    /// Returns once the manager runs and its [`Event::ManagerStart`](crate::Event) is
    /// out; the work goes on in tokio tasks until [`close`](Self::close).
    ///
    /// Fails with `Misuse` when already started or closed, when neither a topic nor a
    /// schedule is registered, or when two schedules share a name.
    /// `start` and `close` are linearizable: the manager is running from the moment
    /// `start` takes it out of registration, with no await before, so a racing `close`
    /// either comes first (then `start` fails) or stops what `start` started.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped midway, the manager is running all the same, and its loops
    /// publish `ManagerStart` before anything else.
    pub async fn start(&self) -> Result<()> {
        let announced = {
            let mut state = self.lock_state();
            match &mut *state {
                State::Registering(p, s) if p.is_empty() && s.is_empty() => {
                    return Err(Error::misuse(
                        "register at least one topic or schedule before start",
                    ))
                }
                State::Registering(p, s) => {
                    if let Some(name) = duplicate_name(s) {
                        return Err(Error::misuse(format!(
                            "schedule {name:?} is registered twice"
                        )));
                    }
                    let runtime = Runtime::start(
                        self.inner.id.clone(),
                        self.inner.store.clone(),
                        self.inner.config.clone(),
                        std::mem::take(p),
                        std::mem::take(s),
                    );
                    let announced = runtime.announced();
                    *state = State::Running(runtime);
                    announced
                }
                State::Running(_) => return Err(Error::misuse("the manager has already started")),
                State::Closed(_) => return Err(Error::misuse("the manager is closed")),
            }
        };
        announced.await;
        Ok(())
    }

    /// Enqueues one task; see [`enqueue_batch`](Self::enqueue_batch).
    pub async fn enqueue(&self, task: Task) -> Result<Enqueued> {
        let mut out = self.enqueue_batch(vec![task]).await?;
        out.pop()
            .ok_or_else(|| Error::storage("the store returned no result for an enqueue"))
    }

    /// Enqueues tasks in one store call ([`Client::enqueue_batch`]). A task that sets no
    /// retry limit gets that of the manager that first claims it.
    ///
    /// Once this returns `Ok`, each new task runs to an outcome at least once. Fails with
    /// `Misuse` after [`close`](Self::close) (the [client](Self::client) still enqueues).
    pub async fn enqueue_batch(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>> {
        if matches!(*self.lock_state(), State::Closed(_)) {
            return Err(Error::misuse("the manager is closed"));
        }
        self.inner.client.enqueue_batch(tasks).await
    }

    /// A snapshot of the store's statistics ([`Client::stats`]).
    pub async fn stats(&self) -> Result<Stats> {
        self.inner.client.stats().await
    }

    /// The task with this id, in whichever queue it is ([`Client::get`]); `None` once it
    /// was deleted, or pruned after its retention. [`Client::status`] also says where it
    /// stands.
    pub async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.inner.client.get(id).await
    }

    /// The events of the store ([`Client::watch`]): this manager's and, where the backend
    /// carries them across processes, other managers'.
    ///
    /// Events are buffered per watcher; one that falls behind gets [`crate::Event::Lagged`] with
    /// the number it missed, and the manager never waits for it.
    pub async fn watch(&self) -> Result<EventStream> {
        self.inner.client.watch().await
    }

    /// Stops at once: no more claims, running tasks are cancelled and go back to INPUT
    /// without using an attempt. Returns when every outcome is stored.
    ///
    /// Closing a manager that never started closes it for good; closing one already closed
    /// waits for that shutdown, as below.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: see [`close_with_timeout`](Self::close_with_timeout).
    pub async fn close(&self) -> Result<()> {
        self.close_with_timeout(Duration::ZERO).await
    }

    /// Stops claiming, lets running tasks finish for up to `timeout`, then cancels the rest
    /// as [`close`](Self::close) does. Returns when every outcome is stored, with an error
    /// of kind `Storage` if one of the manager's tasks panicked.
    ///
    /// Every close after the first waits for the same shutdown and returns its result; its
    /// `timeout` can shorten the grace period that is left, never lengthen it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. The shutdown runs in a tokio task of its own: a close future dropped
    /// midway does not stop it, and it still ends every loop and releases every task the
    /// manager holds (after the grace period the first close set). A later close waits
    /// for it to end, and can cut its grace short.
    pub async fn close_with_timeout(&self, timeout: Duration) -> Result<()> {
        let shutdown = {
            let mut state = self.lock_state();
            match std::mem::replace(&mut *state, State::Closed(None)) {
                State::Registering(..) | State::Closed(None) => return Ok(()),
                State::Running(runtime) => {
                    let shutdown = runtime.shutdown(timeout);
                    *state = State::Closed(Some(shutdown.clone()));
                    shutdown
                }
                State::Closed(Some(shutdown)) => {
                    *state = State::Closed(Some(shutdown.clone()));
                    shutdown
                }
            }
        };
        shutdown.wait(timeout).await
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is only swapped whole under this lock, so a poisoned guard is sound.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// A name that two of `schedules` share (the builder's and `Manager::schedule`'s meet
/// only at start).
fn duplicate_name(schedules: &[Schedule]) -> Option<&str> {
    let mut names: Vec<&str> = schedules.iter().map(Schedule::name).collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}
