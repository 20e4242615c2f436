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
