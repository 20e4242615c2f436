//! The Store contract: what a backend must do for the Manager to keep its guarantees.
//!
//! [`Store`] holds the operations that define a backend; [`StoreExt`] holds conveniences
//! built only from them and is implemented for every store. Options travel in
//! `#[non_exhaustive]` structs, so a new feature adds a field rather than a method.
//!
//! Stores never read a clock: each time-dependent call carries `now`.

use crate::error::{Error, Result};
use crate::event::{Event, EventStream};
use crate::stats::Stats;
use crate::task::{Queue, Task, TaskId, TaskRecord};
use crate::time::Timestamp;
use async_trait::async_trait;
use futures_util::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

mod id_map;
mod local_bus;
mod url;
pub use id_map::{IdHasher, IdMap, IdSet};
pub use local_bus::{LocalBus, DEFAULT_EVENT_BUFFER};
pub use url::{ServerAddress, StoreUrl};

/// The retry limit of a task that sets none, unless the manager says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 25;

/// Options for [`Store::enqueue`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// The time of the enqueue: `enqueued_at`, and the base of a task's `delay`.
    pub now: Timestamp,
    /// The retry limit of tasks that set none.
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

/// What became of one task given to [`Store::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Added to INPUT under this id.
    New(TaskId),
    /// Not added: a task with the same unique key exists, under this id.
    Duplicate(TaskId),
}

impl Enqueued {
    /// The id of the new task, or of the existing one it duplicates.
    pub fn id(self) -> TaskId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }

    /// Whether the task was added.
    pub fn is_new(self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

/// A topic to claim from, with its limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicClaim {
    /// The topic.
    pub topic: Arc<str>,
    /// At most this many tasks of the topic in WORK at once, across every manager sharing
    /// the store; `None` for no limit.
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

/// Options for [`Store::claim`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The topics to claim from, in the order to try them.
    pub topics: Vec<TopicClaim>,
    /// At most this many tasks in total.
    pub limit: usize,
    /// Who claims: written into each lease.
    pub owner: Arc<str>,
    /// The current time: what is due, and the base of the lease deadline.
    pub now: Timestamp,
    /// How long the lease lasts unless renewed.
    pub lease: Duration,
}

impl ClaimRequest {
    /// A claim of up to `limit` tasks from `topics` by `owner` at `now`, with a 30 s lease.
    pub fn new(
        topics: impl IntoIterator<Item = TopicClaim>,
        limit: usize,
        owner: impl Into<Arc<str>>,
        now: Timestamp,
    ) -> Self {
        ClaimRequest {
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

/// Names one claim of one task: what an outcome or a renewal must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The task.
    pub id: TaskId,
    /// Its topic (backends that shard by topic locate the task with it).
    pub topic: Arc<str>,
    /// The claim's fencing token.
    pub token: u64,
}

impl LeaseRef {
    /// The lease reference of a claimed record.
    ///
    /// # Panics
    /// If the record holds no lease (it was not returned by a claim).
    pub fn of(record: &TaskRecord) -> Self {
        let lease = record.lease.as_ref().expect("a claimed task holds a lease");
        LeaseRef {
            id: record.id,
            topic: record.topic.clone(),
            token: lease.token,
        }
    }
}

/// A task claimed by [`Store::claim`].
#[derive(Debug)]
pub enum Claimed {
    /// A task to run.
    Ready(TaskRecord),
    /// A task whose stored record cannot be decoded. It is in WORK under this lease like
    /// any other; the manager sends it to DEAD with the error.
    Corrupt {
        /// The claim.
        lease: LeaseRef,
        /// What could not be decoded.
        error: Error,
    },
}

/// What to do with a claimed task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// It succeeded: remove it (counts `completed`).
    Complete,
    /// It failed with retries left: back to INPUT, due at `at`, with `error` as its last
    /// error (counts `retried`).
    Retry {
        /// When it is due again.
        at: Timestamp,
        /// Why it failed.
        error: String,
    },
    /// It failed for good: to DEAD with `error` (counts `failed`).
    Dead {
        /// Why.
        error: String,
    },
    /// The run was abandoned (shutdown): back to INPUT, due now, and the attempt does not
    /// count (counts `released`).
    Release,
}

/// An outcome of one claim, for [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The claim it applies to.
    pub lease: LeaseRef,
    /// What to do.
    pub kind: OutcomeKind,
}

