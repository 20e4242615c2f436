//! `taskmill bench`: the benchmark every store is measured with.
//!
//! [`run`] takes a [`BenchConfig`] and returns one [`Row`] per store and scenario;
//! [`report`] prints them as a table or as JSON lines. Stores are opened with
//! [`taskmill::open`], so every backend this build enables is measured the same way, each
//! scenario on a fresh location (see [`target`]).
//!
//! The scenarios ([`Scenario`]):
//! - **throughput**, gocraft/work's workload: enqueue `tasks` tasks across `topics` topics
//!   in batches (only the `enqueue` calls are timed), then run them with no-op processors
//!   that count runs, timed from `Manager::start` until the count reaches `tasks`. Checks
//!   afterwards that every task ran exactly once and that the store is empty with
//!   `completed == tasks`.
//! - **latency**: an idle, started manager; tasks enqueued one at a time at a steady rate;
//!   the time from just before each `enqueue` call to the start of its processor.
//! - **backlog**: the rate of processing the first `backlog_measure` tasks with
//!   `backlog_small` and with `backlog_large` tasks waiting, and their ratio. The first
//!   tenth of those runs is not timed, so the manager's start-up is not in the rate. Before
//!   each, one `Store::stats` call is timed with the whole backlog waiting: the statistics
//!   a metrics scrape reads, the earliest due time among them, should not grow with the
//!   queue.
//! - **schedules**: what a schedule's tick costs in the store beside a plain enqueue: `batch`
//!   schedules each fire one tick per round (one `Store::fire` call of `batch` ticks,
//!   every one enqueuing a task), for as many rounds as make `tasks` ticks (at most
//!   20,000); the same rounds are enqueued as plain tasks, and fired again, when every tick
//!   is stale, as a second manager running the schedules would. Checks that each tick
//!   enqueued exactly one task.
//!
//! Scenarios of deployments unlike gocraft/work's, each a list of cases with a row each
//! ([`BenchConfig::cases`]):
//! - **topics**: throughput with each of `topic_counts` topics registered and filled, the
//!   tasks spread evenly and skewed ([`TopicSpread`]); each row's ratios are to the first
//!   case's (5 topics, even).
//! - **work**: throughput with processors that await a timer of each of `work_durations`
//!   (as an I/O call would), at each of `work_concurrencies`; the rate expected is
//!   concurrency ÷ duration, and the row has its ratio to it and the process's CPU per
//!   task.
//! - **payload**: throughput with arguments of each of `payload_sizes` bytes, in tasks/s
//!   and MB/s; a case enqueues at most `payload_budget` bytes of arguments.
//! - **processes**: `tasks` tasks enqueued up front, then processed by each of
//!   `process_counts` manager processes sharing the store (copies of this program running
//!   the hidden `bench-worker` command, see [`worker`]), and by one with
//!   `idle_processes` more polling topics that have nothing; total processing/s, the
//!   managers' CPU per task, and redis-server's ([`server_cpu`]). Only on stores shared
//!   across processes (Redis); skipped on the others.
//! - **loaded-latency**: the latency scenario's trickle, on a topic of its own, while a
//!   background load is enqueued and processed at `load_share` of the rate a throughput run
//!   just measured on the same store.
//!
//! Every manager can run with the metrics layer observing its runs
//! (`taskmill::metrics::Metrics` as a run observer, [`BenchConfig::metrics`]) and with any
//! number of no-op middleware around them ([`BenchConfig::middleware`]), to measure what
//! each costs per run. Like retentions, several settings are compared in one run by the
//! sweeps, alternating within each repeat.
//!
//! The throughput rows also give the CPU time the process used per task while processing
//! ([`cpu`]), which other load on the machine disturbs much less than the rate.
//!
//! Every row has the peak resident memory of the process during its scenario, and the
//! memory store's rows of throughput and backlog the bytes each queued task costs beyond
//! its payload (the growth of resident memory while enqueueing, divided by the count).

pub mod cpu;
mod processes;
mod progress;
pub mod report;
pub mod rss;
mod scenario;
pub mod server_cpu;
pub mod spread;
pub mod target;
pub mod worker;

