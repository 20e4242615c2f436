//! The processes scenario: several manager processes on one store.
//!
//! The benchmark fills a fresh location with `tasks` tasks, starts `processes` busy and
//! `idle_processes` idle workers ([`super::worker`], copies of the program running its
//! hidden command), tells them all to go at once, and polls the store's statistics until
//! every task is completed. The rate runs from the go to the last run any worker made;
//! redis-server's CPU time ([`ServerCpu`]) is read at the go and when the completions are
//! seen. The workers' bits of the tasks they ran show every task ran exactly once, across
//! processes too.

use super::scenario::{at_fresh, check, fail_on, fill, per_sec, RunCounts, WAIT_TICK};
use super::server_cpu::ServerCpu;
use super::worker::{unix_nanos, WorkerArgs, WorkerReport, GO, READY};
use super::{BenchConfig, Row};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use taskmill::store::StatsOptions;
use taskmill::{Error, Result, Store, Timestamp};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long a worker may take to open the store and build its manager.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker may take to close and report once its input is closed.
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the completions are counted while the workers process.
const DONE_POLL: Duration = Duration::from_millis(10);

/// Runs the scenario on `url`, or marks the row skipped when the store is not shared
/// across processes.
pub(super) async fn run(url: &str, config: &BenchConfig, row: &mut Row) -> Result<()> {
    at_fresh(url, |store, target| async move {
        if !store.capabilities().cross_process_events {
            row.skipped = Some(format!(
                "{} is not shared across processes (the scenario runs on Redis)",
                url.split(':').next().unwrap_or(url)
            ));
            return Ok(());
        }
        processes(store, &target.url, url, config, row).await
    })
    .await
}

/// One started worker.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn start(program: &std::path::Path, args: &WorkerArgs) -> Result<Worker> {
        let mut child = tokio::process::Command::new(program)
            .args(args.command_line())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::unavailable(format!("cannot start {}", program.display())).with_source(e)
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::storage("a worker without pipes"));
        };
        Ok(Worker {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// The worker's next line, within `timeout`.
    async fn line(&mut self, timeout: Duration, waiting_for: &str) -> Result<String> {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(Error::storage(format!(
                "a worker exited before its {waiting_for} (see its error above)"
            ))),
            Ok(Err(e)) => Err(Error::unavailable("a worker's pipe failed").with_source(e)),
            Err(_) => Err(Error::unavailable(format!(
                "no {waiting_for} from a worker in {timeout:?}"
            ))),
        }
    }

    async fn go(&mut self) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::misuse("the worker was stopped"))?;
        stdin
            .write_all(format!("{GO}\n").as_bytes())
            .await
            .map_err(|e| Error::unavailable("cannot start a worker").with_source(e))
    }

    /// Closes the worker's input and reads its report.
    async fn stop(&mut self) -> Result<WorkerReport> {
        drop(self.stdin.take());
        let line = self.line(REPORT_TIMEOUT, "report").await?;
        let status = tokio::time::timeout(REPORT_TIMEOUT, self.child.wait()).await;
        if !matches!(status, Ok(Ok(s)) if s.success()) {
            return Err(Error::storage(format!("a worker ended with {status:?}")));
        }
        serde_json::from_str(&line).map_err(|e| {
            Error::storage(format!("a worker's report is not one: {line}")).with_source(e)
        })
    }
}

