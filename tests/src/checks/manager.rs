//! The Manager running on the store: retries, failures, shutdown, events, several managers.
//!
//! These run in real time with short intervals and wait on conditions with deadlines.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::{ClaimOptions, TopicClaim};
use taskmill_core::{
    Backoff, ErrorKind, Event, Manager, ManagerBuilder, Queue, Store, Task, TaskContext, TaskError,
    TaskId, TaskRecord, Timestamp, TopicOptions,
};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(30);

fn builder(store: &Arc<dyn Store>) -> ManagerBuilder {
    Manager::builder_shared(store.clone())
        .poll_interval(Duration::from_millis(50))
        .lease(Duration::from_secs(10))
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .stats_interval(None)
}

/// Enqueues `tasks` through the manager and returns their ids.
async fn enqueue_all(manager: &Manager, tasks: Vec<Task>) -> Vec<TaskId> {
    let results = manager.enqueue_batch(tasks).await.unwrap();
    results.iter().map(|e| e.id()).collect()
}

/// Collects the store's events in the background.
async fn record_events(manager: &Manager) -> Log<Event> {
    super::record_events(manager.watch().await.unwrap())
}

async fn wait_for_stats(
    store: &Arc<dyn Store>,
    what: &str,
    check: impl Fn(&taskmill_core::Stats) -> bool,
) {
    wait_until(what, PATIENCE, || async {
        check(&store.stats(&taskmill_testkit::all_due()).await.unwrap())
    })
    .await;
}

/// Starts `manager`, runs `task` until it is dead, closes the manager, and returns the
/// dead task as stored.
async fn run_to_dead(store: &Arc<dyn Store>, manager: &Manager, task: Task) -> TaskRecord {
    manager.start().await.unwrap();
    let id = manager.enqueue(task).await.unwrap().id();
    wait_for_stats(store, "a dead task", |s| s.total.sizes.dead == 1).await;
    manager.close().await.unwrap();
    let record = get(&**store, id).await;
    assert_eq!(record.queue, Queue::Dead);
    record
}

