//! This process's figures: the middleware that times every run, and their encoding.
//!
//! # What a run costs
//!
//! Runs of every topic go through one [`Metrics`] on every worker at once, so the hot path
//! avoids what makes cores wait on each other: it takes no lock, touches no reference
//! count and allocates nothing. Per run it finds its topic's figures with plain loads (an
//! insert-only table, [`Topics`]), reads the monotonic clock twice, and makes three atomic
//! additions: the run entering, its bucket and its duration sum. The runs in progress are
//! not a counter moved up and down but what entered minus what ended, read at scrape
//! time. (`prometheus-client`'s own histogram takes a mutex per observation, which costs
//! a few percent of a no-op run when a hundred workers share two cores.) A topic's figures
//! are made once, on its first run in this process.

use crate::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use taskmill_core::{async_trait, Middleware, Next, TaskContext, TaskError};

/// Slots of the lock-free table; a power of two. Half of them are filled at most, so a
/// probe for a topic that is not there soon meets an empty slot; topics past that (more
/// than 128 in one process) live in the locked overflow map.
const SLOTS: usize = 256;

/// The run figures of every topic this process has run.
pub(crate) struct ProcessMetrics {
    /// Bucket upper bounds in seconds, as labelled.
    bounds: Box<[f64]>,
    /// The same in nanoseconds, as compared.
    bounds_nanos: Box<[u64]>,
    topics: Topics,
}

/// An insert-only hash table of topics: each slot is set once, under `inserting`, and
/// never changes or moves after, so readers need no lock and can borrow what they find
/// for as long as they borrow the table.
struct Topics {
    slots: Box<[OnceLock<Box<TopicRuns>>]>,
    inserting: Mutex<Overflow>,
}

/// What inserts keep under their lock.
#[derive(Default)]
struct Overflow {
    /// Slots of [`Topics::slots`] filled.
    filled: usize,
    /// Topics that found the table full.
    topics: FxHashMap<Box<str>, Arc<TopicRuns>>,
}

/// The run figures of one topic.
struct TopicRuns {
    name: Box<str>,
    /// Runs whose chain returned `Ok`.
    ok: Durations,
    /// Runs whose chain returned `Err`.
    err: Durations,
    /// Runs that entered the middleware.
    entered: AtomicU64,
    /// Runs that left it without returning (dropped or unwinding).
    abandoned: AtomicU64,
}

/// A histogram of durations: a count per bucket (not cumulative; the last is `+Inf`) and
/// the sum in nanoseconds (which wraps after 584 years of run time added up, and would
/// read as a counter reset).
struct Durations {
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Durations {
    fn new(bounds: usize) -> Self {
        Durations {
            buckets: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Adds a run of `nanos`. Release, so a scrape that sees the run here also sees it
    /// [entered](TopicRuns::entered).
    fn observe(&self, bounds_nanos: &[u64], nanos: u64) {
        let bucket = bounds_nanos.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Release);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Runs observed.
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Acquire)).sum()
    }
}

impl TopicRuns {
    fn new(name: &str, bounds: usize) -> Self {
        TopicRuns {
            name: name.into(),
            ok: Durations::new(bounds),
            err: Durations::new(bounds),
            entered: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }

    /// Runs inside the middleware now: what entered minus what left. What left is read
    /// first, so everything counted there has been counted entering too.
    fn in_progress(&self) -> u64 {
        let left = self.ok.count() + self.err.count() + self.abandoned.load(Ordering::Acquire);
        self.entered.load(Ordering::Acquire).saturating_sub(left)
    }
}

/// A topic's figures as found: in the table, borrowed, or in the overflow map, shared.
enum Found<'a> {
    Slot(&'a TopicRuns),
    Overflow(Arc<TopicRuns>),
}

impl Deref for Found<'_> {
    type Target = TopicRuns;
    fn deref(&self) -> &TopicRuns {
        match self {
            Found::Slot(runs) => runs,
            Found::Overflow(runs) => runs,
        }
    }
}

impl Topics {
    fn new() -> Self {
        Topics {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            inserting: Mutex::new(Overflow::default()),
        }
    }

    /// The slots a probe for `topic` visits, in order.
    fn probe(&self, topic: &str) -> impl Iterator<Item = &OnceLock<Box<TopicRuns>>> {
        let start = FxBuildHasher.hash_one(topic) as usize;
        (0..SLOTS).map(move |i| &self.slots[start.wrapping_add(i) & (SLOTS - 1)])
    }

    /// The figures of `topic`, made with `make` if it has none yet.
    fn get_or_insert(&self, topic: &str, make: impl Fn() -> TopicRuns) -> Found<'_> {
        for slot in self.probe(topic) {
            match slot.get() {
                Some(runs) if *runs.name == *topic => return Found::Slot(runs),
                Some(_) => {}
                // Not in the table, or being inserted right now: settle it under the lock.
                None => break,
            }
        }
        // A panic under this lock cannot leave its state half-changed (each change is one
        // insert), so a poisoned lock is used as it is.
        let mut overflow = self.inserting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runs) = overflow.topics.get(topic) {
            return Found::Overflow(runs.clone());
        }
        for slot in self.probe(topic) {
            match slot.get() {
                Some(runs) if *runs.name == *topic => return Found::Slot(runs),
                Some(_) => {}
                None if overflow.filled < SLOTS / 2 => {
                    overflow.filled += 1;
                    return Found::Slot(slot.get_or_init(|| Box::new(make())));
                }
                None => break,
            }
        }
        let runs = overflow
            .topics
            .entry(topic.into())
            .or_insert_with(|| Arc::new(make()))
            .clone();
        Found::Overflow(runs)
    }

    /// Every topic's figures, by name.
    fn sorted(&self) -> Vec<Found<'_>> {
        let overflow = self.inserting.lock().unwrap_or_else(|e| e.into_inner());
        let mut topics: Vec<Found<'_>> = self
            .slots
            .iter()
            .filter_map(|slot| slot.get().map(|runs| Found::Slot(runs)))
            .chain(overflow.topics.values().cloned().map(Found::Overflow))
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }
}

