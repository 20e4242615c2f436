//! `taskmill`: the command-line program of taskmill.

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use taskmill_cli::bench::{self, BenchConfig, Scenario};

/// Durable background tasks: benchmark and (later) inspect and administer task stores.
#[derive(Parser, Debug)]
#[command(name = "taskmill", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure stores: enqueue and processing rates, latency, backlog, memory.
    ///
    /// Each scenario runs on a fresh location derived from the URL and removed afterwards:
    /// sqlite://DIR/NAME uses DIR/NAME.bench-PID-K/NAME, sled://DIR uses DIR.bench-PID-K,
    /// redis:// a namespace NS-bench-PID-K whose keys are deleted at the end. Exits with
    /// status 1 when any scenario loses or repeats work or fails.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// A store URL (memory://, sqlite://PATH, sled://DIR, redis://HOST:PORT/DB, rediss://
    /// with the `tls` feature); repeat to compare stores in one run and one table.
    #[arg(long = "store", value_name = "URL", default_value = "memory://")]
    stores: Vec<String>,
    /// Scenarios to run, comma-separated.
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
    /// Compare runs without and with the metrics middleware (taskmill::metrics) around
    /// every run: each scenario runs both ways, alternating, with a row each.
    #[arg(long)]
    metrics: bool,
    /// Wrap every run in N no-op middleware, to measure what the chain costs per run.
    /// Repeat to compare counts in one run (`--middleware 0 --middleware 4`).
    #[arg(long = "middleware", value_name = "N")]
    middlewares: Vec<usize>,
    /// Print one JSON object per store and scenario instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// `0`, `90`, `90s`, `10m`, `24h` or `7d` as a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use s, m, h or d)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 0, 90s, 10m, 24h or 7d"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
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
    match cli.command {
        Command::Bench(args) => run_bench(args),
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

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("3w").unwrap_err().contains("unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
