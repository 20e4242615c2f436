//! The sled store survives `kill -9`: a child manager (concurrency 25) processes 20,000
//! tasks and is SIGKILLed at 5 random moments, restarted each time; in the end every task
//! completed (0 lost) and every task that completed twice had a run in a killed process.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use taskmill_tests::process::{kill9, run_worker, spawn_worker, wait_child, Records};
use taskmill_tests::worker_bin;

const TASKS: u64 = 20_000;
const KILLS: usize = 5;

/// A small xorshift generator: the kill moments differ per run, and the seed is printed
/// so a failing run can be reasoned about.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn finished(record: &Path) -> usize {
    Records::read(record).runs.len()
}

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
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}?flush={flush}", dir.path().join("db").display());
    let record = dir.path().join("runs.log");
    let record_arg = record.to_str().unwrap().to_owned();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);

    run_worker(
        worker_bin!(),
        &[
            "enqueue",
            "--store",
            &url,
            "--tasks",
            &TASKS.to_string(),
            "--topics",
            "4",
        ],
        Duration::from_secs(120),
    );

    let run_args = [
        "run",
        "--store",
        &url,
        "--record",
        &record_arg,
        "--topics",
        "4",
        "--concurrency",
        "25",
        "--work-ms",
        "1",
        // Short leases, so tasks held by a killed child come back within seconds.
        "--lease-ms",
        "1500",
    ];
    let mut killed = HashSet::new();
    for kill in 0..KILLS {
        let before = finished(&record);
        // Each kill lands at a random point of the remaining work, while runs are going on.
        let remaining = (TASKS as usize).saturating_sub(before);
        let target = before + 1 + rng.below((remaining / (KILLS - kill + 1)) as u64) as usize;
        let mut child = spawn_worker(worker_bin!(), &run_args);
        let deadline = Instant::now() + Duration::from_secs(120);
        while finished(&record) < target {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("worker {} exited by itself: {status}", child.id());
            }
            assert!(Instant::now() < deadline, "no progress to {target} runs");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        killed.insert(child.id());
        kill9(&mut child);
        println!(
            "kill {} of {KILLS}: pid {} after {} finished runs",
            kill + 1,
            child.id(),
            finished(&record)
        );
    }

    let mut last = spawn_worker(worker_bin!(), &[&run_args[..], &["--until-empty"]].concat());
    let status = wait_child(&mut last, Duration::from_secs(300));
    assert!(status.success(), "the last worker failed: {status}");

    let records = Records::read(&record);
    let lost = records.lost(TASKS);
    let unexplained = records.unexplained_duplicates(&killed);
    println!(
        "sled crash test (flush={flush}): {TASKS} tasks, {} kills, {} finished runs, {} lost, {} duplicated \
         ({} unexplained), {} runs started",
        killed.len(),
        records.runs.len(),
        lost.len(),
        records.duplicated(),
        unexplained.len(),
        records.started.len(),
    );
    assert_eq!(killed.len(), KILLS);

    // The counters moved in the same transactions as the tasks, so across every crash they
    // still add up: each task enqueued and completed once in the store's eyes (a run whose
    // completion was lost left no trace but its record line), and every claim ended as a
    // completion, a recovery by the reaper, or a release at shutdown.
    let stats = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = taskmill::open(&url).await.unwrap();
            store.stats().await.unwrap()
        });
    let (c, sizes) = (stats.total.counters, stats.total.sizes);
    println!("final stats: {c:?}");
    assert_eq!(sizes.total(), 0, "{sizes:?}");
    assert_eq!((c.enqueued, c.completed), (TASKS, TASKS), "{c:?}");
    assert_eq!((c.retried, c.failed), (0, 0), "{c:?}");
    assert_eq!(c.started, c.completed + c.recovered + c.released, "{c:?}");
    assert!(
        lost.is_empty(),
        "lost tasks: {:?}",
        &lost[..lost.len().min(20)]
    );
    assert!(
        unexplained.is_empty(),
        "tasks finished twice with no kill to explain it: {:?}",
        &unexplained[..unexplained.len().min(20)]
    );
}
