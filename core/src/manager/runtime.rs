//! The running manager: the claim loop, a fixed pool of workers, the outcome flusher, and
//! the maintenance loop (lease renewal, reaper, stats).
//!
//! Data flow: the claimer claims batches that `concurrency` worker tasks take one run at a
//! time; each worker hands its outcome to the flusher, which applies outcomes in batches
//! and publishes their events only once the store accepted them. The three meet in one
//! [`Exchange`]: a worker that ends a run hands over the outcome and takes its next run
//! under one lock.
//!
//! The claimer keeps up to `2 × concurrency` tasks held (running or queued for a worker)
//! and claims again only when that drops to `concurrency`: claims come in batches of about
//! `concurrency` instead of one per finished task, and workers never wait on a round trip.
//! Held tasks are all under lease and all renewed.

use super::config::Config;
use super::exchange::{Exchange, Producer};
use super::processor::{Processor, TaskContext};
use super::run::Run;
use crate::error::Error;
use crate::event::Event;
use crate::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, LeaseRef, Outcome, OutcomeKind, RecoverOptions,
    RenewOptions, Store, TopicClaim, WakeStream,
};
use crate::task::{Payload, TaskId};
use futures_util::{FutureExt, StreamExt};
use rustc_hash::FxHashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

/// The most outcomes applied in one store call.
const MAX_OUTCOME_BATCH: usize = 1024;
/// The most expired leases recovered in one reaper pass.
const MAX_RECOVER_BATCH: usize = 1000;

/// A manager that has started: what `close` needs to stop it.
pub(super) struct Runtime {
    shared: Arc<Shared>,
    claimer: JoinHandle<()>,
    workers: JoinSet<()>,
    flusher: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

struct Shared {
    id: Arc<str>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    topics: FxHashMap<Arc<str>, Registered>,
    /// Tasks claimed whose outcome the flusher has not taken yet: queued for a worker,
    /// running, or finished with the outcome on its way. Their leases are renewed.
    held: Mutex<FxHashMap<TaskId, Arc<Run>>>,
    /// Runs on their way to the workers, outcomes on their way to the flusher, and the
    /// count of runs in between.
    exchange: Arc<Exchange<Arc<Run>, Finished>>,
    stop_claiming: CancellationToken,
    /// Set once runs must stop: held tasks are cancelled, and tasks taken from the
    /// queue afterwards are released without running.
    cancelling: AtomicBool,
    stop_maintenance: CancellationToken,
    /// Held, when someone watches, by the flusher from applying a batch of outcomes that
    /// sends tasks back to INPUT (retries, releases) until their events are out, by the
    /// reaper likewise for recoveries, and by the claimer while it publishes starts: a task
    /// can be claimed again as soon as it is back in INPUT, and its next `TASK_START` must
    /// not overtake the event that says how it got there.
    event_order: tokio::sync::Mutex<()>,
}

/// What a run of a registered topic needs, found with one lookup per run.
struct Registered {
    processor: Arc<dyn Processor>,
    timeout: Option<Duration>,
}

/// A run's outcome on its way to the store, with what its event needs once it is applied.
/// The event itself is built only if someone is subscribed.
struct Finished {
    task: FinishedTask,
    kind: OutcomeKind,
    report: Report,
}

/// Whose outcome it is. A run travels as the pointer the worker already held: the lease
/// reference (which clones the topic's `Arc`, a count every run of the topic shares) is
/// built by the flusher, so workers on other cores leave that count alone.
enum FinishedTask {
    Run(Arc<Run>),
    Corrupt(LeaseRef),
}

impl Finished {
    fn id(&self) -> TaskId {
        match &self.task {
            FinishedTask::Run(run) => run.record.id,
            FinishedTask::Corrupt(lease) => lease.id,
        }
    }

