//! The sled store survives `kill -9`: a child manager (concurrency 25) processes 20,000
//! tasks and is SIGKILLed at 5 random moments, restarted each time; in the end every task
//! completed (0 lost) and every task that completed twice had a run in a killed process.

use taskmill_tests::process::{final_stats, kill_at_random_moments};
use taskmill_tests::worker_bin;

const TASKS: u64 = 20_000;

/// The default policy: every enqueue and outcome is flushed before it returns.
#[test]
fn sled_loses_no_task_across_kill_9() {
    crash_test("always");
}

/// Outcomes ride on sled's periodic flush: more duplicates, still none lost.
#[test]
fn sled_with_flush_enqueues_loses_no_task_across_kill_9() {
    crash_test("enqueues");
}

fn crash_test(flush: &str) {
    let dir = taskmill_testkit::temp_dir();
    let url = format!("sled://{}?flush={flush}", dir.path().join("db").display());
    let run = kill_at_random_moments(
        worker_bin!(),
        &url,
        &dir.path().join("runs.log"),
        TASKS,
        5,
        // Short leases, so tasks held by a killed child come back within seconds.
        &[
            "--topics",
            "4",
            "--concurrency",
            "25",
            "--work-ms",
            "1",
            "--lease-ms",
            "1500",
        ],
    );
    run.assert_nothing_lost(&format!("sled crash test (flush={flush})"), TASKS);

    // The counters moved in the same transactions as the tasks, so across every crash they
    // still add up: each task enqueued and completed once in the store's eyes (a run whose
    // completion was lost left no trace but its record line), and every claim ended as a
    // completion, a recovery by the reaper, or a release at shutdown.
    let stats = final_stats(&url);
    let (c, sizes) = (stats.total.counters, stats.total.sizes);
    println!("final stats: {c:?}");
    assert_eq!(sizes.active(), 0, "{sizes:?}");
    assert_eq!(
        (sizes.completed, sizes.cancelled),
        (TASKS, 0),
        "one record kept per task"
    );
    assert_eq!((c.enqueued, c.completed), (TASKS, TASKS), "{c:?}");
    assert_eq!((c.retried, c.failed), (0, 0), "{c:?}");
    assert_eq!(c.started, c.completed + c.recovered + c.released, "{c:?}");
}
