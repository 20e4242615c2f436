//! The scenarios themselves.

use super::progress::Progress;
use super::target::Footprint;
use super::{cpu, rss, BenchConfig, Row, Scenario, Target};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use taskmill::metrics::Metrics;
use taskmill::store::{EnqueueOptions, Enqueued, Fired, StatsOptions, Tick};
use taskmill::{
    Client, Error, Manager, Middleware, Overlap, Payload, Processor, Result, Schedule, Stats,
    Store, Task, TaskContext, TaskError, TaskId, Timestamp,
};
use tokio::sync::Notify;

/// How long a manager may take to close once its work is done.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting phase looks at its counter (and redraws its progress bar).
pub(super) const WAIT_TICK: Duration = Duration::from_millis(50);
/// Fills of at least this many tasks get a progress bar.
const FILL_BAR_MIN: u64 = 50_000;

pub(super) async fn run(
    scenario: Scenario,
    url: &str,
    config: &BenchConfig,
    row: &mut Row,
) -> Result<()> {
    match scenario {
        Scenario::Throughput | Scenario::Topics => {
            on_fresh(url, |store, footprint| {
                throughput(store, footprint, url, config, row)
            })
            .await
        }
        Scenario::Work => {
            on_fresh(url, |store, footprint| {
                throughput(store, footprint, url, config, row)
            })
            .await?;
            if let Some(work) = config.work_duration {
                // Every worker busy all the time, each run taking exactly its timer.
                row.reference_per_sec = Some(config.concurrency as f64 / work.as_secs_f64());
                row.process_ratio = super::ratio(row.process_per_sec, row.reference_per_sec);
            }
            Ok(())
        }
        Scenario::Payload => {
            on_fresh(url, |store, footprint| {
                throughput(store, footprint, url, config, row)
            })
            .await?;
            let mb = |rate: Option<f64>| rate.map(|r| r * row.payload_bytes as f64 / 1e6);
            (row.enqueue_mb_per_sec, row.process_mb_per_sec) =
                (mb(row.enqueue_per_sec), mb(row.process_per_sec));
            Ok(())
        }
        Scenario::Latency => on_fresh(url, |store, _| latency(store, url, config, row)).await,
        Scenario::Backlog => backlog(url, config, row).await,
        Scenario::Schedules => on_fresh(url, |store, _| schedules(store, config, row)).await,
        Scenario::Processes => super::processes::run(url, config, row).await,
        Scenario::LoadedLatency => loaded_latency(url, config, row).await,
    }
}

/// Runs `f` on a store at a fresh location derived from `url` (with the means to measure
/// what it occupies), then removes the location. `f` owns the store, so every handle is
/// gone by the time the location is removed.
pub(super) async fn on_fresh<T, F, Fut>(url: &str, f: F) -> Result<T>
where
    F: FnOnce(Arc<dyn Store>, Footprint) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    at_fresh(url, |store, target| f(store, target.footprint())).await
}

/// [`on_fresh`], telling `f` the location itself (for other processes to open).
pub(super) async fn at_fresh<T, F, Fut>(url: &str, f: F) -> Result<T>
where
    F: FnOnce(Arc<dyn Store>, Target) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let target = Target::fresh(url)?;
    let result = async { f(target.open().await?, target.clone()).await }.await;
    let cleanup = target.remove().await;
    let value = result?;
    cleanup?;
    Ok(value)
}

pub(super) fn topic_names(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| Arc::from(format!("bench-{i}"))).collect()
}

/// JSON text of exactly `bytes` bytes (at least 2): a string of `x`.
fn payload_text(bytes: usize) -> String {
    format!("\"{}\"", "x".repeat(bytes.saturating_sub(2)))
}