/// Whether an outcome or a renewal took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The claim still owned the task and the change was made.
    Done,
    /// The claim no longer owns the task (lease expired and recovered, task deleted or
    /// claimed again): nothing was changed.
    Stale,
}

/// A task the reaper moved out of WORK, from [`Store::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The task.
    pub id: TaskId,
    /// Its topic.
    pub topic: Arc<str>,
    /// Whether it went to DEAD (no retries left) rather than INPUT.
    pub dead: bool,
}

/// Options for [`Store::list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListQuery {
    /// The queue to list.
    pub queue: Queue,
    /// Only this topic; `None` for all.
    pub topic: Option<Arc<str>>,
    /// Start after this id (the `next` of the previous page); `None` for the first page.
    pub after: Option<TaskId>,
    /// At most this many tasks.
    pub limit: usize,
}

impl ListQuery {
    /// The first page of up to 100 tasks of `queue`.
    pub fn new(queue: Queue) -> Self {
        ListQuery {
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

/// One page of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The tasks, in ascending id order.
    pub tasks: Vec<TaskRecord>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<TaskId>,
}

/// What a backend can and cannot do; the conformance suite runs a check only where it
/// applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Events published by one process reach subscribers in another.
    pub cross_process_events: bool,
    /// The store survives the process that wrote it (a crash loses nothing acknowledged).
    pub durable: bool,
}

impl Capabilities {
    /// A store that lives in one process only, like the memory store.
    pub const IN_PROCESS: Capabilities = Capabilities {
        cross_process_events: false,
        durable: false,
    };

    /// A durable store whose events stay in one process, like SQLite or sled.
    pub const DURABLE: Capabilities = Capabilities {
        cross_process_events: false,
        durable: true,
    };

    /// A durable, shared store, like Redis.
    pub const SHARED: Capabilities = Capabilities {
        cross_process_events: true,
        durable: true,
    };
}

/// A stream that yields whenever work may have become available in the store.
pub type WakeStream = BoxStream<'static, ()>;

/// A backend that keeps tasks in three queues (INPUT, WORK, DEAD), with stats and events.
///
/// Object safe: `Arc<dyn Store>` holds a store chosen at run time.
///
/// Every method is atomic per task: a task is in exactly one queue before and after,
/// and the stats counters move in the same step as the transition they count. Methods
/// taking a batch may apply it in several steps, but never leave one task half-moved.
///
/// Errors carry an [`ErrorKind`](crate::ErrorKind): `Unavailable` when the backend cannot
/// be reached (nothing was changed, or the call can be repeated safely), `Storage` when it
/// refused the write, `Corrupt` when stored data cannot be decoded.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Adds tasks to INPUT.
    ///
    /// # Behavior
    /// - Returns one [`Enqueued`] per task, in order. Each new task gets a fresh id, larger
    ///   than every id the store handed out before; ids grow in batch order.
    /// - A task whose unique key is held by a task of the same topic in the store (INPUT,
    ///   WORK or DEAD, or earlier in the same batch) is not added: its entry is
    ///   `Duplicate(existing id)`. The same key in another topic is another key.
    /// - Counts `enqueued` once per new task. A new task is due at its `run_at`
    ///   ([`Task::into_record`] resolves it against `opts.now`), with attempt 0.
    /// - Publishes an [`Event::TaskEnqueue`] per new task, before any claim can return
    ///   it (so a watcher sees a task's enqueue before its start), and wakes
    ///   [`wakeups`](Store::wakeups) streams.
    /// - On error, no task of the batch was added (a backend that cannot make the batch
    ///   atomic documents what a partial write looks like).
    ///
    /// # Cancel safety
    /// Dropping the future may leave all, some or none of the batch enqueued (a store that
    /// spreads a batch over several atomic steps, such as Redis with one per topic, sends
    /// them as it goes), never half of one task.
    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>>;

