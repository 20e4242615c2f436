//! A cancel issued in one process stops a run in another: a manager in a child process
//! runs tasks that wait for `ctx.cancelled()`, and this process cancels each through a
//! `Client` on the same store, measuring the delay from the cancel call to the signal in
//! the child over 100 cancels.
//!
//! SQLite carries no events across processes, so the child learns of a cancel when its
//! next lease renewal is refused: within its renew interval. Redis carries it by pub/sub,
//! whatever the renew interval.
//!
//! Each store's test builds with its feature of this crate (both are default). The child
//! is this test binary again, running [`child_process_entry`] with the store
//! and its settings in an environment variable; in a normal run that test does nothing.

// With neither backend feature, only the child's entry is left.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "redis")),
    allow(dead_code, unused_imports)
)]

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use taskmill::store::Cancellation;
use taskmill::{Client, Manager, Task, TaskContext, TaskError, TaskId, TaskStatus};
#[cfg(feature = "redis")]
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_testkit::temp_dir;
use taskmill_tests::process::{append_line, spawn_self, ChildGuard};

/// Set in the child: `<store url>\n<record file>\n<lease ms>`.
const CHILD_ENV: &str = "TASKMILL_CANCEL_CHILD";

/// How many cancels each store is measured over.
const CANCELS: u64 = 100;

/// The longest any one step of the parent waits.
const PATIENCE: Duration = Duration::from_secs(30);

fn micros() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i128
}

/// The child: a manager whose runs record when they start and when their cancel arrives.
/// Does nothing unless started by [`spawn_child`]; exits after five minutes at most.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [url, record, lease_ms]: [&str; 3] = spec
        .lines()
        .collect::<Vec<_>>()
        .try_into()
        .expect("url, record file and lease in the spec");
    let lease = Duration::from_millis(lease_ms.parse().expect("lease ms"));
    let record = PathBuf::from(record);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let store = taskmill::open(url).await.expect("open the store");
        let manager = Manager::builder_shared(store)
            .lease(lease)
            .poll_interval(Duration::from_millis(10))
            .stats_interval(None)
            .build();
        let log = record.clone();
        manager
            .register("c", move |ctx: TaskContext| {
                let log = log.clone();
                async move {
                    append_line(&log, &format!("start {} {}", ctx.id(), micros()));
                    ctx.cancelled().await;
                    append_line(&log, &format!("cancelled {} {}", ctx.id(), micros()));
                    Ok::<_, TaskError>(())
                }
            })
            .expect("register");
        manager.start().await.expect("start");
        append_line(&record, "ready");
        tokio::time::sleep(Duration::from_secs(300)).await;
    });
}

fn spawn_child(url: &str, record: &Path, lease: Duration) -> ChildGuard {
    let spec = format!("{url}\n{}\n{}", record.display(), lease.as_millis());
    spawn_self("child_process_entry", CHILD_ENV, spec)
}

/// Waits until the record file has a line starting with `prefix`; returns the rest.
async fn wait_for_line(record: &Path, prefix: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(record).unwrap_or_default();
        if let Some(rest) = text.lines().find_map(|l| l.strip_prefix(prefix)) {
            return rest.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line in the child's record within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_cancelled(client: &Client, id: TaskId) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let info = client.status(id).await.expect("status").expect("kept");
        if info.status == TaskStatus::Cancelled {
            return;
        }
        assert!(Instant::now() < deadline, "task {id} is {:?}", info.status);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs [`CANCELS`] tasks one at a time in a child on `url` and cancels each from here, a
/// random time up to `jitter` after its run started (so that cancels fall at every point
/// of the child's renew interval, not always just after the renewal that ended the
/// previous one); the delays from cancel to `ctx.cancelled()` in the child, sorted.
async fn cancel_delays(url: &str, lease: Duration, jitter: Duration) -> Vec<Duration> {
    let dir = temp_dir();
    let record = dir.path().join("record.log");
    let client = Client::shared(taskmill::open(url).await.expect("open the store")).by("parent");
    let _child = spawn_child(url, &record, lease);
    wait_for_line(&record, "ready").await;
    let mut delays = Vec::new();
    for i in 0..CANCELS {
        let id = client
            .enqueue(Task::new("c", &i).expect("task"))
            .await
            .expect("enqueue")
            .id();
        wait_for_line(&record, &format!("start {id} ")).await;
        let pause = fastrand::u64(..=jitter.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let asked = micros();
        assert_eq!(
            client.cancel(&[id]).await.expect("cancel"),
            [Cancellation::Requested]
        );
        let seen: i128 = wait_for_line(&record, &format!("cancelled {id} "))
            .await
            .parse()
            .expect("a time");
        delays.push(Duration::from_micros((seen - asked).max(0) as u64));
        wait_cancelled(&client, id).await;
    }
    let c = client.stats().await.expect("stats").total.counters;
    assert_eq!((c.cancelled, c.completed, c.retried), (CANCELS, 0, 0));
    delays.sort();
    delays
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(store: &str, delays: &[Duration]) -> (Duration, Duration) {
    let (p50, p99) = (percentile(delays, 50), percentile(delays, 99));
    println!(
        "{store}: cancel → ctx.cancelled() in another process over {} cancels: p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
    );
    (p50, p99)
}

/// On SQLite the child learns of each cancel at a renewal: within its renew interval (a
/// third of its lease), plus the renewal's own time. Checked against the lease, with room
/// for a loaded machine: nothing but a renewal can tell the child at all.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cancel_reaches_another_process_within_the_renew_interval() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let lease = Duration::from_millis(600);
    let renew_interval = lease / 3;
    let delays = cancel_delays(&url, lease, renew_interval).await;
    let (_, p99) = report("sqlite", &delays);
    assert!(
        p99 <= lease,
        "p99 {p99:?} past the lease ({lease:?}; renew interval {renew_interval:?})"
    );
}

/// On Redis the cancel travels by pub/sub: far faster than the child's renew interval
/// (10 s here), so no renewal can be what stopped the run.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cancel_reaches_another_process_through_pub_sub() {
    let server = RedisServer::start();
    let url = server.url(&fresh_namespace());
    let delays = cancel_delays(&url, Duration::from_secs(30), Duration::ZERO).await;
    let (_, p99) = report("redis", &delays);
    assert!(
        p99 < Duration::from_secs(1),
        "p99 {p99:?}: the cancel did not come by pub/sub"
    );
}