pub(super) fn per_sec(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn is_memory(url: &str) -> bool {
    url.starts_with("memory:")
}

/// What filling a queue did.
pub(super) struct Filled {
    pub(super) count: u64,
    /// Time spent inside `enqueue` calls only.
    pub(super) timed: Duration,
    pub(super) first: TaskId,
    pub(super) last: TaskId,
    /// Resident bytes per task beyond the payload, when measured.
    bytes_per_task: Option<f64>,
}

/// Enqueues `count` tasks in batches, spread over the topics as the configuration says,
/// each with its own payload allocation (as an application's would be).
pub(super) async fn fill(
    store: &dyn Store,
    url: &str,
    config: &BenchConfig,
    count: u64,
    label: &str,
) -> Result<Filled> {
    let topics = topic_names(config.topics);
    let text = payload_text(config.payload_bytes);
    let bar = Progress::new(
        config.progress && count >= FILL_BAR_MIN,
        count,
        format!("{label}: enqueue"),
    );
    let measure_memory = is_memory(url);
    if measure_memory {
        rss::release_free_memory();
    }
    let rss_before = rss::current();
    let mut timed = Duration::ZERO;
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut next = 0u64;
    while next < count {
        let n = (config.batch as u64).min(count - next);
        let batch = tasks_of_fill(&topics, config, &text, next, n)?;
        let opts = EnqueueOptions::new(Timestamp::now());
        let started = Instant::now();
        let results = store.enqueue(batch, &opts).await?;
        timed += started.elapsed();
        let (lowest, highest) = new_ids(&results, n)?;
        first = first.min(lowest);
        last = last.max(highest);
        next += n;
        bar.set(next);
    }
    // Freed memory the allocator kept (the hash tables a growing map left behind, which
    // glibc keeps on its heap once its mmap threshold has risen) is not the store's:
    // hand it back before reading what the store holds.
    if measure_memory {
        rss::release_free_memory();
    }
    let bytes_per_task = match (measure_memory, rss_before, rss::current()) {
        (true, Some(before), Some(after)) => {
            Some((after as f64 - before as f64) / count as f64 - text.len() as f64)
        }
        _ => None,
    };
    Ok(Filled {
        count,
        timed,
        first: TaskId::new(first),
        last: TaskId::new(last),
        bytes_per_task,
    })
}

/// The tasks `from .. from + n` of a fill: spread over `topics` as the configuration says,
/// each with its own copy of the arguments `text`.
fn tasks_of_fill(
    topics: &[Arc<str>],
    config: &BenchConfig,
    text: &str,
    from: u64,
    n: u64,
) -> Result<Vec<Task>> {
    (from..from + n)
        .map(|i| {
            let topic = topics[config.topic_spread.topic_of(i, topics.len())].clone();
            Task::with_payload(topic, Payload::from_json(text)?)
        })
        .collect()
}

/// The lowest and highest id of an enqueue of `n` tasks without unique keys; an error
/// unless there is a result for each and every one was added.
fn new_ids(results: &[Enqueued], n: u64) -> Result<(u64, u64)> {
    if results.len() as u64 != n {
        return Err(Error::storage(format!(
            "enqueue of {n} tasks returned {} results",
            results.len()
        )));
    }
    let (mut lowest, mut highest) = (u64::MAX, 0u64);
    for result in results {
        if !result.is_new() {
            return Err(Error::storage(format!(
                "a task without a unique key was not added: {result:?}"
            )));
        }
        lowest = lowest.min(result.id().get());
        highest = highest.max(result.id().get());
    }
    Ok((lowest, highest))
}

/// Counts runs, and which task ran, for the no-op processors.
pub(super) struct Tracker {
    runs: AtomicU64,
    /// When `runs` reaches this, `done` is notified.
    target: u64,
    done: Notify,
    /// When the run that brought `runs` to each of [`Tracker::mark`]'s counts ended.
    marks: [(u64, OnceLock<Instant>); 2],
    first: u64,
    /// One bit per enqueued task, by `id - first`, when the store gave contiguous ids
    /// (every store does for a fresh location); empty otherwise.
    seen: Vec<AtomicU64>,
    duplicates: AtomicU64,
}

impl Tracker {
    pub(super) fn new(filled: &Filled, target: u64) -> Tracker {
        let span = filled
            .last
            .get()
            .wrapping_sub(filled.first.get())
            .wrapping_add(1);
        let span = if span == filled.count { span } else { 0 };
        Tracker::for_ids(filled.first, span, target)
    }

    /// A tracker that tells runs of the ids `first .. first + span` apart (a run of an id
    /// outside them is only counted).
    pub(super) fn for_ids(first: TaskId, span: u64, target: u64) -> Tracker {
        Tracker {
            runs: AtomicU64::new(0),
            target,
            done: Notify::new(),
            marks: [(0, OnceLock::new()), (target, OnceLock::new())],
            first: first.get(),
            seen: (0..span.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            duplicates: AtomicU64::new(0),
        }
    }

    /// The bits of the tasks that ran, by `id - first` (empty when not told apart).
    pub(super) fn seen_words(&self) -> Vec<u64> {
        self.seen
            .iter()
            .map(|word| word.load(Ordering::Relaxed))
            .collect()
    }

    pub(super) fn hit(&self, id: TaskId) {
        let index = id.get().wrapping_sub(self.first);
        if let Some(word) = self.seen.get((index / 64) as usize) {
            let bit = 1u64 << (index % 64);
            if word.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        let runs = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        for (count, at) in &self.marks {
            if runs == *count {
                let _ = at.set(Instant::now());
            }
        }
        if runs == self.target {
            self.done.notify_one();
        }
    }

    /// Also notes when the `runs`-th run ends (see [`Tracker::rate_since_mark`]).
    fn mark(mut self, runs: u64) -> Self {
        self.marks[0].0 = runs;
        self
    }

    /// Runs per second from the marked run to the target, if both were reached and lie
    /// apart.
    fn rate_since_mark(&self) -> Option<f64> {
        let [(from, start), (to, end)] = &self.marks;
        let elapsed = end.get()?.checked_duration_since(*start.get()?)?;
        (to > from && !elapsed.is_zero()).then(|| per_sec(to - from, elapsed))
    }

    pub(super) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// When the run that brought the count to the target ended.
    pub(super) fn reached_at(&self) -> Option<Instant> {
        self.marks[1].1.get().copied()
    }

    pub(super) fn counts(&self) -> RunCounts {
        let runs = self.runs();
        if self.seen.is_empty() {
            // Without per-task bits, a run past the target is all that can be told apart.
            return RunCounts {
                runs,
                distinct: runs,
                duplicates: 0,
            };
        }
        let duplicates = self.duplicates.load(Ordering::Relaxed);
        RunCounts {
            runs,
            distinct: runs - duplicates,
            duplicates,
        }
    }
}

/// The no-op processor of throughput and backlog: counts the run, nothing else.
pub(super) struct Counting(pub(super) Arc<Tracker>);

#[taskmill::async_trait]
impl Processor for Counting {
    async fn process(&self, ctx: TaskContext) -> std::result::Result<(), TaskError> {
        self.0.hit(ctx.id());
        Ok(())
    }
}

/// The processor of the work scenario: awaits a timer, as a call to another service
/// would, then counts the run.
struct Working {
    tracker: Arc<Tracker>,
    duration: Duration,
    /// Nanoseconds the timers actually took, summed over the runs.
    slept_nanos: Arc<AtomicU64>,
}

#[taskmill::async_trait]
impl Processor for Working {
    async fn process(&self, ctx: TaskContext) -> std::result::Result<(), TaskError> {
        let started = Instant::now();
        tokio::time::sleep(self.duration).await;
        let slept = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.slept_nanos.fetch_add(slept, Ordering::Relaxed);
        self.tracker.hit(ctx.id());
        Ok(())
    }
}

/// A middleware that passes every run and enqueue straight on: what the chain itself
/// costs per middleware.
struct PassOn;

impl Middleware for PassOn {}

/// A manager on `store` with the configuration's settings and middleware, and `processor`
/// on every topic; with the metrics handle its runs report to, if any.
pub(super) fn manager<P: Processor>(
    store: Arc<dyn Store>,
    config: &BenchConfig,
    processor: impl Fn() -> P,
) -> Result<(Manager, Option<Metrics>)> {
    let mut builder = Manager::builder_shared(store.clone()).concurrency(config.concurrency);
    if let Some(retention) = config.retention {
        builder = builder.retention(retention);
    }
    let metrics = config
        .metrics
        .then(|| Metrics::new(Client::shared(store.clone())));
    if let Some(metrics) = &metrics {
        builder = builder.observer(metrics.clone());
    }
    for _ in 0..config.middleware {
        builder = builder.middleware(PassOn);
    }
    let manager = builder.build();
    for topic in topic_names(config.topics) {
        manager.register(topic, processor())?;
    }
    Ok((manager, metrics))
}

/// The runs the metrics layer observed: the sum of the duration histogram's counts.
async fn observed_runs(metrics: &Metrics) -> Result<u64> {
    let text = metrics.render().await?;
    let mut runs = 0.0;
    for line in text.lines() {
        if line.starts_with("taskmill_run_duration_seconds_count{") {
            let value = line.rsplit(' ').next().unwrap_or_default();
            runs += value
                .parse::<f64>()
                .map_err(|_| Error::storage(format!("a metrics line without a number: {line}")))?;
        }
    }
    Ok(runs as u64)
}

/// With metrics on, a problem unless the layer observed exactly `runs` runs.
async fn check_observed(metrics: Option<&Metrics>, runs: u64) -> Result<Option<String>> {
    let Some(metrics) = metrics else {
        return Ok(None);
    };
    let observed = observed_runs(metrics).await?;
    Ok((observed != runs)
        .then(|| format!("the metrics layer observed {observed} runs, not {runs}")))
}

/// Waits until `runs()` reaches `target`, or until it stops moving for `stall`; returns
/// whether the target was reached.
async fn wait_for(
    runs: impl Fn() -> u64,
    done: &Notify,
    target: u64,
    stall: Duration,
    bar: &Progress,
) -> bool {
    let mut last = runs();
    let mut last_change = Instant::now();
    loop {
        let notified = done.notified();
        let now_runs = runs();
        bar.set(now_runs);
        if now_runs >= target {
            return true;
        }
        if now_runs != last {
            last = now_runs;
            last_change = Instant::now();
        } else if last_change.elapsed() >= stall {
            return false;
        }
        let _ = tokio::time::timeout(WAIT_TICK, notified).await;
    }
}

pub(super) struct RunCounts {
    pub(super) runs: u64,
    /// Tasks that ran at least once.
    pub(super) distinct: u64,
    /// Runs beyond the first of a task.
    pub(super) duplicates: u64,
}

impl RunCounts {
    /// The counts of two sets of tasks together.
    fn and(self, other: RunCounts) -> RunCounts {
        RunCounts {
            runs: self.runs + other.runs,
            distinct: self.distinct + other.distinct,
            duplicates: self.duplicates + other.duplicates,
        }
    }
}

/// Checks the store's account after the manager closed: every task enqueued is either
/// completed or still waiting in INPUT (none in WORK or DEAD), completions match the
/// tasks run (at most, without `all_run`), and with `all_run` nothing is left waiting. Sets `lost` and `duplicated`
/// and returns what is wrong.
pub(super) fn check(
    row: &mut Row,
    stats: &Stats,
    enqueued: u64,
    counts: &RunCounts,
    all_run: bool,
) -> Vec<String> {
    let (c, s) = (stats.total.counters, stats.total.sizes);
    let mut problems = Vec::new();
    let mut lost = enqueued.saturating_sub(s.input + c.completed);
    if all_run {
        lost = lost.max(enqueued.saturating_sub(counts.distinct));
        if s.input > 0 {
            problems.push(format!("{} tasks left in INPUT", s.input));
        }
    }
    if s.work > 0 {
        problems.push(format!("{} tasks left in WORK after close", s.work));
    }
    if s.dead > 0 {
        problems.push(format!("{} tasks in DEAD", s.dead));
    }
    if c.enqueued != enqueued {
        problems.push(format!(
            "the store counted {} enqueued, not {enqueued}",
            c.enqueued
        ));
    }
    // When the manager closes with work left (backlog), a run that finished just as it was
    // cancelled is released, not completed: it is back in INPUT and runs again, which is
    // at least once, not a loss. So only a run-to-empty must match exactly.
    let completions_wrong = if all_run {
        c.completed != counts.distinct
    } else {
        c.completed > counts.distinct
    };
    if completions_wrong {
        problems.push(format!(
            "the store counted {} completed for {} tasks run",
            c.completed, counts.distinct
        ));
    }
    if lost > 0 {
        problems.push(format!("{lost} tasks lost"));
    }
    if counts.duplicates > 0 {
        problems.push(format!("{} duplicate runs", counts.duplicates));
    }
    row.lost += lost;
    row.duplicated += counts.duplicates;
    problems
}

pub(super) fn fail_on(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::storage(problems.join("; ")))
    }
}

async fn throughput(
    store: Arc<dyn Store>,
    footprint: Footprint,
    url: &str,
    config: &BenchConfig,
    row: &mut Row,
) -> Result<()> {
    let n = config.tasks;
    row.tasks = n;
    let label = format!("{url} throughput");
    let empty = footprint.bytes();
    let filled = fill(&*store, url, config, n, &label).await?;
    row.enqueue_per_sec = Some(per_sec(n, filled.timed));
    row.bytes_per_task = filled.bytes_per_task;

    let tracker = Arc::new(Tracker::new(&filled, n));
    let slept_nanos = Arc::new(AtomicU64::new(0));
    let (manager, metrics) = match config.work_duration {
        None => manager(store.clone(), config, || Counting(tracker.clone()))?,
        Some(duration) => manager(store.clone(), config, || Working {
            tracker: tracker.clone(),
            duration,
            slept_nanos: slept_nanos.clone(),
        })?,
    };
    let bar = Progress::new(config.progress, n, format!("{label}: process"));
    let cpu_before = cpu::process_time();
    let started = Instant::now();
    manager.start().await?;
    let finished = wait_for(
        || tracker.runs(),
        &tracker.done,
        n,
        config.stall_timeout,
        &bar,
    )
    .await;
    let elapsed = started.elapsed();
    let cpu_used = cpu::process_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    drop(bar);
    manager.close_with_timeout(CLOSE_TIMEOUT).await?;
    drop(manager);
    if finished {
        row.process_per_sec = Some(per_sec(n, elapsed));
        row.cpu_us_per_task = cpu_used.map(|cpu| cpu.as_secs_f64() * 1e6 / n as f64);
        if config.work_duration.is_some() {
            let slept = slept_nanos.load(Ordering::Relaxed) as f64;
            row.work_slept_ms = Some(slept / 1e6 / tracker.runs().max(1) as f64);
        }
    }
    let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    // What the finished tasks' records occupy once processing is over.
    // With retention 0 nothing is kept, and what the figure would show is only what the
    // store does not give back after deleting (a memory store's slots, a file's free
    // pages): not reported.
    let keeps = config.retention != Some(Duration::ZERO);
    if let (true, Some(empty), Some(full)) = (keeps, empty, footprint.bytes()) {
        row.kept_bytes_per_task = Some((full as f64 - empty as f64) / n as f64);
    }
    let mut problems = check(row, &stats, n, &tracker.counts(), true);
    problems.extend(check_observed(metrics.as_ref(), tracker.runs()).await?);
    if !finished {
        problems.insert(
            0,
            format!(
                "stalled: {} of {n} runs, none for {:?}",
                tracker.runs(),
                config.stall_timeout
            ),
        );
    }
    fail_on(problems)
}

/// Arguments of a latency probe: when it was enqueued, in nanoseconds since the
/// recorder's base instant.
#[derive(Serialize, Deserialize)]
struct Stamp {
    t: u64,
}

struct Recorder {
    base: Instant,
    /// (task id, enqueue→start in ns) per run.
    samples: Mutex<Vec<(TaskId, u64)>>,
    runs: AtomicU64,
    target: u64,
    done: Notify,
}

impl Recorder {
    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

struct Probe(Arc<Recorder>);

#[taskmill::async_trait]
impl Processor for Probe {
    async fn process(&self, ctx: TaskContext) -> std::result::Result<(), TaskError> {
        let now = self.0.nanos();
        let stamp: Stamp = ctx.args().map_err(TaskError::permanent)?;
        self.0
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ctx.id(), now.saturating_sub(stamp.t)));
        if self.0.runs.fetch_add(1, Ordering::Relaxed) + 1 == self.0.target {
            self.0.done.notify_one();
        }
        Ok(())
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted `values`.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// The probes of a latency measurement: the latency rate for the latency duration.
fn probe_count(config: &BenchConfig) -> u64 {
    ((f64::from(config.latency_rate) * config.latency_duration.as_secs_f64()).ceil() as u64).max(1)
}

impl Recorder {
    fn new(count: u64) -> Recorder {
        Recorder {
            base: Instant::now(),
            samples: Mutex::new(Vec::with_capacity(count as usize)),
            runs: AtomicU64::new(0),
            target: count,
            done: Notify::new(),
        }
    }

    fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Sets the row's percentiles from the first run of each probe, and counts the runs.
    fn report(&self, row: &mut Row) -> RunCounts {
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let runs = samples.len() as u64;
        // The first run of each task is its latency; later ones are duplicates.
        samples.sort_by_key(|&(id, _)| id);
        samples.dedup_by_key(|&mut (id, _)| id);
        let mut nanos: Vec<u64> = samples.iter().map(|&(_, ns)| ns).collect();
        nanos.sort_unstable();
        row.latency_p50_ms = percentile(&nanos, 0.50).map(ms);
        row.latency_p99_ms = percentile(&nanos, 0.99).map(ms);
        row.latency_max_ms = nanos.last().copied().map(ms);
        RunCounts {
            runs,
            distinct: samples.len() as u64,
            duplicates: runs - samples.len() as u64,
        }
    }
}

/// Enqueues the recorder's probes one at a time at the latency rate, round robin over
/// `topics`, through `manager`, then waits for them to run; returns whether all did.
async fn probe(
    manager: &Manager,
    recorder: &Recorder,
    topics: &[Arc<str>],
    config: &BenchConfig,
    bar: &Progress,
) -> Result<bool> {
    let count = recorder.target;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(config.latency_rate),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..count {
        ticks.tick().await;
        let topic = topics[(i % topics.len() as u64) as usize].clone();
        let task = Task::new(
            topic,
            &Stamp {
                t: recorder.nanos(),
            },
        )?;
        manager.enqueue(task).await?;
        bar.set(recorder.runs());
    }
    Ok(wait_for(
        || recorder.runs(),
        &recorder.done,
        count,
        config.stall_timeout,
        bar,
    )
    .await)
}

async fn latency(
    store: Arc<dyn Store>,
    url: &str,
    config: &BenchConfig,
    row: &mut Row,
) -> Result<()> {
    let count = probe_count(config);
    row.tasks = count;
    let recorder = Arc::new(Recorder::new(count));
    let (manager, metrics) = manager(store.clone(), config, || Probe(recorder.clone()))?;
    manager.start().await?;
    // Let the claimer find the queue empty and go to sleep: the scenario measures how an
    // idle manager picks up work.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let topics = topic_names(config.topics);
    let bar = Progress::new(config.progress, count, format!("{url} latency"));
    // The manager is closed whatever happens, so a failed enqueue leaves nothing running
    // into the next scenario.
    let probing = probe(&manager, &recorder, &topics, config, &bar).await;
    drop(bar);
    let closed = manager.close_with_timeout(CLOSE_TIMEOUT).await;
    drop(manager);
    let finished = probing?;
    closed?;
    let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;

    let counts = recorder.report(row);
    let mut problems = check(row, &stats, count, &counts, true);
    problems.extend(check_observed(metrics.as_ref(), counts.runs).await?);
    if !finished {
        problems.insert(0, format!("stalled: {} of {count} runs", counts.runs));
    }
    fail_on(problems)
}

/// The topic of the loaded-latency scenario's probes, apart from the background load's.
const PROBE_TOPIC: &str = "bench-probe";
/// How long the background load runs before the first probe.
const LOAD_WARM_UP: Duration = Duration::from_millis(500);
/// How often the background load tops up what it enqueued to its rate.
const FEED_TICK: Duration = Duration::from_millis(5);

/// The loaded-latency scenario (see the module docs of `bench`): a throughput run finds
/// the store's rate, then probes are timed on a fresh location under a load of
/// `load_share` of it.
async fn loaded_latency(url: &str, config: &BenchConfig, row: &mut Row) -> Result<()> {
    let mut max_run = row.clone();
    let measured = on_fresh(url, |store, footprint| {
        throughput(store, footprint, url, config, &mut max_run)
    })
    .await;
    row.lost += max_run.lost;
    row.duplicated += max_run.duplicated;
    measured?;
    let max = max_run
        .process_per_sec
        .ok_or_else(|| Error::storage("the throughput run measured no rate"))?;
    let load = max * config.load_share;
    row.reference_per_sec = Some(load);
    on_fresh(url, |store, _| {
        latency_under_load(store, url, config, load, row)
    })
    .await?;
    row.process_ratio = super::ratio(row.process_per_sec, row.reference_per_sec);
    Ok(())
}

/// The background load of the loaded-latency scenario: tasks for the no-op processors,
/// enqueued in batches as fast as keeps pace with its rate.
struct Feeder {
    store: Arc<dyn Store>,
    config: BenchConfig,
    topics: Vec<Arc<str>>,
    text: String,
    /// Tasks per second.
    rate: f64,
    /// Tasks in all.
    total: u64,
}

impl Feeder {
    /// Enqueues the tasks `from .. from + n` of the load; returns the lowest id.
    async fn enqueue(&self, from: u64, n: u64) -> Result<TaskId> {
        let tasks = tasks_of_fill(&self.topics, &self.config, &self.text, from, n)?;
        let results = self
            .store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await?;
        Ok(TaskId::new(new_ids(&results, n)?.0))
    }

    /// Enqueues the rest of the load, from the `sent`-th task, keeping pace with the rate
    /// from `started` (catching up after a slow call).
    async fn run(self, started: Instant, mut sent: u64) -> Result<()> {
        let mut ticks = tokio::time::interval(FEED_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while sent < self.total {
            ticks.tick().await;
            let due = ((started.elapsed().as_secs_f64() * self.rate) as u64).min(self.total);
            while sent < due {
                let n = (self.config.batch as u64).min(due - sent);
                self.enqueue(sent, n).await?;
                sent += n;
            }
        }
        Ok(())
    }
}

/// Times probes on their own topic while a [`Feeder`] loads the store at `load` tasks/s
/// from before the first probe to the last; checks that every task ran once.
async fn latency_under_load(
    store: Arc<dyn Store>,
    url: &str,
    config: &BenchConfig,
    load: f64,
    row: &mut Row,
) -> Result<()> {
    let probes = probe_count(config);
    let feeding_time = LOAD_WARM_UP + config.latency_duration;
    let background = ((load * feeding_time.as_secs_f64()).ceil() as u64).max(1);
    row.tasks = background + probes;
    let feeder = Feeder {
        store: store.clone(),
        config: config.clone(),
        topics: topic_names(config.topics),
        text: payload_text(config.payload_bytes),
        rate: load,
        total: background,
    };
    // The first batch goes in before the manager starts, so the ids are known: the load's
    // and the probes' follow it on a fresh location.
    let first_batch = (config.batch as u64).min(background);
    let first = feeder.enqueue(0, first_batch).await?;
    let tracker = Arc::new(Tracker::for_ids(first, background + probes, background));
    let recorder = Arc::new(Recorder::new(probes));
    let (manager, metrics) = manager(store.clone(), config, || Counting(tracker.clone()))?;
    manager.register(PROBE_TOPIC, Probe(recorder.clone()))?;
    let bar = Progress::new(config.progress, probes, format!("{url} loaded-latency"));
    let started = Instant::now();
    manager.start().await?;
    let mut feeding = tokio::spawn(feeder.run(started, first_batch));
    // The manager is closed and the feeder stopped whatever happens.
    let measuring = async {
        tokio::time::sleep(LOAD_WARM_UP).await;
        let probed = probe(&manager, &recorder, &[Arc::from(PROBE_TOPIC)], config, &bar).await?;
        (&mut feeding)
            .await
            .map_err(|e| Error::storage("the background load failed").with_source(e))??;
        let loaded = wait_for(
            || tracker.runs(),
            &tracker.done,
            background,
            config.stall_timeout,
            &bar,
        )
        .await;
        Ok::<_, Error>((probed, loaded))
    }
    .await;
    feeding.abort();
    drop(bar);
    let closed = manager.close_with_timeout(CLOSE_TIMEOUT).await;
    drop(manager);
    let (probed, loaded) = measuring?;
    closed?;
    if let Some(elapsed) = tracker.reached_at().map(|at| at.duration_since(started)) {
        row.process_per_sec = Some(per_sec(background, elapsed));
    }
    let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    let probe_counts = recorder.report(row);
    let counts = probe_counts.and(tracker.counts());
    let mut problems = check(row, &stats, background + probes, &counts, true);
    problems.extend(check_observed(metrics.as_ref(), counts.runs).await?);
    if !probed {
        problems.insert(
            0,
            format!("stalled: {} of {probes} probes", recorder.runs()),
        );
    }
    if !loaded {
        let runs = tracker.runs();
        problems.insert(
            0,
            format!("stalled: {runs} of {background} background runs"),
        );
    }
    fail_on(problems)
}

/// One backlog measurement.
struct BacklogRun {
    enqueue_per_sec: f64,
    process_per_sec: Option<f64>,
    bytes_per_task: Option<f64>,
    /// Milliseconds of one `stats` call with the whole backlog waiting.
    stats_ms: f64,
}

async fn backlog(url: &str, config: &BenchConfig, row: &mut Row) -> Result<()> {
    row.tasks = config.backlog_large;
    let small = on_fresh(url, |store, _| {
        backlog_once(store, url, config, config.backlog_small, &mut *row)
    })
    .await?;
    let large = on_fresh(url, |store, _| {
        backlog_once(store, url, config, config.backlog_large, &mut *row)
    })
    .await?;
    row.enqueue_per_sec = Some(large.enqueue_per_sec);
    row.bytes_per_task = large.bytes_per_task.or(small.bytes_per_task);
    row.stats_small_ms = Some(small.stats_ms);
    row.stats_large_ms = Some(large.stats_ms);
    row.backlog_small_per_sec = small.process_per_sec;
    row.backlog_large_per_sec = large.process_per_sec;
    row.process_per_sec = large.process_per_sec;
    if let (Some(s), Some(l)) = (small.process_per_sec, large.process_per_sec) {
        row.backlog_ratio = Some(l / s);
    }
    Ok(())
}

/// Fills a queue of `size` tasks, times one `stats` call, then times the processing of the
/// first `backlog_measure` of them, from the end of the first tenth.
async fn backlog_once(
    store: Arc<dyn Store>,
    url: &str,
    config: &BenchConfig,
    size: u64,
    row: &mut Row,
) -> Result<BacklogRun> {
    let measure = config.backlog_measure;
    let label = format!("{url} backlog {size}");
    let filled = fill(&*store, url, config, size, &label).await?;
    // What a metrics scrape reads (the oldest due time among it), with every task waiting.
    let started = Instant::now();
    let waiting = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    let stats_ms = started.elapsed().as_secs_f64() * 1e3;
    if waiting.total.sizes.input != size {
        return Err(Error::storage(format!(
            "stats with {size} tasks waiting counted {} in INPUT",
            waiting.total.sizes.input
        )));
    }
    // The first tenth of the runs is not timed: it holds the manager's start-up and first
    // claim, which for a fast store is much of a 10,000-task measurement.
    let warm_up = (measure / 10).max(1);
    let tracker = Arc::new(Tracker::new(&filled, measure).mark(warm_up));
    let (manager, _metrics) = manager(store.clone(), config, || Counting(tracker.clone()))?;
    let bar = Progress::new(config.progress, measure, format!("{label}: process"));
    let started = Instant::now();
    manager.start().await?;
    let finished = wait_for(
        || tracker.runs(),
        &tracker.done,
        measure,
        config.stall_timeout,
        &bar,
    )
    .await;
    let elapsed = started.elapsed();
    drop(bar);
    // Runs still going are cancelled and go back to INPUT; the check below accounts for
    // them there.
    manager.close().await?;
    drop(manager);
    let stats = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    let mut problems = check(row, &stats, size, &tracker.counts(), false);
    if !finished {
        problems.insert(0, format!("stalled: {} of {measure} runs", tracker.runs()));
    }
    fail_on(problems)?;
    Ok(BacklogRun {
        enqueue_per_sec: per_sec(filled.count, filled.timed),
        process_per_sec: finished.then(|| {
            tracker
                .rate_since_mark()
                .unwrap_or_else(|| per_sec(measure, elapsed))
        }),
        bytes_per_task: filled.bytes_per_task,
        stats_ms,
    })
}

/// The most ticks the schedules scenario fires.
const MAX_TICKS: u64 = 20_000;

/// The schedules scenario (see the module docs of `bench`).
async fn schedules(store: Arc<dyn Store>, config: &BenchConfig, row: &mut Row) -> Result<()> {
    let per_round = config.batch;
    let rounds = (config.tasks.min(MAX_TICKS) / per_round as u64).max(1);
    let ticks_total = rounds * per_round as u64;
    row.tasks = ticks_total;
    let text = payload_text(config.payload_bytes);
    let schedules: Vec<Schedule> = (0..per_round)
        .map(|i| {
            let task = Task::with_payload("fired", Payload::from_json(text.clone())?)?;
            Schedule::every(format!("bench-{i}"), Duration::from_secs(1), task)
        })
        .collect::<Result<_>>()?;
    let base = Timestamp::now();
    let tick = |round: u64| base + Duration::from_secs(round);

    let mut plain = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        let tasks = (0..per_round)
            .map(|_| Task::with_payload("plain", Payload::from_json(text.clone())?))
            .collect::<Result<Vec<_>>>()?;
        store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await?;
        plain += started.elapsed();
    }

    let fire_rounds = |expect_new: bool| {
        let (store, schedules) = (store.clone(), &schedules);
        async move {
            let mut elapsed = Duration::ZERO;
            let mut unexpected = 0u64;
            for round in 1..=rounds {
                let started = Instant::now();
                let at = tick(round);
                let ticks = schedules
                    .iter()
                    .map(|s| Ok(Tick::new(s.name(), at, s.task_for(at)?, Overlap::Allow)))
                    .collect::<Result<Vec<_>>>()?;
                let fired = store
                    .fire(ticks, &EnqueueOptions::new(Timestamp::now()))
                    .await?;
                elapsed += started.elapsed();
                unexpected += fired
                    .iter()
                    .filter(|f| match f {
                        Fired::Enqueued(e) => !(expect_new && e.is_new()),
                        Fired::Stale { .. } => expect_new,
                        _ => true,
                    })
                    .count() as u64;
            }
            Ok::<_, Error>((elapsed, unexpected))
        }
    };
    let (fired, not_new) = fire_rounds(true).await?;
    let (stale, not_stale) = fire_rounds(false).await?;

    row.enqueue_per_sec = Some(per_sec(ticks_total, plain));
    row.fire_per_sec = Some(per_sec(ticks_total, fired));
    row.stale_fire_per_sec = Some(per_sec(ticks_total, stale));
    let sizes = store.stats(&StatsOptions::new(Timestamp::now())).await?;
    let in_fired = sizes.topic("fired").sizes.input;
    let mut problems = Vec::new();
    if not_new > 0 {
        problems.push(format!("{not_new} first fires did not enqueue a new task"));
    }
    if not_stale > 0 {
        problems.push(format!("{not_stale} second fires were not stale"));
    }
    if in_fired != ticks_total {
        problems.push(format!("{in_fired} fired tasks for {ticks_total} ticks"));
    }
    row.lost = ticks_total.saturating_sub(in_fired);
    row.duplicated = in_fired.saturating_sub(ticks_total);
    fail_on(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn payload_text_has_the_requested_size() {
        for bytes in [0, 2, 3, 16, 100] {
            let text = payload_text(bytes);
            assert_eq!(text.len(), bytes.max(2));
            Payload::from_json(text).unwrap();
        }
    }

    #[test]
    fn tracker_tells_duplicates_from_first_runs() {
        let filled = Filled {
            count: 100,
            timed: Duration::ZERO,
            first: TaskId::new(11),
            last: TaskId::new(110),
            bytes_per_task: None,
        };
        let t = Tracker::new(&filled, 3);
        t.hit(TaskId::new(11));
        t.hit(TaskId::new(110));
        t.hit(TaskId::new(11));
        let c = t.counts();
        assert_eq!((c.runs, c.distinct, c.duplicates), (3, 2, 1));
    }

    #[test]
    fn tracker_rate_counts_only_runs_after_the_mark() {
        let filled = Filled {
            count: 10,
            timed: Duration::ZERO,
            first: TaskId::new(1),
            last: TaskId::new(10),
            bytes_per_task: None,
        };
        let t = Tracker::new(&filled, 10).mark(4);
        for id in 1..=9 {
            t.hit(TaskId::new(id));
        }
        assert_eq!(t.rate_since_mark(), None, "the target was not reached yet");
        t.hit(TaskId::new(10));
        let [(_, start), (_, end)] = &t.marks;
        let window = end.get().unwrap().duration_since(*start.get().unwrap());
        let rate = t.rate_since_mark().unwrap();
        assert_eq!(
            rate,
            per_sec(6, window),
            "runs 5 to 10 over the marked window"
        );

        // A mark at the target leaves no window to time.
        let t = Tracker::new(&filled, 1).mark(1);
        t.hit(TaskId::new(1));
        assert_eq!(t.rate_since_mark(), None);
    }

    fn stats(input: u64, work: u64, dead: u64, enqueued: u64, completed: u64) -> Stats {
        let mut stats = Stats::default();
        stats.total.sizes.input = input;
        stats.total.sizes.work = work;
        stats.total.sizes.dead = dead;
        stats.total.counters.enqueued = enqueued;
        stats.total.counters.completed = completed;
        stats
    }

    fn counts(runs: u64, duplicates: u64) -> RunCounts {
        RunCounts {
            runs,
            distinct: runs - duplicates,
            duplicates,
        }
    }

    #[test]
    fn check_passes_a_clean_run_and_flags_loss_and_repeats() {
        let config = BenchConfig::default();
        let mut row = Row::new("memory://", Scenario::Throughput, &config);
        assert!(check(&mut row, &stats(0, 0, 0, 10, 10), 10, &counts(10, 0), true).is_empty());
        assert!(row.ok());

        // Two tasks vanished from the store without running.
        let problems = check(&mut row, &stats(0, 0, 0, 10, 8), 10, &counts(8, 0), true);
        assert_eq!(row.lost, 2);
        assert!(!problems.is_empty());

        // A task ran twice.
        let mut row = Row::new("memory://", Scenario::Throughput, &config);
        let problems = check(&mut row, &stats(0, 0, 0, 10, 10), 10, &counts(11, 1), true);
        assert_eq!((row.lost, row.duplicated), (0, 1));
        assert_eq!(problems, ["1 duplicate runs"]);

        // A backlog run leaves tasks waiting, which is fine, but not stuck in WORK.
        let mut row = Row::new("memory://", Scenario::Backlog, &config);
        assert!(check(&mut row, &stats(7, 0, 0, 10, 3), 10, &counts(3, 0), false).is_empty());
        // One run finished as the close cancelled it: released to INPUT, to run again.
        assert!(check(&mut row, &stats(8, 0, 0, 10, 2), 10, &counts(3, 0), false).is_empty());
        assert!(!check(&mut row, &stats(6, 0, 0, 10, 4), 10, &counts(3, 0), false).is_empty());
        let problems = check(&mut row, &stats(6, 1, 0, 10, 3), 10, &counts(3, 0), false);
        assert_eq!(row.lost, 1);
        assert!(problems.iter().any(|p| p.contains("WORK")), "{problems:?}");
    }
}
