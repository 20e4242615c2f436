//! Another process holds SQLite's write lock for several seconds, twice, while a manager
//! works through 2,000 tasks on the same file (issue #17): no worker loop dies, no task is
//! lost or sent to DEAD by `database is locked`, and the manager goes on after each hold.
//!
//! The store's busy timeout is set to 1 s and each hold lasts 4 s, so the manager's calls
//! do fail with `SQLITE_BUSY` (`ErrorKind::Unavailable`) during a hold, not only wait.
//!
//! The lock holder is this test binary again, running [`child_process_entry`] with plain
//! rusqlite and the settings in an environment variable; in a normal run that test does
//! nothing. It writes `locked N` and `released N` lines to a record file as it goes.

// Without the sqlite feature, only the child's entry is left.
#![cfg_attr(not(feature = "sqlite"), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill::{Backoff, Event, EventStream, Manager, Task, TaskContext, TaskError, TopicOptions};
use taskmill_testkit::temp_dir;
use taskmill_tests::process::{append_line, spawn_self, ChildGuard};

/// Set in the child: `<database file>\n<record file>\n<hold ms>\n<gap ms>\n<holds>`.
const CHILD_ENV: &str = "TASKMILL_LOCK_CHILD";

/// Tasks enqueued before the holds: most complete, a fifth fail their first run and retry.
const TASKS: u64 = 2_000;
/// Every `FLAKY_EVERY`th task fails its first attempt.
const FLAKY_EVERY: u64 = 5;
/// Tasks enqueued after the last hold ended: the manager still takes new work.
const AFTER: u64 = 100;

/// The store's busy timeout, and how long each hold lasts (well past it).
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const HOLD: Duration = Duration::from_secs(4);
/// The time between the two holds, in which the manager must make progress.
const GAP: Duration = Duration::from_millis(1_500);
const HOLDS: u32 = 2;

/// How long one run of a processor takes. With [`CONCURRENCY`] workers the 2,000 tasks
/// take about 6 s of work, so both holds fall while work is left.
const RUN_TIME: Duration = Duration::from_millis(30);
const CONCURRENCY: usize = 10;

/// The longest any one step of the parent waits.
const PATIENCE: Duration = Duration::from_secs(30);

/// The child: opens the file with plain rusqlite and holds the write lock (`BEGIN
/// IMMEDIATE`, then sleep) `holds` times. Does nothing unless started by [`spawn_child`].
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [db, record, hold_ms, gap_ms, holds]: [&str; 5] = spec
        .lines()
        .collect::<Vec<_>>()
        .try_into()
        .expect("database, record file, hold, gap and holds in the spec");
    let hold = Duration::from_millis(hold_ms.parse().expect("hold ms"));
    let gap = Duration::from_millis(gap_ms.parse().expect("gap ms"));
    let holds: u32 = holds.parse().expect("holds");
    let record = PathBuf::from(record);
    let conn = rusqlite::Connection::open(db).expect("open the database");
    // The manager's own write transactions are short: waiting for one is fine here.
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    for n in 1..=holds {
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        append_line(&record, &format!("locked {n}"));
        std::thread::sleep(hold);
        // A write inside the hold, so the lock is a real writer's, then commit.
        conn.execute_batch("PRAGMA user_version; COMMIT")
            .expect("release the write lock");
        append_line(&record, &format!("released {n}"));
        if n < holds {
            std::thread::sleep(gap);
        }
    }
}

fn spawn_child(db: &Path, record: &Path) -> ChildGuard {
    let spec = format!(
        "{}\n{}\n{}\n{}\n{HOLDS}",
        db.display(),
        record.display(),
        HOLD.as_millis(),
        GAP.as_millis()
    );
    spawn_self("child_process_entry", CHILD_ENV, spec)
}

