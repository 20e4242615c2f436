//! The running manager: the claim loop, the workers, the outcome flusher, and the
//! maintenance loop (lease renewal, reaper, stats).
//!
//! Data flow: the claimer takes a worker permit per task it claims and spawns a worker;
//! each worker sends its outcome to the flusher, which applies outcomes in batches and
//! publishes their events only once the store accepted them.

use super::config::Config;
use super::processor::{Processor, TaskContext};
use crate::error::Error;
use crate::event::Event;
use crate::store::{
    Applied, ClaimRequest, Claimed, LeaseRef, Outcome, OutcomeKind, Store, TopicClaim,
};
use crate::task::{TaskId, TaskRecord};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
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
    flusher: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

struct Shared {
    id: Arc<str>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    processors: HashMap<Arc<str>, Arc<dyn Processor>>,
    /// One permit per worker: a run holds one from claim to outcome.
    workers: Arc<Semaphore>,
    running: Mutex<HashMap<TaskId, Running>>,
    stop_claiming: CancellationToken,
    /// Parent of every run's token: cancelling it cancels all runs.
    cancel_runs: CancellationToken,
    stop_maintenance: CancellationToken,
}

struct Running {
    lease: LeaseRef,
    cancel: CancellationToken,
}

/// A run's outcome on its way to the store, with the event to publish once it is applied.
struct Finished {
    outcome: Outcome,
    event: Event,
}

impl Runtime {
    pub(super) async fn start(
        id: Arc<str>,
        store: Arc<dyn Store>,
        config: Arc<Config>,
        processors: HashMap<Arc<str>, Arc<dyn Processor>>,
    ) -> Runtime {
        let shared = Arc::new(Shared {
            workers: Arc::new(Semaphore::new(config.concurrency)),
            id,
            store,
            config,
            processors,
            running: Mutex::new(HashMap::new()),
            stop_claiming: CancellationToken::new(),
            cancel_runs: CancellationToken::new(),
            stop_maintenance: CancellationToken::new(),
        });
        shared
            .publish(vec![Event::ManagerStart {
                manager: shared.id.clone(),
                at: shared.config.clock.now(),
            }])
            .await;
        let (tx, rx) = mpsc::unbounded_channel();
        Runtime {
            claimer: tokio::spawn(shared.clone().claim_loop(tx)),
            flusher: tokio::spawn(shared.clone().flush_loop(rx)),
            maintenance: tokio::spawn(shared.clone().maintenance_loop()),
            shared,
        }
    }

    /// Stops claiming, waits up to `grace` for runs to finish, cancels the rest, and
    /// returns once every outcome has been handed to the store.
    pub(super) async fn shutdown(self, grace: Duration) -> crate::Result<()> {
        let shared = &self.shared;
        shared.stop_claiming.cancel();
        let claimer = self.claimer.await;
        let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
        if !grace.is_zero() {
            let _ = tokio::time::timeout(grace, shared.workers.acquire_many(all)).await;
        }
        shared.cancel_runs.cancel();
        // Cancelled runs end at their next await point; each then sends its release.
        drop(shared.workers.acquire_many(all).await);
        // The claimer and every worker have dropped their senders: the flusher drains and ends.
        let flusher = self.flusher.await;
        shared.stop_maintenance.cancel();
        let maintenance = self.maintenance.await;
        shared
            .publish(vec![Event::ManagerStop {
                manager: shared.id.clone(),
                at: shared.config.clock.now(),
            }])
            .await;
        for joined in [claimer, flusher, maintenance] {
            if let Err(e) = joined {
                return Err(Error::storage("a manager loop panicked").with_source(e));
            }
        }
        Ok(())
    }
}