/// The scenario on `store`, the fresh location `location` derived from `url`.
async fn processes(
    store: Arc<dyn Store>,
    location: &str,
    url: &str,
    config: &BenchConfig,
    row: &mut Row,
) -> Result<()> {
    let n = config.tasks;
    row.tasks = n;
    let label = format!("{url} processes");
    let filled = fill(&*store, url, config, n, &label).await?;
    let program = match &config.worker_program {
        Some(program) => program.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::unavailable("cannot find this program").with_source(e))?,
    };
    let worker_args = |idle: bool| WorkerArgs {
        store: location.to_owned(),
        topics: config.topics,
        idle,
        concurrency: config.concurrency,
        retention_secs: config.retention.map(|r| r.as_secs_f64()),
        first_id: filled.first.get(),
        span: filled.count,
    };
    let mut workers = Vec::with_capacity(config.processes + config.idle_processes);
    for idle in std::iter::repeat_n(false, config.processes)
        .chain(std::iter::repeat_n(true, config.idle_processes))
    {
        workers.push(Worker::start(&program, &worker_args(idle))?);
    }
    for worker in &mut workers {
        let line = worker.line(READY_TIMEOUT, "ready line").await?;
        if line != READY {
            return Err(Error::storage(format!("a worker said {line:?}, not ready")));
        }
    }
    let mut server = ServerCpu::connect(location).await?;
    let server_before = match &mut server {
        Some(server) => Some(server.used().await?),
        None => None,
    };
    let go_at = SystemTime::now();
    let started = Instant::now();
    for worker in &mut workers {
        worker.go().await?;
    }
    let done = wait_for_completions(&*store, n, config.stall_timeout).await;
    let polled = started.elapsed();
    let server_used = match (&mut server, server_before) {
        (Some(server), Some(before)) => Some(server.used().await?.saturating_sub(before)),
        _ => None,
    };
    // Every worker is stopped (and killed if it does not report) before any error.
    let mut reports = Vec::with_capacity(workers.len());
    for worker in &mut workers {
        reports.push(worker.stop().await);
    }
    let reports = reports.into_iter().collect::<Result<Vec<_>>>()?;
    let finished = done?;

    let counts = combine(&reports, filled.count)?;
    let last_run = reports.iter().map(|r| r.last_run_unix_nanos).max();
    let elapsed = last_run
        .map(|last| Duration::from_nanos(last.saturating_sub(unix_nanos(go_at))))
        .filter(|d| !d.is_zero())
        .unwrap_or(polled);
    if finished {
        row.process_per_sec = Some(per_sec(n, elapsed));
        let cpu: Option<u64> = reports.iter().map(|r| r.cpu_nanos).sum();
        row.cpu_us_per_task = cpu.map(|ns| ns as f64 / 1e3 / n as f64);
        if let Some(used) = server_used {
            row.server_cpu_us_per_task = Some(used.as_secs_f64() * 1e6 / n as f64);
            row.server_cpu_busy = Some(used.as_secs_f64() / polled.as_secs_f64().max(1e-9));
        }
    }
    let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    let mut problems = check(row, &stats, n, &counts, true);
    if !finished {
        problems.insert(0, format!("stalled: {} of {n} completed", counts.distinct));
    }
    fail_on(problems)
}

/// Polls the store until `n` tasks are completed, or the count stops moving for
/// `stall`; returns whether it reached `n`.
async fn wait_for_completions(store: &dyn Store, n: u64, stall: Duration) -> Result<bool> {
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;
        let completed = stats.total.counters.completed;
        if completed >= n {
            return Ok(true);
        }
        if completed != last {
            last = completed;
            last_change = Instant::now();
        } else if last_change.elapsed() >= stall {
            return Ok(false);
        }
        tokio::time::sleep(DONE_POLL.min(WAIT_TICK)).await;
    }
}

/// The runs of every worker together: a task two workers ran is a duplicate, as is one a
/// worker ran twice.
fn combine(reports: &[WorkerReport], span: u64) -> Result<RunCounts> {
    let words = span.div_ceil(64) as usize;
    let mut union = vec![0u64; words];
    let mut runs = 0;
    for report in reports {
        runs += report.runs;
        let seen = report.seen_words()?;
        if seen.len() != words {
            return Err(Error::storage(format!(
                "a worker reported {} words of bits, not {words}",
                seen.len()
            )));
        }
        for (all, mine) in union.iter_mut().zip(seen) {
            *all |= mine;
        }
    }
    let distinct: u64 = union.iter().map(|w| u64::from(w.count_ones())).sum();
    Ok(RunCounts {
        runs,
        distinct,
        duplicates: runs.saturating_sub(distinct),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(runs: u64, seen: &[u64]) -> WorkerReport {
        WorkerReport {
            runs,
            duplicates: 0,
            seen: seen.iter().map(|w| format!("{w:016x}")).collect(),
            last_run_unix_nanos: 0,
            cpu_nanos: None,
        }
    }

    #[test]
    fn runs_of_two_workers_combine() {
        let c = combine(&[report(2, &[0b0011]), report(2, &[0b1100])], 4).unwrap();
        assert_eq!((c.runs, c.distinct, c.duplicates), (4, 4, 0));
        // Both ran task 1.
        let c = combine(&[report(2, &[0b0011]), report(2, &[0b0110])], 4).unwrap();
        assert_eq!((c.runs, c.distinct, c.duplicates), (4, 3, 1));
        assert!(combine(&[report(1, &[1, 0])], 4).is_err());
    }
}
