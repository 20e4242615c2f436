//! The SQLite store across real process deaths and between two live processes, with the
//! `taskmill-test-worker` child: it runs a Manager on the database file and appends one
//! fsync'd line per run to a record file, which the parent checks when all is done.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use taskmill_core::Store;
use taskmill_sqlite::SqliteStore;
use taskmill_tests::process::{kill9, run_worker, spawn_worker, wait_child, Records, Run};
use taskmill_tests::worker_bin;

/// Short leases, so a killed worker's tasks come back within seconds (renewed every
/// second, so a live worker keeps them even on a loaded machine).
const CRASH_LEASE_MS: &str = "3000";

/// Nobody dies in the two-process test: a lease expiring there would be a stall.
const SHARED_LEASE_MS: &str = "10000";

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// How many runs a record file says finished (a torn last line is not counted).
fn finished_runs(record: &Path) -> usize {
    std::fs::read(record)
        .map(|bytes| {
            bytes
                .split(|b| *b == b'\n')
                .filter(|line| line.starts_with(b"end "))
                .count()
        })
        .unwrap_or(0)
}

/// A small xorshift generator: the kill moments are random, and the seed is printed so a
/// failing schedule can be replayed with `TASKMILL_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("TASKMILL_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| (micros() as u64) | 1);
        eprintln!("crash schedule seed: {seed} (TASKMILL_CRASH_SEED={seed} replays it)");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The store's final counters and sizes, read by the parent.
fn final_stats(path: &Path) -> taskmill_core::Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(path).await.expect("reopen the store");
        store.stats().await.expect("stats")
    })
}

fn start_runner(db: &Path, record: &Path, lease_ms: &str, extra: &[&str]) -> Child {
    let (db, record) = (url(db), record.display().to_string());
    let mut args = vec![
        "run",
        "--store",
        &db,
        "--record",
        &record,
        "--topics",
        "5",
        "--concurrency",
        "25",
        "--lease-ms",
        lease_ms,
    ];
    args.extend_from_slice(extra);
    spawn_worker(worker_bin!(), &args)
}

/// A manager with concurrency 25 works through 20,000 tasks and is SIGKILLed at 5 random
/// moments, restarted each time. Every task completes at least once, and every task that
/// ran twice was running in a process that was killed.
#[test]
fn sqlite_survives_kill_9_at_random_moments() {
    const TOTAL: u64 = 20_000;
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let record = dir.path().join("runs.log");
    run_worker(
        worker_bin!(),
        &[
            "enqueue",
            "--store",
            &url(&db),
            "--tasks",
            &TOTAL.to_string(),
            "--topics",
            "5",
        ],
        Duration::from_secs(120),
    );

    // Kill once the record shows this many finished runs: spread over the whole backlog,
    // in increasing order, each at a random point.
    let mut rng = Rng::new();
    let mut targets: Vec<usize> = (0..KILLS)
        .map(|i| {
            let slice = TOTAL as usize * 9 / 10 / KILLS;
            500 + i * slice + rng.below(slice as u64) as usize
        })
        .collect();
    targets.sort_unstable();

    let mut killed: HashMap<u32, u128> = HashMap::new();
    for target in targets {
        let mut child = start_runner(&db, &record, CRASH_LEASE_MS, &[]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while finished_runs(&record) < target {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("worker exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "no progress to {target} runs within 120 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let pid = child.id();
        kill9(&mut child);
        killed.insert(pid, micros());
        eprintln!(
            "killed worker {pid} after {} finished runs",
            finished_runs(&record)
        );
    }
    let mut last = start_runner(&db, &record, CRASH_LEASE_MS, &["--until-empty"]);
    let status = wait_child(&mut last, Duration::from_secs(300));
    assert!(status.success(), "the last worker failed: {status}");

    let records = Records::read(&record);
    let lost = records.lost(TOTAL);
    let killed_pids: HashSet<u32> = killed.keys().copied().collect();
    let unexplained = records.unexplained_duplicates(&killed_pids);
    let stats = final_stats(&db);
    let c = stats.total.counters;
    println!(
        "sqlite crash test: {TOTAL} tasks, {KILLS} kills, {} finished runs, {} lost, \
         {} tasks ran more than once ({} unexplained), {} leases recovered",
        records.runs.len(),
        lost.len(),
        records.duplicated(),
        unexplained.len(),
        c.recovered,
    );
    assert!(lost.is_empty(), "tasks never completed: {lost:?}");
    assert!(
        unexplained.is_empty(),
        "tasks ran twice though no earlier run was killed: {unexplained:?}"
    );
    // A duplicate's earlier run started before the kill of its process.
    for runs in records.by_task().values().filter(|r| r.len() > 1) {
        let mut runs: Vec<Run> = runs.clone();
        runs.sort_by_key(|r| r.end_us);
        for run in &runs[..runs.len() - 1] {
            let kill = killed[&run.pid];
            assert!(run.start_us < kill, "run {run:?} started after its kill");
        }
    }
    // The store counted each task's completion exactly once, and nothing is left over.
    assert_eq!(c.completed, TOTAL, "{stats:?}");
    assert_eq!(stats.total.sizes.total(), 0, "{stats:?}");
    assert_eq!(
        c.started,
        c.completed + c.recovered + c.released + c.retried,
        "{stats:?}"
    );
}

/// Two processes with a manager each share one database file: every task completes, none
/// runs twice, and no two runs of a task overlap in time.
#[test]
fn two_processes_share_one_sqlite_file() {
    const TOTAL: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    run_worker(
        worker_bin!(),
        &[
            "enqueue",
            "--store",
            &url(&db),
            "--tasks",
            &TOTAL.to_string(),
            "--topics",
            "5",
        ],
        Duration::from_secs(120),
    );
    let records: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("runs-{i}.log")))
        .collect();
    // 1 ms of work per task keeps both processes busy at the same time.
    let mut children: Vec<Child> = records
        .iter()
        .map(|r| {
            start_runner(
                &db,
                r,
                SHARED_LEASE_MS,
                &["--until-empty", "--work-ms", "1"],
            )
        })
        .collect();
    for child in &mut children {
        let status = wait_child(child, Duration::from_secs(300));
        assert!(status.success(), "a worker failed: {status}");
    }
    let mut all = Records::default();
    let mut per_pid = Vec::new();
    for (path, child) in records.iter().zip(&children) {
        let r = Records::read(path);
        per_pid.push((child.id(), r.runs.len()));
        all.runs.extend(r.runs);
        all.started.extend(r.started);
    }
    let stats = final_stats(&db);
    println!(
        "sqlite two processes: {TOTAL} tasks, runs per process {per_pid:?}, {} ran twice, \
         {} overlapping",
        all.duplicated(),
        all.overlapping().len()
    );
    assert!(all.lost(TOTAL).is_empty(), "lost: {:?}", all.lost(TOTAL));
    assert!(
        all.overlapping().is_empty(),
        "runs of one task overlapped: {:?}",
        all.overlapping()
    );
    assert_eq!(
        all.duplicated(),
        0,
        "no process died, so no task runs twice"
    );
    assert!(
        per_pid.iter().all(|(_, n)| *n > 0),
        "both processes took work: {per_pid:?}"
    );
    assert_eq!(stats.total.counters.completed, TOTAL, "{stats:?}");
    assert_eq!(stats.total.sizes.total(), 0, "{stats:?}");
}