    /// The outcome for the store, the report for the event, and the run, if any.
    fn into_parts(self) -> (Outcome, Report, Option<Arc<Run>>) {
        let (lease, run) = match self.task {
            FinishedTask::Run(run) => (LeaseRef::of(&run.record), Some(run)),
            FinishedTask::Corrupt(lease) => (lease, None),
        };
        let kind = self.kind;
        (Outcome { lease, kind }, self.report, run)
    }
}

/// What a run's event says beyond its outcome.
struct Report {
    attempt: u32,
    duration_ms: u64,
    result: Option<Payload>,
}

impl Report {
    fn event(self, outcome: Outcome) -> Event {
        let LeaseRef { id, topic, .. } = outcome.lease;
        let attempt = self.attempt;
        match outcome.kind {
            OutcomeKind::Complete => Event::TaskCompletion {
                id,
                topic,
                attempt,
                duration_ms: self.duration_ms,
                result: self.result,
            },
            OutcomeKind::Retry { at, error } => Event::TaskRetry {
                id,
                topic,
                attempt,
                error,
                retry_at: at,
            },
            OutcomeKind::Dead { error } => Event::TaskFailure {
                id,
                topic,
                attempt,
                error,
            },
            OutcomeKind::Release => Event::TaskCancelled { id, topic },
        }
    }
}

impl Runtime {
    pub(super) async fn start(
        id: Arc<str>,
        store: Arc<dyn Store>,
        config: Arc<Config>,
        processors: FxHashMap<Arc<str>, Arc<dyn Processor>>,
    ) -> Runtime {
        let concurrency = config.concurrency;
        let topics = processors
            .into_iter()
            .map(|(topic, processor)| {
                let timeout = config.topic(&topic).and_then(|o| o.timeout);
                (topic, Registered { processor, timeout })
            })
            .collect();
        let shared = Arc::new(Shared {
            id,
            store,
            config,
            topics,
            held: Mutex::new(FxHashMap::default()),
            // The claimer tops up to twice this, so claims come in batches of about
            // `concurrency` and workers never wait on a round trip.
            exchange: Arc::new(Exchange::new(concurrency)),
            stop_claiming: CancellationToken::new(),
            cancelling: AtomicBool::new(false),
            stop_maintenance: CancellationToken::new(),
            event_order: tokio::sync::Mutex::new(()),
        });
        shared
            .publish(vec![Event::ManagerStart {
                manager: shared.id.clone(),
                at: shared.config.clock.now(),
            }])
            .await;
        let mut workers = JoinSet::new();
        for _ in 0..concurrency {
            let store = Arc::new(shared.store.clone());
            let producer = shared.exchange.producer();
            workers.spawn(shared.clone().worker(store, producer));
        }
        let producer = shared.exchange.producer();
        Runtime {
            claimer: tokio::spawn(shared.clone().claim_loop(producer)),
            workers,
            flusher: tokio::spawn(shared.clone().flush_loop()),
            maintenance: tokio::spawn(shared.clone().maintenance_loop()),
            shared,
        }
    }

    /// Stops claiming, waits up to `grace` for held tasks to finish, cancels the rest, and
    /// returns once every outcome has been handed to the store.
    pub(super) async fn shutdown(mut self, grace: Duration) -> crate::Result<()> {
        let shared = self.shared.clone();
        shared.stop_claiming.cancel();
        // The claimer closes the job queue as it ends: workers then drain it and end.
        let mut joined = vec![(&mut self.claimer).await];
        let grace_ends = Instant::now() + grace;
        loop {
            let next = match grace.is_zero() {
                true => None,
                false => tokio::time::timeout_at(grace_ends, self.workers.join_next())
                    .await
                    .ok(),
            };
            match next {
                Some(Some(result)) => joined.push(result),
                Some(None) => break,
                None => {
                    // Out of grace: cancel what is left and wait for the releases.
                    shared.cancel_all();
                    while let Some(result) = self.workers.join_next().await {
                        joined.push(result);
                    }
                    break;
                }
            }
        }
        // Every producer of outcomes (claimer, workers) is gone now: the flusher applies
        // what is left and ends.
        joined.push((&mut self.flusher).await);
        shared.stop_maintenance.cancel();
        joined.push((&mut self.maintenance).await);
        shared
            .publish(vec![Event::ManagerStop {
                manager: shared.id.clone(),
                at: shared.config.clock.now(),
            }])
            .await;
        match joined.into_iter().find_map(Result::err) {
            Some(e) => Err(Error::storage("a manager task panicked").with_source(e)),
            None => Ok(()),
        }
    }
}

impl Shared {
    /// The event-order lock (see `event_order`) when `needed`.
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

