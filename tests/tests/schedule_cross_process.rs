//! Three processes run the same one-second schedule on one store for 30 seconds: every
//! tick in that time is enqueued exactly once, with no gap, and all three took part: each
//! child's copy of the schedule's task carries a header with its process id, so the task
//! of each tick names the child whose fire enqueued it, and every child won at least one.
//!
//! Each child is this test binary again, running [`child_process_entry`] with the store
//! URL, its record file and the wall-clock time to stop at in an environment variable; in
//! a normal run that test does nothing. Each store's test needs its feature of this crate
//! (both are default).

// With neither backend feature, only the child's entry is left.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "redis")),
    allow(dead_code, unused_imports)
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};
use taskmill::store::ListOptions;
use taskmill::{Manager, Queue, Schedule, Task, Timestamp};
#[cfg(feature = "redis")]
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_testkit::temp_dir;
use taskmill_tests::process::{append_line, spawn_self, ChildGuard};

/// Set in the child: `<store url>\n<record file>\n<stop at, ms since the epoch>`.
const CHILD_ENV: &str = "TASKMILL_SCHEDULE_CHILD";

/// The header naming the child (its process id) whose fire enqueued a tick's task. The
/// schedule is the same in every child (name, cadence, topic): only its task's header
/// differs, which the store copies into the task of whichever fire wins the tick.
const CHILD_HEADER: &str = "child-pid";

/// How long the three processes run the schedule together.
const RUN_FOR: Duration = Duration::from_secs(30);

const PROCESSES: usize = 3;

/// The child: a manager running only the schedule, until the parent's stop time.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [url, record, stop_at]: [&str; 3] = spec
        .lines()
        .collect::<Vec<_>>()
        .try_into()
        .expect("url, record file and stop time in the spec");
    let stop_at = Timestamp::from_millis(stop_at.parse().expect("stop time"));
    let record = PathBuf::from(record);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let store = taskmill::open(url).await.expect("open the store");
        let task = Task::new("cron", &())
            .and_then(|t| t.header(CHILD_HEADER, std::process::id().to_string()))
            .expect("task");
        let schedule =
            Schedule::every("every-second", Duration::from_secs(1), task).expect("schedule");
        let manager = Manager::builder_shared(store)
            .schedule(schedule)
            .stats_interval(None)
            .build();
        manager.start().await.expect("start");
        append_line(&record, &format!("started {}", std::process::id()));
        let left = stop_at.saturating_since(Timestamp::now());
        tokio::time::sleep(left.min(RUN_FOR + Duration::from_secs(60))).await;
        manager.close().await.expect("close");
        append_line(&record, &format!("stopped {}", std::process::id()));
    });
}

fn spawn_child(url: &str, record: &Path, stop_at: Timestamp) -> ChildGuard {
    let spec = format!("{url}\n{}\n{}", record.display(), stop_at.as_millis());
    spawn_self("child_process_entry", CHILD_ENV, spec)
}

/// Runs the three children on `url` and checks the ticks they enqueued.
async fn three_processes_fire_each_tick_once(url: &str) {
    let dir = temp_dir();
    let record = dir.path().join("record.log");
    let stop_at = Timestamp::now() + RUN_FOR;
    let mut children: Vec<ChildGuard> = (0..PROCESSES)
        .map(|_| spawn_child(url, &record, stop_at))
        .collect();
    let deadline = Instant::now() + RUN_FOR + Duration::from_secs(90);
    for child in &mut children {
        loop {
            if let Some(status) = child.0.try_wait().expect("wait for a child") {
                assert!(status.success(), "a child failed: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "a child is still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lines = std::fs::read_to_string(&record).unwrap_or_default();
    let started: BTreeSet<&str> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("started "))
        .collect();
    let stopped = lines.lines().filter(|l| l.starts_with("stopped")).count();
    assert_eq!((started.len(), stopped), (PROCESSES, PROCESSES), "{lines}");

    let store = taskmill::open(url).await.expect("open the store");
    let mut ticks = Vec::new();
    // How many ticks each child's fires enqueued, by process id.
    let mut fired_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut opts = ListOptions::new(Queue::Input).topic("cron").limit(500);
    for _ in 0..100 {
        let page = store.list(&opts).await.expect("list");
        for record in &page.tasks {
            let tick = record.schedule_tick().expect("a fired task names its tick");
            assert_eq!(&*tick.schedule, "every-second");
            ticks.push(tick.tick.as_millis());
            let child = record
                .headers
                .get(CHILD_HEADER)
                .expect("the child's header");
            *fired_by.entry(child.to_string()).or_default() += 1;
        }
        match page.next {
            Some(next) => opts = opts.after(next),
            None => break,
        }
    }
    ticks.sort();
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick was enqueued twice: {ticks:?}"
    );
    // Consecutive seconds from the first tick to the last: none was skipped.
    let gaps: Vec<&[i64]> = ticks.windows(2).filter(|w| w[1] - w[0] != 1_000).collect();
    assert!(gaps.is_empty(), "ticks missing between {gaps:?}");
    // The children start within a few seconds of each other and stop together.
    assert!(
        ticks.len() as u64 >= RUN_FOR.as_secs() - 10,
        "only {} ticks in {RUN_FOR:?}",
        ticks.len()
    );
    // Every child fired some ticks, and only the children did.
    let firing: BTreeSet<&str> = fired_by.keys().map(String::as_str).collect();
    assert_eq!(
        firing, started,
        "the children whose fires won ticks: {fired_by:?}"
    );
    let state = store.schedules().await.expect("schedules");
    assert_eq!(state.len(), 1);
    assert_eq!(
        state[0].last_tick.map(|t| t.as_millis()),
        ticks.last().copied()
    );
    println!(
        "{PROCESSES} processes, {} ticks, each enqueued once; ticks per child {fired_by:?}",
        ticks.len()
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_three_processes_fire_each_tick_once() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    three_processes_fire_each_tick_once(&url).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_three_processes_fire_each_tick_once() {
    let server = RedisServer::start();
    let url = server.url(&fresh_namespace());
    three_processes_fire_each_tick_once(&url).await;
}
