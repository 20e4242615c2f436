//! A worker: runs one task at a time, the processor under its timeout and the run's cancel
//! signal, and hands the outcome over.

use super::outcome::{OutcomeOf, PendingOutcome, Report};
use super::{Registered, Shared};
use crate::manager::exchange::Producer;
use crate::manager::processor::TaskContext;
use crate::manager::run::Run;
use crate::middleware::Next;
use crate::observer::RunEnd;
use crate::store::{OutcomeKind, Store};
use crate::task::Payload;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

impl Shared {
    /// Runs tasks one at a time until the job queue is closed and empty.
    ///
    /// `store` is this worker's own handle, handed to every run's context: cloning the
    /// manager's `Arc` per run would have every worker bump one shared reference count.
    pub(super) async fn worker(
        self: Arc<Self>,
        store: Arc<Arc<dyn Store>>,
        producer: Producer<Arc<Run>, PendingOutcome>,
    ) {
        // When the next run is already queued, one run's end is the next one's start: one
        // clock read per run instead of two.
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
                attempt = record.attempt,
                otel.name = %format_args!("process {}", record.topic),
                otel.kind = "consumer",
                messaging.system = "taskmill",
                messaging.operation.type = "process",
            );
            // Before the span is first entered: an OpenTelemetry layer fixes a span's parent
            // when it starts, which is on first entry (see `Middleware::run_span`).
            let registered = self.topics.get(&record.topic);
            if !span.is_disabled() {
                for middleware in registered.iter().flat_map(|r| r.middleware.iter()) {
                    middleware.run_span(record, &span);
                }
            }
            let observers = registered.map_or(&[][..], |r| &r.observers);
            for observer in observers {
                observer.started(record);
            }
            let (kind, keep, result) = self
                .attempt(&run, registered, &store, started)
                .instrument(span)
                .await;
            let end = Instant::now();
            last_end = Some(end);
            if !observers.is_empty() {
                let ended = match kind {
                    OutcomeKind::Complete { .. } => RunEnd::Completed,
                    OutcomeKind::Release => RunEnd::Released,
                    _ => RunEnd::Failed,
                };
                for observer in observers {
                    observer.ended(&run.record, ended, end - started);
                }
            }
            let report = Report {
                attempt: run.record.attempt,
                duration_ms: u64::try_from((end - started).as_millis()).unwrap_or(u64::MAX),
                result,
            };
            next = producer.end_job(PendingOutcome {
                of: OutcomeOf::Run(run),
                kind,
                keep,
                report,
            });
        }
    }

    /// Runs one attempt; returns what became of it, whether its topic keeps finished tasks,
    /// and the result the processor set.
    async fn attempt(
        &self,
        run: &Arc<Run>,
        registered: Option<&Registered>,
        store: &Arc<Arc<dyn Store>>,
        started: Instant,
    ) -> (OutcomeKind, bool, Option<Payload>) {
        let record = &run.record;
        // Shutdown step 3: a run taken after the cancel is released unrun.
        if self.cancelling.load(Ordering::SeqCst) {
            run.cancel();
        }
        let (attempt, retries_left) = (record.attempt, record.has_retries_left());
        let Some(&Registered {
            ref processor,
            ref middleware,
            timeout,
            keep,
            ..
        }) = registered
        else {
            // Claims name only registered topics, so only a faulty store gets here; a
            // manager that has the topic can still run the task.
            warn!("the store returned a task of an unregistered topic; releasing it");
            return (OutcomeKind::Release, true, None);
        };
        let ctx = TaskContext {
            run: run.clone(),
            store: store.clone(),
            max_value_bytes: self.config.max_result_bytes,
            started,
        };
        let attempt_fut = async move {
            let chain = Next::new(middleware, &**processor).run(ctx);
            let process = AssertUnwindSafe(chain).catch_unwind();
            let returned = match timeout {
                Some(limit) => tokio::time::timeout(limit, process)
                    .await
                    .map_err(|_| limit),
                None => Ok(process.await),
            };
            // The run ends here unless a cancel came first; then what it returned is moot
            // (processors often return Ok or Err once they see the signal): it is released.
            if !run.mark_returned() {
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
        let (kind, result) = match ended {
            Some(Ok(())) => {
                debug!("task completed");
                let result = run.take_result();
                (OutcomeKind::complete_with(result.clone()), result)
            }
            Some(Err((error, permanent))) if permanent || !retries_left => {
                warn!(%error, "task failed for good");
                (OutcomeKind::dead(error), None)
            }
            Some(Err((error, _))) => {
                let backoff = self.config.backoff_for(&record.topic);
                let at = self.config.clock.now() + backoff.delay(attempt);
                warn!(%error, retry_at = %at, "task failed; will retry");
                (OutcomeKind::retry(at, error), None)
            }
            None => {
                // A release: the store ends the task CANCELLED instead when a cancel was
                // requested for it, which is why a cancelled run stopped.
                debug!("run cancelled");
                (OutcomeKind::Release, None)
            }
        };
        (kind, keep, result)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}
