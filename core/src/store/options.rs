//! The options of the [`Store`](super::Store) methods: everything a call needs besides
//! what it acts on.
//!
//! Each struct is `#[non_exhaustive]`: `new` takes what has no sensible default, setters
//! the rest, so a new parameter is a new field here and not a new signature in every
//! backend. They hold no more than a few words (the claim's topic list aside), are built
//! on the stack and passed by reference.

use crate::task::{Queue, TaskId};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::task::DEFAULT_MAX_RETRIES;

/// Options for [`Store::enqueue`](super::Store::enqueue).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// The time of the enqueue: `enqueued_at`, and the base of a task's `delay`.
    pub now: Timestamp,
}

impl EnqueueOptions {
    /// Options for an enqueue at `now`.
    pub fn new(now: Timestamp) -> Self {
        EnqueueOptions { now }
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
    /// The retry limit written into a claimed task that has none
    /// ([`TaskRecord::max_retries`](crate::TaskRecord::max_retries) is `None`);
    /// [`DEFAULT_MAX_RETRIES`] unless set.
    pub max_retries: u32,
}

impl TopicClaim {
    /// A topic to claim from, without a limit.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        TopicClaim {
            topic: topic.into(),
            max_running: None,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// The retry limit of claimed tasks that set none.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Limits how many tasks of the topic may be in WORK at once, store-wide.
    pub fn max_running(mut self, max: u32) -> Self {
        self.max_running = Some(max);
        self
    }
}

/// The topics a manager claims from, built once and shared by every claim it makes (a
/// clone is a reference count), so describing a claim costs nothing per topic.
///
/// A topic named twice is claimed from at its first place, with its first limits.
#[derive(Debug, Clone, Default)]
pub struct ClaimTopics(Arc<TopicList>);

#[derive(Debug, Default)]
struct TopicList {
    claims: Vec<TopicClaim>,
    /// Each topic's place in `claims`.
    places: FxHashMap<Arc<str>, usize>,
}

impl ClaimTopics {
    /// How many topics there are.
    pub fn len(&self) -> usize {
        self.0.claims.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.claims.is_empty()
    }

    /// The topics, in their fixed order.
    pub fn iter(&self) -> std::slice::Iter<'_, TopicClaim> {
        self.0.claims.iter()
    }

    /// The place of `topic` in the fixed order, if it is one of these.
    pub fn place(&self, topic: &str) -> Option<usize> {
        self.0.places.get(topic).copied()
    }
}

impl FromIterator<TopicClaim> for ClaimTopics {
    fn from_iter<I: IntoIterator<Item = TopicClaim>>(iter: I) -> Self {
        let mut list = TopicList::default();
        for claim in iter {
            if !list.places.contains_key(&claim.topic) {
                list.places.insert(claim.topic.clone(), list.claims.len());
                list.claims.push(claim);
            }
        }
        ClaimTopics(Arc::new(list))
    }
}

/// Options for [`Store::claim`](super::Store::claim).
///
/// A claim fills up from its [first](Self::first) topic, then the ones after it in
/// [`topics`](Self::topics)' order, wrapping round: [`in_order`](Self::in_order) walks
/// them so. A store that knows which topics have due work (an index kept with its
/// queues) visits only those, in the same order, with [`due_in_order`](Self::due_in_order),
/// so a claim costs nothing for the topics that have nothing due.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimOptions {
    /// The topics to claim from.
    pub topics: ClaimTopics,
    /// The place in `topics` of the topic the claim starts from (taken modulo their
    /// number); 0 unless set.
    pub first: usize,
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
    /// A claim of up to `limit` tasks from `topics`, in that order, by `owner` at `now`,
    /// with a 30 s lease.
    pub fn new(
        topics: impl IntoIterator<Item = TopicClaim>,
        limit: usize,
        owner: impl Into<Arc<str>>,
        now: Timestamp,
    ) -> Self {
        Self::with_topics(topics.into_iter().collect(), limit, owner, now)
    }

    /// A claim from a shared topic list: see [`new`](Self::new).
    pub fn with_topics(
        topics: ClaimTopics,
        limit: usize,
        owner: impl Into<Arc<str>>,
        now: Timestamp,
    ) -> Self {
        ClaimOptions {
            topics,
            first: 0,
            limit,
            owner: owner.into(),
            now,
            lease: Duration::from_secs(30),
        }
    }

    /// Starts the claim from the topic at place `first`.
    pub fn first(mut self, first: usize) -> Self {
        self.first = first;
        self
    }

    /// The topics in claim order: from the first round to the one before it.
    pub fn in_order(&self) -> impl Iterator<Item = &TopicClaim> {
        let claims = &self.topics.0.claims;
        let first = self.first.checked_rem(claims.len()).unwrap_or(0);
        claims[first..].iter().chain(&claims[..first])
    }

    /// The claimed topics among `due`, in claim order: for a store that knows which
    /// topics may have due work. Names not claimed from are left out, and so are repeats.
    ///
    /// Costs O(d log d) for `d` names, whatever the number of claimed topics.
    pub fn due_in_order<'a, 'd>(
        &'a self,
        due: impl IntoIterator<Item = &'d str>,
    ) -> Vec<&'a TopicClaim> {
        let len = self.topics.len();
        let first = self.first.checked_rem(len).unwrap_or(0);
        let mut turns: Vec<usize> = due
            .into_iter()
            .filter_map(|topic| self.topics.place(topic))
            .map(|place| (place + len - first) % len)
            .collect();
        turns.sort_unstable();
        turns.dedup();
        let claims = &self.topics.0.claims;
        turns
            .into_iter()
            .map(|turn| &claims[(turn + first) % len])
            .collect()
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
    /// The current time: `finished_at` of finished and dead tasks, the time of a failed
    /// attempt's error, the due time of released ones.
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
    /// Only the INPUT tasks in this state at a time (see [`Waiting`]); `None` (the default)
    /// for the whole queue. Only with `queue == Input`.
    pub waiting: Option<(Waiting, Timestamp)>,
}

