//! The hidden `taskmill bench-worker` command: one manager process of the processes
//! scenario, started by the benchmark (see `bench/processes.rs`) and steered over its
//! standard input and output.
//!
//! The conversation, a line each:
//! 1. the worker opens the store and builds its manager, then prints [`READY`];
//! 2. the benchmark writes [`GO`]: the worker starts its manager;
//! 3. the benchmark closes the worker's standard input: the worker closes its manager and
//!    prints its [`WorkerReport`] as JSON, then exits 0.
//!
//! A worker that fails prints the error on standard error and exits 1.

use super::cpu;
use super::scenario::{manager, Tracker, CLOSE_TIMEOUT};
use super::BenchConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use taskmill::{Error, Processor, Result, TaskContext, TaskError, TaskId};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The worker's line once its manager is built.
pub const READY: &str = "ready";
/// The benchmark's line that starts the manager.
pub const GO: &str = "go";

/// The hidden command's name.
pub const COMMAND: &str = "bench-worker";

/// What a worker is told on its command line.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct WorkerArgs {
    /// The store, opened as given (the benchmark's fresh location).
    #[arg(long)]
    pub store: String,
    /// Topics to register processors on: `bench-0` … (the benchmark's), or with `--idle`
    /// topics nobody enqueues to.
    #[arg(long)]
    pub topics: usize,
    /// Register on topics nobody enqueues to: a manager that only polls.
    #[arg(long)]
    pub idle: bool,
    /// The manager's concurrency.
    #[arg(long)]
    pub concurrency: usize,
    /// The manager's retention of completed tasks, in seconds (unset: its default).
    #[arg(long)]
    pub retention_secs: Option<f64>,
    /// The lowest id of the tasks to tell apart.
    #[arg(long)]
    pub first_id: u64,
    /// How many ids from `first_id` on to tell apart.
    #[arg(long)]
    pub span: u64,
}

impl WorkerArgs {
    /// The command line that starts a worker with these arguments (after the program).
    pub fn command_line(&self) -> Vec<String> {
        let mut args = vec![
            COMMAND.to_string(),
            "--store".into(),
            self.store.clone(),
            "--topics".into(),
            self.topics.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--first-id".into(),
            self.first_id.to_string(),
            "--span".into(),
            self.span.to_string(),
        ];
        if self.idle {
            args.push("--idle".into());
        }
        if let Some(secs) = self.retention_secs {
            args.extend(["--retention-secs".into(), secs.to_string()]);
        }
        args
    }
}

/// What a worker did, printed as its last line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Runs its processors made.
    pub runs: u64,
    /// Runs of a task it had run already.
    pub duplicates: u64,
    /// One bit per task it ran, by `id - first_id`, as 16 hex digits per 64 ids.
    pub seen: String,
    /// When its last run ended, in nanoseconds since the Unix epoch (0: none).
    pub last_run_unix_nanos: u64,
    /// CPU time the process used from the start of its manager to its close, in
    /// nanoseconds (`None` where not measurable).
    pub cpu_nanos: Option<u64>,
}

impl WorkerReport {
    /// The bits of the tasks it ran.
    pub fn seen_words(&self) -> Result<Vec<u64>> {
        let bad = || Error::storage("a worker reported malformed bits");
        if self.seen.len() % 16 != 0 {
            return Err(bad());
        }
        (0..self.seen.len() / 16)
            .map(|i| u64::from_str_radix(&self.seen[i * 16..(i + 1) * 16], 16).map_err(|_| bad()))
            .collect()
    }
}

/// The no-op processor of a worker: counts the run and notes when it ended.
struct Stamping {
    tracker: Arc<Tracker>,
    last_run_unix_nanos: Arc<AtomicU64>,
}

#[taskmill::async_trait]
impl Processor for Stamping {
    async fn process(&self, ctx: TaskContext) -> std::result::Result<(), TaskError> {
        self.tracker.hit(ctx.id());
        self.last_run_unix_nanos
            .fetch_max(unix_nanos(SystemTime::now()), Ordering::Relaxed);
        Ok(())
    }
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs the worker: the conversation in the module docs.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let store = taskmill::open(&args.store).await?;
    let mut config = BenchConfig::new([args.store.clone()]);
    config.concurrency = args.concurrency;
    config.retention = args.retention_secs.map(Duration::from_secs_f64);
    // Idle workers register as many topics, under names nobody enqueues to.
    config.topics = 0;
    let tracker = Arc::new(Tracker::for_ids(
        TaskId::new(args.first_id),
        args.span,
        u64::MAX,
    ));
    let last_run = Arc::new(AtomicU64::new(0));
    let (manager, _) = manager(store, &config, || Stamping {
        tracker: tracker.clone(),
        last_run_unix_nanos: last_run.clone(),
    })?;
    let topic_name = |i: usize| {
        if args.idle {
            format!("bench-idle-{i}")
        } else {
            format!("bench-{i}")
        }
    };
    for i in 0..args.topics {
        manager.register(
            topic_name(i),
            Stamping {
                tracker: tracker.clone(),
                last_run_unix_nanos: last_run.clone(),
            },
        )?;
    }
    say(READY)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await.map_err(io_error)?;
    if first.as_deref() != Some(GO) {
        return Err(Error::misuse(format!("expected {GO:?}, got {first:?}")));
    }
    let cpu_before = cpu::process_time();
    manager.start().await?;
    // Work until the benchmark closes the input.
    while lines.next_line().await.map_err(io_error)?.is_some() {}
    manager.close_with_timeout(CLOSE_TIMEOUT).await?;
    let cpu_nanos = cpu::process_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_nanos() as u64);
    let counts = tracker.counts();
    let report = WorkerReport {
        runs: counts.runs,
        duplicates: counts.duplicates,
        seen: tracker
            .seen_words()
            .iter()
            .map(|w| format!("{w:016x}"))
            .collect(),
        last_run_unix_nanos: last_run.load(Ordering::Relaxed),
        cpu_nanos,
    };
    let line = serde_json::to_string(&report)
        .map_err(|e| Error::storage("cannot write the report").with_source(e))?;
    say(&line)
}

/// Prints one line on standard output at once.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(io_error)
}

fn io_error(e: std::io::Error) -> Error {
    Error::unavailable("the benchmark's pipe failed").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        BenchWorker(WorkerArgs),
    }

    #[test]
    fn the_command_line_parses_back() {
        let args = WorkerArgs {
            store: "redis://127.0.0.1:1/0?namespace=x".into(),
            topics: 5,
            idle: true,
            concurrency: 100,
            retention_secs: Some(0.0),
            first_id: 7,
            span: 1000,
        };
        let line = std::iter::once("taskmill".to_string()).chain(args.command_line());
        let Command::BenchWorker(parsed) = Cli::parse_from(line).command;
        assert_eq!(parsed, args);
    }

    #[test]
    fn reports_carry_the_bits() {
        let report = WorkerReport {
            runs: 2,
            duplicates: 0,
            seen: format!("{:016x}{:016x}", 5u64, u64::MAX),
            last_run_unix_nanos: 1,
            cpu_nanos: None,
        };
        assert_eq!(report.seen_words().unwrap(), [5, u64::MAX]);
        let bad = WorkerReport {
            seen: "12".into(),
            ..report
        };
        assert!(bad.seen_words().is_err());
    }
}