pub use report::{json_line, table};
pub use spread::TopicSpread;
pub use target::Target;

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use taskmill::raw::StoreUrl;
use taskmill::{Error, Result};

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Batched enqueue, then processing of the whole queue.
    Throughput,
    /// Enqueue→start latency on an idle manager.
    Latency,
    /// Processing rate with a small and a large backlog waiting.
    Backlog,
    /// Firing schedule ticks beside plain enqueues of the same batches.
    Schedules,
    /// Throughput over many topics, spread evenly and skewed.
    Topics,
    /// Throughput of processors that await a timer (I/O-bound work).
    Work,
    /// Throughput with large arguments, in tasks/s and MB/s.
    Payload,
    /// Several manager processes sharing one store.
    Processes,
    /// Enqueue→start latency while the store carries a background load.
    LoadedLatency,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 9] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Backlog,
        Scenario::Schedules,
        Scenario::Topics,
        Scenario::Work,
        Scenario::Payload,
        Scenario::Processes,
        Scenario::LoadedLatency,
    ];

    /// The scenario's name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Backlog => "backlog",
            Scenario::Schedules => "schedules",
            Scenario::Topics => "topics",
            Scenario::Work => "work",
            Scenario::Payload => "payload",
            Scenario::Processes => "processes",
            Scenario::LoadedLatency => "loaded-latency",
        }
    }

    /// Whether the rows of this scenario are compared with its first case's row (their
    /// ratios, [`Row::process_ratio`] and [`Row::enqueue_ratio`], are to it).
    fn relative_to_first_case(self) -> bool {
        matches!(self, Scenario::Topics | Scenario::Processes)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.as_str()).collect();
                Error::misuse(format!(
                    "unknown scenario {s:?} (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// What to measure, and how much.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchConfig {
    /// Store URLs, each measured in turn (`memory://`, `sqlite://…`, …).
    pub stores: Vec<String>,
    /// Scenarios to run on each store, in this order.
    pub scenarios: Vec<Scenario>,
    /// Tasks of the throughput scenario.
    pub tasks: u64,
    /// Topics the tasks are spread over.
    pub topics: usize,
    /// How the tasks are spread over the topics.
    pub topic_spread: TopicSpread,
    /// The manager's concurrency.
    pub concurrency: usize,
    /// Tasks per `enqueue` call when filling a queue.
    pub batch: usize,
    /// Size of each task's JSON arguments in bytes (at least 2: an empty JSON string).
    pub payload_bytes: usize,
    /// Enqueues per second in the latency scenario.
    pub latency_rate: u32,
    /// How long the latency scenario enqueues for.
    pub latency_duration: Duration,
    /// The small backlog of the backlog scenario.
    pub backlog_small: u64,
    /// The large backlog of the backlog scenario.
    pub backlog_large: u64,
    /// How many tasks are processed (and timed) from each backlog.
    pub backlog_measure: u64,
    /// A phase that makes no progress for this long fails (lost tasks, a stuck store).
    pub stall_timeout: Duration,
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
    /// Runs of each scenario; the row reports the median of each figure (worst for
    /// memory, sums for lost and duplicated). More runs steady figures on a busy machine.
    pub repeat: usize,
    /// How long the manager keeps completed tasks: `None` for its default.
    pub retention: Option<Duration>,
    /// The retentions [`run`] compares: every scenario runs once per entry, alternating
    /// them within each repeat, with a row each. Empty: only `retention`.
    pub retention_sweep: Vec<Option<Duration>>,
    /// Observe every run with the metrics layer (`taskmill::metrics::Metrics` as a run
    /// observer, told of each run's start and end), on a client of the store measured.
    pub metrics: bool,
    /// The metrics settings [`run`] compares, like `retention_sweep` (`[false, true]` for
    /// without and with). Empty: only `metrics`.
    pub metrics_sweep: Vec<bool>,
    /// No-op middleware around every run: what the chain costs per run and per
    /// middleware.
    pub middleware: usize,
    /// The no-op middleware counts [`run`] compares, like `retention_sweep`. Empty: only
    /// `middleware`.
    pub middleware_sweep: Vec<usize>,
    /// The topics scenario: the topic counts it compares, the first being the reference
    /// of every row's ratios.
    pub topic_counts: Vec<usize>,
    /// The topics scenario: the spreads each count is filled with (a skewed spread only
    /// where it differs from the even one, over more than [`spread::HOT_TOPICS`] topics).
    pub topic_spreads: Vec<TopicSpread>,
    /// How long each processor awaits a timer before it returns (`None`: returns at once).
    pub work_duration: Option<Duration>,
    /// The work scenario: the durations it compares.
    pub work_durations: Vec<Duration>,
    /// The work scenario: the concurrencies it runs each duration at.
    pub work_concurrencies: Vec<usize>,
    /// The work scenario: each case has the tasks the expected rate (concurrency ÷
    /// duration) finishes in this long, at most `tasks`.
    pub work_time: Duration,
    /// The payload scenario: the argument sizes it compares, in bytes.
    pub payload_sizes: Vec<usize>,
    /// The payload scenario: the most bytes of arguments one case enqueues (fewer tasks
    /// than `tasks` for large payloads).
    pub payload_budget: u64,
    /// The processes scenario: manager processes processing the queue together.
    pub processes: usize,
    /// The processes scenario: manager processes polling topics with nothing to do beside
    /// the busy ones.
    pub idle_processes: usize,
    /// The processes scenario: the counts of busy processes it compares (each with no
    /// idle ones), the first being the reference of every row's ratio.
    pub process_counts: Vec<usize>,
    /// The processes scenario: the idle processes of its last case, beside one busy
    /// process (0: no such case).
    pub idle_case_processes: usize,
    /// The program the processes scenario starts (with the hidden `bench-worker`
    /// command); `None` for this one (`std::env::current_exe`).
    pub worker_program: Option<PathBuf>,
    /// The loaded-latency scenario: the background load, as a share of the processing
    /// rate a throughput run measures first.
    pub load_share: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            stores: vec!["memory://".to_string()],
            scenarios: Scenario::ALL.to_vec(),
            tasks: 100_000,
            topics: 5,
            topic_spread: TopicSpread::Even,
            concurrency: DEFAULT_CONCURRENCY,
            batch: 1_000,
            payload_bytes: 16,
            latency_rate: 200,
            latency_duration: Duration::from_secs(2),
            backlog_small: 10_000,
            backlog_large: 1_000_000,
            backlog_measure: 10_000,
            stall_timeout: Duration::from_secs(30),
            progress: true,
            repeat: 1,
            retention: None,
            retention_sweep: Vec::new(),
            metrics: false,
            metrics_sweep: Vec::new(),
            middleware: 0,
            middleware_sweep: Vec::new(),
            topic_counts: vec![5, 200, 2_000, 10_000],
            topic_spreads: TopicSpread::ALL.to_vec(),
            work_duration: None,
            work_durations: vec![Duration::from_millis(1), Duration::from_millis(10)],
            work_concurrencies: vec![100, 1_000],
            work_time: Duration::from_secs(2),
            payload_sizes: vec![1_024, 65_536],
            payload_budget: 256 << 20,
            processes: 1,
            idle_processes: 0,
            process_counts: vec![1, 2, 4],
            idle_case_processes: 3,
            worker_program: None,
            load_share: 0.5,
        }
    }
}

