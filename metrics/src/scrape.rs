//! The store-wide figures of one scrape: a snapshot of the store's statistics, encoded.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use taskmill_core::{Counters, Queue, QueueSizes, Stats, Timestamp, TopicStats};

/// A transition counter: its name (after `taskmill_tasks_`, before `_total`), help text
/// and field.
type CounterField = (&'static str, &'static str, fn(&Counters) -> u64);

/// Every transition counter.
const COUNTERS: [CounterField; 9] = [
    (
        "enqueued",
        "Tasks of a topic enqueued (duplicates of a unique task excluded), store-wide.",
        |c| c.enqueued,
    ),
    (
        "started",
        "Runs of a topic started (claims), store-wide.",
        |c| c.started,
    ),
    (
        "completed",
        "Runs of a topic that succeeded, store-wide.",
        |c| c.completed,
    ),
    (
        "retried",
        "Runs of a topic that failed with retries left, store-wide.",
        |c| c.retried,
    ),
    (
        "failed",
        "Tasks of a topic that failed for good and went to the dead queue, store-wide.",
        |c| c.failed,
    ),
    (
        "cancelled",
        "Tasks of a topic cancelled, waiting or running, store-wide.",
        |c| c.cancelled,
    ),
    (
        "recovered",
        "Runs of a topic whose lease expired and that the reaper took back, store-wide.",
        |c| c.recovered,
    ),
    (
        "released",
        "Runs of a topic given back unrun at a shutdown, store-wide.",
        |c| c.released,
    ),
    (
        "requeued",
        "Dead tasks of a topic sent back to run again, store-wide.",
        |c| c.requeued,
    ),
];

/// The tasks in each state, named as [`TaskStatus::as_str`](taskmill_core::TaskStatus::as_str)
/// names them: INPUT split by time, then the other queues.
fn states(sizes: &QueueSizes) -> [(&'static str, u64); 7] {
    [
        ("pending", sizes.pending()),
        ("scheduled", sizes.scheduled),
        ("retrying", sizes.retrying),
        ("running", sizes.work),
        ("dead", sizes.dead),
        ("completed", sizes.completed),
        ("cancelled", sizes.cancelled),
    ]
}

/// One scrape's store-wide figures.
#[derive(Debug)]
pub(crate) struct StoreFigures {
    stats: Stats,
    now: Timestamp,
}

impl StoreFigures {
    /// The figures of `stats`, with the queue latency judged at `now`.
    pub(crate) fn new(stats: Stats, now: Timestamp) -> Self {
        StoreFigures { stats, now }
    }

    fn topics(&self) -> impl Iterator<Item = (&str, &TopicStats)> {
        self.stats.topics.iter().map(|(name, t)| (name.as_str(), t))
    }
}

impl Collector for StoreFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in COUNTERS {
            let name = format!("taskmill_tasks_{name}");
            let mut family = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for (topic, t) in self.topics() {
                family
                    .encode_family(&[("topic", topic)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, u64>(
                    &value(&t.counters),
                    None,
                )?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "taskmill_queue_size",
            "Tasks of a topic in each queue (input: waiting, due or scheduled; work: \
             running; dead; completed and cancelled: kept as history), store-wide.",
            None,
            MetricType::Gauge,
        )?;
        for (topic, t) in self.topics() {
            for queue in Queue::ALL {
                let labels = [("topic", topic), ("queue", queue.as_str())];
                family
                    .encode_family(&labels)?
                    .encode_gauge(&t.sizes.of(queue))?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "taskmill_tasks_in_state",
            "Tasks of a topic in each state, store-wide: INPUT split by time (pending: due; \
             scheduled: not yet due, never run; retrying: not yet due, run before), then \
             running, dead, completed and cancelled (kept as history). They add up to the \
             queue sizes.",
            None,
            MetricType::Gauge,
        )?;
        for (topic, t) in self.topics() {
            for (state, n) in states(&t.sizes) {
                family
                    .encode_family(&[("topic", topic), ("state", state)])?
                    .encode_gauge(&n)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "taskmill_queue_latency",
            "How long the oldest due task of a topic has waited since it became due (0 when \
             none is due), at scrape time, store-wide.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (topic, t) in self.topics() {
            family
                .encode_family(&[("topic", topic)])?
                .encode_gauge(&t.latency(self.now).as_secs_f64())?;
        }

        let mut family = encoder.encode_descriptor(
            "taskmill_topic_paused",
            "1 while claiming from a topic is paused, store-wide; else 0.",
            None,
            MetricType::Gauge,
        )?;
        for (topic, t) in self.topics() {
            family
                .encode_family(&[("topic", topic)])?
                .encode_gauge(&u64::from(t.paused))?;
        }
        Ok(())
    }
}
