//! The running manager: the claimer, a fixed pool of workers, the flusher, the
//! maintenance loop (lease renewal, cancel requests, progress writes, reaper, pruning,
//! stats), and the scheduler when the manager has schedules, each a tokio task in a file
//! of its own.
//!
//! # Data flow
//!
//! The claimer claims batches of tasks that `concurrency` workers take one run at a time;
//! each worker hands its run's outcome to the flusher, which applies outcomes in batches
//! and publishes their events once the store accepted them. The three meet in one
//! [`Exchange`]: a worker that ends a run hands over the outcome and takes its next run
//! under one lock.
//!
//! The claimer keeps up to `2 × concurrency` runs in flight (queued for a worker, or
//! running) and claims again only when that falls to `concurrency`: claims come in batches
//! of about `concurrency` instead of one per ended run, and workers never wait on a round
//! trip. Every claimed task is *leased* from its claim until the flusher takes its outcome,
//! and the maintenance loop renews the leases of all of them.
//!
//! # Shutdown
//!
//! [`Runtime::shutdown`] runs these steps in a tokio task of its own, so that a close
//! future dropped midway still completes them; every close waits for the one result.
//!
//! 1. `stop_claiming` is cancelled, which also stops the scheduler: a tick fire in flight
//!    completes, and no tick is fired after this step. A claim in flight is never dropped (that would strand
//!    its tasks in WORK until their leases expire): the claimer hands what it claimed to the
//!    workers, then ends. As it ends it closes the job queue and drops its producer, so no
//!    task is leased after this step.
//! 2. During the grace period, workers run what is running and queued as usual and end
//!    once the queue is empty.
//! 3. When the grace period is over (at once for `close()`; a later close with a shorter
//!    timeout ends it early), `cancelling` is set and every leased run is cancelled:
//!    processors see the signal, and a worker releases a run it takes after this without
//!    running it. A cancelled run's outcome is a release: back to INPUT, its attempt not
//!    counted.
//! 4. Each worker drops its producer as it ends. Once the last producer is gone, the
//!    flusher applies the outcomes still queued and ends: every leased task now has its
//!    outcome in the store.
//! 5. `stop_maintenance` is cancelled; the maintenance loop ends. Renewals go on until
//!    here, so no lease of a run in its grace period or of an outcome being applied expires.
//! 6. `ManagerStop` is published, and the result (whether a loop panicked) goes to every
//!    close waiting for it.
//!
//! # Cancels
//!
//! A cancel of a running task reaches the manager in one of two ways: its id on the
//! store's [`cancellations`](Store::cancellations) stream, which the maintenance loop
//! follows (taken before the first claim, see [`Shared::announce`]), or a renewal or
//! progress write the store answers `Applied::Cancelled` (how a manager on a store whose
//! events do not cross processes learns of a cancel made elsewhere: within one renew
//! interval). A request on the stream for a task just claimed, whose run is not leased
//! yet, is kept for a renew interval or two and applied as the run is leased. Either way
//! the leased run is cancelled as in shutdown step 3: the processor
//! sees the signal, is polled once more, and is dropped at its next await unless it
//! returned. Its outcome (a release, or what it returned first) goes to the store like any
//! other; the store ends the task CANCELLED because the request is stored on it, and
//! answers `Applied::Cancelled`, for which the flusher publishes `TaskCancelled`. A
//! processor that never yields keeps its worker until it returns; the store refuses to
//! renew its lease meanwhile, so if it outlasts the lease the reaper (any manager's) ends
//! the task CANCELLED and the late outcome is stale.
//!
//! # Event order
//!
//! A watcher sees a manager's events in this order; the rules say which step keeps it.
//!
//! 1. `ManagerStart` comes first: `start` returns only once it is out, and the claimer
//!    and the maintenance loop, the only loops that publish on their own, each wait for
//!    it before anything else ([`Shared::announce`]; whichever comes first publishes it).
//!    `ManagerStop` comes last (shutdown step 6).
//! 2. A run's `TaskStart` is published before the run is handed to a worker, so it comes
//!    before the run's outcome event.
//! 3. An outcome's event is published only after the store accepted the outcome; a stale
//!    outcome has no event.
//! 4. A task that goes back to INPUT (a retry, a release, a recovery by the reaper) can be
//!    claimed again the moment the store has it. The flusher holds `event_order` from
//!    applying such a batch until its events are out, the reaper likewise for its
//!    recoveries, and the claimer holds it while it publishes starts: the task's next
//!    `TaskStart` from this manager comes after the event that says how it got back.
//! 5. Rule 4 costs a lock only when someone watches ([`Store::has_subscribers`]); with no
//!    watcher no event is built at all.