/// The manager concurrency the benchmark uses unless told otherwise.
///
/// The manager holds between `concurrency` and twice that many claimed tasks and claims
/// the difference in one call, so a larger pool means fewer, larger claims and outcome
/// batches; past a few hundred workers the hand-offs between them cost more than that
/// saves. 100 processed fastest on the 2-core machine (medians of 5 runs, 200,000 tasks:
/// see the README), ahead of the Manager's own default of 25.
pub const DEFAULT_CONCURRENCY: usize = 100;

impl BenchConfig {
    /// The configuration with default sizes for `stores`.
    pub fn new(stores: impl IntoIterator<Item = impl Into<String>>) -> Self {
        BenchConfig {
            stores: stores.into_iter().map(Into::into).collect(),
            ..BenchConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("tasks", self.tasks),
            ("topics", self.topics as u64),
            ("concurrency", self.concurrency as u64),
            ("batch", self.batch as u64),
            ("latency rate", u64::from(self.latency_rate)),
            ("small backlog", self.backlog_small),
            ("backlog measure", self.backlog_measure),
            ("repeat", self.repeat as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::misuse(format!("{name} must be at least 1")));
        }
        if self.stores.is_empty() {
            return Err(Error::misuse("name at least one --store"));
        }
        if self.backlog_measure > self.backlog_small || self.backlog_small > self.backlog_large {
            return Err(Error::misuse(format!(
                "backlog sizes must satisfy measure ({}) <= small ({}) <= large ({})",
                self.backlog_measure, self.backlog_small, self.backlog_large
            )));
        }
        if self.latency_duration.is_zero() {
            return Err(Error::misuse("the latency duration must be positive"));
        }
        let lists = [
            ("topic counts", &self.topic_counts),
            ("work concurrencies", &self.work_concurrencies),
            ("payload sizes", &self.payload_sizes),
            ("process counts", &self.process_counts),
        ];
        if let Some((name, _)) = lists
            .iter()
            .find(|(_, list)| list.is_empty() || list.contains(&0))
        {
            return Err(Error::misuse(format!(
                "the {name} must be at least one number, each at least 1"
            )));
        }
        if self.topic_spreads.is_empty() {
            return Err(Error::misuse("name at least one topic spread"));
        }
        if self.work_durations.is_empty() || self.work_durations.iter().any(|d| d.is_zero()) {
            return Err(Error::misuse(
                "the work durations must be at least one, each positive",
            ));
        }
        if self.work_time.is_zero() || self.payload_budget == 0 {
            return Err(Error::misuse(
                "the work time and the payload budget must be positive",
            ));
        }
        if !(self.load_share > 0.0 && self.load_share <= 1.0) {
            return Err(Error::misuse(format!(
                "the load share must be above 0 and at most 1, not {}",
                self.load_share
            )));
        }
        if self.process_counts.iter().max().copied().unwrap_or(0) + self.idle_case_processes
            > MAX_PROCESSES
        {
            return Err(Error::misuse(format!(
                "at most {MAX_PROCESSES} manager processes"
            )));
        }
        if self.middleware > MAX_MIDDLEWARE
            || self.middleware_sweep.iter().any(|&n| n > MAX_MIDDLEWARE)
        {
            return Err(Error::misuse(format!(
                "at most {MAX_MIDDLEWARE} no-op middleware"
            )));
        }
        Ok(())
    }