impl ProcessMetrics {
    pub(crate) fn new(bounds: Vec<f64>) -> Self {
        let bounds_nanos = bounds
            .iter()
            .map(|&seconds| (seconds * 1e9).round().clamp(0.0, u64::MAX as f64) as u64)
            .collect();
        ProcessMetrics {
            bounds: bounds.into(),
            bounds_nanos,
            topics: Topics::new(),
        }
    }

    fn topic(&self, topic: &str) -> Found<'_> {
        self.topics
            .get_or_insert(topic, || TopicRuns::new(topic, self.bounds.len()))
    }
}

/// Counts a run that leaves without returning (its future dropped by a timeout or a
/// cancel, or unwinding from a panic) as abandoned, so it does not stay in progress.
struct Abandoned<'a>(Option<&'a AtomicU64>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0 {
            abandoned.fetch_add(1, Ordering::Release);
        }
    }
}

/// Times every run and counts the runs in progress, per topic.
///
/// The duration observed is that of the rest of the chain (the middleware inside this one
/// and the processor), with the outcome the chain returned: `ok` or `err`. Runs that end
/// without returning (cut off by their topic's timeout, dropped by a cancel, or
/// panicking) are not observed: the store's `retried`, `failed` and `cancelled` counters
/// count them. The enqueue side passes straight on.
#[async_trait]
impl Middleware for Metrics {
    async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
        let process = &*self.process;
        let runs = process.topic(ctx.topic());
        runs.entered.fetch_add(1, Ordering::Relaxed);
        let mut abandoned = Abandoned(Some(&runs.abandoned));
        let started = Instant::now();
        let outcome = next.run(ctx).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        abandoned.0 = None;
        let durations = if outcome.is_ok() { &runs.ok } else { &runs.err };
        durations.observe(&process.bounds_nanos, nanos);
        outcome
    }
}

impl std::fmt::Debug for ProcessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessMetrics")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let topics = self.topics.sorted();
        let mut family = encoder.encode_descriptor(
            "taskmill_run_duration",
            "How long runs of a topic took in this process, by the outcome the middleware \
             chain returned (ok or err).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(self.bounds.len() + 1);
        for runs in &topics {
            for (outcome, durations) in [("ok", &runs.ok), ("err", &runs.err)] {
                buckets.clear();
                let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
                buckets.extend(
                    bounds
                        .zip(durations.buckets.iter())
                        .map(|(bound, count)| (bound, count.load(Ordering::Acquire))),
                );
                let count = buckets.iter().map(|(_, n)| n).sum();
                let sum = durations.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                let labels = [("topic", &*runs.name), ("outcome", outcome)];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "taskmill_runs_in_progress",
            "Runs of a topic in progress in this process.",
            None,
            MetricType::Gauge,
        )?;
        for runs in &topics {
            family
                .encode_family(&[("topic", &*runs.name)])?
                .encode_gauge(&runs.in_progress())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let process = ProcessMetrics::new(vec![0.001, 0.01, 1.0]);
        let runs = process.topic("t");
        for nanos in [
            0,
            1_000_000,
            1_000_001,
            10_000_000,
            2_000_000_000,
            u64::MAX / 2,
        ] {
            runs.ok.observe(&process.bounds_nanos, nanos);
        }
        let counts: Vec<u64> = runs
            .ok
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        // le=0.001 holds 0 and exactly 1 ms; le=0.01 up to exactly 10 ms; then +Inf.
        assert_eq!(counts, [2, 2, 0, 2]);
        assert_eq!(runs.ok.count(), 6);
        assert_eq!(runs.err.count(), 0);
    }

    #[test]
    fn topics_are_found_again_past_the_table_and_listed_by_name() {
        let process = ProcessMetrics::new(vec![1.0]);
        let names: Vec<String> = (0..SLOTS + 10).map(|i| format!("topic-{i:04}")).collect();
        for name in &names {
            process.topic(name).entered.fetch_add(1, Ordering::Relaxed);
        }
        // Every topic past half the table went to the overflow map, and is found there.
        let overflow = process.topics.inserting.lock().unwrap().topics.len();
        assert_eq!(overflow, names.len() - SLOTS / 2);
        for name in &names {
            let runs = process.topic(name);
            assert_eq!(&*runs.name, name.as_str());
            assert_eq!(runs.entered.load(Ordering::Relaxed), 1, "{name}: one entry");
            assert_eq!(runs.in_progress(), 1);
        }
        let listed: Vec<String> = process
            .topics
            .sorted()
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(listed, names, "each topic once, sorted");
    }
}
