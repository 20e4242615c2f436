//! The options of the [`Store`](super::Store) methods: everything a call needs besides
//! what it acts on.
//!
//! Each struct is `#[non_exhaustive]`: `new` takes what has no sensible default, setters
//! the rest, so a new parameter is a new field here and not a new signature in every
//! backend. They hold no more than a few words (the claim's topic list aside), are built
//! on the stack and passed by reference.

use crate::task::{Queue, TaskId};
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// The retry limit of a task that sets none, unless the manager says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 25;

/// Options for [`Store::enqueue`](super::Store::enqueue).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// The time of the enqueue: `enqueued_at`, and the base of a task's `delay`.
    pub now: Timestamp,
    /// The retry limit of tasks that set none; [`DEFAULT_MAX_RETRIES`] unless set.
    pub default_max_retries: u32,
}

impl EnqueueOptions {
    /// Options for an enqueue at `now`.
    pub fn new(now: Timestamp) -> Self {
        EnqueueOptions {
            now,
            default_max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// Sets the retry limit of tasks that set none.
    pub fn default_max_retries(mut self, retries: u32) -> Self {
        self.default_max_retries = retries;
        self
    }
}

/// A topic to claim from, with its limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicClaim {
    /// The topic.
    pub topic: Arc<str>,
    /// At most this many tasks of the topic in WORK at once, across every manager sharing
    /// the store; `None` (the default) for no limit.
    pub max_running: Option<u32>,
}

impl TopicClaim {
    /// A topic to claim from, without a limit.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        TopicClaim {
            topic: topic.into(),
            max_running: None,
        }
    }

    /// Limits how many tasks of the topic may be in WORK at once, store-wide.
    pub fn max_running(mut self, max: u32) -> Self {
        self.max_running = Some(max);
        self
    }
}

/// Options for [`Store::claim`](super::Store::claim).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimOptions {
    /// The topics to claim from, in the order to try them.
    pub topics: Vec<TopicClaim>,
    /// At most this many tasks in total.
    pub limit: usize,
    /// Who claims: written into each lease.
    pub owner: Arc<str>,
    /// The current time: what is due, and the base of the lease deadline.
    pub now: Timestamp,
    /// How long the lease lasts unless renewed; 30 s unless set.
    pub lease: Duration,
}

impl ClaimOptions {
    /// A claim of up to `limit` tasks from `topics` by `owner` at `now`, with a 30 s lease.
    pub fn new(
        topics: impl IntoIterator<Item = TopicClaim>,
        limit: usize,
        owner: impl Into<Arc<str>>,
        now: Timestamp,
    ) -> Self {
        ClaimOptions {
            topics: topics.into_iter().collect(),
            limit,
            owner: owner.into(),
            now,
            lease: Duration::from_secs(30),
        }
    }

    /// Sets the lease duration.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The deadline of leases taken by this claim.
    pub fn deadline(&self) -> Timestamp {
        self.now + self.lease
    }
}

/// Options for [`Store::renew`](super::Store::renew).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RenewOptions {
    /// The new deadline of the leases.
    pub deadline: Timestamp,
}

impl RenewOptions {
    /// A renewal of leases until `deadline`.
    pub fn new(deadline: Timestamp) -> Self {
        RenewOptions { deadline }
    }
}

/// Options for [`Store::apply`](super::Store::apply).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// The current time: `failed_at` of dead tasks, the due time of released ones.
    pub now: Timestamp,
}

impl ApplyOptions {
    /// Outcomes applied at `now`.
    pub fn new(now: Timestamp) -> Self {
        ApplyOptions { now }
    }
}

/// Options for [`Store::recover`](super::Store::recover).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RecoverOptions {
    /// The current time: leases whose deadline is before it have expired.
    pub now: Timestamp,
    /// At most this many tasks; 1000 unless set.
    pub limit: usize,
}

impl RecoverOptions {
    /// A recovery at `now` of up to 1000 tasks.
    pub fn new(now: Timestamp) -> Self {
        RecoverOptions { now, limit: 1000 }
    }

    /// At most `limit` tasks.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Options for [`Store::list`](super::Store::list).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListOptions {
    /// The queue to list.
    pub queue: Queue,
    /// Only this topic; `None` (the default) for all.
    pub topic: Option<Arc<str>>,
    /// Start after this id (the `next` of the previous page); `None` (the default) for the
    /// first page.
    pub after: Option<TaskId>,
    /// At most this many tasks; 100 unless set.
    pub limit: usize,
}

impl ListOptions {
    /// The first page of up to 100 tasks of `queue`.
    pub fn new(queue: Queue) -> Self {
        ListOptions {
            queue,
            topic: None,
            after: None,
            limit: 100,
        }
    }

    /// Only tasks of `topic`.
    pub fn topic(mut self, topic: impl Into<Arc<str>>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Tasks after `id`.
    pub fn after(mut self, id: TaskId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit` tasks.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Options for [`Store::requeue`](super::Store::requeue).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequeueOptions {
    /// The current time: requeued tasks are due at it.
    pub now: Timestamp,
}

impl RequeueOptions {
    /// A requeue at `now`.
    pub fn new(now: Timestamp) -> Self {
        RequeueOptions { now }
    }
}