    /// Every configuration the sweeps name: each retention × each metrics setting × each
    /// middleware count, in that order of nesting.
    fn sweep(&self) -> Vec<BenchConfig> {
        fn or_one<T: Clone>(sweep: &[T], one: T) -> Vec<T> {
            if sweep.is_empty() {
                vec![one]
            } else {
                sweep.to_vec()
            }
        }
        let mut out = Vec::new();
        for retention in or_one(&self.retention_sweep, self.retention) {
            for metrics in or_one(&self.metrics_sweep, self.metrics) {
                for middleware in or_one(&self.middleware_sweep, self.middleware) {
                    out.push(BenchConfig {
                        retention,
                        metrics,
                        middleware,
                        ..self.clone()
                    });
                }
            }
        }
        out
    }
}

/// Tasks per `enqueue` call of the payload scenario are cut to hold at most this many
/// bytes of arguments (16 tasks of 64 KiB), as an application would batch large tasks.
pub const PAYLOAD_BATCH_BYTES: usize = 1 << 20;

/// The most manager processes the processes scenario starts.
pub const MAX_PROCESSES: usize = 64;

impl BenchConfig {
    /// The cases of `scenario`: one configuration per row it reports (before the sweeps).
    ///
    /// - topics: each topic count with each spread (skewed only where it is not even);
    /// - work: each duration at each concurrency, with the tasks [`BenchConfig::work_time`]
    ///   takes at the expected rate;
    /// - payload: each size, with the tasks and batches cut to the budgets;
    /// - processes: each count of busy processes, then one with the idle ones;
    /// - the others: the configuration as it is.
    pub fn cases(&self, scenario: Scenario) -> Vec<BenchConfig> {
        let case = |change: &dyn Fn(&mut BenchConfig)| {
            let mut config = self.clone();
            change(&mut config);
            config
        };
        match scenario {
            Scenario::Topics => self
                .topic_counts
                .iter()
                .flat_map(|&topics| {
                    self.topic_spreads
                        .iter()
                        .filter(move |&&spread| {
                            spread == TopicSpread::Even || spread.differs_from_even(topics)
                        })
                        .map(move |&spread| (topics, spread))
                })
                .map(|(topics, spread)| {
                    case(&|c| {
                        c.topics = topics;
                        c.topic_spread = spread;
                    })
                })
                .collect(),
            Scenario::Work => self
                .work_durations
                .iter()
                .flat_map(|&work| self.work_concurrencies.iter().map(move |&n| (work, n)))
                .map(|(work, concurrency)| {
                    case(&|c| {
                        c.work_duration = Some(work);
                        c.concurrency = concurrency;
                        let expected = concurrency as f64 / work.as_secs_f64();
                        let tasks = (expected * self.work_time.as_secs_f64()).ceil() as u64;
                        c.tasks = tasks.clamp(1, self.tasks);
                    })
                })
                .collect(),
            Scenario::Payload => self
                .payload_sizes
                .iter()
                .map(|&bytes| {
                    case(&|c| {
                        c.payload_bytes = bytes;
                        c.tasks = (self.payload_budget / bytes as u64).clamp(1, self.tasks);
                        c.batch = (PAYLOAD_BATCH_BYTES / bytes).clamp(1, self.batch);
                    })
                })
                .collect(),
            Scenario::Processes => {
                let mut cases: Vec<BenchConfig> = self
                    .process_counts
                    .iter()
                    .map(|&n| {
                        case(&|c| {
                            c.processes = n;
                            c.idle_processes = 0;
                        })
                    })
                    .collect();
                if self.idle_case_processes > 0 {
                    cases.push(case(&|c| {
                        c.processes = 1;
                        c.idle_processes = self.idle_case_processes;
                    }));
                }
                cases
            }
            _ => vec![self.clone()],
        }
    }
}

