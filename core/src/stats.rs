//! Counters and queue sizes, in total and per topic.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::AddAssign;
use std::time::Duration;

/// How many transitions of each kind a store has performed.
///
/// Each counter moves in the same atomic step as the transition it counts, so after the
/// store drains, `started == completed + retried + failed + recovered + released +
/// cancelled`, minus the tasks counted twice: recovered tasks that went to DEAD (in
/// `recovered` and `failed`) or to CANCELLED (in `recovered` and `cancelled`), and tasks
/// cancelled before they ever started (in `cancelled` only).
///
/// Non-exhaustive, like every type here: start from `Counters::default()` and set fields,
/// so that a new counter is added in this file alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Tasks added to INPUT by enqueue (duplicates excluded).
    pub enqueued: u64,
    /// Claims: INPUT → WORK.
    pub started: u64,
    /// Failures with retries left: WORK → INPUT at a later time.
    pub retried: u64,
    /// Tasks that failed for good: → DEAD.
    pub failed: u64,
    /// Successful runs: WORK → removed.
    pub completed: u64,
    /// Expired leases returned by the reaper: WORK → INPUT (or DEAD, with no retries left).
    pub recovered: u64,
    /// Runs given back without using an attempt (shutdown): WORK → INPUT.
    pub released: u64,
    /// Dead tasks sent back to INPUT by a human: DEAD → INPUT.
    pub requeued: u64,
    /// Cancelled tasks: INPUT → CANCELLED at once, or WORK → CANCELLED when a run with a
    /// cancel request ends or is recovered.
    #[serde(default)]
    pub cancelled: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.enqueued += o.enqueued;
        self.started += o.started;
        self.retried += o.retried;
        self.failed += o.failed;
        self.completed += o.completed;
        self.recovered += o.recovered;
        self.released += o.released;
        self.requeued += o.requeued;
        self.cancelled += o.cancelled;
    }
}

/// How many tasks each queue holds. Start from `QueueSizes::default()` and set fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueSizes {
    /// Tasks in INPUT: pending (due), scheduled and retrying.
    pub input: u64,
    /// Of `input`, the tasks not yet due at the stats' `now` that wait for their first run
    /// (`attempt == 0`): [`TaskStatus::Scheduled`](crate::TaskStatus::Scheduled).
    #[serde(default)]
    pub scheduled: u64,
    /// Of `input`, the tasks not yet due at the stats' `now` that ran before
    /// (`attempt > 0`: a retry after a failure, or a run recovered or released):
    /// [`TaskStatus::Retrying`](crate::TaskStatus::Retrying).
    #[serde(default)]
    pub retrying: u64,
    /// Tasks in WORK.
    pub work: u64,
    /// Tasks in DEAD.
    pub dead: u64,
    /// Completed tasks kept as history.
    #[serde(default)]
    pub completed: u64,
    /// Cancelled tasks kept as history.
    #[serde(default)]
    pub cancelled: u64,
}

impl QueueSizes {
    /// Every record in the store, history included.
    pub fn total(&self) -> u64 {
        self.active() + self.completed + self.cancelled
    }

    /// Tasks not finished: waiting, running or dead. Zero once a store has drained,
    /// whatever history it keeps.
    pub fn active(&self) -> u64 {
        self.input + self.work + self.dead
    }

    /// Of `input`, the tasks due at the stats' `now`, ready to be claimed (in a paused
    /// topic too): [`TaskStatus::Pending`](crate::TaskStatus::Pending).
    pub fn pending(&self) -> u64 {
        self.input
            .saturating_sub(self.scheduled)
            .saturating_sub(self.retrying)
    }

    /// How many tasks `queue` holds.
    pub fn of(&self, queue: crate::task::Queue) -> u64 {
        use crate::task::Queue;
        match queue {
            Queue::Input => self.input,
            Queue::Work => self.work,
            Queue::Dead => self.dead,
            Queue::Completed => self.completed,
            Queue::Cancelled => self.cancelled,
        }
    }

    /// The count of `queue`, to change it.
    pub fn of_mut(&mut self, queue: crate::task::Queue) -> &mut u64 {
        use crate::task::Queue;
        match queue {
            Queue::Input => &mut self.input,
            Queue::Work => &mut self.work,
            Queue::Dead => &mut self.dead,
            Queue::Completed => &mut self.completed,
            Queue::Cancelled => &mut self.cancelled,
        }
    }
}

impl AddAssign for QueueSizes {
    fn add_assign(&mut self, o: QueueSizes) {
        self.input += o.input;
        self.scheduled += o.scheduled;
        self.retrying += o.retrying;
        self.work += o.work;
        self.dead += o.dead;
        self.completed += o.completed;
        self.cancelled += o.cancelled;
    }
}

/// Counters and sizes of one topic, or of all of them. Start from
/// `TopicStats::default()` and set fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicStats {
    /// Transition counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Queue sizes.
    #[serde(flatten)]
    pub sizes: QueueSizes,
    /// Whether the topic is paused.
    #[serde(default)]
    pub paused: bool,
    /// The earliest `run_at` among the tasks in INPUT, if any: when the oldest due task
    /// became due, if it is not after now. Stores read it from an index, so asking costs
    /// the same with a thousand tasks waiting as with a million.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_run_at: Option<Timestamp>,
}

impl TopicStats {
    /// The queue latency at `now`: how long the oldest due task has waited since it became
    /// due (zero when no task is due). Sidekiq and asynq put this figure on their front
    /// page: it grows when workers fall behind, whatever the queue's length.
    pub fn latency(&self, now: Timestamp) -> Duration {
        self.earliest_run_at
            .map_or(Duration::ZERO, |at| now.saturating_since(at))
    }
}

/// A snapshot of a store's statistics: totals, and each topic that has any. A store builds
/// one with [`Stats::from_topics`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Summed over all topics (`paused` is false here; `earliest_run_at` is the earliest
    /// of any topic).
    #[serde(flatten)]
    pub total: TopicStats,
    /// Per topic.
    pub topics: BTreeMap<String, TopicStats>,
}

impl Stats {
    /// Builds a snapshot from per-topic figures, computing the totals.
    pub fn from_topics(topics: BTreeMap<String, TopicStats>) -> Self {
        let mut total = TopicStats::default();
        for t in topics.values() {
            total.counters += t.counters;
            total.sizes += t.sizes;
            total.earliest_run_at = match (total.earliest_run_at, t.earliest_run_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Stats { total, topics }
    }

    /// The figures of one topic (zeros when the store has never seen it).
    pub fn topic(&self, topic: &str) -> TopicStats {
        self.topics.get(topic).copied().unwrap_or_default()
    }
}
