//! This process's figures: the middleware that times every run, and their encoding.
//!
//! A run costs one read-locked map lookup by its topic's name (no allocation: the map is
//! keyed by `Arc<str>` and looked up by `&str`), an atomic increment and decrement of the
//! topic's in-progress count, two reads of the monotonic clock and one histogram
//! observation (a short mutex hold inside `prometheus-client`). A topic's entry, with its
//! label values, is made once, on its first run in this process.

use crate::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use taskmill_core::{async_trait, Middleware, Next, TaskContext, TaskError};

/// The run figures of every topic this process has run.
pub(crate) struct ProcessMetrics {
    buckets: Vec<f64>,
    topics: RwLock<FxHashMap<Arc<str>, Arc<TopicRuns>>>,
}

/// The run figures of one topic.
struct TopicRuns {
    /// Runs whose chain returned `Ok`.
    ok: Histogram,
    /// Runs whose chain returned `Err`.
    err: Histogram,
    /// Runs of the topic inside the middleware now.
    in_progress: AtomicI64,
}

impl ProcessMetrics {
    pub(crate) fn new(buckets: Vec<f64>) -> Self {
        ProcessMetrics {
            buckets,
            topics: RwLock::new(FxHashMap::default()),
        }
    }

    /// The figures of `topic`, made on its first run.
    fn topic(&self, topic: &str) -> Arc<TopicRuns> {
        // A panic while a lock is held cannot leave a map half-changed (inserting is the
        // only change), so a poisoned lock is used as it is.
        if let Some(runs) = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return runs.clone();
        }
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(Arc::from(topic))
            .or_insert_with(|| {
                Arc::new(TopicRuns {
                    ok: Histogram::new(self.buckets.iter().copied()),
                    err: Histogram::new(self.buckets.iter().copied()),
                    in_progress: AtomicI64::new(0),
                })
            })
            .clone()
    }

    /// Every topic's figures, by name.
    fn sorted(&self) -> Vec<(Arc<str>, Arc<TopicRuns>)> {
        let mut topics: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, runs)| (name.clone(), runs.clone()))
            .collect();
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        topics
    }
}

/// Counts a run in progress until dropped, so a run that ends without returning (its
/// future dropped by a timeout or a cancel, or unwinding from a panic) is not left counted.
struct InProgress<'a>(&'a AtomicI64);

impl<'a> InProgress<'a> {
    fn enter(count: &'a AtomicI64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InProgress(count)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
        let runs = self.process.topic(ctx.topic());
        let _in_progress = InProgress::enter(&runs.in_progress);
        let started = Instant::now();
        let outcome = next.run(ctx).await;
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => runs.ok.observe(seconds),
            Err(_) => runs.err.observe(seconds),
        }
        outcome
    }
}

impl std::fmt::Debug for ProcessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessMetrics")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let topics = self.sorted();
        let mut family = encoder.encode_descriptor(
            "taskmill_run_duration",
            "How long runs of a topic took in this process, by the outcome the middleware \
             chain returned (ok or err).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (topic, runs) in &topics {
            for (outcome, histogram) in [("ok", &runs.ok), ("err", &runs.err)] {
                let labels = [("topic", &**topic), ("outcome", outcome)];
                histogram.encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "taskmill_runs_in_progress",
            "Runs of a topic in progress in this process.",
            None,
            MetricType::Gauge,
        )?;
        for (topic, runs) in &topics {
            let labels = [("topic", &**topic)];
            family
                .encode_family(&labels)?
                .encode_gauge(&runs.in_progress.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}
