//! History and control through the Manager and a [`Client`]: cancel (running, ignoring
//! the signal, waiting), results, progress and errors on the record, retention and
//! pruning, bulk requeue and delete, and the retry limit a bare client leaves to the
//! manager.
//!
//! These run in real time with short intervals and wait on conditions with deadlines. The
//! client of each check is its own handle on the test's store (as a web server's would
//! be); the one check that needs another process's handle says so.

use crate::Harness;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelStream, Cancellation, ClaimOptions, EnqueueOptions, LeaseRef,
    Outcome, OutcomeKind, TopicClaim,
};
use taskmill_core::{
    Backoff, Client, ErrorKind, Event, Manager, ManagerBuilder, Queue, Result, Store, TaskContext,
    TaskError, TaskId, TaskInfo, TaskStatus, Timestamp, TopicOptions,
};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(30);

fn builder(store: &Arc<dyn Store>) -> ManagerBuilder {
    Manager::builder_shared(store.clone())
        .poll_interval(Duration::from_millis(50))
        .lease(Duration::from_secs(10))
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .progress_interval(Duration::from_millis(50))
        .stats_interval(None)
}

/// A client on `store` cancelling as `ops`.
fn client(store: &Arc<dyn Store>) -> Client {
    Client::shared(store.clone()).by("ops")
}

/// Polls the status of `id` until `done` holds; fails the check after [`PATIENCE`].
async fn wait_for(
    client: &Client,
    id: TaskId,
    what: &str,
    done: impl Fn(&TaskInfo) -> bool,
) -> TaskInfo {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let info = client.status(id).await.unwrap();
        if let Some(info) = info.filter(&done) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for task {id}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a processor set `started`: a task claimed (so `running`) may still be
/// queued for a worker, and a cancel then releases it unrun, which is not what a check of
/// a running processor wants.
async fn wait_started(started: &AtomicBool) {
    wait_until("the processor to start", PATIENCE, || async {
        started.load(Ordering::SeqCst)
    })
    .await;
}

fn is_running(info: &TaskInfo) -> bool {
    matches!(info.status, TaskStatus::Running { .. })
}

fn is(status: TaskStatus) -> impl Fn(&TaskInfo) -> bool {
    move |info| info.status == status
}

/// Collects the store's events in the background.
async fn record_events(client: &Client) -> Log<Event> {
    super::record_events(client.watch().await.unwrap())
}

/// The `TASK_CANCELLED` events of task `id` seen so far, as `(by, was_running)`.
fn cancelled_events(events: &Log<Event>, id: TaskId) -> Vec<(Option<String>, bool)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::TaskCancelled {
                id: of,
                by,
                was_running,
                ..
            } if *of == id => Some((by.as_deref().map(String::from), *was_running)),
            _ => None,
        })
        .collect()
}

async fn wait_for_cancelled_event(events: &Log<Event>, id: TaskId) -> (Option<String>, bool) {
    wait_until("a TASK_CANCELLED event", PATIENCE, || async {
        !cancelled_events(events, id).is_empty()
    })
    .await;
    cancelled_events(events, id).remove(0)
}

/// Moves `n` new tasks of `topic` to DEAD through the store itself (claim, then a dead
/// outcome), in one claim and one apply; their ids.
async fn make_dead(store: &dyn Store, topic: &str, n: u64) -> Vec<TaskId> {
    let now = Timestamp::now();
    let ids = store
        .enqueue(tasks(topic, 0..n), &EnqueueOptions::new(now))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id())
        .collect::<Vec<_>>();
    let req = ClaimOptions::new([TopicClaim::new(topic)], n as usize, "killer", now);
    let claimed = ready(store.claim(&req).await.unwrap());
    assert_eq!(claimed.len(), n as usize);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|r| Outcome::new(LeaseRef::of(r), OutcomeKind::dead("made dead")))
        .collect();
    let applied = store
        .apply(&outcomes, &ApplyOptions::new(now))
        .await
        .unwrap();
    assert!(applied.iter().all(|a| *a == Applied::Done));
    ids
}