/// A part of INPUT split by time, as [`TaskRecord::status`](crate::TaskRecord::status)
/// at some `now` says: what [`ListOptions::waiting`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Waiting {
    /// Due at `now` (`run_at <= now`): [`TaskStatus::Pending`](crate::TaskStatus::Pending).
    Pending,
    /// Not yet due at `now`, waiting for its first run (`attempt == 0`):
    /// [`TaskStatus::Scheduled`](crate::TaskStatus::Scheduled).
    Scheduled,
    /// Not yet due at `now`, waiting to run again (`attempt > 0`):
    /// [`TaskStatus::Retrying`](crate::TaskStatus::Retrying).
    Retrying,
}

impl Waiting {
    /// The three parts, in the order a dashboard shows them.
    pub const ALL: [Waiting; 3] = [Waiting::Pending, Waiting::Scheduled, Waiting::Retrying];

    /// Whether an INPUT task due at `run_at` after `attempt` runs is in this part at
    /// `now`, as [`TaskRecord::status`](crate::TaskRecord::status) decides.
    pub fn holds(self, run_at: Timestamp, attempt: u32, now: Timestamp) -> bool {
        match self {
            Waiting::Pending => run_at <= now,
            Waiting::Scheduled => run_at > now && attempt == 0,
            Waiting::Retrying => run_at > now && attempt > 0,
        }
    }

    /// The status name: `pending`, `scheduled` or `retrying`.
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Pending => "pending",
            Waiting::Scheduled => "scheduled",
            Waiting::Retrying => "retrying",
        }
    }

    /// How many tasks of `sizes` are in this part (the stats split at the same `now`).
    pub fn count(self, sizes: &crate::stats::QueueSizes) -> u64 {
        match self {
            Waiting::Pending => sizes.pending(),
            Waiting::Scheduled => sizes.scheduled,
            Waiting::Retrying => sizes.retrying,
        }
    }
}

impl ListOptions {
    /// The first page of up to 100 tasks of `queue`.
    pub fn new(queue: Queue) -> Self {
        ListOptions {
            queue,
            topic: None,
            after: None,
            limit: 100,
            waiting: None,
        }
    }

    /// The first page of up to 100 INPUT tasks in state `kind` at `now`.
    pub fn waiting(kind: Waiting, now: Timestamp) -> Self {
        ListOptions {
            waiting: Some((kind, now)),
            ..ListOptions::new(Queue::Input)
        }
    }