/// Waits until the record file has the line `line`, or the child exits without it.
async fn wait_for_line(record: &Path, line: &str, child: &mut ChildGuard) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(record).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return;
        }
        if let Some(status) = child.0.try_wait().expect("poll the child") {
            panic!("the lock holder exited ({status}) before {line:?}: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?} line from the lock holder within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The times at which completions (and lagged batches of events) reached a watcher, until
/// `stop`. The store publishes an event on its connection thread right after the
/// transaction that made it commits, so these are the commit times, give or take a
/// broadcast hop. (A `stats` call, by contrast, queues behind writes stuck on the lock and
/// returns late, which can split one stall into two.)
async fn completion_times(mut events: EventStream, stop: &tokio::sync::Notify) -> Vec<Instant> {
    let mut times = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep_until(deadline) => break,
            event = events.next() => match event {
                Some(Event::TaskCompletion { .. } | Event::Lagged { .. }) => {
                    times.push(Instant::now());
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    times
}

/// Waits until the store counts `completed` completions and nothing in INPUT or WORK.
async fn wait_all_completed(manager: &Manager, completed: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = manager.stats().await.expect("stats");
        let t = &stats.total;
        assert_eq!(t.sizes.dead, 0, "a task died: {stats:?}");
        if t.counters.completed >= completed && t.sizes.active() == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all {completed} tasks completed within {PATIENCE:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gaps between consecutive completions, longest first: the stalls.
fn stalls(times: &[Instant]) -> Vec<Duration> {
    let mut stalls: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    stalls.sort();
    stalls.reverse();
    stalls
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_manager_survives_another_process_holding_the_write_lock() {
    let dir = temp_dir();
    let db = dir.path().join("tasks.db");
    let record = dir.path().join("record.log");
    let url = format!(
        "sqlite://{}?busy_timeout_ms={}",
        db.display(),
        BUSY_TIMEOUT.as_millis()
    );
    let store = taskmill::open(&url).await.expect("open the store");
    let manager = Manager::builder_shared(store)
        .concurrency(CONCURRENCY)
        .poll_interval(Duration::from_millis(50))
        .stats_interval(None)
        .topic(
            "flaky",
            TopicOptions::new()
                .retries(3)
                .backoff(Backoff::constant(Duration::from_millis(10))),
        )
        .build();
    // Successful runs, counted in this process: how far the work got when a hold began.
    let runs_ok = Arc::new(AtomicU64::new(0));
    let ok = runs_ok.clone();
    manager
        .register("steady", move |_ctx: TaskContext| {
            let ok = ok.clone();
            async move {
                tokio::time::sleep(RUN_TIME).await;
                ok.fetch_add(1, Ordering::Relaxed);
                Ok::<_, TaskError>(())
            }
        })
        .expect("register steady");
    let ok = runs_ok.clone();
    manager
        .register("flaky", move |ctx: TaskContext| {
            let ok = ok.clone();
            async move {
                tokio::time::sleep(RUN_TIME).await;
                if ctx.attempt() == 1 {
                    return Err(TaskError::msg("fails its first run"));
                }
                ok.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .expect("register flaky");
    let tasks: Vec<Task> = (0..TASKS)
        .map(|i| {
            let topic = if i % FLAKY_EVERY == 0 {
                "flaky"
            } else {
                "steady"
            };
            Task::new(topic, &i).expect("task")
        })
        .collect();
    for batch in tasks.chunks(500) {
        manager
            .enqueue_batch(batch.to_vec())
            .await
            .expect("enqueue");
    }
    let flaky = TASKS.div_ceil(FLAKY_EVERY);

    let events = manager.watch().await.expect("watch");
    manager.start().await.expect("start");
    let stop_sampling = tokio::sync::Notify::new();
    // Completions are timed from before the first hold until every task, the later ones
    // too, has completed.
    let (times, holds) = tokio::join!(completion_times(events, &stop_sampling), async {
        // The holds begin once the manager is well under way.
        let deadline = Instant::now() + PATIENCE;
        while runs_ok.load(Ordering::Relaxed) < 200 {
            assert!(Instant::now() < deadline, "the manager did not get going");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut child = spawn_child(&db, &record);
        let mut holds = Vec::new();
        for n in 1..=HOLDS {
            wait_for_line(&record, &format!("locked {n}"), &mut child).await;
            let at_lock = runs_ok.load(Ordering::Relaxed);
            wait_for_line(&record, &format!("released {n}"), &mut child).await;
            holds.push((at_lock, runs_ok.load(Ordering::Relaxed)));
        }
        // New work after the holds is taken too, by the same manager.
        let later: Vec<Task> = (0..AFTER)
            .map(|i| Task::new("steady", &(TASKS + i)).expect("task"))
            .collect();
        manager.enqueue_batch(later).await.expect("enqueue after");
        wait_all_completed(&manager, TASKS + AFTER).await;
        stop_sampling.notify_one();
        holds
    });
    println!("successful runs at each lock and its release: {holds:?}");
    for (n, &(at_lock, _)) in holds.iter().enumerate() {
        assert!(
            at_lock < TASKS,
            "hold {} began after the work was done ({at_lock} runs): it tested nothing",
            n + 1
        );
    }
    // Between the holds the manager made progress: it did not stay stuck after the first.
    assert!(
        holds[1].0 > holds[0].1,
        "no run completed between the two holds: {holds:?}"
    );

    let stats = manager.stats().await.expect("stats");
    let c = stats.total.counters;
    println!("final counters: {c:?}");
    let stalls = stalls(&times);
    println!(
        "longest gaps between completions (hold {HOLD:?}, busy timeout \
         {BUSY_TIMEOUT:?}): {:?}",
        &stalls[..stalls.len().min(4)]
    );
    assert_eq!(c.enqueued, TASKS + AFTER, "{stats:?}");
    assert_eq!(c.completed, TASKS + AFTER, "{stats:?}");
    assert_eq!(c.failed, 0, "a task went to DEAD: {stats:?}");
    // Each flaky task failed once; none ran again because a lease was lost.
    assert_eq!(c.retried, flaky, "{stats:?}");
    assert_eq!((c.recovered, c.released), (0, 0), "{stats:?}");
    assert_eq!(c.started, c.completed + c.retried, "{stats:?}");
    assert_eq!(stats.total.sizes.completed, TASKS + AFTER, "{stats:?}");
    assert_eq!(stats.total.sizes.active(), 0, "{stats:?}");
    assert_eq!(runs_ok.load(Ordering::Relaxed), TASKS + AFTER);
    // The manager stood still through each hold (a write cannot commit while another
    // process holds the lock), and resumed within moments of its end: the two longest
    // stalls are the holds, and neither lasted much longer.
    assert!(
        stalls.len() >= 2 && stalls[1] >= HOLD - Duration::from_millis(500),
        "fewer than two gaps between completions as long as a hold: the holds did not block the manager? \
         {stalls:?}"
    );
    assert!(
        stalls[0] < HOLD + Duration::from_secs(3),
        "the manager stalled far longer than the hold: {stalls:?}"
    );
    manager.close().await.expect("close");
}