mod claimer;
mod flusher;
mod maintenance;
mod outcome;
mod round_robin;
mod scheduler;
mod worker;

use super::config::Config;
use super::exchange::Exchange;
use super::processor::Processor;
use super::run::Run;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::middleware::Chain;
use crate::observer::RunObserver;
use crate::schedule::Schedule;
use crate::store::{CancelStream, Store};
use crate::task::TaskId;
use outcome::PendingOutcome;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, OnceCell};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A manager that has started: its loops, and what they share.
pub(super) struct Runtime {
    shared: Arc<Shared>,
    claimer: JoinHandle<()>,
    workers: JoinSet<()>,
    flusher: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    /// The scheduler loop, when the manager has schedules.
    scheduler: Option<JoinHandle<()>>,
}

/// What every loop of a running manager shares.
struct Shared {
    id: Arc<str>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    topics: FxHashMap<Arc<str>, Registered>,
    /// Runs whose tasks this manager holds under lease: from the claim until the flusher
    /// takes the outcome (queued for a worker, running, or ended with the outcome on its
    /// way). The maintenance loop renews their leases; shutdown cancels them.
    leased: Mutex<FxHashMap<TaskId, Arc<Run>>>,
    /// Cancel requests for tasks not leased here when they came: a claim returns its tasks
    /// a moment before the claimer puts them in `leased`, and a request in between is
    /// applied as they go in rather than at the next renewal. Locked after `leased`, never
    /// before.
    early_cancels: Mutex<EarlyCancels>,
    /// Runs on their way to the workers, outcomes on their way to the flusher, and the
    /// count of runs in flight between them.
    exchange: Arc<Exchange<Arc<Run>, PendingOutcome>>,
    /// Set once `ManagerStart` is out (event-order rule 1).
    announced: OnceCell<()>,
    /// The store's stream of cancel requests, taken before `ManagerStart` (so before the
    /// first claim) and left here for the maintenance loop, which follows it.
    cancel_requests: Mutex<Option<CancelStream>>,
    stop_claiming: CancellationToken,
    /// Set once runs must stop (shutdown step 3): leased runs are cancelled, and runs taken
    /// from the queue afterwards are released without running.
    cancelling: AtomicBool,
    stop_maintenance: CancellationToken,
    /// Orders a requeued task's event before its next start (event-order rule 4).
    event_order: tokio::sync::Mutex<()>,
}

/// What a run of a registered topic needs, found with one lookup per run.
struct Registered {
    processor: Arc<dyn Processor>,
    /// The manager's middleware, then the topic's.
    middleware: Chain,
    /// The manager's observers, then the topic's.
    observers: Box<[Arc<dyn RunObserver>]>,
    timeout: Option<Duration>,
    /// Whether its finished tasks are kept: its retention is not zero.
    keep: bool,
}

/// The ids of cancel requests no leased run matched, kept for one to two renew intervals
/// (after which a renewal reports the request anyway): most are of tasks other managers
/// run, where the store's requests reach every manager.
#[derive(Default)]
struct EarlyCancels {
    current: FxHashSet<TaskId>,
    previous: FxHashSet<TaskId>,
}

impl EarlyCancels {
    fn contains(&self, id: TaskId) -> bool {
        self.current.contains(&id) || self.previous.contains(&id)
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_empty()
    }