impl Shared {
    async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.store.publish(&events).await {
            warn!(error = %e, "cannot publish events");
        }
    }

    fn topics(&self) -> Vec<TopicClaim> {
        let mut topics: Vec<TopicClaim> = self
            .processors
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

    async fn claim_loop(self: Arc<Self>, tx: mpsc::UnboundedSender<Finished>) {
        let mut wakeups = match self.store.wakeups().await {
            Ok(stream) => Some(stream),
            Err(e) => {
                warn!(error = %e, "store gives no wake-ups; polling only");
                None
            }
        };
        let mut topics = self.topics();
        let mut failures = 0u32;
        loop {
            let first = tokio::select! {
                biased;
                _ = self.stop_claiming.cancelled() => return,
                permit = self.workers.clone().acquire_owned() => permit.expect("the worker semaphore is never closed"),
            };
            let mut permits = vec![first];
            while let Ok(p) = self.workers.clone().try_acquire_owned() {
                permits.push(p);
            }
            let limit = permits.len();
            // Rotating the start topic keeps one busy topic from starving the others.
            topics.rotate_left(1);
            let req = ClaimRequest::new(
                topics.iter().cloned(),
                limit,
                self.id.clone(),
                self.config.clock.now(),
            )
            .lease(self.config.lease);
            // A claim in flight is never dropped: it could strand tasks until their lease
            // expires. Shutdown waits for it, then cancels the runs it started.
            match self.store.claim(&req).await {
                Ok(batch) => {
                    failures = 0;
                    let full = batch.len() == limit;
                    self.dispatch(batch, permits, &tx).await;
                    if !full && !self.wait_for_work(&mut wakeups).await {
                        return;
                    }
                }
                Err(e) => {
                    drop(permits);
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
    async fn wait_for_work(&self, wakeups: &mut Option<crate::store::WakeStream>) -> bool {
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

    /// Starts a worker per claimed task; corrupt records go straight to the flusher as dead.
    async fn dispatch(
        self: &Arc<Self>,
        batch: Vec<Claimed>,
        mut permits: Vec<OwnedSemaphorePermit>,
        tx: &mpsc::UnboundedSender<Finished>,
    ) {
        let mut starts = Vec::with_capacity(batch.len());
        let mut ready = Vec::with_capacity(batch.len());
        for claimed in batch {
            match claimed {
                Claimed::Ready(record) => {
                    starts.push(Event::TaskStart {
                        id: record.id,
                        topic: record.topic.clone(),
                        attempt: record.attempt,
                        manager: self.id.clone(),
                    });
                    ready.push(record);
                }
                Claimed::Corrupt { lease, error } => {
                    let error = format!("corrupt task record: {error}");
                    warn!(id = %lease.id, topic = %lease.topic, %error, "moving corrupt task to dead");
                    let event = Event::TaskFailure {
                        id: lease.id,
                        topic: lease.topic.clone(),
                        attempt: 0,
                        error: error.clone(),
                    };
                    let kind = OutcomeKind::Dead { error };
                    let _ = tx.send(Finished {
                        outcome: Outcome { lease, kind },
                        event,
                    });
                }
            }
        }
        // Starts are published before the runs begin, so a watcher always sees a task's
        // start before its outcome.
        self.publish(starts).await;
        let mut runs = Vec::with_capacity(ready.len());
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            for record in ready {
                let cancel = self.cancel_runs.child_token();
                running.insert(
                    record.id,
                    Running {
                        lease: LeaseRef::of(&record),
                        cancel: cancel.clone(),
                    },
                );
                runs.push((record, cancel));
            }
        }
        for (record, cancel) in runs {
            let permit = permits
                .pop()
                .expect("a claim never returns more than its limit");
            let span = tracing::info_span!("task", id = %record.id, topic = %record.topic, attempt = record.attempt);
            tokio::spawn(
                self.clone()
                    .run(record, cancel, permit, tx.clone())
                    .instrument(span),
            );
        }
    }

    /// Runs one attempt and sends its outcome to the flusher.
    async fn run(
        self: Arc<Self>,
        record: TaskRecord,
        cancel: CancellationToken,
        permit: OwnedSemaphorePermit,
        tx: mpsc::UnboundedSender<Finished>,
    ) {
        let lease = LeaseRef::of(&record);
        let (id, attempt, retries_left) = (record.id, record.attempt, record.has_retries_left());
        let topic = record.topic.clone();
        let options = self.config.topic(&topic);
        let timeout = options.and_then(|o| o.timeout);
        let processor = self
            .processors
            .get(&topic)
            .expect("only registered topics are claimed")
            .clone();
        let result = Arc::new(Mutex::new(None));
        let ctx = TaskContext {
            record,
            cancel: cancel.clone(),
            store: self.store.clone(),
            result: result.clone(),
        };
        let started = Instant::now();
        let attempt_fut = async move {
            let run = AssertUnwindSafe(processor.process(ctx)).catch_unwind();
            let outcome = match timeout {
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(done) => done,
                    Err(_) => return Err((format!("timed out after {limit:?}"), false)),
                },
                None => run.await,
            };
            match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err((e.to_string(), e.is_permanent())),
                Err(panic) => Err((
                    format!("processor panicked: {}", panic_message(&*panic)),
                    false,
                )),
            }
        };
        let ended = tokio::select! {
            ended = attempt_fut => Some(ended),
            _ = cancel.cancelled() => None,
        };
        // A run that was cancelled was cut short, whatever it returned on its way out
        // (processors often return Ok or Err once they see the signal): it is released.
        let ended = ended.filter(|_| !cancel.is_cancelled());
        let now = self.config.clock.now();
        let (kind, event) = match ended {
            Some(Ok(())) => {
                debug!("task completed");
                let result = result.lock().unwrap_or_else(|e| e.into_inner()).take();
                let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let event = Event::TaskCompletion {
                    id,
                    topic,
                    attempt,
                    duration_ms,
                    result,
                };
                (OutcomeKind::Complete, event)
            }
            Some(Err((error, permanent))) if permanent || !retries_left => {
                warn!(%error, "task failed for good");
                let event = Event::TaskFailure {
                    id,
                    topic,
                    attempt,
                    error: error.clone(),
                };
                (OutcomeKind::Dead { error }, event)
            }
            Some(Err((error, _))) => {
                let at = now + self.config.backoff_for(&topic).delay(attempt);
                warn!(%error, retry_at = %at, "task failed; will retry");
                let event = Event::TaskRetry {
                    id,
                    topic,
                    attempt,
                    error: error.clone(),
                    retry_at: at,
                };
                (OutcomeKind::Retry { at, error }, event)
            }
            None => {
                debug!("task cancelled");
                (OutcomeKind::Release, Event::TaskCancelled { id, topic })
            }
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let _ = tx.send(Finished {
            outcome: Outcome { lease, kind },
            event,
        });
        drop(permit);
    }

    async fn flush_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
        let mut finished = Vec::with_capacity(MAX_OUTCOME_BATCH);
        while rx.recv_many(&mut finished, MAX_OUTCOME_BATCH).await > 0 {
            let (outcomes, events): (Vec<Outcome>, Vec<Event>) =
                finished.drain(..).map(|f| (f.outcome, f.event)).unzip();
            let Some(applied) = self.apply_with_retry(&outcomes).await else {
                continue;
            };
            let mut publish = Vec::with_capacity(events.len());
            for ((outcome, event), applied) in outcomes.iter().zip(events).zip(applied) {
                match applied {
                    Applied::Done => publish.push(event),
                    Applied::Stale => warn!(
                        id = %outcome.lease.id,
                        topic = %outcome.lease.topic,
                        "outcome was stale: the lease was lost, another claim may run the task"
                    ),
                }
            }
            self.publish(publish).await;
        }
    }

    /// Applies outcomes, retrying store errors until the leases would have expired anyway;
    /// then gives up, and the reaper returns the tasks to INPUT (they run again: at least
    /// once, never lost).
    async fn apply_with_retry(&self, outcomes: &[Outcome]) -> Option<Vec<Applied>> {
        let give_up = Instant::now() + self.config.lease;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.store.apply(outcomes, self.config.clock.now()).await {
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
        let leases: Vec<LeaseRef> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.values().map(|r| r.lease.clone()).collect()
        };
        if leases.is_empty() {
            return;
        }
        let deadline = self.config.clock.now() + self.config.lease;
        let applied = match self.store.renew(&leases, deadline).await {
            Ok(applied) => applied,
            Err(e) => {
                warn!(error = %e, count = leases.len(), "cannot renew leases");
                return;
            }
        };
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (lease, applied) in leases.iter().zip(applied) {
            if applied == Applied::Stale {
                if let Some(run) = running
                    .get(&lease.id)
                    .filter(|r| r.lease.token == lease.token)
                {
                    warn!(id = %lease.id, topic = %lease.topic, "lease lost; cancelling the run");
                    run.cancel.cancel();
                }
            }
        }
    }

    async fn reap(&self) {
        match self
            .store
            .recover(self.config.clock.now(), MAX_RECOVER_BATCH)
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}
