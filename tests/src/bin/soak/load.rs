//! One worker incarnation's load: a manager processing every topic by plan, and a producer
//! enqueueing its own range of task numbers and cancelling the planned ones, until the stop
//! file appears and the store is empty.

use crate::plan::{Action, Plan, PLANNED_FAILURE, TIMEOUT, TOPICS};
use crate::record::{micros, Recorder};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use taskmill::store::Cancellation;
use taskmill::{Backoff, Manager, Store, Task, TaskContext, TaskError, TaskId, TopicOptions};

/// What one incarnation does.
#[derive(Debug, Clone)]
pub struct Load {
    /// The record file it appends to.
    pub record: PathBuf,
    /// Its task numbers: `first..first + count`, disjoint from every other incarnation's.
    pub first: u64,
    /// How many numbers it may use.
    pub count: u64,
    /// The run's seed (plans and pacing).
    pub seed: u64,
    /// Once this file exists: stop enqueueing, and exit when the store is empty.
    pub stop: PathBuf,
    /// The manager's concurrency.
    pub concurrency: usize,
    /// The manager's lease.
    pub lease: Duration,
    /// Enqueue only while the store holds fewer than this many tasks in INPUT and WORK.
    pub backlog: u64,
}

/// How often the producer looks at the store's backlog and the stop file.
const CHECK: Duration = Duration::from_millis(200);

