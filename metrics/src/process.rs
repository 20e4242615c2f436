//! This process's figures: the run observer that times every run, and their encoding.
//!
//! # What a run costs
//!
//! Runs of every topic go through one [`Metrics`] on every worker thread at once, so the
//! hot path avoids what makes cores wait on each other: it takes no lock, touches no
//! reference count, allocates nothing and writes no cache line another thread writes.
//! Per run it finds its topic's figures with plain loads (an insert-only table,
//! [`Topics`]), reads no clock (the worker measures every run anyway and hands the
//! duration to its observers), and makes three atomic additions into its thread's own
//! stripe of the topic's counters: the run entering, its bucket and its duration sum. A
//! scrape sums the stripes. The runs in progress are not a counter moved up and down but
//! what entered minus what ended. (`prometheus-client`'s own histogram takes one mutex per
//! observation, shared by every thread.) It is a [`RunObserver`], not a middleware, for the
//! same reason: a middleware costs a boxed future per run and a clock reading of its own. A topic's figures are made once, on its first run in this
//! process.

use crate::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use taskmill_core::{RunEnd, RunObserver, TaskRecord};

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
    /// Stripes per topic minus one (their count is a power of two).
    stripe_mask: usize,
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

/// A cache line's worth of counters: each thread adds into lines of its own (a stripe),
/// so two cores never fight over one line on the hot path.
#[repr(align(64))]
struct Line([AtomicU64; 8]);

/// Where a topic's counters sit within each stripe.
mod cell {
    /// Runs that started.
    pub const ENTERED: usize = 0;
    /// Runs that left it without returning (dropped or unwinding).
    pub const ABANDONED: usize = 1;
    /// The sum of durations in nanoseconds, at `SUM + outcome` (it wraps after 584 years of
    /// run time added up, which Prometheus would read as a counter reset).
    pub const SUM: usize = 2;
    /// The first bucket count, not cumulative, at `BUCKETS + outcome × buckets + bucket`;
    /// the last bucket of each outcome is `+Inf`.
    pub const BUCKETS: usize = 4;
}

/// Outcomes as the chain returned them, with their label values by index.
const OUTCOMES: [&str; 2] = ["ok", "err"];
const OK: usize = 0;
const ERR: usize = 1;

/// The run figures of one topic: per stripe, the counters of [`cell`].
struct TopicRuns {
    name: Box<str>,
    lines: Box<[Line]>,
    /// Lines per stripe.
    stride: usize,
    /// Buckets per outcome, `+Inf` included.
    buckets: usize,
}

impl TopicRuns {
    fn new(name: &str, bounds: usize, stripes: usize) -> Self {
        let buckets = bounds + 1;
        let stride = (cell::BUCKETS + OUTCOMES.len() * buckets).div_ceil(8);
        TopicRuns {
            name: name.into(),
            lines: (0..stripes * stride)
                .map(|_| Line(Default::default()))
                .collect(),
            stride,
            buckets,
        }
    }

    fn cell(&self, stripe: usize, index: usize) -> &AtomicU64 {
        &self.lines[stripe * self.stride + index / 8].0[index % 8]
    }

    /// A counter summed over the stripes.
    fn total(&self, index: usize) -> u64 {
        (0..self.lines.len() / self.stride)
            .map(|stripe| self.cell(stripe, index).load(Ordering::Acquire))
            .fold(0, u64::wrapping_add)
    }

    fn enter(&self, stripe: usize) {
        self.cell(stripe, cell::ENTERED)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a run of `nanos` that ended with `outcome` in `bucket`. Release, so a scrape
    /// that sees the run ended also sees it entered (wherever it entered: a run may move
    /// between threads, and so between stripes, while it awaits).
    fn observe(&self, stripe: usize, outcome: usize, bucket: usize, nanos: u64) {
        self.cell(stripe, cell::BUCKETS + outcome * self.buckets + bucket)
            .fetch_add(1, Ordering::Release);
        self.cell(stripe, cell::SUM + outcome)
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// Each bucket's count of `outcome`, not cumulative.
    fn bucket_counts(&self, outcome: usize) -> impl Iterator<Item = u64> + '_ {
        (0..self.buckets).map(move |b| self.total(cell::BUCKETS + outcome * self.buckets + b))
    }

    /// Runs that ended with `outcome`.
    fn count(&self, outcome: usize) -> u64 {
        self.bucket_counts(outcome).sum()
    }

    /// Runs going on now: what entered minus what left. What left is read
    /// first, so everything counted there has been counted entering too.
    fn in_progress(&self) -> u64 {
        let left = self.count(OK) + self.count(ERR) + self.total(cell::ABANDONED);
        self.total(cell::ENTERED).saturating_sub(left)
    }
}

/// The stripe of the current thread: threads take consecutive numbers on first use, so
/// a runtime's worker threads get stripes of their own (up to the stripe count).
fn stripe_of_thread(mask: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|n| *n) & mask
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
        // A stripe per core, as many threads as run tasks at once at most, up to 16.
        let stripes = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16)
            .next_power_of_two();
        ProcessMetrics {
            bounds: bounds.into(),
            bounds_nanos,
            stripe_mask: stripes - 1,
            topics: Topics::new(),
        }
    }

    fn topic(&self, topic: &str) -> Found<'_> {
        let stripes = self.stripe_mask + 1;
        self.topics
            .get_or_insert(topic, || TopicRuns::new(topic, self.bounds.len(), stripes))
    }

    /// The bucket a run of `nanos` falls in: the first whose bound holds it.
    fn bucket(&self, nanos: u64) -> usize {
        self.bounds_nanos.partition_point(|&bound| bound < nanos)
    }
}