    /// Forgets the ids older than one rotation; called once per renew interval.
    fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// A shutdown under way or over; every close waits on it. See [`Runtime::shutdown`].
#[derive(Clone)]
pub(super) struct Shutdown {
    shared: Arc<Shared>,
    /// `None` until the shutdown is over; then whether it was clean, or which loop panicked.
    done: watch::Receiver<Option<Result<(), Arc<str>>>>,
}

impl Runtime {
    /// Spawns the loops of a manager running `processors`.
    ///
    /// No await: nothing can see a manager half started.
    pub(super) fn start(
        id: Arc<str>,
        store: Arc<dyn Store>,
        config: Arc<Config>,
        processors: FxHashMap<Arc<str>, Arc<dyn Processor>>,
        schedules: Vec<Schedule>,
    ) -> Runtime {
        let concurrency = config.concurrency;
        let topics = processors
            .into_iter()
            .map(|(topic, processor)| {
                let timeout = config.topic(&topic).and_then(|o| o.timeout);
                let keep = config.keeps(&topic);
                let middleware = config
                    .middleware
                    .iter()
                    .chain(config.topic(&topic).into_iter().flat_map(|o| &o.middleware))
                    .cloned()
                    .collect();
                let observers = config
                    .observers
                    .iter()
                    .chain(config.topic(&topic).into_iter().flat_map(|o| &o.observers))
                    .cloned()
                    .collect();
                let registered = Registered {
                    processor,
                    middleware,
                    observers,
                    timeout,
                    keep,
                };
                (topic, registered)
            })
            .collect();
        let shared = Arc::new(Shared {
            id,
            store,
            config,
            topics,
            leased: Mutex::new(FxHashMap::default()),
            early_cancels: Mutex::new(EarlyCancels::default()),
            // The claimer tops up to twice this (see the module doc).
            exchange: Arc::new(Exchange::new(concurrency)),
            announced: OnceCell::new(),
            cancel_requests: Mutex::new(None),
            stop_claiming: CancellationToken::new(),
            cancelling: AtomicBool::new(false),
            stop_maintenance: CancellationToken::new(),
            event_order: tokio::sync::Mutex::new(()),
        });
        let mut workers = JoinSet::new();
        for _ in 0..concurrency {
            let store = Arc::new(shared.store.clone());
            let producer = shared.exchange.producer();
            workers.spawn(shared.clone().worker(store, producer));
        }
        let producer = shared.exchange.producer();
        let started = shared.config.clock.now();
        let scheduler = (!schedules.is_empty())
            .then(|| tokio::spawn(shared.clone().schedule_loop(schedules, started)));
        Runtime {
            scheduler,
            claimer: tokio::spawn(shared.clone().claim_loop(producer)),
            workers,
            flusher: tokio::spawn(shared.clone().flush_loop()),
            maintenance: tokio::spawn(shared.clone().maintenance_loop()),
            shared,
        }
    }

    /// Resolves once `ManagerStart` is out (event-order rule 1), publishing it if no loop
    /// has yet.
    pub(super) fn announced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.announce().await }
    }

    /// Starts the shutdown (the module doc's steps) in a task of its own, with `grace` for
    /// the runs in flight, and returns the handle every close waits on.
    pub(super) fn shutdown(self, grace: Duration) -> Shutdown {
        let (report, done) = watch::channel(None);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = self.stop(grace).await;
            // Every close may have been dropped; then nobody asks.
            let _ = report.send(Some(result));
        });
        Shutdown { shared, done }
    }

    async fn stop(mut self, grace: Duration) -> Result<(), Arc<str>> {
        let shared = self.shared.clone();
        // Step 1.
        shared.stop_claiming.cancel();
        let mut joined = vec![(&mut self.claimer).await];
        if let Some(scheduler) = self.scheduler.as_mut() {
            joined.push(scheduler.await);
        }
        // Steps 2 and 3.
        let grace_over = tokio::time::sleep(grace);
        tokio::pin!(grace_over);
        let mut cancelled = false;
        loop {
            tokio::select! {
                biased;
                _ = &mut grace_over, if !cancelled => {
                    shared.cancel_runs();
                    cancelled = true;
                }
                next = self.workers.join_next() => match next {
                    Some(result) => joined.push(result),
                    None => break,
                },
            }
        }
        // Step 4: every producer of outcomes (claimer, workers) is gone.
        joined.push((&mut self.flusher).await);
        // Step 5.
        shared.stop_maintenance.cancel();
        joined.push((&mut self.maintenance).await);
        // Step 6.
        shared
            .publish(vec![Event::ManagerStop {
                manager: shared.id.clone(),
                at: shared.config.clock.now(),
            }])
            .await;
        match joined.into_iter().find_map(Result::err) {
            Some(e) => Err(e.to_string().into()),
            None => Ok(()),
        }
    }
}