checks!(
    mod control;

    /// A running task cancelled through a client: its processor sees `ctx.cancelled()`
    /// at once (long before a renewal could tell the manager), and the task ends CANCELLED
    /// (not retried, not dead), with who cancelled it on the record and in a
    /// `TASK_CANCELLED` event that says it was running.
    pub async fn cancel_of_a_running_task_stops_it(store: Arc<dyn Store>) {
        let saw_cancel = Arc::new(AtomicBool::new(false));
        // Renewals every 100 s: only the store's cancel requests reach the run in time.
        let manager = builder(&store).lease(Duration::from_secs(300)).build();
        let started = Arc::new(AtomicBool::new(false));
        let (seen, start) = (saw_cancel.clone(), started.clone());
        manager
            .register("t", move |ctx: TaskContext| {
                start.store(true, Ordering::SeqCst);
                let seen = seen.clone();
                async move {
                    ctx.cancelled().await;
                    seen.store(true, Ordering::SeqCst);
                    // What a processor returns once cancelled changes nothing.
                    Err::<(), _>(TaskError::msg("stopped"))
                }
            })
            .unwrap();
        let client = client(&store);
        let events = record_events(&client).await;
        manager.start().await.unwrap();
        let id = client
            .enqueue(task("t", 1).max_retries(5))
            .await
            .unwrap()
            .id();
        wait_started(&started).await;
        let asked = tokio::time::Instant::now();
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        let info = wait_for(&client, id, "cancelled", is(TaskStatus::Cancelled)).await;
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(20), "the cancel took {took:?}");
        assert!(
            saw_cancel.load(Ordering::SeqCst),
            "ctx.cancelled() never fired"
        );
        assert_eq!(info.record.cancelled_by.as_deref(), Some("ops"));
        assert_eq!(info.record.attempt, 1, "the cancelled run was retried");
        assert!(info.record.errors.is_empty(), "{:?}", info.record.errors);
        assert!(info.record.finished_at.is_some());
        assert_eq!(
            wait_for_cancelled_event(&events, id).await,
            (Some("ops".to_string()), true)
        );
        manager.close().await.unwrap();
        let c = client.stats().await.unwrap().total.counters;
        assert_eq!(
            (c.started, c.cancelled, c.retried, c.failed, c.completed),
            (1, 1, 0, 0, 0)
        );
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Refused(Queue::Cancelled)],
            "a cancelled task cancelled again"
        );
    }

    /// A processor that ignores the cancel is dropped at its next `.await`, and the task
    /// ends CANCELLED at once, not when the processor would have returned.
    pub async fn a_processor_that_ignores_a_cancel_is_dropped(store: Arc<dyn Store>) {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let manager = builder(&store).build();
        let started = Arc::new(AtomicBool::new(false));
        let (flag, start) = (dropped.clone(), started.clone());
        manager
            .register("t", move |_ctx: TaskContext| {
                start.store(true, Ordering::SeqCst);
                let guard = SetOnDrop(flag.clone());
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, TaskError>(())
                }
            })
            .unwrap();
        let client = client(&store);
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        wait_started(&started).await;
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        wait_for(&client, id, "cancelled", is(TaskStatus::Cancelled)).await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "the processor was not dropped"
        );
        manager.close().await.unwrap();
        assert_eq!(client.stats().await.unwrap().total.counters.completed, 0);
    }

    /// A processor that never yields cannot be dropped: the store stops renewing its lease
    /// once the cancel is requested, so the task ends CANCELLED when the lease runs out
    /// while the processor still runs, and what the processor returns later is stale.
    pub async fn a_processor_that_never_yields_is_cancelled_when_its_lease_runs_out(
        store: Arc<dyn Store>,
    ) {
        let release = Arc::new(AtomicBool::new(false));
        let returned = Arc::new(AtomicBool::new(false));
        let manager = builder(&store)
            .lease(Duration::from_millis(900))
            .reap_interval(Duration::from_millis(50))
            .build();
        let started = Arc::new(AtomicBool::new(false));
        let (until, done, start) = (release.clone(), returned.clone(), started.clone());
        manager
            .register("t", move |_ctx: TaskContext| {
                start.store(true, Ordering::SeqCst);
                // Blocks its thread (never awaits) until released, for at most PATIENCE.
                let deadline = std::time::Instant::now() + PATIENCE;
                while !until.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                done.store(true, Ordering::SeqCst);
                async { Ok::<_, TaskError>(()) }
            })
            .unwrap();
        let client = client(&store);
        manager.start().await.unwrap();
        let id = client
            .enqueue(task("t", 1).max_retries(3))
            .await
            .unwrap()
            .id();
        wait_started(&started).await;
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        let info = wait_for(&client, id, "cancelled", is(TaskStatus::Cancelled)).await;
        let still_running = !returned.load(Ordering::SeqCst);
        release.store(true, Ordering::SeqCst);
        assert!(
            still_running,
            "the processor returned before the task ended cancelled"
        );
        assert_eq!(info.record.cancelled_by.as_deref(), Some("ops"));
        manager.close().await.unwrap();
        assert!(returned.load(Ordering::SeqCst));
        let record = get(&*store, id).await;
        assert_eq!(
            record.queue,
            Queue::Cancelled,
            "the late outcome changed it"
        );
        let c = client.stats().await.unwrap().total.counters;
        assert_eq!((c.cancelled, c.completed, c.retried), (1, 0, 0));
    }

    /// A waiting task (pending on a paused topic, or scheduled) is cancelled at once and
    /// never runs; its unique key is free again, and its `TASK_CANCELLED` says it was not
    /// running. Dead, completed and unknown tasks are not cancelled.
    pub async fn cancel_of_a_waiting_task_means_it_never_runs(store: Arc<dyn Store>) {
        let ran = log();
        let manager = builder(&store).build();
        let seen = ran.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                seen.lock().unwrap().push(ctx.id());
                async { Ok::<_, TaskError>(()) }
            })
            .unwrap();
        let client = client(&store);
        let events = record_events(&client).await;
        client.pause("t").await.unwrap();
        manager.start().await.unwrap();
        let pending = client
            .enqueue(task("t", 1).unique_key("k"))
            .await
            .unwrap()
            .id();
        let scheduled = client
            .enqueue(task("t", 2).delay(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id();
        let swept = client.enqueue(task("t", 3)).await.unwrap().id();
        assert_eq!(
            client.status(pending).await.unwrap().unwrap().status,
            TaskStatus::Pending
        );
        assert_eq!(
            client.cancel(&[pending, scheduled]).await.unwrap(),
            [Cancellation::Cancelled, Cancellation::Cancelled]
        );
        assert_eq!(client.cancel_waiting(Some("t")).await.unwrap(), 1, "swept");
        for id in [pending, scheduled, swept] {
            let info = client.status(id).await.unwrap().unwrap();
            assert_eq!(info.status, TaskStatus::Cancelled, "task {id}");
            assert_eq!(info.record.cancelled_by.as_deref(), Some("ops"));
            assert_eq!(info.record.attempt, 0);
        }
        assert_eq!(
            wait_for_cancelled_event(&events, pending).await,
            (Some("ops".to_string()), false)
        );
        let again = client.enqueue(task("t", 4).unique_key("k")).await.unwrap();
        assert!(again.is_new(), "the cancelled task kept its unique key");
        client.resume("t").await.unwrap();
        wait_for(&client, again.id(), "completed", is(TaskStatus::Completed)).await;
        manager.close().await.unwrap();
        assert_eq!(*ran.lock().unwrap(), [again.id()], "a cancelled task ran");
        let dead = make_dead(&*store, "d", 1).await[0];
        let unknown = TaskId::new(again.id().get() + 1_000_000);
        assert_eq!(
            client.cancel(&[again.id(), dead, unknown]).await.unwrap(),
            [
                Cancellation::Refused(Queue::Completed),
                Cancellation::Refused(Queue::Dead),
                Cancellation::NotFound
            ]
        );
        let c = client.stats().await.unwrap().total.counters;
        assert_eq!((c.cancelled, c.started), (3, 2));
    }

    /// A run's progress shows in the task's status while it runs; once it completed, the
    /// status shows its result, its times, and the errors of its earlier attempts.
    pub async fn result_progress_and_errors_show_in_the_status(store: Arc<dyn Store>) {
        let go = Arc::new(AtomicBool::new(false));
        let manager = builder(&store).build();
        let gate = go.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                let gate = gate.clone();
                async move {
                    if ctx.attempt() == 1 {
                        return Err(TaskError::msg("first attempt fails"));
                    }
                    ctx.progress(&serde_json::json!({ "done": 1, "of": 2 }))
                        .await?;
                    for _ in 0..6000 {
                        if gate.load(Ordering::SeqCst) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    ctx.progress(&serde_json::json!({ "done": 2, "of": 2 }))
                        .await?;
                    ctx.set_result(&serde_json::json!({ "rows": 42 }))?;
                    Ok::<_, TaskError>(())
                }
            })
            .unwrap();
        let client = client(&store);
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        let running = wait_for(&client, id, "running with progress", |info| {
            is_running(info) && info.record.progress.is_some()
        })
        .await;
        go.store(true, Ordering::SeqCst);
        let progress: serde_json::Value = running.progress().unwrap().unwrap();
        assert_eq!(progress["done"], 1);
        assert_eq!(running.record.attempt, 2);
        let done = wait_for(&client, id, "completed", is(TaskStatus::Completed)).await;
        manager.close().await.unwrap();
        let result: serde_json::Value = done.result().unwrap().unwrap();
        assert_eq!(result["rows"], 42);
        let progress: serde_json::Value = done.progress().unwrap().unwrap();
        assert_eq!(
            progress["done"], 2,
            "the last progress rides on the outcome"
        );
        let r = &done.record;
        assert_eq!(r.attempt, 2);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert_eq!(
            (r.errors[0].attempt, &*r.errors[0].message),
            (1, "first attempt fails")
        );
        let (first, last, finished) = (
            r.first_started_at.unwrap(),
            r.started_at.unwrap(),
            r.finished_at.unwrap(),
        );
        // A store that takes a task enqueued as due from its due list (Redis) may hand it
        // to a claim that read its clock a moment before the enqueue read its own: the
        // start can then precede the enqueue by that moment, never by more.
        let skew = Duration::from_secs(1);
        assert!(
            r.enqueued_at <= first + skew && first <= r.errors[0].at,
            "{r:?}"
        );
        assert!(r.errors[0].at <= last && last <= finished, "{r:?}");
        assert_eq!(client.stats().await.unwrap().total.sizes.completed, 1);
    }

    /// A result or progress value past the size limit is refused with a `Misuse` error
    /// naming its size and the limit; the run still completes, without it.
    pub async fn oversized_results_and_progress_are_refused(store: Arc<dyn Store>) {
        let errors = log();
        let manager = builder(&store).max_result_bytes(100).build();
        let seen = errors.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                let seen = seen.clone();
                async move {
                    let big = "x".repeat(200);
                    let result = ctx.set_result(&big).unwrap_err();
                    let progress = ctx.progress(&big).await.unwrap_err();
                    ctx.set_result(&"small")?;
                    seen.lock().unwrap().extend([result, progress]);
                    Ok::<_, TaskError>(())
                }
            })
            .unwrap();
        let client = client(&store);
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        let done = wait_for(&client, id, "completed", is(TaskStatus::Completed)).await;
        manager.close().await.unwrap();
        assert_eq!(done.result::<String>().unwrap().as_deref(), Some("small"));
        assert!(done.record.progress.is_none());
        let errors = errors.lock().unwrap();
        assert_eq!(errors.len(), 2);
        for e in errors.iter() {
            assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
            let text = e.to_string();
            assert!(text.contains("202 bytes") && text.contains("100"), "{text}");
        }
    }

    /// A topic with retention zero keeps no finished task; another topic keeps its own.
    pub async fn retention_zero_keeps_no_finished_task(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .topic("gone", TopicOptions::new().retention(Duration::ZERO))
            .build();
        for topic in ["gone", "kept"] {
            manager
                .register(topic, |_ctx: TaskContext| async { Ok::<_, TaskError>(()) })
                .unwrap();
        }
        let client = client(&store);
        manager.start().await.unwrap();
        let gone = client.enqueue(task("gone", 1)).await.unwrap().id();
        let kept = client.enqueue(task("kept", 1)).await.unwrap().id();
        wait_until("two completions", PATIENCE, || async {
            client.stats().await.unwrap().total.counters.completed == 2
        })
        .await;
        manager.close().await.unwrap();
        assert!(
            client.status(gone).await.unwrap().is_none(),
            "a record was kept"
        );
        let kept = client.status(kept).await.unwrap().expect("kept a day");
        assert_eq!(kept.status, TaskStatus::Completed);
        let stats = client.stats().await.unwrap();
        assert_eq!(
            (
                stats.topic("gone").sizes.completed,
                stats.topic("kept").sizes.completed
            ),
            (0, 1)
        );
    }

    /// With retention zero a cancelled run leaves no record, yet its `TASK_CANCELLED` still
    /// names who cancelled it (read before the outcome removes the record).
    pub async fn a_cancel_event_names_who_when_nothing_is_kept(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .lease(Duration::from_secs(300))
            .retention(Duration::ZERO)
            .build();
        let started = Arc::new(AtomicBool::new(false));
        let start = started.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                start.store(true, Ordering::SeqCst);
                async move {
                    ctx.cancelled().await;
                    Ok::<_, TaskError>(())
                }
            })
            .unwrap();
        let client = client(&store);
        let events = record_events(&client).await;
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        wait_started(&started).await;
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        assert_eq!(
            wait_for_cancelled_event(&events, id).await,
            (Some("ops".to_string()), true)
        );
        manager.close().await.unwrap();
        assert!(
            client.status(id).await.unwrap().is_none(),
            "retention zero kept the cancelled task"
        );
        assert_eq!(client.stats().await.unwrap().total.counters.cancelled, 1);
    }

    /// The maintenance loop prunes finished tasks once their topic's retention has
    /// passed, and leaves those of a topic kept longer.
    pub async fn finished_tasks_are_pruned_after_their_retention(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .retention(Duration::from_secs(3600))
            .topic(
                "short",
                TopicOptions::new().retention(Duration::from_millis(200)),
            )
            .prune_interval(Duration::from_millis(50))
            .build();
        manager
            .register("short", |ctx: TaskContext| async move {
                let n: u64 = ctx.args()?;
                match n % 2 {
                    0 => Ok(()),
                    _ => Err(TaskError::permanent(TaskError::msg("dead, not finished"))),
                }
            })
            .unwrap();
        manager
            .register("long", |_ctx: TaskContext| async { Ok::<_, TaskError>(()) })
            .unwrap();
        let client = client(&store);
        manager.start().await.unwrap();
        let short = client
            .enqueue_batch(tasks("short", 0..6))
            .await
            .unwrap()
            .iter()
            .map(|e| e.id())
            .collect::<Vec<_>>();
        let long = client.enqueue(task("long", 1)).await.unwrap().id();
        let cancelled = client
            .enqueue(task("short", 10).delay(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id();
        client.cancel(&[cancelled]).await.unwrap();
        wait_until("the finished short tasks pruned", PATIENCE, || async {
            let s = client.stats().await.unwrap();
            let short = s.topic("short");
            short.counters.completed == 3
                && short.sizes.completed == 0
                && short.sizes.cancelled == 0
        })
        .await;
        for (i, id) in short.iter().enumerate() {
            let record = client.get(*id).await.unwrap();
            match i % 2 {
                0 => assert!(record.is_none(), "completed task {id} not pruned"),
                _ => assert_eq!(record.map(|r| r.queue), Some(Queue::Dead), "dead task {id}"),
            }
        }
        assert!(client.get(cancelled).await.unwrap().is_none());
        manager.close().await.unwrap();
        let long = client
            .status(long)
            .await
            .unwrap()
            .expect("kept for an hour");
        assert_eq!(long.status, TaskStatus::Completed);
    }

    /// `requeue_dead` and `delete_dead` go through every dead task of a topic (or of all)
    /// over several pages, and leave the others alone.
    pub async fn bulk_requeue_and_delete_cover_every_page(store: Arc<dyn Store>) {
        let client = client(&store);
        let n = 2 * taskmill_core::BULK_PAGE as u64 + 100;
        let many = make_dead(&*store, "many", n).await;
        make_dead(&*store, "few", 7).await;
        assert_eq!(client.requeue_dead(Some("many")).await.unwrap(), n);
        let stats = client.stats().await.unwrap();
        assert_eq!(
            (
                stats.topic("many").sizes.dead,
                stats.topic("many").sizes.input
            ),
            (0, n)
        );
        assert_eq!(stats.topic("few").sizes.dead, 7);
        let r = get(&*store, many[many.len() - 1]).await;
        assert_eq!((r.queue, r.attempt), (Queue::Input, 0));
        assert_eq!(
            r.errors.len(),
            1,
            "a requeue keeps the errors of earlier attempts"
        );
        make_dead(&*store, "more", n).await;
        assert_eq!(client.delete_dead(None).await.unwrap(), n + 7);
        let stats = client.stats().await.unwrap();
        assert_eq!((stats.total.sizes.dead, stats.total.sizes.input), (0, n));
        assert_eq!(client.cancel_waiting(Some("many")).await.unwrap(), n);
        assert_eq!(client.stats().await.unwrap().total.sizes.input, 0);
    }

    /// A task that sets no retry limit, enqueued by a bare client, gets the limit of the
    /// manager that runs its topic at its first claim (shown in its status from then on),
    /// and goes to DEAD after that many retries; a task's own limit wins.
    pub async fn a_bare_clients_task_gets_the_running_managers_retry_limit(store: Arc<dyn Store>) {
        let client = client(&store);
        let plain = client.enqueue(task("t", 1)).await.unwrap().id();
        let own = client
            .enqueue(task("t", 2).max_retries(0))
            .await
            .unwrap()
            .id();
        let before = client.status(plain).await.unwrap().unwrap();
        assert_eq!(before.record.max_retries, None, "the client set a limit");
        let manager = builder(&store)
            .default_retries(7)
            .topic("t", TopicOptions::new().retries(2))
            .build();
        let runs = Arc::new(AtomicU32::new(0));
        let count = runs.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                count.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(TaskError::msg(format!("attempt {}", ctx.attempt()))) }
            })
            .unwrap();
        manager.start().await.unwrap();
        let plain = wait_for(&client, plain, "dead", is(TaskStatus::Dead)).await;
        let own = wait_for(&client, own, "dead", is(TaskStatus::Dead)).await;
        manager.close().await.unwrap();
        assert_eq!(plain.record.max_retries, Some(2));
        assert_eq!(
            plain.record.attempt, 3,
            "two retries after the first attempt"
        );
        let messages: Vec<&str> = plain.record.errors.iter().map(|e| &*e.message).collect();
        assert_eq!(messages, ["attempt 1", "attempt 2", "attempt 3"]);
        assert_eq!((own.record.max_retries, own.record.attempt), (Some(0), 1));
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    /// A manager that misses a cancel request on the stream (as one in another process
    /// does on a store whose events stay in-process) learns of it at its next lease
    /// renewal, which the store refuses, and stops the run within the renew interval.
    pub async fn a_cancel_missed_on_the_stream_is_learned_at_renewal(store: Arc<dyn Store>) {
        let deaf: Arc<dyn Store> = Arc::new(DeafToCancels(store.clone()));
        let manager = builder(&deaf)
            .renew_interval(Duration::from_millis(100))
            .build();
        manager
            .register("t", |ctx: TaskContext| async move {
                ctx.cancelled().await;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        let client = client(&store);
        let events = record_events(&client).await;
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        wait_for(&client, id, "running", is_running).await;
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        let running = client.status(id).await.unwrap().unwrap();
        if let TaskStatus::Running {
            cancel_requested, ..
        } = running.status
        {
            assert!(cancel_requested, "the status does not show the request");
        }
        wait_for(&client, id, "cancelled", is(TaskStatus::Cancelled)).await;
        manager.close().await.unwrap();
        assert_eq!(
            wait_for_cancelled_event(&events, id).await,
            (Some("ops".to_string()), true)
        );
    }

    /// A cancel made through another handle on the store (another process) reaches the
    /// manager running the task through the store's pub/sub, long before its next
    /// renewal.
    #[needs(cross_process_events)]
    pub async fn a_cancel_from_another_process_reaches_the_run(harness: &mut dyn Harness) {
        let store = harness.store();
        let other = harness.open_another().await;
        // Renewals every 100 s: only the store's cancel requests reach the run in time.
        let manager = builder(&store).lease(Duration::from_secs(300)).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                ctx.cancelled().await;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        let client = client(&other);
        manager.start().await.unwrap();
        let id = client.enqueue(task("t", 1)).await.unwrap().id();
        wait_for(&client, id, "running", is_running).await;
        let asked = tokio::time::Instant::now();
        assert_eq!(
            client.cancel(&[id]).await.unwrap(),
            [Cancellation::Requested]
        );
        wait_for(&client, id, "cancelled", is(TaskStatus::Cancelled)).await;
        let took = asked.elapsed();
        manager.close().await.unwrap();
        assert!(took < Duration::from_secs(20), "the cancel took {took:?}");
    }
);

/// The store, except that its stream of cancel requests never yields: a manager on it
/// learns of cancels only from its renewals, as a manager in another process does on a
/// store whose events do not cross processes.
struct DeafToCancels(Arc<dyn Store>);

taskmill_testkit::forward_store! {
    impl Store for DeafToCancels {
        forward |s| &s.0;
        async fn cancellations(&self) -> Result<CancelStream> {
            Ok(futures_util::stream::pending().boxed())
        }
    }
}