/// The most no-op middleware [`BenchConfig::middleware`] takes: enough to show the cost
/// per middleware, few enough that a typo does not build a chain of millions.
pub const MAX_MIDDLEWARE: usize = 64;

/// The result of one scenario on one store. Fields a scenario does not measure are `None`
/// (`null` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Row {
    /// The store URL as given, without its password.
    pub store: String,
    /// The scenario.
    pub scenario: &'static str,
    /// Tasks enqueued in the scenario (for backlog: the large backlog).
    pub tasks: u64,
    /// Batched enqueue rate (tasks/s), counting only the time inside `enqueue` calls.
    pub enqueue_per_sec: Option<f64>,
    /// Processing rate (tasks/s); for backlog, with the large backlog waiting.
    pub process_per_sec: Option<f64>,
    /// Throughput: CPU time the whole process used per task while processing, in
    /// microseconds (every thread: workers, claimer, store). Steadier than the rate on a
    /// shared machine, and what a middleware's cost shows in.
    pub cpu_us_per_task: Option<f64>,
    /// Median enqueue→start latency.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile enqueue→start latency.
    pub latency_p99_ms: Option<f64>,
    /// Worst enqueue→start latency.
    pub latency_max_ms: Option<f64>,
    /// Processing rate with the small backlog waiting.
    pub backlog_small_per_sec: Option<f64>,
    /// Processing rate with the large backlog waiting.
    pub backlog_large_per_sec: Option<f64>,
    /// `backlog_large_per_sec / backlog_small_per_sec`.
    pub backlog_ratio: Option<f64>,
    /// Milliseconds one `Store::stats` call took with the small backlog waiting.
    pub stats_small_ms: Option<f64>,
    /// Milliseconds one `Store::stats` call took with the large backlog waiting.
    pub stats_large_ms: Option<f64>,
    /// Schedule ticks fired per second, each enqueuing its task.
    pub fire_per_sec: Option<f64>,
    /// Schedule ticks per second found already fired (what another manager pays).
    pub stale_fire_per_sec: Option<f64>,
    /// The rate the row's ratios compare with: work, concurrency ÷ duration (the rate if
    /// the store and manager cost nothing); loaded-latency, the background load offered;
    /// topics and processes, the first case's processing rate.
    pub reference_per_sec: Option<f64>,
    /// `process_per_sec / reference_per_sec`.
    pub process_ratio: Option<f64>,
    /// Topics: the enqueue rate divided by the first case's.
    pub enqueue_ratio: Option<f64>,
    /// Payload: megabytes (10⁶ bytes) of arguments enqueued per second.
    pub enqueue_mb_per_sec: Option<f64>,
    /// Payload: megabytes (10⁶ bytes) of arguments processed per second.
    pub process_mb_per_sec: Option<f64>,
    /// Processes: microseconds of redis-server CPU time (system and user) per task while
    /// processing.
    pub server_cpu_us_per_task: Option<f64>,
    /// Processes: redis-server's CPU time while processing divided by the time, that is
    /// how much of one core it kept busy (it runs commands on one thread: near 1 is
    /// saturated).
    pub server_cpu_busy: Option<f64>,
    /// Tasks that never ran, or are not accounted for in the store afterwards.
    pub lost: u64,
    /// Runs beyond one per task.
    pub duplicated: u64,
    /// Peak resident memory of the process during the scenario.
    pub peak_rss_bytes: Option<u64>,
    /// Memory store: resident bytes per queued task beyond its payload.
    pub bytes_per_task: Option<f64>,
    /// Bytes each finished task's record occupies after the throughput run (growth of the
    /// files for SQLite and sled, of resident memory for the memory store, from the empty
    /// store): the cost of history. Not measured with retention 0, nor on Redis.
    pub kept_bytes_per_task: Option<f64>,
    /// The manager's retention of completed tasks in seconds; `None` for its default.
    pub retention_secs: Option<f64>,
    /// Whether the metrics layer observed every run.
    pub metrics: bool,
    /// No-op middleware around every run.
    pub middleware: usize,
    /// The manager's concurrency.
    pub concurrency: usize,
    /// Topics the tasks were spread over.
    pub topics: usize,
    /// How the tasks were spread over the topics (`even`, `skewed`).
    pub topic_spread: &'static str,
    /// Work: milliseconds each processor awaited.
    pub work_ms: Option<f64>,
    /// Work: the mean milliseconds each processor's timer actually took (tokio's timers
    /// fire on a 1 ms tick, so a timer of `work_ms` takes up to a tick longer).
    pub work_slept_ms: Option<f64>,
    /// Processes: manager processes processing the queue.
    pub processes: Option<usize>,
    /// Processes: manager processes polling topics with nothing to do beside them.
    pub idle_processes: Option<usize>,
    /// Loaded-latency: the background load as a share of the store's measured rate.
    pub load_share: Option<f64>,
    /// Bytes of JSON arguments per task.
    pub payload_bytes: usize,
    /// Runs the figures are the median of.
    pub runs: usize,
    /// Why the scenario failed, if it did (lost or repeated work, a store error).
    pub error: Option<String>,
    /// Why the scenario did not run on this store (processes on a store that is not
    /// shared across processes); the row has no figures, and is not a failure.
    pub skipped: Option<String>,
}