/// Runs the incarnation on `store` until the stop file exists and INPUT and WORK are
/// empty; returns how many tasks it enqueued.
pub async fn run(store: Arc<dyn Store>, load: Load) -> u64 {
    let pid = std::process::id();
    let record = Recorder::open(&load.record);
    // Short backoffs, so retries and deaths happen within the run.
    let backoff = Backoff::exponential(
        Duration::from_millis(20),
        2.0,
        Duration::from_millis(200),
        0.2,
    );
    let mut builder = Manager::builder_shared(store.clone())
        .concurrency(load.concurrency)
        .lease(load.lease)
        .poll_interval(Duration::from_millis(100))
        .stats_interval(None);
    for t in 0..TOPICS {
        builder = builder.topic(
            Plan::topic(t),
            TopicOptions::new()
                .timeout(TIMEOUT)
                .backoff(backoff.clone()),
        );
    }
    let manager = builder.build();
    for t in 0..TOPICS {
        let (record, seed) = (record.clone(), load.seed);
        manager
            .register(Plan::topic(t), move |ctx: TaskContext| {
                process(ctx, record.clone(), seed, pid)
            })
            .expect("register");
    }
    manager.start().await.expect("start the manager");
    eprintln!(
        "soak worker {pid}: numbers from {} ({} max)",
        load.first, load.count
    );
    let client = manager.client().clone().by(format!("soak-{pid}"));
    let mut rng = fastrand::Rng::with_seed(load.seed ^ load.first);
    let mut next = load.first;
    let end = load.first + load.count;
    let mut cancels = tokio::task::JoinSet::new();
    let mut enqueued = 0u64;
    // The producer: batches of 1–20 tasks while the backlog is below its bound.
    'produce: loop {
        if load.stop.exists() {
            break;
        }
        let backlog = match store.stats(&taskmill_testkit::all_due()).await {
            Ok(s) => s.total.sizes.input + s.total.sizes.work,
            Err(e) => {
                eprintln!("soak worker {pid}: stats: {e}");
                u64::MAX
            }
        };
        let mut room = load.backlog.saturating_sub(backlog);
        let until = tokio::time::Instant::now() + CHECK;
        while room > 0 && next < end && tokio::time::Instant::now() < until {
            let size = rng.u64(1..=20).min(room).min(end - next);
            let numbers: Vec<u64> = (next..next + size).collect();
            next += size;
            room -= size;
            let tasks = numbers
                .iter()
                .map(|n| {
                    let plan = Plan::of(load.seed, *n);
                    Task::new(Plan::topic(*n), n)
                        .expect("task")
                        .max_retries(plan.retries())
                })
                .collect();
            let ids = match client.enqueue_batch(tasks).await {
                Ok(done) => done.into_iter().map(|e| e.id()).collect::<Vec<_>>(),
                Err(e) => {
                    // Not acknowledged: the audit does not expect these numbers, whether
                    // the store kept them or not.
                    eprintln!("soak worker {pid}: enqueue: {e}");
                    continue;
                }
            };
            let acks: String = numbers
                .iter()
                .zip(&ids)
                .map(|(n, id)| format!("ack {n} {} {pid}\n", id.get()))
                .collect();
            record.durable(acks).await;
            enqueued += size;
            for (n, id) in numbers.iter().zip(ids) {
                if let Plan::Cancel { delay_ms, .. } = Plan::of(load.seed, *n) {
                    let (client, record, n) = (client.clone(), record.clone(), *n);
                    cancels.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        cancel(&client, &record, n, id, pid).await;
                    });
                }
            }
            if load.stop.exists() {
                break 'produce;
            }
        }
        tokio::time::sleep_until(until).await;
        while cancels.try_join_next().is_some() {}
    }
    while cancels.join_next().await.is_some() {}
    eprintln!("soak worker {pid}: stopped enqueueing after {enqueued}; draining");
    // Drain: the caller bounds this (it kills a worker that outlives its deadline).
    loop {
        match store.stats(&taskmill_testkit::all_due()).await {
            Ok(s) if s.total.sizes.input == 0 && s.total.sizes.work == 0 => break,
            Ok(_) => {}
            Err(e) => eprintln!("soak worker {pid}: stats: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    manager.close().await.expect("close the manager");
    eprintln!("soak worker {pid}: done");
    enqueued
}

/// Cancels task `n` and records the result (fsync'd: the audit holds the store to it).
async fn cancel(client: &taskmill::Client, record: &Recorder, n: u64, id: TaskId, pid: u32) {
    let before = micros();
    let result = match client.cancel(&[id]).await {
        Ok(r) => match r.first() {
            Some(Cancellation::Cancelled) => "cancelled".to_string(),
            Some(Cancellation::Requested) => "requested".to_string(),
            Some(Cancellation::Refused(queue)) => format!("refused-{queue}"),
            Some(Cancellation::NotFound) => "not-found".to_string(),
            Some(other) => format!("other-{other:?}").replace(' ', "_"),
            None => "none".to_string(),
        },
        Err(e) => {
            eprintln!("soak worker {pid}: cancel: {e}");
            "error".to_string()
        }
    };
    let after = micros();
    record
        .durable(format!("cancel {n} {result} {before} {after} {pid}\n"))
        .await;
}

/// One run of a soak task, by its plan.
async fn process(ctx: TaskContext, record: Recorder, seed: u64, pid: u32) -> Result<(), TaskError> {
    let n: u64 = ctx.args()?;
    let attempt = ctx.attempt();
    let start = micros();
    record.note(format!("start {n} {pid} {attempt} {start}\n"));
    match Plan::of(seed, n).action(attempt) {
        Action::Succeed(work) => {
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
        }
        Action::Fail => {
            record.note(format!("fail {n} {pid} {attempt} {start} {}\n", micros()));
            return Err(TaskError::msg(PLANNED_FAILURE));
        }
        Action::Hang => tokio::time::sleep(TIMEOUT * 3).await,
        Action::Cancellable(work) => {
            tokio::select! {
                _ = tokio::time::sleep(work) => {}
                _ = ctx.cancelled() => {
                    record.note(format!("stopped {n} {pid} {attempt} {start} {}\n", micros()));
                    return Err(TaskError::msg("stopped by its cancel"));
                }
            }
        }
    }
    // On disk before the store hears of the success: every completion it holds is here.
    record
        .durable(format!("end {n} {pid} {attempt} {start} {}\n", micros()))
        .await;
    Ok(())
}