    /// Checks what every store checks first: a `waiting` filter only on INPUT.
    pub fn validate(&self) -> crate::Result<()> {
        if self.waiting.is_some() && self.queue != Queue::Input {
            return Err(crate::Error::misuse(format!(
                "a waiting filter lists INPUT only, not {}",
                self.queue.as_str()
            )));
        }
        Ok(())
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

/// Options for [`Store::stats`](super::Store::stats).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StatsOptions {
    /// The current time: an INPUT task whose `run_at` is after it counts as scheduled or
    /// retrying, as [`TaskRecord::status`](crate::TaskRecord::status) at `now` says.
    pub now: Timestamp,
}

impl StatsOptions {
    /// Stats as of `now`.
    pub fn new(now: Timestamp) -> Self {
        StatsOptions { now }
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

/// Options for [`Store::cancel`](super::Store::cancel).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CancelOptions {
    /// The current time: `finished_at` of the tasks cancelled at once.
    pub now: Timestamp,
    /// Who cancels (a user, a service, a manager's id): kept on the record and in the
    /// [`Event::TaskCancelled`](crate::Event::TaskCancelled).
    pub by: Arc<str>,
}

impl CancelOptions {
    /// A cancel at `now` on behalf of `by`.
    pub fn new(now: Timestamp, by: impl Into<Arc<str>>) -> Self {
        CancelOptions { now, by: by.into() }
    }
}

/// Options for [`Store::prune`](super::Store::prune): how long finished tasks are kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PruneOptions {
    /// The current time.
    pub now: Timestamp,
    /// How long finished tasks of a topic not in `topics` are kept.
    pub retention: Duration,
    /// Topics kept for another time than `retention`.
    pub topics: Vec<(Arc<str>, Duration)>,
    /// At most this many records per call; 1000 unless set.
    pub limit: usize,
}

impl PruneOptions {
    /// A pruning at `now` of tasks finished at least `retention` earlier, 1000 at most.
    pub fn new(now: Timestamp, retention: Duration) -> Self {
        PruneOptions {
            now,
            retention,
            topics: Vec::new(),
            limit: 1000,
        }
    }

    /// Keeps finished tasks of `topic` for `retention` instead.
    pub fn topic(mut self, topic: impl Into<Arc<str>>, retention: Duration) -> Self {
        self.topics.push((topic.into(), retention));
        self
    }

    /// At most `limit` records.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The retention of `topic`.
    pub fn retention_of(&self, topic: &str) -> Duration {
        self.topics
            .iter()
            .find(|(t, _)| &**t == topic)
            .map_or(self.retention, |(_, r)| *r)
    }

    /// Tasks of `topic` finished at or before this time may be pruned.
    pub fn cutoff_of(&self, topic: &str) -> Timestamp {
        self.now - self.retention_of(topic)
    }
}

/// Options for [`Store::register_schedules`](super::Store::register_schedules).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// The time of the registration: the schedules' `seen_at`.
    pub now: Timestamp,
}

impl RegisterOptions {
    /// Options for a registration at `now`.
    pub fn new(now: Timestamp) -> Self {
        RegisterOptions { now }
    }
}

/// Options for [`Store::prune_schedules`](super::Store::prune_schedules).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PruneSchedulesOptions {
    /// Schedules last registered before this are removed.
    pub seen_before: Timestamp,
}

impl PruneSchedulesOptions {
    /// Options removing the schedules last registered before `seen_before`.
    pub fn new(seen_before: Timestamp) -> Self {
        PruneSchedulesOptions { seen_before }
    }
}

#[cfg(test)]
mod tests {
    use super::{ClaimOptions, TopicClaim};
    use crate::time::Timestamp;

    fn claim(topics: &[&str], first: usize) -> ClaimOptions {
        ClaimOptions::new(
            topics.iter().map(|t| TopicClaim::new(*t)),
            10,
            "m",
            Timestamp::from_millis(0),
        )
        .first(first)
    }

    fn names<'a>(claims: impl IntoIterator<Item = &'a TopicClaim>) -> Vec<&'a str> {
        claims.into_iter().map(|c| &*c.topic).collect()
    }

    /// A claim walks its topics from its first round to the one before; a topic named
    /// twice keeps its first place, and a first past the end wraps.
    #[test]
    fn claims_walk_their_topics_from_the_first() {
        let c = claim(&["a", "b", "a", "c", "d"], 2);
        assert_eq!(c.topics.len(), 4);
        assert_eq!(names(c.in_order()), ["c", "d", "a", "b"]);
        assert_eq!(
            names(claim(&["a", "b", "c"], 7).in_order()),
            ["b", "c", "a"]
        );
        assert!(claim(&[], 3).in_order().next().is_none());
    }

    /// The due topics come back in the claim's order, without strangers or repeats.
    #[test]
    fn due_topics_come_in_claim_order() {
        let c = claim(&["a", "b", "c", "d", "e"], 3);
        let due = ["b", "zz", "e", "a", "b", "d"];
        assert_eq!(names(c.due_in_order(due)), ["d", "e", "a", "b"]);
        assert!(claim(&[], 0).due_in_order(["a"]).is_empty());
    }
}