impl Row {
    fn new(store: &str, scenario: Scenario, config: &BenchConfig) -> Row {
        Row {
            store: StoreUrl::redact(store).into_owned(),
            scenario: scenario.as_str(),
            tasks: 0,
            enqueue_per_sec: None,
            process_per_sec: None,
            cpu_us_per_task: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            latency_max_ms: None,
            backlog_small_per_sec: None,
            backlog_large_per_sec: None,
            backlog_ratio: None,
            stats_small_ms: None,
            stats_large_ms: None,
            fire_per_sec: None,
            stale_fire_per_sec: None,
            reference_per_sec: None,
            process_ratio: None,
            enqueue_ratio: None,
            enqueue_mb_per_sec: None,
            process_mb_per_sec: None,
            server_cpu_us_per_task: None,
            server_cpu_busy: None,
            lost: 0,
            duplicated: 0,
            peak_rss_bytes: None,
            bytes_per_task: None,
            kept_bytes_per_task: None,
            retention_secs: config.retention.map(|r| r.as_secs_f64()),
            metrics: config.metrics,
            middleware: config.middleware,
            concurrency: config.concurrency,
            topics: config.topics,
            topic_spread: config.topic_spread.as_str(),
            work_ms: config.work_duration.map(|d| d.as_secs_f64() * 1e3),
            work_slept_ms: None,
            processes: (scenario == Scenario::Processes).then_some(config.processes),
            idle_processes: (scenario == Scenario::Processes).then_some(config.idle_processes),
            load_share: (scenario == Scenario::LoadedLatency).then_some(config.load_share),
            payload_bytes: config.payload_bytes.max(2),
            runs: config.repeat,
            error: None,
            skipped: None,
        }
    }

