//! The SQLite store across real process deaths and between two live processes, with the
//! `taskmill-test-worker` child: it runs a Manager on the database file and appends one
//! fsync'd line per run to a record file, which the parent checks when all is done.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;
use taskmill_tests::process::{
    enqueue_with_worker, final_stats, kill_at_random_moments, spawn_worker, wait_child, Records,
};
use taskmill_tests::worker_bin;

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A manager with concurrency 25 works through 20,000 tasks and is SIGKILLed at 5 random
/// moments, restarted each time. Every task completes at least once, and every task that
/// ran twice was running in a process that was killed.
#[test]
fn sqlite_survives_kill_9_at_random_moments() {
    const TOTAL: u64 = 20_000;
    let dir = taskmill_testkit::temp_dir();
    let db = url(&dir.path().join("tasks.db"));
    // Short leases, so a killed worker's tasks come back within seconds (renewed every
    // second, so a live worker keeps them even on a loaded machine).
    let run = kill_at_random_moments(
        worker_bin!(),
        &db,
        &dir.path().join("runs.log"),
        TOTAL,
        5,
        &["--topics", "5", "--concurrency", "25", "--lease-ms", "3000"],
    );
    run.assert_nothing_lost("sqlite crash test", TOTAL);
    let stats = final_stats(&db);
    let c = stats.total.counters;
    println!("final stats: {c:?}");
    // The store counted each task's completion exactly once, and nothing is left over.
    assert_eq!(c.completed, TOTAL, "{stats:?}");
    assert_eq!(stats.total.sizes.active(), 0, "{stats:?}");
    assert_eq!(
        stats.total.sizes.completed, TOTAL,
        "one record kept per task"
    );
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
    let dir = taskmill_testkit::temp_dir();
    let db = url(&dir.path().join("tasks.db"));
    enqueue_with_worker(worker_bin!(), &db, TOTAL, 5);
    let records: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("runs-{i}.log")))
        .collect();
    // 1 ms of work per task keeps both processes busy at the same time; nobody dies here,
    // so a lease expiring would be a stall: leases are long.
    let mut children: Vec<Child> = records
        .iter()
        .map(|record| {
            let record = record.display().to_string();
            spawn_worker(
                worker_bin!(),
                &[
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
                    "10000",
                    "--work-ms",
                    "1",
                    "--until-empty",
                ],
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
    assert_eq!(stats.total.sizes.active(), 0, "{stats:?}");
    assert_eq!(
        stats.total.sizes.completed, TOTAL,
        "one record kept per task"
    );
}
