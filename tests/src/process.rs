//! The parent side of crash and multi-process tests: spawning
//! `taskmill-test-worker` children and checking what they recorded.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One finished run, from an `end` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The task's number (its argument).
    pub task: u64,
    /// The process that ran it.
    pub pid: u32,
    /// The attempt number.
    pub attempt: u32,
    /// Start and end, microseconds since the Unix epoch.
    pub start_us: u128,
    /// End.
    pub end_us: u128,
}

/// What the workers recorded: finished runs, and runs that started.
#[derive(Debug, Default)]
pub struct Records {
    /// Every finished run.
    pub runs: Vec<Run>,
    /// (task, pid, attempt) of every run that started.
    pub started: Vec<(u64, u32, u32)>,
}

impl Records {
    /// Reads a record file. A torn last line (a kill mid-write) is skipped.
    pub fn read(path: &Path) -> Records {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut records = Records::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["start", task, pid, attempt, _at] => {
                    if let (Ok(t), Ok(p), Ok(a)) = (task.parse(), pid.parse(), attempt.parse()) {
                        records.started.push((t, p, a));
                    }
                }
                ["end", task, pid, attempt, start, end] => {
                    if let (Ok(task), Ok(pid), Ok(attempt), Ok(start_us), Ok(end_us)) = (
                        task.parse(),
                        pid.parse(),
                        attempt.parse(),
                        start.parse(),
                        end.parse(),
                    ) {
                        records.runs.push(Run {
                            task,
                            pid,
                            attempt,
                            start_us,
                            end_us,
                        });
                    }
                }
                _ => {}
            }
        }
        records
    }

    /// Finished runs per task.
    pub fn by_task(&self) -> BTreeMap<u64, Vec<Run>> {
        let mut by_task: BTreeMap<u64, Vec<Run>> = BTreeMap::new();
        for run in &self.runs {
            by_task.entry(run.task).or_default().push(*run);
        }
        by_task
    }

    /// Tasks in `0..total` with no finished run.
    pub fn lost(&self, total: u64) -> Vec<u64> {
        let done: HashSet<u64> = self.runs.iter().map(|r| r.task).collect();
        (0..total).filter(|t| !done.contains(t)).collect()
    }

    /// Pairs of runs of one task whose time spans overlap.
    pub fn overlapping(&self) -> Vec<(Run, Run)> {
        let mut overlaps = Vec::new();
        for mut runs in self.by_task().into_values() {
            runs.sort_by_key(|r| r.start_us);
            for pair in runs.windows(2) {
                if pair[1].start_us < pair[0].end_us {
                    overlaps.push((pair[0], pair[1]));
                }
            }
        }
        overlaps
    }

    /// Tasks that finished more than once although no run but the last was in one of
    /// `killed` (a duplicate must come from a process that died before its outcome was
    /// stored).
    pub fn unexplained_duplicates(&self, killed: &HashSet<u32>) -> Vec<u64> {
        self.by_task()
            .into_iter()
            .filter(|(_, runs)| runs.len() > 1)
            .filter(|(_, runs)| {
                let mut runs = runs.clone();
                runs.sort_by_key(|r| r.end_us);
                runs[..runs.len() - 1]
                    .iter()
                    .any(|r| !killed.contains(&r.pid))
            })
            .map(|(task, _)| task)
            .collect()
    }

    /// How many tasks finished more than once.
    pub fn duplicated(&self) -> usize {
        self.by_task().values().filter(|r| r.len() > 1).count()
    }
}

/// The worker binary's path; only integration tests of taskmill-tests have it.
#[macro_export]
macro_rules! worker_bin {
    () => {
        env!("CARGO_BIN_EXE_taskmill-test-worker")
    };
}