fn ok() -> Result<(), TaskError> {
    Ok(())
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Point {
    x: i32,
    y: i32,
}

checks!(
    mod manager;

    /// Every enqueued task runs once and completes; nothing is left active, and each task is
    /// kept in COMPLETED.
    pub async fn manager_runs_every_task(store: Arc<dyn Store>) {
        let runs: Arc<Mutex<HashMap<TaskId, u32>>> = Arc::default();
        let manager = builder(&store).concurrency(8).build();
        for topic in ["a", "b"] {
            let runs = runs.clone();
            manager
                .register(topic, move |ctx: TaskContext| {
                    *runs.lock().unwrap().entry(ctx.id()).or_default() += 1;
                    async { ok() }
                })
                .unwrap();
        }
        manager.start().await.unwrap();
        let tasks: Vec<Task> = (0..300)
            .map(|i| task(if i % 2 == 0 { "a" } else { "b" }, i))
            .collect();
        let ids = enqueue_all(&manager, tasks).await;
        wait_for_stats(&store, "300 completions", |s| {
            s.total.counters.completed == 300
        })
        .await;
        manager.close().await.unwrap();
        {
            let runs = runs.lock().unwrap();
            assert_eq!(runs.len(), 300);
            assert!(
                ids.iter().all(|id| runs.get(id) == Some(&1)),
                "a task ran other than once"
            );
        }
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(
            (stats.total.sizes.active(), stats.total.sizes.completed),
            (0, 300)
        );
        assert_eq!(
            (
                stats.total.counters.started,
                stats.topic("a").counters.completed
            ),
            (300, 150)
        );
    }

    /// A failing task is retried after its backoff and completes when the processor succeeds.
    pub async fn failing_task_is_retried_until_it_succeeds(store: Arc<dyn Store>) {
        let attempts = log();
        let manager = builder(&store).build();
        let seen = attempts.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                seen.lock().unwrap().push(ctx.attempt());
                let attempt = ctx.attempt();
                async move {
                    if attempt < 3 {
                        Err(TaskError::msg(format!("attempt {attempt} failed")))
                    } else {
                        Ok(())
                    }
                }
            })
            .unwrap();
        let events = record_events(&manager).await;
        manager.start().await.unwrap();
        manager.enqueue(task("t", 1).max_retries(5)).await.unwrap();
        wait_for_stats(&store, "a completion", |s| s.total.counters.completed == 1).await;
        manager.close().await.unwrap();
        assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3]);
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.started, c.retried, c.completed, c.failed), (3, 2, 1, 0));
        let retries: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::TaskRetry { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(retries, vec!["attempt 1 failed", "attempt 2 failed"]);
    }

    /// A task that fails every attempt goes to DEAD after its retries, with the last error.
    pub async fn exhausted_retries_move_task_to_dead(store: Arc<dyn Store>) {
        let manager = builder(&store).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                Err::<(), _>(TaskError::msg(format!("no luck #{}", ctx.attempt())))
            })
            .unwrap();
        let r = run_to_dead(&store, &manager, task("t", 1).max_retries(2)).await;
        assert_eq!(r.attempt, 3);
        assert_eq!(r.last_error(), Some("no luck #3"));
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.started, c.retried, c.failed), (3, 2, 1));
    }

    /// A panicking processor fails only its task (retried), and the manager keeps going.
    pub async fn panicking_processor_fails_only_its_task(store: Arc<dyn Store>) {
        let manager = builder(&store).concurrency(4).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                let n: u64 = ctx.args()?;
                if n == 0 && ctx.attempt() == 1 {
                    panic!("processor bug on task {n}");
                }
                ok()
            })
            .unwrap();
        let events = record_events(&manager).await;
        manager.start().await.unwrap();
        manager
            .enqueue_batch((0..20).map(|i| task("t", i)).collect())
            .await
            .unwrap();
        wait_for_stats(&store, "20 completions", |s| {
            s.total.counters.completed == 20
        })
        .await;
        manager.close().await.unwrap();
        let events = events.lock().unwrap();
        let panics: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                Event::TaskRetry { error, .. } => Some(error),
                _ => None,
            })
            .collect();
        assert_eq!(panics.len(), 1, "{panics:?}");
        assert!(
            panics[0].contains("panicked") && panics[0].contains("processor bug on task 0"),
            "{}",
            panics[0]
        );
    }

    /// Arguments that do not decode into the typed processor's type go to DEAD at once.
    pub async fn undecodable_payload_goes_to_dead_without_retries(store: Arc<dyn Store>) {
        let manager = builder(&store).build();
        let good = Arc::new(AtomicU32::new(0));
        let counter = good.clone();
        manager
            .register_typed("points", move |_p: Point, _ctx: TaskContext| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { ok() }
            })
            .unwrap();
        manager.start().await.unwrap();
        let bad = manager
            .enqueue(Task::new("points", "not a point").unwrap().max_retries(5))
            .await
            .unwrap()
            .id();
        manager
            .enqueue(Task::new("points", &serde_json::json!({"x": 1, "y": 2})).unwrap())
            .await
            .unwrap();
        wait_for_stats(&store, "one dead, one completed", |s| {
            s.total.sizes.dead == 1 && s.total.counters.completed == 1
        })
        .await;
        manager.close().await.unwrap();
        let r = get(&*store, bad).await;
        assert_eq!(
            (r.queue, r.attempt),
            (Queue::Dead, 1),
            "a decode error was retried"
        );
        let error = r.last_error().unwrap();
        assert!(error.contains("decode"), "{error}");
        assert_eq!(good.load(Ordering::SeqCst), 1);
    }

    /// A permanent error skips the remaining retries.
    pub async fn permanent_error_skips_retries(store: Arc<dyn Store>) {
        let manager = builder(&store).build();
        manager
            .register("t", |_ctx: TaskContext| async {
                Err::<(), _>(TaskError::permanent(TaskError::msg("bad input")))
            })
            .unwrap();
        let r = run_to_dead(&store, &manager, task("t", 1).max_retries(9)).await;
        assert_eq!(r.attempt, 1);
    }

    /// A processor that hangs past its topic's timeout fails as timed out.
    pub async fn hung_processor_times_out(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .topic(
                "slow",
                TopicOptions::new()
                    .timeout(Duration::from_millis(100))
                    .retries(0),
            )
            .build();
        manager
            .register("slow", |_ctx: TaskContext| async {
                std::future::pending::<Result<(), TaskError>>().await
            })
            .unwrap();
        let r = run_to_dead(&store, &manager, task("slow", 1)).await;
        let error = r.last_error().unwrap();
        assert!(error.contains("timed out"), "{error}");
    }

    /// close() cancels running tasks; they go back to INPUT without using an attempt, and a
    /// later manager finishes them.
    pub async fn close_releases_running_tasks_without_using_attempts(store: Arc<dyn Store>) {
        let started = Arc::new(AtomicU32::new(0));
        let manager = builder(&store).concurrency(5).build();
        let count = started.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    ctx.cancelled().await;
                    ok()
                }
            })
            .unwrap();
        manager.start().await.unwrap();
        let ids = enqueue_all(&manager, (0..5).map(|i| task("t", i)).collect()).await;
        wait_until("5 runs started", PATIENCE, || async {
            started.load(Ordering::SeqCst) == 5
        })
        .await;
        manager.close().await.unwrap();
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.total.sizes.input, 5);
        assert_eq!(
            (
                stats.total.counters.released,
                stats.total.counters.completed
            ),
            (5, 0)
        );
        for id in &ids {
            assert_eq!(
                get(&*store, *id).await.attempt,
                0,
                "a cancelled run used an attempt"
            );
        }
        assert_eq!(
            manager.enqueue(task("t", 9)).await.unwrap_err().kind(),
            ErrorKind::Misuse
        );
        let second = builder(&store).build();
        second
            .register("t", |_ctx: TaskContext| async { ok() })
            .unwrap();
        second.start().await.unwrap();
        wait_for_stats(&store, "5 completions", |s| s.total.counters.completed == 5).await;
        second.close().await.unwrap();
    }

    /// close_with_timeout lets running tasks finish within the grace period; a task that
    /// outlives it is released.
    pub async fn close_with_timeout_lets_running_tasks_finish(store: Arc<dyn Store>) {
        let started = Arc::new(AtomicU32::new(0));
        let manager = builder(&store).concurrency(4).build();
        let count = started.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    let forever: bool = ctx.args()?;
                    if forever {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    ok()
                }
            })
            .unwrap();
        manager.start().await.unwrap();
        let tasks = vec![
            Task::new("t", &false).unwrap(),
            Task::new("t", &false).unwrap(),
            Task::new("t", &false).unwrap(),
            Task::new("t", &true).unwrap(),
        ];
        let ids = enqueue_all(&manager, tasks).await;
        wait_until("4 runs started", PATIENCE, || async {
            started.load(Ordering::SeqCst) == 4
        })
        .await;
        manager
            .close_with_timeout(Duration::from_secs(2))
            .await
            .unwrap();
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.completed, c.released), (3, 1));
        let stuck = get(&*store, ids[3]).await;
        assert_eq!((stuck.queue, stuck.attempt), (Queue::Input, 0));
    }

    /// A watcher sees one task's events in lifecycle order, between the manager's start and stop.
    pub async fn events_arrive_in_order_for_one_task(store: Arc<dyn Store>) {
        let manager = builder(&store).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                if ctx.attempt() == 1 {
                    return Err(TaskError::msg("first try fails"));
                }
                ctx.progress(&serde_json::json!({"done": 50})).await?;
                ctx.set_result(&"all good")?;
                ok()
            })
            .unwrap();
        let events = record_events(&manager).await;
        manager.start().await.unwrap();
        let id = manager.enqueue(task("t", 1)).await.unwrap().id();
        wait_for_stats(&store, "a completion", |s| s.total.counters.completed == 1).await;
        manager.close().await.unwrap();
        wait_until("MANAGER_STOP", PATIENCE, || async {
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::ManagerStop { .. }))
        })
        .await;
        let events = events.lock().unwrap();
        let names: Vec<&str> = events
            .iter()
            .filter(|e| e.task_id() == Some(id) || e.task_id().is_none())
            .map(|e| e.name())
            .collect();
        assert_eq!(
            names,
            [
                "MANAGER_START",
                "TASK_ENQUEUE",
                "TASK_START",
                "TASK_RETRY",
                "TASK_START",
                "TASK_PROGRESS",
                "TASK_COMPLETION",
                "MANAGER_STOP"
            ]
        );
        let result = events.iter().find_map(|e| match e {
            Event::TaskCompletion {
                result, attempt, ..
            } => Some((result.clone(), *attempt)),
            _ => None,
        });
        let (result, attempt) = result.unwrap();
        assert_eq!(attempt, 2);
        assert_eq!(result.unwrap().decode::<String>().unwrap(), "all good");
    }

    /// A completion reports how long its own run took, also when a worker goes straight from
    /// one run to the next.
    pub async fn completion_reports_the_runs_own_duration(store: Arc<dyn Store>) {
        const SLOW_MS: u64 = 300;
        let manager = builder(&store).concurrency(1).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                let sleep_ms: u64 = ctx.args()?;
                tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
                ok()
            })
            .unwrap();
        let events = record_events(&manager).await;
        // One worker, both tasks in its hands: the fast one starts as the slow one ends.
        let ids = enqueue(&*store, vec![task("t", SLOW_MS), task("t", 0)]).await;
        manager.start().await.unwrap();
        wait_for_stats(&store, "two completions", |s| {
            s.total.counters.completed == 2
        })
        .await;
        let completions = || {
            let events = events.lock().unwrap();
            let duration_of = |id: TaskId| {
                events.iter().find_map(|e| match e {
                    Event::TaskCompletion {
                        id: done,
                        duration_ms,
                        ..
                    } if *done == id => Some(*duration_ms),
                    _ => None,
                })
            };
            duration_of(ids[0]).zip(duration_of(ids[1]))
        };
        wait_until("both completion events", PATIENCE, || async {
            completions().is_some()
        })
        .await;
        manager.close().await.unwrap();
        let (slow, fast) = completions().unwrap();
        assert!(slow >= SLOW_MS, "a {SLOW_MS} ms run reported {slow} ms");
        assert!(
            fast < SLOW_MS,
            "a no-op run after a slow one reported {fast} ms"
        );
    }

    /// Two managers sharing a store never run the same task at the same time, and between
    /// them run every task exactly once.
    pub async fn two_managers_never_run_a_task_at_once(store: Arc<dyn Store>) {
        let running: Arc<Mutex<HashSet<TaskId>>> = Arc::default();
        let runs: Arc<Mutex<HashMap<TaskId, u32>>> = Arc::default();
        let overlap = Arc::new(AtomicBool::new(false));
        let mut managers = Vec::new();
        for _ in 0..2 {
            let manager = builder(&store).concurrency(8).build();
            let (running, runs, overlap) = (running.clone(), runs.clone(), overlap.clone());
            manager
                .register("t", move |ctx: TaskContext| {
                    let (running, runs, overlap) = (running.clone(), runs.clone(), overlap.clone());
                    async move {
                        if !running.lock().unwrap().insert(ctx.id()) {
                            overlap.store(true, Ordering::SeqCst);
                        }
                        *runs.lock().unwrap().entry(ctx.id()).or_default() += 1;
                        tokio::task::yield_now().await;
                        running.lock().unwrap().remove(&ctx.id());
                        ok()
                    }
                })
                .unwrap();
            manager.start().await.unwrap();
            managers.push(manager);
        }
        managers[0]
            .enqueue_batch((0..400).map(|i| task("t", i)).collect())
            .await
            .unwrap();
        wait_for_stats(&store, "400 completions", |s| {
            s.total.counters.completed == 400
        })
        .await;
        for m in &managers {
            m.close().await.unwrap();
        }
        assert!(
            !overlap.load(Ordering::SeqCst),
            "a task ran in two managers at once"
        );
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 400);
        assert!(runs.values().all(|n| *n == 1));
    }

    /// Tasks whose manager died (leases never renewed) are recovered by another manager's
    /// reaper and completed.
    pub async fn crashed_managers_tasks_are_recovered(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 3).await;
        // A "manager" that claims and then vanishes, with a short lease.
        let req = ClaimOptions::new([TopicClaim::new("t")], 3, "crashed", Timestamp::now())
            .lease(Duration::from_millis(100));
        assert_eq!(store.claim(&req).await.unwrap().len(), 3);
        let manager = builder(&store)
            .reap_interval(Duration::from_millis(50))
            .build();
        manager
            .register("t", |_ctx: TaskContext| async { ok() })
            .unwrap();
        let events = record_events(&manager).await;
        manager.start().await.unwrap();
        wait_for_stats(&store, "3 completions", |s| s.total.counters.completed == 3).await;
        manager.close().await.unwrap();
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.recovered, c.started), (3, 6));
        let recovered = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::TaskRecovered { dead: false, .. }))
            .count();
        assert_eq!(recovered, 3);
    }

    /// A run whose lease is lost (here: the task is deleted meanwhile) is cancelled at the
    /// next renewal.
    pub async fn lost_lease_cancels_the_run(store: Arc<dyn Store>) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let manager = builder(&store)
            .lease(Duration::from_secs(3))
            .renew_interval(Duration::from_millis(50))
            .build();
        let (c, s) = (cancelled.clone(), started.clone());
        manager
            .register("t", move |ctx: TaskContext| {
                let (c, s) = (c.clone(), s.clone());
                async move {
                    s.store(true, Ordering::SeqCst);
                    ctx.cancelled().await;
                    c.store(true, Ordering::SeqCst);
                    ok()
                }
            })
            .unwrap();
        manager.start().await.unwrap();
        let id = manager.enqueue(task("t", 1)).await.unwrap().id();
        wait_until("the run to start", PATIENCE, || async {
            started.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(store.delete(&[id]).await.unwrap(), vec![true]);
        wait_until("the run to be cancelled", PATIENCE, || async {
            cancelled.load(Ordering::SeqCst)
        })
        .await;
        manager.close().await.unwrap();
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!(
            (c.completed, c.released),
            (0, 0),
            "a stale outcome was applied"
        );
    }

    /// Registering a topic twice, after start, or starting twice is a misuse error.
    pub async fn registration_errors_are_misuse(store: Arc<dyn Store>) {
        let manager = builder(&store).build();
        assert_eq!(
            manager.start().await.unwrap_err().kind(),
            ErrorKind::Misuse,
            "started with no topic"
        );
        manager
            .register("t", |_ctx: TaskContext| async { ok() })
            .unwrap();
        let twice = manager
            .register("t", |_ctx: TaskContext| async { ok() })
            .unwrap_err();
        assert_eq!(twice.kind(), ErrorKind::Misuse);
        manager.start().await.unwrap();
        assert_eq!(manager.start().await.unwrap_err().kind(), ErrorKind::Misuse);
        let late = manager
            .register("u", |_ctx: TaskContext| async { ok() })
            .unwrap_err();
        assert_eq!(late.kind(), ErrorKind::Misuse);
        manager.close().await.unwrap();
    }

    /// The manager publishes a stats snapshot periodically.
    pub async fn manager_publishes_stats_periodically(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .stats_interval(Some(Duration::from_millis(50)))
            .build();
        manager
            .register("t", |_ctx: TaskContext| async { ok() })
            .unwrap();
        let events = record_events(&manager).await;
        manager.start().await.unwrap();
        manager
            .enqueue_batch((0..3).map(|i| task("t", i)).collect())
            .await
            .unwrap();
        wait_until(
            "a MANAGER_STATS showing 3 completions",
            PATIENCE,
            || async {
                events.lock().unwrap().iter().any(|e| match e {
                    Event::ManagerStats {
                        stats, manager: m, ..
                    } => **m == *manager.id() && stats.topic("t").counters.completed == 3,
                    _ => false,
                })
            },
        )
        .await;
        manager.close().await.unwrap();
    }

    /// A run that takes several lease durations keeps its lease through renewals: it is never
    /// recovered, and runs once.
    pub async fn long_run_keeps_its_lease(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .lease(Duration::from_millis(300))
            .renew_interval(Duration::from_millis(50))
            .reap_interval(Duration::from_millis(25))
            .build();
        manager
            .register("t", |_ctx: TaskContext| async {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                ok()
            })
            .unwrap();
        manager.start().await.unwrap();
        manager.enqueue(task("t", 1)).await.unwrap();
        wait_for_stats(&store, "a completion", |s| s.total.counters.completed == 1).await;
        manager.close().await.unwrap();
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.started, c.recovered, c.completed), (1, 0, 1));
    }

    /// With two busy topics, a topic of weight 3 gets about three quarters of the runs.
    pub async fn topic_weights_share_the_workers(store: Arc<dyn Store>) {
        let order: Log<String> = log();
        let manager = builder(&store)
            .concurrency(1)
            .topic("heavy", TopicOptions::new().weight(3))
            .build();
        for topic in ["heavy", "light"] {
            let order = order.clone();
            manager
                .register(topic, move |ctx: TaskContext| {
                    order.lock().unwrap().push(ctx.topic().to_owned());
                    async { ok() }
                })
                .unwrap();
        }
        let mut tasks: Vec<Task> = (0..200).map(|i| task("heavy", i)).collect();
        tasks.extend((0..200).map(|i| task("light", i)));
        manager.enqueue_batch(tasks).await.unwrap();
        manager.start().await.unwrap();
        wait_for_stats(&store, "200 completions", |s| {
            s.total.counters.completed >= 200
        })
        .await;
        manager.close().await.unwrap();
        let order = order.lock().unwrap();
        let heavy = order[..200].iter().filter(|t| *t == "heavy").count();
        assert!(
            (130..=170).contains(&heavy),
            "heavy ran {heavy} of the first 200"
        );
    }
);