    /// Moves up to `req.limit` due tasks of `req.topics` from INPUT to WORK, each under a
    /// new lease (owner, a fresh fencing token, deadline `req.now + req.lease`).
    ///
    /// # Behavior
    /// - A task is due when `run_at <= req.now`. Within a topic, due tasks are claimed in
    ///   ascending `priority`, then ascending id (FIFO). Topics are tried in the order given.
    /// - Paused topics are skipped. A topic with `max_running` gives at most as many tasks
    ///   as keep its WORK size (store-wide) within the limit.
    /// - Each claimed task's `attempt` goes up by 1; counts `started` once per task.
    /// - A task whose record cannot be decoded is claimed all the same and returned as
    ///   [`Claimed::Corrupt`].
    /// - No task is returned by two claims unless the first lease was recovered in between.
    ///
    /// # Cancel safety
    /// Dropping the future may leave tasks claimed by nobody; the reaper returns them when
    /// their lease expires.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>>;

    /// Extends leases to `deadline`.
    ///
    /// # Behavior
    /// - Returns one [`Applied`] per lease, in order: `Done` when the token still owns the
    ///   task (the deadline is set), `Stale` otherwise (nothing changes).
    async fn renew(&self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>>;

    /// Applies outcomes of runs.
    ///
    /// # Behavior
    /// - Returns one [`Applied`] per outcome, in order. An outcome whose token no longer
    ///   owns the task returns `Stale` and changes nothing: no move, no counter.
    /// - `Complete` removes the task and frees its unique key. `Retry` puts it in INPUT due
    ///   at `at` with `last_error`; `Dead` puts it in DEAD with `last_error` and
    ///   `failed_at = now`; `Release` puts it in INPUT due at `now` with `attempt` one less.
    ///   Each clears the lease and counts its counter (see [`OutcomeKind`]).
    /// - Outcomes that put tasks back in INPUT wake [`wakeups`](Store::wakeups) streams.
    ///
    /// # Cancel safety
    /// Dropping the future may leave some outcomes applied and others not; applying the same
    /// outcomes again returns `Stale` for those already applied.
    async fn apply(&self, outcomes: &[Outcome], now: Timestamp) -> Result<Vec<Applied>>;

    /// The reaper: moves up to `limit` tasks whose lease deadline is before `now` out of
    /// WORK.
    ///
    /// # Behavior
    /// - A task with retries left (`attempt <= max_retries`) goes back to INPUT, due now;
    ///   one without goes to DEAD with a "lease expired" error (counts `failed` too). Either
    ///   way it counts `recovered`, and any outcome for the old lease is then `Stale`.
    /// - Returns the tasks it moved.
    async fn recover(&self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>>;

    /// A snapshot of counters and queue sizes, totals and per topic, with paused flags.
    ///
    /// # Behavior
    /// - Each topic that has counted anything, holds a task or is paused has an entry.
    async fn stats(&self) -> Result<Stats>;

    /// The task with this id, in whichever queue it is; `None` if the store does not hold it.
    ///
    /// # Behavior
    /// - Fails with `Corrupt` when the stored record cannot be decoded.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>>;

    /// A page of one queue, in ascending id order.
    ///
    /// # Behavior
    /// - Returns up to `query.limit` tasks of `query.queue` (and `query.topic`, if set) with
    ///   ids above `query.after`. `next` is the last id of the page when more may follow.
    /// - Paging through with `next` visits each task that stays in the queue exactly once.
    /// - A record that cannot be decoded never fails the page: it is shown as far as it can
    ///   be read, or left out with a warning. [`get`](Store::get) reports it as `Corrupt`,
    ///   and [`delete`](Store::delete) removes it.
    async fn list(&self, query: &ListQuery) -> Result<Page>;

    /// Sends dead tasks back to INPUT, due at `now`, with attempt reset to 0.
    ///
    /// # Behavior
    /// - Returns, per id, whether it was in DEAD and moved. Counts `requeued` per move.
    async fn requeue(&self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>>;

    /// Removes tasks from whichever queue holds them and frees their unique keys.
    ///
    /// # Behavior
    /// - Returns, per id, whether it existed. A deleted task in WORK makes its run's outcome
    ///   `Stale`.
    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>>;

    /// Pauses (`true`) or resumes (`false`) claiming from a topic, store-wide.
    ///
    /// # Behavior
    /// - A paused topic's tasks are not claimed; running ones finish normally. Resuming
    ///   wakes [`wakeups`](Store::wakeups) streams.
    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()>;

    /// Publishes events to every subscriber of this store (in other processes too, where
    /// [`Capabilities::cross_process_events`]).
    ///
    /// # Behavior
    /// - Never waits for a slow subscriber; with none, it should cost next to nothing.
    async fn publish(&self, events: &[Event]) -> Result<()>;

    /// Whether any subscriber may be listening, so publishers can skip building events.
    ///
    /// # Behavior
    /// - Must not return `false` while a subscriber (in any process) would receive events.
    ///   The default, `true`, is always correct; a store that knows better saves its
    ///   publishers the work.
    fn has_subscribers(&self) -> bool {
        true
    }

    /// Subscribes to events published from now on.
    ///
    /// # Behavior
    /// - Events arrive in the order published by one publisher. A subscriber that falls
    ///   behind gets [`Event::Lagged`] in place of the events it missed.
    async fn subscribe(&self) -> Result<EventStream>;

    /// A stream that yields when work may have become available: an enqueue, a retry or a
    /// release into INPUT, a resume. Several changes may yield once.
    ///
    /// # Behavior
    /// - A change made after this call returns is signalled, even if it happens before the
    ///   stream is first polled. Managers still poll as a fallback, so a backend may signal
    ///   only changes made through its own handle.
    async fn wakeups(&self) -> Result<WakeStream>;
}

/// Conveniences built from [`Store`]; implemented for every store.
#[async_trait]
pub trait StoreExt: Store {
    /// Enqueues one task.
    async fn enqueue_one(&self, task: Task, opts: &EnqueueOptions) -> Result<Enqueued> {
        let mut results = self.enqueue(vec![task], opts).await?;
        results
            .pop()
            .ok_or_else(|| Error::storage("the store returned no result for an enqueue"))
    }

    /// Every task of a queue (and topic), paging through [`Store::list`].
    async fn list_all(&self, queue: Queue, topic: Option<&str>) -> Result<Vec<TaskRecord>> {
        let mut query = ListQuery::new(queue).limit(1000);
        query.topic = topic.map(Arc::from);
        let mut all = Vec::new();
        loop {
            let page = self.list(&query).await?;
            all.extend(page.tasks);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Requeues every dead task (of `topic`, if given); returns how many moved.
    async fn requeue_all_dead(&self, topic: Option<&str>, now: Timestamp) -> Result<u64> {
        let ids: Vec<TaskId> = self
            .list_all(Queue::Dead, topic)
            .await?
            .iter()
            .map(|t| t.id)
            .collect();
        let moved = self.requeue(&ids, now).await?;
        Ok(moved.into_iter().filter(|m| *m).count() as u64)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        (**self).enqueue(tasks, opts).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>> {
        (**self).claim(req).await
    }
    async fn renew(&self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
        (**self).renew(leases, deadline).await
    }
    async fn apply(&self, outcomes: &[Outcome], now: Timestamp) -> Result<Vec<Applied>> {
        (**self).apply(outcomes, now).await
    }
    async fn recover(&self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
        (**self).recover(now, limit).await
    }
    async fn stats(&self) -> Result<Stats> {
        (**self).stats().await
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        (**self).get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page> {
        (**self).list(query).await
    }
    async fn requeue(&self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
        (**self).requeue(ids, now).await
    }
    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        (**self).delete(ids).await
    }
    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        (**self).set_paused(topic, paused).await
    }
    async fn publish(&self, events: &[Event]) -> Result<()> {
        (**self).publish(events).await
    }
    fn has_subscribers(&self) -> bool {
        (**self).has_subscribers()
    }
    async fn subscribe(&self) -> Result<EventStream> {
        (**self).subscribe().await
    }
    async fn wakeups(&self) -> Result<WakeStream> {
        (**self).wakeups().await
    }
}