impl Shutdown {
    /// Waits for the shutdown to end, ending its grace period after `grace` if it is
    /// still on (shutdown step 3): a timeout shorter than the first close's shortens the
    /// grace, a longer one changes nothing.
    pub(super) async fn wait(self, grace: Duration) -> Result<()> {
        let Shutdown { shared, mut done } = self;
        let over = async move {
            done.wait_for(Option::is_some)
                .await
                .map(|result| result.clone().unwrap_or(Ok(())))
        };
        tokio::pin!(over);
        let result = tokio::select! {
            result = &mut over => result,
            _ = tokio::time::sleep(grace) => {
                shared.cancel_runs();
                over.await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(panic)) => {
                Err(Error::storage("a manager task panicked").with_source(panic.to_string()))
            }
            Err(_) => Err(Error::storage(
                "the shutdown task ended before it finished: the tokio runtime is shutting down",
            )),
        }
    }
}

impl Shared {
    /// Publishes `ManagerStart` unless it is out already, and waits until it is
    /// (event-order rule 1).
    ///
    /// The stream of cancel requests is taken first: a cancel of a task this manager
    /// claims is then never requested before the manager listens.
    async fn announce(&self) {
        self.announced
            .get_or_init(|| async {
                match self.store.cancellations().await {
                    Ok(stream) => *self.cancel_requests_slot() = Some(stream),
                    Err(e) => warn!(
                        error = %e,
                        "store gives no cancel requests; running tasks learn of cancels at lease renewal"
                    ),
                }
                self.publish(vec![Event::ManagerStart {
                    manager: self.id.clone(),
                    at: self.config.clock.now(),
                }])
                .await;
            })
            .await;
    }

    /// The event-order lock (event-order rule 4) when `needed`.
    async fn order_events_if(&self, needed: bool) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match needed {
            true => Some(self.event_order.lock().await),
            false => None,
        }
    }

    async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.store.publish(&events).await {
            warn!(error = %e, "cannot publish events");
        }
    }

    /// The event of a running task `id` that ended CANCELLED, with who cancelled it as its
    /// record says (a lookup: cancels are rare, and this runs only for watchers). `by` is
    /// `None` when the record is gone (its topic keeps nothing) or cannot be read.
    async fn cancelled_event(&self, id: TaskId, topic: Arc<str>) -> Event {
        let by = self.cancelled_by(id).await;
        Self::cancelled_event_by(id, topic, by)
    }

    /// Who asked for the cancel of task `id`, as its record says.
    async fn cancelled_by(&self, id: TaskId) -> Option<Arc<str>> {
        match self.store.get(id).await {
            Ok(record) => record.and_then(|r| r.cancelled_by).map(Arc::from),
            Err(e) => {
                warn!(%id, error = %e, "cannot read who cancelled a task");
                None
            }
        }
    }

    fn cancelled_event_by(id: TaskId, topic: Arc<str>, by: Option<Arc<str>>) -> Event {
        Event::TaskCancelled {
            id,
            topic,
            by,
            was_running: true,
        }
    }

    fn cancel_requests_slot(&self) -> MutexGuard<'_, Option<CancelStream>> {
        // Only ever set or taken whole.
        self.cancel_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn leased(&self) -> MutexGuard<'_, FxHashMap<TaskId, Arc<Run>>> {
        // Entries are inserted or removed whole; a poisoned map is still consistent.
        self.leased.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn early_cancels(&self) -> MutexGuard<'_, EarlyCancels> {
        // Sets are changed by whole inserts and swaps.
        self.early_cancels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts claimed runs in `leased`, cancelling those whose cancel was requested before
    /// they got there.
    fn lease_runs(&self, runs: &[Arc<Run>]) {
        let mut leased = self.leased();
        for run in runs {
            leased.insert(run.record.id, run.clone());
        }
        let early = self.early_cancels();
        if !early.is_empty() {
            for run in runs.iter().filter(|r| early.contains(r.record.id)) {
                run.cancel();
            }
        }
    }

    /// A cancel was requested for task `id`: cancels its run if this manager holds it, or
    /// keeps the request for a run about to be leased.
    fn cancel_requested(&self, id: TaskId) {
        let leased = self.leased();
        match leased.get(&id) {
            Some(run) => {
                debug!(%id, topic = %run.record.topic, "cancel requested; cancelling the run");
                run.cancel();
            }
            None => {
                self.early_cancels().current.insert(id);
            }
        }
    }

    /// Shutdown step 3: cancels every leased run; runs still queued are released unrun.
    ///
    /// Safe at any time and more than once: a run leased after the flag is set is
    /// cancelled by its worker, which reads the flag before it starts the run.
    fn cancel_runs(&self) {
        self.cancelling.store(true, Ordering::SeqCst);
        for run in self.leased().values() {
            run.cancel();
        }
    }
}