    /// Compares the row with its scenario's first case (see
    /// [`Scenario::relative_to_first_case`]).
    fn relate_to(&mut self, first_case: &Row) {
        self.reference_per_sec = first_case.process_per_sec;
        self.process_ratio = ratio(self.process_per_sec, self.reference_per_sec);
        self.enqueue_ratio = ratio(self.enqueue_per_sec, first_case.enqueue_per_sec);
    }

    /// Whether the scenario ran cleanly: no error, nothing lost or repeated.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.lost == 0 && self.duplicated == 0
    }
}

/// Runs every scenario of `config` on every store, in order, calling `on_row` as each row
/// is ready (to print it at once). A scenario that fails is reported in its row's
/// `error`, and the run goes on; `Err` only for an invalid configuration.
pub async fn run(config: &BenchConfig, mut on_row: impl FnMut(&Row)) -> Result<Vec<Row>> {
    config.validate()?;
    let mut rows = Vec::new();
    for store in &config.stores {
        for &scenario in &config.scenarios {
            // The first case's row of each configuration of the sweep, when the
            // scenario's rows are compared with it.
            let mut first_case: Vec<Row> = Vec::new();
            for case in config.cases(scenario) {
                let sweep = case.sweep();
                // One list of runs per configuration of the sweep, filled in turn, so that
                // a change in the machine's load falls on every configuration alike.
                let mut runs: Vec<Vec<Row>> = vec![Vec::with_capacity(config.repeat); sweep.len()];
                for _ in 0..config.repeat {
                    for (config, runs) in sweep.iter().zip(&mut runs) {
                        let mut row = Row::new(store, scenario, config);
                        rss::release_free_memory();
                        rss::reset_peak();
                        if let Err(e) = scenario::run(scenario, store, config, &mut row).await {
                            row.error = Some(error_chain(&e));
                        }
                        row.peak_rss_bytes = rss::peak();
                        runs.push(row);
                    }
                }
                let is_first_case = first_case.is_empty();
                let mut all_skipped = true;
                for (i, runs) in runs.into_iter().enumerate() {
                    let mut row = Row::median(runs);
                    if scenario.relative_to_first_case() {
                        if is_first_case {
                            first_case.push(row.clone());
                        }
                        row.relate_to(&first_case[i]);
                    }
                    all_skipped &= row.skipped.is_some();
                    on_row(&row);
                    rows.push(row);
                }
                // A store the scenario does not run on says so once, not once per case.
                if all_skipped {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

impl Row {
    /// One row from several runs of the same scenario: the median of each figure (the
    /// backlog ratio is that of the medians), the largest peak memory, the sums of lost
    /// and duplicated, the first error.
    fn median(mut runs: Vec<Row>) -> Row {
        if runs.len() == 1 {
            return runs.remove(0);
        }
        fn mid<T: Copy + PartialOrd>(runs: &[Row], field: impl Fn(&Row) -> Option<T>) -> Option<T> {
            let mut values: Vec<T> = runs.iter().filter_map(&field).collect();
            values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            values.get(values.len().saturating_sub(1) / 2).copied()
        }
        let mut row = runs[0].clone();
        row.enqueue_per_sec = mid(&runs, |r| r.enqueue_per_sec);
        row.process_per_sec = mid(&runs, |r| r.process_per_sec);
        row.cpu_us_per_task = mid(&runs, |r| r.cpu_us_per_task);
        row.latency_p50_ms = mid(&runs, |r| r.latency_p50_ms);
        row.latency_p99_ms = mid(&runs, |r| r.latency_p99_ms);
        row.latency_max_ms = mid(&runs, |r| r.latency_max_ms);
        row.backlog_small_per_sec = mid(&runs, |r| r.backlog_small_per_sec);
        row.backlog_large_per_sec = mid(&runs, |r| r.backlog_large_per_sec);
        // The ratio of the medians, so the row reads consistently.
        row.backlog_ratio = match (row.backlog_small_per_sec, row.backlog_large_per_sec) {
            (Some(small), Some(large)) => Some(large / small),
            _ => None,
        };
        row.reference_per_sec = mid(&runs, |r| r.reference_per_sec);
        row.process_ratio = ratio(row.process_per_sec, row.reference_per_sec);
        row.enqueue_mb_per_sec = mid(&runs, |r| r.enqueue_mb_per_sec);
        row.process_mb_per_sec = mid(&runs, |r| r.process_mb_per_sec);
        row.server_cpu_us_per_task = mid(&runs, |r| r.server_cpu_us_per_task);
        row.server_cpu_busy = mid(&runs, |r| r.server_cpu_busy);
        row.work_slept_ms = mid(&runs, |r| r.work_slept_ms);
        row.stats_small_ms = mid(&runs, |r| r.stats_small_ms);
        row.stats_large_ms = mid(&runs, |r| r.stats_large_ms);
        row.bytes_per_task = mid(&runs, |r| r.bytes_per_task);
        row.kept_bytes_per_task = mid(&runs, |r| r.kept_bytes_per_task);
        row.peak_rss_bytes = runs.iter().filter_map(|r| r.peak_rss_bytes).max();
        row.lost = runs.iter().map(|r| r.lost).sum();
        row.duplicated = runs.iter().map(|r| r.duplicated).sum();
        row.error = runs.iter().find_map(|r| r.error.clone());
        row
    }
}

/// `numerator / denominator`, when both are measured.
fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    Some(numerator? / denominator.filter(|d| *d > 0.0)?)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_runs() {
        let config = BenchConfig::default();
        let runs: Vec<Row> = [(3.0, 10, 0), (1.0, 30, 1), (2.0, 20, 0)]
            .into_iter()
            .map(|(rate, rss, lost)| {
                let mut row = Row::new("memory://", Scenario::Throughput, &config);
                row.process_per_sec = Some(rate);
                row.peak_rss_bytes = Some(rss);
                row.lost = lost;
                row
            })
            .collect();
        let row = Row::median(runs);
        assert_eq!(row.process_per_sec, Some(2.0));
        assert_eq!(row.peak_rss_bytes, Some(30));
        assert_eq!(row.lost, 1);
        assert_eq!(row.enqueue_per_sec, None);

        let runs: Vec<Row> = [(100.0, 50.0), (200.0, 60.0), (300.0, 290.0)]
            .into_iter()
            .map(|(small, large)| {
                let mut row = Row::new("memory://", Scenario::Backlog, &config);
                row.backlog_small_per_sec = Some(small);
                row.backlog_large_per_sec = Some(large);
                row.backlog_ratio = Some(large / small);
                row
            })
            .collect();
        let row = Row::median(runs);
        assert_eq!(row.backlog_ratio, Some(0.3));
    }

    #[test]
    fn sweeps_multiply_and_default_to_the_single_setting() {
        let config = BenchConfig::default();
        let one = config.sweep();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].metrics, one[0].middleware), (false, 0));

        let config = BenchConfig {
            retention_sweep: vec![Some(Duration::ZERO), None],
            metrics_sweep: vec![false, true],
            middleware_sweep: vec![0, 4],
            ..BenchConfig::default()
        };
        let all = config.sweep();
        let settings: Vec<_> = all
            .iter()
            .map(|c| (c.retention, c.metrics, c.middleware))
            .collect();
        assert_eq!(settings.len(), 8);
        assert_eq!(settings[0], (Some(Duration::ZERO), false, 0));
        assert_eq!(settings[1], (Some(Duration::ZERO), false, 4));
        assert_eq!(settings[2], (Some(Duration::ZERO), true, 0));
        assert_eq!(settings[7], (None, true, 4));

        let config = BenchConfig {
            middleware_sweep: vec![1, MAX_MIDDLEWARE + 1],
            ..BenchConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn rows_do_not_show_passwords() {
        let config = BenchConfig::default();
        let row = Row::new("redis://:s%40cret@h/0", Scenario::Latency, &config);
        assert_eq!(row.store, "redis://:***@h/0");
    }
}
