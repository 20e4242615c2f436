//! `taskmill`: the command-line program of taskmill.

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use taskmill_cli::admin::cron::CronArgs;
use taskmill_cli::admin::format::parse_duration;
use taskmill_cli::admin::inspect::{LsArgs, ShowArgs, StatsArgs};
use taskmill_cli::admin::steer::{CancelArgs, DeadAction, DeadArgs, EnqueueArgs, TopicArgs};
use taskmill_cli::admin::watch::WatchArgs;
use taskmill_cli::admin::{Failure, Outcome};
use taskmill_cli::bench::worker::WorkerArgs;
use taskmill_cli::bench::{self, BenchConfig, Scenario, TopicSpread};
use taskmill_cli::serve::ServeArgs;

/// Durable background tasks: inspect and steer a store's queues, serve its dashboard,
/// benchmark stores.
///
/// Every command but `bench` works on the store named by --store URL or the TASKMILL_STORE
/// environment variable. Exit status: 0 done, 1 an operation failed (store unreachable,
/// unknown id, a task in the wrong state), 2 bad usage.
#[derive(Parser, Debug)]
#[command(name = "taskmill", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per topic: waiting, running, dead, completed and cancelled tasks, latency, paused;
    /// totals and counters.
    Stats(StatsArgs),
    /// A page of the tasks in a state, and the cursor of the next page.
    Ls(LsArgs),
    /// One task: state, args, headers, attempts, errors, result, progress, times, lease.
    Show(ShowArgs),
    /// Add a task; prints its id (or the id of the task it duplicates).
    Enqueue(EnqueueArgs),
    /// Send dead tasks back to waiting, due now, with fresh attempts.
    Retry(DeadArgs),
    /// Delete tasks (by id, from any state), or every dead task.
    Delete(DeadArgs),
    /// Cancel tasks: waiting ones at once, running ones when their manager learns it.
    Cancel(CancelArgs),
    /// Stop every manager claiming a topic's tasks (running ones go on).
    Pause(TopicArgs),
    /// Let managers claim a paused topic's tasks again.
    Resume(TopicArgs),
    /// Schedules: list them (`cron ls`), pause or resume one store-wide (`cron pause
    /// NAME`, `cron resume NAME`).
    Cron(CronArgs),
    /// Follow the store's events until interrupted (Ctrl-C).
    ///
    /// A process sees the events of other processes only on stores that carry them across
    /// processes (Redis); on SQLite and sled it sees none of a manager running elsewhere.
    Watch(WatchArgs),
    /// Serve the dashboard and /metrics (loopback unless a token is set) until Ctrl-C.
    Serve(ServeArgs),
    /// Measure stores: enqueue and processing rates, latency, backlog, memory.
    ///
    /// Each scenario runs on a fresh location derived from the URL and removed afterwards:
    /// sqlite://DIR/NAME uses DIR/NAME.bench-PID-K/NAME, sled://DIR uses DIR.bench-PID-K,
    /// redis:// (and redis+cluster://) a namespace NS-bench-PID-K whose keys are deleted at the end. Exits with
    /// status 1 when any scenario loses or repeats work or fails.
    Bench(BenchArgs),
    /// One manager process of `bench --scenario processes`, started and steered by it.
    #[command(name = "bench-worker", hide = true)]
    BenchWorker(WorkerArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// A store URL (memory://, sqlite://PATH, sled://DIR, redis://HOST:PORT/DB, rediss://
    /// with the `tls` feature, redis+cluster://HOST:PORT,HOST:PORT); repeat to compare stores in one run and one table.
    #[arg(long = "store", value_name = "URL", default_value = "memory://")]
    stores: Vec<String>,
    /// Scenarios to run, comma-separated: throughput, latency, backlog, schedules, topics,
    /// work, payload, processes, loaded-latency.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,backlog"
    )]
    scenario: Vec<Scenario>,
    /// Tasks in the throughput scenario.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Topics the tasks are spread over.
    #[arg(long, default_value_t = 5)]
    topics: usize,
    /// The manager's concurrency (workers).
    #[arg(long, default_value_t = bench::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Tasks per enqueue call when filling a queue.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Bytes of JSON arguments per task (at least 2).
    #[arg(long, default_value_t = 16)]
    payload_bytes: usize,
    /// Enqueues per second in the latency scenario.
    #[arg(long, default_value_t = 200)]
    latency_rate: u32,
    /// Seconds the latency scenario enqueues for.
    #[arg(long, default_value_t = 2.0)]
    latency_secs: f64,
    /// Tasks waiting in the small backlog.
    #[arg(long, default_value_t = 10_000)]
    backlog_small: u64,
    /// Tasks waiting in the large backlog.
    #[arg(long, default_value_t = 1_000_000)]
    backlog_large: u64,
    /// Tasks processed (and timed) from each backlog.
    #[arg(long, default_value_t = 10_000)]
    backlog_measure: u64,
    /// Seconds without progress after which a phase fails.
    #[arg(long, default_value_t = 30.0)]
    stall_secs: f64,
    /// Run each scenario this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// How long the manager keeps completed tasks (`0`, `90s`, `10m`, `24h`, `7d`; plain
    /// numbers are seconds). Repeat to compare retentions in one run: each scenario runs
    /// with each, alternating, and gets a row per retention. Unset: the manager's default.
    #[arg(long = "retention", value_name = "DURATION", value_parser = parse_duration)]
    retentions: Vec<Duration>,
    /// Compare runs without and with the metrics layer (taskmill::metrics, a run observer
    /// told of every run's start and end): each scenario runs both ways, alternating, with
    /// a row each.
    #[arg(long)]
    metrics: bool,
    /// Wrap every run in N no-op middleware, to measure what the chain costs per run.
    /// Repeat to compare counts in one run (`--middleware 0 --middleware 4`).
    #[arg(long = "middleware", value_name = "N")]
    middlewares: Vec<usize>,
    /// topics: the topic counts compared (the first is what the ratios are to).
    #[arg(long, value_delimiter = ',', default_value = "5,200,2000,10000")]
    topic_counts: Vec<usize>,
    /// topics: the spreads of the tasks over them (`even`: round robin; `skewed`: nine in
    /// ten over 5 topics, the rest over the others).
    #[arg(long, value_delimiter = ',', default_value = "even,skewed")]
    topic_spreads: Vec<TopicSpread>,
    /// work: milliseconds each processor awaits a timer (as an I/O call would).
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    work_ms: Vec<f64>,
    /// work: the concurrencies each duration runs at.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    work_concurrency: Vec<usize>,
    /// work: each case has the tasks its expected rate (concurrency ÷ duration) finishes
    /// in this many seconds, at most --tasks.
    #[arg(long, default_value_t = 2.0)]
    work_secs: f64,
    /// payload: the argument sizes compared, in bytes.
    #[arg(long, value_delimiter = ',', default_value = "1024,65536")]
    payload_sizes: Vec<usize>,
    /// payload: the most MiB of arguments one case enqueues (fewer tasks than --tasks).
    #[arg(long, default_value_t = 256)]
    payload_mib: u64,
    /// processes: the counts of manager processes compared (Redis only).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    processes: Vec<usize>,
    /// processes: a last case of one busy process beside this many idle ones (0: none).
    #[arg(long, default_value_t = 3)]
    idle_processes: usize,
    /// loaded-latency: the background load as a share of the rate a throughput run
    /// measures first.
    #[arg(long, default_value_t = 0.5)]
    load_share: f64,
    /// Print one JSON object per store and scenario instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn secs(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a positive number of seconds"))
}