/// Times every run and counts the runs in progress, per topic.
///
/// The duration observed is the worker's own, from the run's start to the end of its
/// middleware chain and processor, with the outcome: `ok` when it completed, `err` when it
/// failed (an error, a panic, its topic's timeout). A run stopped before it returned (a
/// cancel, the manager's shutdown) leaves the runs in progress without a duration: the
/// store's `released` and `cancelled` counters count it.
impl RunObserver for Metrics {
    fn started(&self, record: &TaskRecord) {
        let process = &*self.process;
        process
            .topic(&record.topic)
            .enter(stripe_of_thread(process.stripe_mask));
    }

    fn ended(&self, record: &TaskRecord, end: RunEnd, elapsed: Duration) {
        let process = &*self.process;
        let runs = process.topic(&record.topic);
        let stripe = stripe_of_thread(process.stripe_mask);
        let index = match end {
            RunEnd::Completed => OK,
            RunEnd::Failed => ERR,
            _ => {
                runs.cell(stripe, cell::ABANDONED)
                    .fetch_add(1, Ordering::Release);
                return;
            }
        };
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        runs.observe(stripe, index, process.bucket(nanos), nanos);
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
            "How long runs of a topic took in this process, by outcome: ok (completed) or \
             err (an error, a panic, the topic's timeout).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(self.bounds.len() + 1);
        for runs in &topics {
            for (index, outcome) in OUTCOMES.into_iter().enumerate() {
                buckets.clear();
                let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
                buckets.extend(bounds.zip(runs.bucket_counts(index)));
                let count = buckets.iter().map(|(_, n)| n).sum();
                let sum = runs.total(cell::SUM + index) as f64 / 1e9;
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
        let last = process.stripe_mask;
        for (i, nanos) in [
            0,
            1_000_000,
            1_000_001,
            10_000_000,
            2_000_000_000,
            u64::MAX / 2,
        ]
        .into_iter()
        .enumerate()
        {
            // Spread over the stripes: a scrape sums them.
            runs.observe(i & last, OK, process.bucket(nanos), nanos);
        }
        let counts: Vec<u64> = runs.bucket_counts(OK).collect();
        // le=0.001 holds 0 and exactly 1 ms; le=0.01 up to exactly 10 ms; then +Inf.
        assert_eq!(counts, [2, 2, 0, 2]);
        assert_eq!((runs.count(OK), runs.count(ERR)), (6, 0));
        runs.observe(last, ERR, process.bucket(5), 5);
        assert_eq!(runs.bucket_counts(ERR).collect::<Vec<_>>(), [1, 0, 0, 0]);
        assert_eq!(runs.total(cell::SUM + ERR), 5);
    }

    #[test]
    fn runs_in_progress_are_those_entered_and_not_yet_left() {
        let process = ProcessMetrics::new(vec![1.0]);
        let runs = process.topic("t");
        let last = process.stripe_mask;
        for stripe in [0, last, last, 0] {
            runs.enter(stripe);
        }
        assert_eq!(runs.in_progress(), 4);
        // Runs may end on another thread's stripe than they entered on.
        runs.observe(0, OK, 0, 1);
        runs.observe(last, ERR, 0, 1);
        runs.cell(0, cell::ABANDONED)
            .fetch_add(1, Ordering::Relaxed);
        assert_eq!(runs.in_progress(), 1);
    }

    #[test]
    fn topics_are_found_again_past_the_table_and_listed_by_name() {
        let process = ProcessMetrics::new(vec![1.0]);
        let names: Vec<String> = (0..SLOTS + 10).map(|i| format!("topic-{i:04}")).collect();
        for name in &names {
            process.topic(name).enter(0);
        }
        // Every topic past half the table went to the overflow map, and is found there.
        let overflow = process.topics.inserting.lock().unwrap().topics.len();
        assert_eq!(overflow, names.len() - SLOTS / 2);
        for name in &names {
            let runs = process.topic(name);
            assert_eq!(&*runs.name, name.as_str());
            assert_eq!(runs.total(cell::ENTERED), 1, "{name}: one entry");
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