/// Starts a worker with `args` (e.g. `["run", "--store", url, …]`), its stderr inherited.
pub fn spawn_worker(bin: &str, args: &[&str]) -> Child {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// Runs a worker to its end (e.g. `enqueue`), failing the test if it fails or outlives `limit`.
pub fn run_worker(bin: &str, args: &[&str], limit: Duration) {
    let mut child = spawn_worker(bin, args);
    let status = wait_child(&mut child, limit);
    assert!(status.success(), "worker {args:?} failed: {status}");
}

/// Enqueues tasks `0..tasks` over `topics` topics with the worker binary, which can open
/// stores this process cannot share (sled allows one process per database).
pub fn enqueue_with_worker(bin: &str, url: &str, tasks: u64, topics: u64) {
    let (tasks, topics) = (tasks.to_string(), topics.to_string());
    run_worker(
        bin,
        &[
            "enqueue", "--store", url, "--tasks", &tasks, "--topics", &topics,
        ],
        Duration::from_secs(120),
    );
}

/// Waits for a child to exit; kills it and fails the test after `limit`.
pub fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("worker {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs a child and reaps it.
pub fn kill9(child: &mut Child) {
    // std's kill is SIGKILL on Unix.
    let _ = child.kill();
    let _ = child.wait();
}

/// The generator of kill moments, seeded from `TASKMILL_CRASH_SEED` or at random. The seed
/// is printed, so a failing schedule can be replayed with `TASKMILL_CRASH_SEED=…`.
fn crash_schedule_rng() -> fastrand::Rng {
    let seed = std::env::var("TASKMILL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash schedule seed: {seed} (TASKMILL_CRASH_SEED={seed} replays it)");
    fastrand::Rng::with_seed(seed)
}

/// How many runs a record file says finished (a torn last line is not counted).
pub fn finished_runs(record: &Path) -> usize {
    std::fs::read(record)
        .map(|bytes| {
            bytes
                .split(|b| *b == b'\n')
                .filter(|line| line.starts_with(b"end "))
                .count()
        })
        .unwrap_or(0)
}

/// What a crash run left: the records, and each killed worker with the time of its kill
/// (microseconds since the Unix epoch).
pub struct CrashRun {
    /// What the workers recorded.
    pub records: Records,
    /// Killed pid → when it was killed.
    pub killed: std::collections::HashMap<u32, u128>,
}

impl CrashRun {
    /// Checks the at-least-once promise across the kills and prints the counts: every task
    /// in `0..tasks` finished, and each one that finished more than once had every earlier
    /// run in a killed worker, started before that kill.
    pub fn assert_nothing_lost(&self, name: &str, tasks: u64) {
        let killed: HashSet<u32> = self.killed.keys().copied().collect();
        let lost = self.records.lost(tasks);
        let unexplained = self.records.unexplained_duplicates(&killed);
        println!(
            "{name}: {tasks} tasks, {} kills, {} finished runs, {} lost, {} tasks ran more \
             than once ({} unexplained)",
            self.killed.len(),
            self.records.runs.len(),
            lost.len(),
            self.records.duplicated(),
            unexplained.len(),
        );
        assert!(
            lost.is_empty(),
            "tasks never completed: {:?}",
            &lost[..lost.len().min(20)]
        );
        assert!(
            unexplained.is_empty(),
            "tasks ran twice though no earlier run was killed: {:?}",
            &unexplained[..unexplained.len().min(20)]
        );
        for runs in self.records.by_task().values().filter(|r| r.len() > 1) {
            let mut runs = runs.clone();
            runs.sort_by_key(|r| r.end_us);
            for run in &runs[..runs.len() - 1] {
                assert!(
                    run.start_us < self.killed[&run.pid],
                    "run {run:?} started after its kill"
                );
            }
        }
    }
}

/// The crash procedure every durable store runs: `enqueue` tasks `0..tasks` through the
/// worker, then start a `run` worker (with `run_args` after `--store URL --record FILE`)
/// and SIGKILL it `kills` times at random points spread over the backlog, restarting it
/// each time; finally run one with `--until-empty` to the end.
pub fn kill_at_random_moments(
    bin: &str,
    url: &str,
    record: &Path,
    tasks: u64,
    kills: usize,
    run_args: &[&str],
) -> CrashRun {
    let topics = run_args
        .windows(2)
        .find(|w| w[0] == "--topics")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1);
    enqueue_with_worker(bin, url, tasks, topics);
    // Kill once the record shows this many finished runs: spread over the whole backlog,
    // in increasing order, each at a random point of its slice.
    let mut rng = crash_schedule_rng();
    let slice = tasks as usize * 9 / 10 / kills.max(1);
    let targets: Vec<usize> = (0..kills)
        .map(|i| slice / 10 + i * slice + rng.usize(..(slice * 9 / 10).max(1)))
        .collect();
    let record_arg = record.display().to_string();
    let mut args = vec!["run", "--store", url, "--record", &record_arg];
    args.extend_from_slice(run_args);
    let mut killed = std::collections::HashMap::new();
    for target in targets {
        let mut child = spawn_worker(bin, &args);
        let deadline = Instant::now() + Duration::from_secs(120);
        while finished_runs(record) < target {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("worker {} exited by itself: {status}", child.id());
            }
            assert!(
                Instant::now() < deadline,
                "no progress to {target} runs within 120 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let pid = child.id();
        kill9(&mut child);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros();
        killed.insert(pid, at);
        eprintln!(
            "killed worker {pid} after {} finished runs",
            finished_runs(record)
        );
    }
    args.push("--until-empty");
    let mut last = spawn_worker(bin, &args);
    let status = wait_child(&mut last, Duration::from_secs(300));
    assert!(status.success(), "the last worker failed: {status}");
    CrashRun {
        records: Records::read(record),
        killed,
    }
}

/// A store's final stats, read by the parent once the workers are gone.
pub fn final_stats(url: &str) -> taskmill_core::Stats {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let store = taskmill::open(url).await.expect("reopen the store");
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .expect("stats")
        })
}

/// Appends `line` and a newline to the record file at `path`, creating it: how a child
/// process of a multi-process test reports to its parent (one write per line, so lines of
/// several children never interleave mid-line).
pub fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the record file");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("write the record file");
}

/// A child process that is killed when the test ends, passed or not.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs this test binary again as a child, running only its test `entry`, with `spec` in
/// the environment variable `env` (the entry does nothing without it).
pub fn spawn_self(entry: &str, env: &str, spec: String) -> ChildGuard {
    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", entry, "--nocapture"])
        .env(env, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the child");
    ChildGuard(child)
}