impl BenchArgs {
    fn config(&self) -> Result<BenchConfig, String> {
        let mut config = BenchConfig::new(self.stores.iter().cloned());
        config.scenarios = self.scenario.clone();
        config.tasks = self.tasks;
        config.topics = self.topics;
        config.concurrency = self.concurrency;
        config.batch = self.batch;
        config.payload_bytes = self.payload_bytes;
        config.latency_rate = self.latency_rate;
        config.latency_duration = secs(self.latency_secs, "latency-secs")?;
        config.backlog_small = self.backlog_small;
        config.backlog_large = self.backlog_large;
        config.backlog_measure = self.backlog_measure;
        config.stall_timeout = secs(self.stall_secs, "stall-secs")?;
        config.progress = !self.quiet;
        config.repeat = self.repeat;
        config.topic_counts = self.topic_counts.clone();
        config.topic_spreads = self.topic_spreads.clone();
        config.work_durations = self
            .work_ms
            .iter()
            .map(|&ms| secs(ms / 1e3, "work-ms"))
            .collect::<Result<_, _>>()?;
        config.work_concurrencies = self.work_concurrency.clone();
        config.work_time = secs(self.work_secs, "work-secs")?;
        config.payload_sizes = self.payload_sizes.clone();
        config.payload_budget = self.payload_mib.saturating_mul(1 << 20);
        config.process_counts = self.processes.clone();
        config.idle_case_processes = self.idle_processes;
        config.load_share = self.load_share;
        match self.retentions.as_slice() {
            [] => {}
            [one] => config.retention = Some(*one),
            many => config.retention_sweep = many.iter().copied().map(Some).collect(),
        }
        if self.metrics {
            config.metrics_sweep = vec![false, true];
        }
        match self.middlewares.as_slice() {
            [] => {}
            [one] => config.middleware = *one,
            many => config.middleware_sweep = many.to_vec(),
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, outcome) = match cli.command {
        Command::Bench(args) => return run_bench(args),
        Command::BenchWorker(args) => return run_bench_worker(args),
        Command::Stats(args) => ("stats", block_on(args.run())),
        Command::Ls(args) => ("ls", block_on(args.run())),
        Command::Show(args) => ("show", block_on(args.run())),
        Command::Enqueue(args) => ("enqueue", block_on(args.run())),
        Command::Retry(args) => ("retry", block_on(args.run(DeadAction::Retry))),
        Command::Delete(args) => ("delete", block_on(args.run(DeadAction::Delete))),
        Command::Cancel(args) => ("cancel", block_on(args.run())),
        Command::Pause(args) => ("pause", block_on(args.run(true))),
        Command::Resume(args) => ("resume", block_on(args.run(false))),
        Command::Cron(args) => (args.name(), block_on(args.run())),
        Command::Watch(args) => ("watch", block_on(args.run())),
        Command::Serve(args) => ("serve", block_on(args.run())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskmill {name}: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// Runs a command on a fresh multi-threaded runtime.
fn block_on(command: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))?
        .block_on(command)
}

fn run_bench_worker(args: WorkerArgs) -> ExitCode {
    let outcome = block_on(async {
        bench::worker::run(args)
            .await
            .map_err(|e| Failure::failed(e.to_string()))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskmill bench-worker: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("taskmill bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taskmill bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    let result = runtime.block_on(bench::run(&config, |row| {
        if json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", bench::json_line(row));
            let _ = out.flush();
        }
    }));
    match result {
        Ok(rows) => {
            if !json {
                print!("{}", bench::table(&rows));
            }
            if rows.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("taskmill bench: {e}");
            ExitCode::from(2)
        }
    }
}