    fn held(&self) -> MutexGuard<'_, FxHashMap<TaskId, Arc<Run>>> {
        // Entries are inserted or removed whole; a poisoned map is still consistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels every held task; tasks still queued are released unrun.
    fn cancel_all(&self) {
        self.cancelling.store(true, Ordering::SeqCst);
        for run in self.held().values() {
            run.cancel();
        }
    }

    fn topics(&self) -> Vec<TopicClaim> {
        let mut topics: Vec<TopicClaim> = self
            .topics
            .keys()
            .map(|topic| {
                let mut claim = TopicClaim::new(topic.clone());
                claim.max_running = self.config.topic(topic).and_then(|o| o.max_running);
                claim
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
    }

    /// Claims while held runs are few enough; hands corrupt records to the flusher
    /// through `producer`.
    async fn claim_loop(self: Arc<Self>, producer: Producer<Arc<Run>, Finished>) {
        // However the loop ends, workers drain what is queued and stop.
        struct CloseOnExit(Arc<Exchange<Arc<Run>, Finished>>);
        impl Drop for CloseOnExit {
            fn drop(&mut self) {
                self.0.close_jobs();
            }
        }
        let _close = CloseOnExit(self.exchange.clone());
        let low_water = self.config.concurrency;
        let capacity = 2 * low_water;
        let mut wakeups = match self.store.wakeups().await {
            Ok(stream) => Some(stream),
            Err(e) => {
                warn!(error = %e, "store gives no wake-ups; polling only");
                None
            }
        };
        let topics = self.topics();
        let mut order = WeightedRoundRobin::new(
            topics
                .iter()
                .map(|t| {
                    self.config
                        .topic(&t.topic)
                        .and_then(|o| o.weight)
                        .unwrap_or(1)
                })
                .collect(),
        );
        let mut failures = 0u32;
        loop {
            if self.stop_claiming.is_cancelled() {
                return;
            }
            let held = self.exchange.held();
            if held > low_water {
                // Enough work in hand: wait until workers bring it down to the low-water mark.
                tokio::select! {
                    _ = self.stop_claiming.cancelled() => return,
                    _ = self.exchange.room() => {}
                }
                continue;
            }
            let limit = capacity - held;
            // Each claim starts from the next topic in weighted turn (a claim fills up from
            // its first topic), so busy topics share the workers by weight.
            let first = order.next();
            let req = ClaimOptions::new(
                topics[first..].iter().chain(&topics[..first]).cloned(),
                limit,
                self.id.clone(),
                self.config.clock.now(),
            )
            .lease(self.config.lease);
            // A claim in flight is never dropped: it could strand tasks until their lease
            // expires. Shutdown waits for it, then releases what it claimed.
            match self.store.claim(&req).await {
                Ok(batch) => {
                    failures = 0;
                    let full = batch.len() == limit;
                    self.dispatch(batch, &producer).await;
                    if !full && !self.wait_for_work(&mut wakeups).await {
                        return;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(50 << failures.min(6))
                        .min(self.config.poll_interval.max(Duration::from_millis(50)));
                    warn!(error = %e, retry_in = ?pause, "claim failed");
                    tokio::select! {
                        _ = self.stop_claiming.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Waits for a wake-up, the poll interval, or shutdown; false on shutdown.
    async fn wait_for_work(&self, wakeups: &mut Option<WakeStream>) -> bool {
        let wake = async {
            match wakeups.as_mut() {
                Some(stream) => {
                    if stream.next().await.is_none() {
                        warn!("store wake-up stream ended; polling only");
                        *wakeups = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.stop_claiming.cancelled() => false,
            _ = wake => true,
            _ = tokio::time::sleep(self.config.poll_interval) => true,
        }
    }

    /// Hands claimed tasks to the workers; corrupt records go straight to the flusher as
    /// dead.
    async fn dispatch(&self, batch: Vec<Claimed>, producer: &Producer<Arc<Run>, Finished>) {
        let mut runs = Vec::with_capacity(batch.len());
        for claimed in batch {
            match claimed {
                Claimed::Ready(record) => runs.push(Arc::new(Run::new(record))),
                Claimed::Corrupt { lease, error } => {
                    let error = format!("corrupt task record: {error}");
                    warn!(id = %lease.id, topic = %lease.topic, %error, "moving corrupt task to dead");
                    producer.push_outcome(Finished {
                        task: FinishedTask::Corrupt(lease),
                        kind: OutcomeKind::Dead { error },
                        report: Report {
                            attempt: 0,
                            duration_ms: 0,
                            result: None,
                        },
                    });
                }
            }
        }
        // Starts are published before the runs begin, so a watcher always sees a task's
        // start before its outcome.
        if let Some(_order) = self.order_events_if(self.store.has_subscribers()).await {
            let starts = runs
                .iter()
                .map(|run| Event::TaskStart {
                    id: run.record.id,
                    topic: run.record.topic.clone(),
                    attempt: run.record.attempt,
                    manager: self.id.clone(),
                })
                .collect();
            self.publish(starts).await;
        }
        {
            let mut held = self.held();
            for run in &runs {
                held.insert(run.record.id, run.clone());
            }
        }
        self.exchange.push_jobs(runs);
    }

    /// A worker: runs tasks one at a time until the claimer is gone and the queue drained.
    async fn worker(
        self: Arc<Self>,
        store: Arc<Arc<dyn Store>>,
        producer: Producer<Arc<Run>, Finished>,
    ) {
        // When the next run is already queued, one run's end is the next one's start: one
        // clock read per run instead of two, which were 6% of the cost of a no-op run.
        let mut last_end = None;
        // The run handed over with the last outcome, if one was queued.
        let mut next = None;
        loop {
            let run = match next.take() {
                Some(run) => run,
                None => {
                    last_end = None;
                    match producer.exchange().next_job().await {
                        Some(run) => run,
                        None => break,
                    }
                }
            };
            let started = last_end.take().unwrap_or_else(Instant::now);
            let record = &run.record;
            let span = tracing::info_span!(
                "task",
                id = %record.id,
                topic = %record.topic,
                attempt = record.attempt
            );
            let (kind, result) = self.run(&run, &store).instrument(span).await;
            let end = Instant::now();
            last_end = Some(end);
            let report = Report {
                attempt: run.record.attempt,
                duration_ms: u64::try_from((end - started).as_millis()).unwrap_or(u64::MAX),
                result,
            };
            next = producer.finish(Finished {
                task: FinishedTask::Run(run),
                kind,
                report,
            });
        }
    }

    /// Runs one attempt; returns what became of it, and the result the processor set.
    async fn run(
        &self,
        run: &Arc<Run>,
        store: &Arc<Arc<dyn Store>>,
    ) -> (OutcomeKind, Option<Payload>) {
        let record = &run.record;
        if self.cancelling.load(Ordering::SeqCst) {
            run.cancel();
        }
        let (attempt, retries_left) = (record.attempt, record.has_retries_left());
        let Some(Registered { processor, timeout }) = self.topics.get(&record.topic) else {
            // Claims name only registered topics, so only a faulty store gets here; a
            // manager that has the topic can still run the task.
            warn!("the store returned a task of an unregistered topic; releasing it");
            return (OutcomeKind::Release, None);
        };
        let ctx = TaskContext {
            run: run.clone(),
            store: store.clone(),
        };
        let timeout = *timeout;
        let attempt_fut = async move {
            let process = AssertUnwindSafe(processor.process(ctx)).catch_unwind();
            let returned = match timeout {
                Some(limit) => tokio::time::timeout(limit, process)
                    .await
                    .map_err(|_| limit),
                None => Ok(process.await),
            };
            // The run ends here unless a cancel came first; then what it returned is moot
            // (processors often return Ok or Err once they see the signal): it is released.
            if !run.finish() {
                return None;
            }
            Some(match returned {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err((e.to_string(), e.is_permanent())),
                Ok(Err(panic)) => Err((
                    format!("processor panicked: {}", panic_message(&*panic)),
                    false,
                )),
                Err(limit) => Err((format!("timed out after {limit:?}"), false)),
            })
        };
        let ended = if run.is_cancelled() {
            None
        } else {
            // The processor is polled first: one that watches `ctx.cancelled()` gets to run
            // its own clean-up; one that does not is dropped at its next await.
            tokio::select! {
                biased;
                ended = attempt_fut => ended,
                _ = run.cancelled_for_worker() => None,
            }
        };
        match ended {
            Some(Ok(())) => {
                debug!("task completed");
                (OutcomeKind::Complete, run.take_result())
            }
            Some(Err((error, permanent))) if permanent || !retries_left => {
                warn!(%error, "task failed for good");
                (OutcomeKind::Dead { error }, None)
            }
            Some(Err((error, _))) => {
                let backoff = self.config.backoff_for(&record.topic);
                let at = self.config.clock.now() + backoff.delay(attempt);
                warn!(%error, retry_at = %at, "task failed; will retry");
                (OutcomeKind::Retry { at, error }, None)
            }
            None => {
                debug!("task cancelled");
                (OutcomeKind::Release, None)
            }
        }
    }

    /// Applies outcomes until the last producer (claimer and workers) is gone.
    async fn flush_loop(self: Arc<Self>) {
        let mut finished = Vec::with_capacity(MAX_OUTCOME_BATCH);
        while self
            .exchange
            .take_outcomes(&mut finished, MAX_OUTCOME_BATCH)
            .await
        {
            // Runs leave the held map here, a batch under one lock, rather than one lock per
            // run in the workers: the map is shared by every worker, and its lock bouncing
            // between cores cost more than the run itself. They leave before their outcome
            // is applied, so a retried task claimed again is never confused with its last run.
            {
                let mut held = self.held();
                for f in &finished {
                    held.remove(&f.id());
                }
            }
            let mut runs = Vec::with_capacity(finished.len());
            let (outcomes, reports): (Vec<Outcome>, Vec<Report>) = finished
                .drain(..)
                .map(|f| {
                    let (outcome, report, run) = f.into_parts();
                    runs.extend(run);
                    (outcome, report)
                })
                .unzip();
            let watched = self.store.has_subscribers();
            // Held until these outcomes' events are out, when a task goes back to INPUT
            // (claimable again at once); completions and failures need no order with a
            // later claim, and taking the lock for them would hold back every dispatch by an
            // apply's round trip on a store that cannot tell whether anyone watches.
            let requeues = outcomes
                .iter()
                .any(|o| matches!(o.kind, OutcomeKind::Retry { .. } | OutcomeKind::Release));
            let order = self.order_events_if(watched && requeues).await;
            let applied = self.apply_with_retry(&outcomes).await;
            // Dropped once the store let go of its copies, so that the last reference to a
            // completed task's arguments goes here and their memory is freed outside the
            // store's lock (where a claim would wait for it).
            drop(runs);
            let Some(applied) = applied else {
                continue;
            };
            let mut events = Vec::new();
            for ((outcome, report), applied) in outcomes.into_iter().zip(reports).zip(applied) {
                match applied {
                    Applied::Done if watched => events.push(report.event(outcome)),
                    Applied::Done => {}
                    Applied::Stale => warn!(
                        id = %outcome.lease.id,
                        topic = %outcome.lease.topic,
                        "outcome was stale: the lease was lost, another claim may run the task"
                    ),
                }
            }
            self.publish(events).await;
            drop(order);
        }
    }

    /// Applies outcomes, retrying store errors until the leases would have expired anyway;
    /// then gives up, and the reaper returns the tasks to INPUT (they run again: at least
    /// once, never lost).
    async fn apply_with_retry(&self, outcomes: &[Outcome]) -> Option<Vec<Applied>> {
        let give_up = Instant::now() + self.config.lease;
        let mut pause = Duration::from_millis(20);
        loop {
            match self
                .store
                .apply(outcomes, &ApplyOptions::new(self.config.clock.now()))
                .await
            {
                Ok(applied) => return Some(applied),
                Err(e) if Instant::now() + pause < give_up => {
                    warn!(error = %e, retry_in = ?pause, count = outcomes.len(), "cannot store outcomes; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    warn!(error = %e, count = outcomes.len(), "giving up storing outcomes; the reaper will return these tasks");
                    return None;
                }
            }
        }
    }

    async fn maintenance_loop(self: Arc<Self>) {
        let mut renew =
            tokio::time::interval(self.config.renew_interval.max(Duration::from_millis(1)));
        let mut reap =
            tokio::time::interval(self.config.reap_interval.max(Duration::from_millis(1)));
        let mut stats = self.config.stats_interval.map(|d| {
            let mut i =
                tokio::time::interval_at(Instant::now() + d, d.max(Duration::from_millis(1)));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stats_tick = async {
                match stats.as_mut() {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop_maintenance.cancelled() => return,
                _ = renew.tick() => self.renew_leases().await,
                _ = reap.tick() => self.reap().await,
                _ = stats_tick => self.publish_stats().await,
            }
        }
    }

    async fn renew_leases(&self) {
        let leases: Vec<LeaseRef> = self
            .held()
            .values()
            .map(|run| LeaseRef::of(&run.record))
            .collect();
        if leases.is_empty() {
            return;
        }
        let deadline = self.config.clock.now() + self.config.lease;
        let applied = match self
            .store
            .renew(&leases, &RenewOptions::new(deadline))
            .await
        {
            Ok(applied) => applied,
            Err(e) => {
                warn!(error = %e, count = leases.len(), "cannot renew leases");
                return;
            }
        };
        let held = self.held();
        for (lease, applied) in leases.iter().zip(applied) {
            if applied == Applied::Stale {
                if let Some(run) = held
                    .get(&lease.id)
                    .filter(|r| r.record.is_owned_by(lease.token))
                {
                    warn!(id = %lease.id, topic = %lease.topic, "lease lost; cancelling the run");
                    run.cancel();
                }
            }
        }
    }

    async fn reap(&self) {
        // Held until the recoveries' events are out.
        let _order = self.order_events_if(self.store.has_subscribers()).await;
        match self
            .store
            .recover(&RecoverOptions::new(self.config.clock.now()).limit(MAX_RECOVER_BATCH))
            .await
        {
            Ok(recovered) => {
                let events = recovered
                    .into_iter()
                    .map(|r| {
                        warn!(id = %r.id, topic = %r.topic, dead = r.dead, "recovered a task whose lease expired");
                        Event::TaskRecovered { id: r.id, topic: r.topic, dead: r.dead }
                    })
                    .collect();
                self.publish(events).await;
            }
            Err(e) => warn!(error = %e, "reaper failed"),
        }
    }

    async fn publish_stats(&self) {
        match self.store.stats().await {
            Ok(stats) => {
                let event = Event::ManagerStats {
                    manager: self.id.clone(),
                    stats: Box::new(stats),
                    at: self.config.clock.now(),
                };
                self.publish(vec![event]).await;
            }
            Err(e) => warn!(error = %e, "cannot read stats"),
        }
    }
}

/// Smooth weighted round-robin (as in nginx): picks index `i` in proportion to
/// `weights[i]`, spreading each topic's turns evenly instead of in runs.
struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl WeightedRoundRobin {
    fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(|w| i64::from(w.max(1))).collect();
        WeightedRoundRobin {
            current: vec![0; weights.len()],
            weights,
        }
    }

    fn next(&mut self) -> usize {
        let total: i64 = self.weights.iter().sum();
        for (current, weight) in self.current.iter_mut().zip(&self.weights) {
            *current += weight;
        }
        let (best, _) = self
            .current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .expect("a manager has at least one topic");
        self.current[best] -= total;
        best
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}

#[cfg(test)]
mod tests {
    use super::WeightedRoundRobin;

    #[test]
    fn weighted_round_robin_spreads_turns_by_weight() {
        let mut wrr = WeightedRoundRobin::new(vec![3, 1, 2]);
        let turns: Vec<usize> = (0..12).map(|_| wrr.next()).collect();
        assert_eq!(turns, vec![0, 2, 0, 1, 2, 0, 0, 2, 0, 1, 2, 0]);
        for (i, expected) in [6, 2, 4].iter().enumerate() {
            assert_eq!(turns.iter().filter(|t| **t == i).count(), *expected);
        }
    }
}
