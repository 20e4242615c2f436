//! The [`Client`]: what producers and operators use on a store without running processors.

use crate::error::{Error, Result};
use crate::event::EventStream;
use crate::middleware::{Chain, EnqueueNext, Middleware};
use crate::schedule::Cadence;
use crate::stats::Stats;
use crate::store::{
    CancelOptions, Cancellation, EnqueueOptions, Enqueued, ListOptions, Page, RequeueOptions,
    ScheduleState, StatsOptions, Store, Waiting,
};
use crate::task::{Payload, Queue, Task, TaskId, TaskRecord, TaskStatus};
use crate::time::{Clock, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::Instrument;

/// How many ids a bulk operation lists and acts on per store call.
pub const BULK_PAGE: usize = 500;

/// A handle on a store for enqueueing, looking up and administering tasks: asynq's
/// Client and Inspector in one.
///
/// A web server that only enqueues, a script that requeues the dead tasks of a topic, a
/// dashboard that shows a task's status: each opens the store and builds a `Client` on it
/// instead of a whole [`Manager`](crate::Manager). A manager owns one too
/// ([`Manager::client`](crate::Manager::client)), and its own `enqueue`, `stats`, `task`
/// and `watch` are the client's.
///
/// # What the enqueuer decides, and what it does not
///
/// A task carries its own arguments, priority, schedule, unique key and, if it sets one,
/// its retry limit. Two settings are not the enqueuer's, so that a bare client and a
/// manager never disagree about them:
///
/// - **The retry limit of a task that sets none** is resolved at the task's first claim, by
///   the manager running its topic (its [`TopicOptions::retries`](crate::TopicOptions), else
///   its [`default_retries`](crate::ManagerBuilder::default_retries)), and written into the
///   record for good: [`status`](Client::status) shows it from then on.
/// - **How long a finished task is kept** is the retention of the managers: the one that
///   ran the task keeps its record or not, and every manager's maintenance prunes finished
///   records past their topic's retention ([`ManagerBuilder::retention`](crate::ManagerBuilder::retention)).
///
/// # Bulk operations
///
/// [`requeue_dead`](Client::requeue_dead), [`delete_dead`](Client::delete_dead) and
/// [`cancel_waiting`](Client::cancel_waiting) page through a queue with
/// [`Store::list`], acting on one page of at most [`BULK_PAGE`] ids at a time, so a
/// queue of a million tasks never sits in memory at once. Each page is one store call per
/// operation: a bulk operation is not atomic, and one that fails midway has done the
/// pages before it (the count it would have returned is lost with the error; running it
/// again does the rest).
///
/// Cheap to clone (a shared store, a clock and a name), and usable from any process that
/// opens the store, whether a manager runs there or not.
///
/// ```
/// use taskmill_core::{Client, Task, TaskStatus};
/// # async fn demo(store: impl taskmill_core::Store) -> taskmill_core::Result<()> {
/// let client = Client::new(store).by("web-frontend");
/// let id = client.enqueue(Task::new("emails", &"ada@example.com")?).await?.id();
/// if let Some(info) = client.status(id).await? {
///     println!("task {id} is {}", info.status.as_str());
/// }
/// client.cancel(&[id]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    clock: Clock,
    by: Arc<str>,
    /// Wraps every enqueue, outermost first.
    middleware: Chain,
}

impl Client {
    /// A client on `store`, with the system clock, cancelling as `client:<pid>`.
    pub fn new(store: impl Store) -> Self {
        Self::shared(Arc::new(store))
    }

    /// A client on a shared store (what `taskmill::open` returns, or
    /// [`Manager::store`](crate::Manager::store)).
    pub fn shared(store: Arc<dyn Store>) -> Self {
        Client {
            store,
            clock: Clock::system(),
            by: format!("client:{}", std::process::id()).into(),
            middleware: Arc::new([]),
        }
    }

    /// Sends every enqueue through `middleware` ([`Middleware::enqueue`]), after the
    /// middleware added before it: a middleware can stamp [headers](Task::headers_mut) on
    /// tasks, or refuse them.
    pub fn middleware(self, middleware: impl Middleware) -> Self {
        self.middleware_shared(Arc::new(middleware))
    }

    pub(crate) fn middleware_shared(mut self, middleware: Arc<dyn Middleware>) -> Self {
        let mut chain = self.middleware.to_vec();
        chain.push(middleware);
        self.middleware = chain.into();
        self
    }

    /// Reads the time from `clock` (default [`Clock::system`]): enqueue times, due times
    /// of requeued tasks, and the time statuses are judged at.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Cancels on behalf of `by` (a user, a service): kept on cancelled records as
    /// [`TaskRecord::cancelled_by`] and carried by their
    /// [`Event::TaskCancelled`](crate::Event::TaskCancelled). The default is
    /// `client:<pid>`; a manager's client is named after the manager.
    pub fn by(mut self, by: impl Into<Arc<str>>) -> Self {
        self.by = by.into();
        self
    }

    /// Who this client cancels as.
    pub fn name(&self) -> &str {
        &self.by
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Enqueues one task; see [`enqueue_batch`](Self::enqueue_batch).
    pub async fn enqueue(&self, task: Task) -> Result<Enqueued> {
        let mut out = self.enqueue_batch(vec![task]).await?;
        out.pop()
            .ok_or_else(|| Error::storage("the store returned no result for an enqueue"))
    }

    /// Enqueues tasks in one store call, returning what became of each, in order (new, or
    /// a duplicate of a task holding the same unique key).
    ///
    /// Once this returns `Ok`, each new task runs to an outcome at least once (unless it is
    /// cancelled or deleted). A task that sets no retry limit gets the one of the manager
    /// that first claims it (see [`Client`]).
    ///
    /// Runs in a `taskmill.enqueue` span (OpenTelemetry kind `producer`), inside which the
    /// client's [middleware](Self::middleware) sees the tasks: a trace-propagation
    /// middleware records this span as the parent of the tasks' runs.
    pub async fn enqueue_batch(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>> {
        let span = enqueue_span(&tasks);
        let opts = EnqueueOptions::new(self.clock.now());
        EnqueueNext::new(&self.middleware, &*self.store, &opts)
            .enqueue(tasks)
            .instrument(span)
            .await
    }

    /// Where the task stands now, with its record (times, attempts, errors, result,
    /// progress); `None` when the store does not hold it (never enqueued, deleted, or
    /// pruned after its retention).
    pub async fn status(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        let record = self.store.get(id).await?;
        let now = self.clock.now();
        Ok(record.map(|record| TaskInfo {
            status: record.status(now),
            record,
        }))
    }

    /// The task's record as stored; `None` when the store does not hold it.
    pub async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.store.get(id).await
    }

    /// A page of one queue (of one topic, if set), in ascending id order; `page.next` is
    /// the cursor of the next page ([`ListOptions::after`]).
    pub async fn list(&self, opts: ListOptions) -> Result<Page> {
        self.store.list(&opts).await
    }

    /// A page of INPUT's tasks that are `kind` now (by this client's clock): pending (due),
    /// scheduled or retrying, as [`stats`](Self::stats) split them. `opts` gives the topic,
    /// cursor and limit; its queue is taken to be INPUT. See [`ListOptions::waiting`].
    pub async fn list_waiting(&self, kind: Waiting, mut opts: ListOptions) -> Result<Page> {
        opts.queue = Queue::Input;
        opts.waiting = Some((kind, self.clock.now()));
        self.store.list(&opts).await
    }

    /// Sends dead tasks back to INPUT, due now, with fresh attempts; returns, per id,
    /// whether it was dead and moved.
    pub async fn requeue(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        self.store
            .requeue(ids, &RequeueOptions::new(self.clock.now()))
            .await
    }

    /// Removes tasks from whichever queue holds them; returns, per id, whether it existed.
    /// A deleted running task's run goes on, but its outcome changes nothing.
    pub async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        self.store.delete(ids).await
    }

    /// Cancels tasks, on behalf of this client's [`name`](Self::name); returns what became
    /// of each, in order:
    ///
    /// - waiting (pending, scheduled or retrying): [`Cancellation::Cancelled`] at once; it
    ///   never runs, and its unique key is free again;
    /// - running: [`Cancellation::Requested`]. The request is stored on the task, and the
    ///   manager running it is told: its `ctx.cancelled()` fires and the run ends CANCELLED
    ///   (not retried), whatever the processor returns. A manager in the same process
    ///   learns it at once, one across processes through the store's pub/sub where the
    ///   store has [`cross_process_events`](crate::store::Capabilities) (Redis), and
    ///   otherwise (SQLite) at its next lease renewal, within its renew interval;
    /// - dead, completed or cancelled: [`Cancellation::Refused`] with its queue, unchanged
    ///   (a dead task is deleted or requeued, not cancelled; a finished one has nothing
    ///   left to cancel);
    /// - unknown: [`Cancellation::NotFound`].
    pub async fn cancel(&self, ids: &[TaskId]) -> Result<Vec<Cancellation>> {
        let opts = CancelOptions::new(self.clock.now(), self.by.clone());
        self.store.cancel(ids, &opts).await
    }

    /// Requeues every dead task (of `topic`, if given); returns how many moved.
    pub async fn requeue_dead(&self, topic: Option<&str>) -> Result<u64> {
        self.each_page(Queue::Dead, topic, |ids| async move {
            let moved = self.requeue(&ids).await?;
            Ok(moved.into_iter().filter(|m| *m).count() as u64)
        })
        .await
    }

    /// Deletes every dead task (of `topic`, if given); returns how many were removed.
    pub async fn delete_dead(&self, topic: Option<&str>) -> Result<u64> {
        self.each_page(Queue::Dead, topic, |ids| async move {
            let deleted = self.delete(&ids).await?;
            Ok(deleted.into_iter().filter(|d| *d).count() as u64)
        })
        .await
    }

    /// Cancels every task waiting in INPUT (pending, scheduled or retrying; of `topic`, if
    /// given); returns how many were cancelled. Running tasks are left alone.
    pub async fn cancel_waiting(&self, topic: Option<&str>) -> Result<u64> {
        self.each_page(Queue::Input, topic, |ids| async move {
            let done = self.cancel(&ids).await?;
            Ok(done
                .into_iter()
                .filter(|c| *c == Cancellation::Cancelled)
                .count() as u64)
        })
        .await
    }

    /// Runs `act` on the ids of each page of `queue` (and `topic`), at most
    /// [`BULK_PAGE`] at a time; sums what it returns.
    ///
    /// The cursor moves past each page's last id, so a task that `act` moves out and that
    /// comes back (a requeued task failing again) is not visited twice.
    async fn each_page<'a, F, Fut>(
        &'a self,
        queue: Queue,
        topic: Option<&str>,
        act: F,
    ) -> Result<u64>
    where
        F: Fn(Vec<TaskId>) -> Fut + 'a,
        Fut: std::future::Future<Output = Result<u64>> + 'a,
    {
        let mut opts = ListOptions::new(queue).limit(BULK_PAGE);
        opts.topic = topic.map(Arc::from);
        let mut total = 0;
        loop {
            let page = self.store.list(&opts).await?;
            let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
            if !ids.is_empty() {
                total += act(ids).await?;
            }
            match page.next {
                Some(next) => opts.after = Some(next),
                None => return Ok(total),
            }
        }
    }

    /// Pauses claiming from `topic`, store-wide: no manager claims its tasks until
    /// [`resume`](Self::resume). Running tasks go on.
    pub async fn pause(&self, topic: &str) -> Result<()> {
        self.store.set_paused(topic, true).await
    }

    /// Resumes claiming from `topic`.
    pub async fn resume(&self, topic: &str) -> Result<()> {
        self.store.set_paused(topic, false).await
    }

    /// Every schedule the store keeps, by name, with its next tick by this client's
    /// clock.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let now = self.clock.now();
        let states = self.store.schedules().await?;
        Ok(states
            .into_iter()
            .map(|state| ScheduleInfo::at(state, now))
            .collect())
    }

    /// Pauses a schedule, store-wide: its ticks are skipped (not caught up on resume)
    /// until [`resume_schedule`](Self::resume_schedule).
    ///
    /// Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for a schedule the
    /// store does not know (one no manager has registered).
    pub async fn pause_schedule(&self, name: &str) -> Result<()> {
        self.set_schedule_paused(name, true).await
    }

    /// Resumes a paused schedule: it fires again from its next tick.
    pub async fn resume_schedule(&self, name: &str) -> Result<()> {
        self.set_schedule_paused(name, false).await
    }

    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        match self.store.set_schedule_paused(name, paused).await? {
            true => Ok(()),
            false => Err(Error::not_found(format!("no schedule named {name:?}"))),
        }
    }

    /// A snapshot of the store's counters and queue sizes, in total and per topic, with
    /// INPUT split into pending, scheduled and retrying at this client's clock's now.
    pub async fn stats(&self) -> Result<Stats> {
        self.store.stats(&StatsOptions::new(self.clock.now())).await
    }

    /// The events of the store: those published through this store handle and, where the
    /// backend carries them across processes, every other's.
    ///
    /// Events are buffered per watcher; one that falls behind gets
    /// [`Event::Lagged`](crate::Event::Lagged) with the number it missed, and publishers
    /// never wait for it.
    pub async fn watch(&self) -> Result<EventStream> {
        self.store.subscribe().await
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("by", &self.by)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// A task's status with its record, from [`Client::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Where it stands, at the time of the lookup.
    pub status: TaskStatus,
    /// The task as stored: its times ([`enqueued_at`](TaskRecord::enqueued_at),
    /// [`first_started_at`](TaskRecord::first_started_at),
    /// [`started_at`](TaskRecord::started_at), [`finished_at`](TaskRecord::finished_at)),
    /// attempts and retry limit, the errors of its failed attempts, its result and last
    /// progress, and who cancelled it.
    pub record: TaskRecord,
}

impl TaskInfo {
    /// The result its successful run set, deserialized into `T`; `None` when it set none
    /// (or has not completed).
    pub fn result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        decode_optional(self.record.result.as_ref())
    }

    /// The last progress value stored for it, deserialized into `T`.
    pub fn progress<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        decode_optional(self.record.progress.as_ref())
    }
}

/// A schedule as the store keeps it, with its next tick, from [`Client::schedules`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// What the store keeps: cadence, zone, topic, paused flag, last tick and task.
    pub state: ScheduleState,
    /// The next tick after the time of the lookup; `None` while paused, when the cadence
    /// has no more ticks, or when the stored cadence cannot be read (a schedule fired but
    /// never registered).
    pub next_tick: Option<Timestamp>,
}

impl ScheduleInfo {
    /// `state` with its next tick after `now`.
    pub fn at(state: ScheduleState, now: Timestamp) -> Self {
        let next_tick = match state.paused {
            true => None,
            false => Cadence::parse(&state.spec, &state.zone)
                .ok()
                .and_then(|cadence| cadence.next_after(now)),
        };
        ScheduleInfo { state, next_tick }
    }
}

fn decode_optional<T: DeserializeOwned>(payload: Option<&Payload>) -> Result<Option<T>> {
    payload.map(Payload::decode).transpose()
}

/// The span of one enqueue call, with the fields an OpenTelemetry exporter reads (span
/// name and kind, the messaging system and operation, and the topic when the batch has
/// one).
fn enqueue_span(tasks: &[Task]) -> tracing::Span {
    let topic = match tasks.split_first() {
        Some((first, rest)) if rest.iter().all(|t| t.topic() == first.topic()) => {
            Some(first.topic())
        }
        _ => None,
    };
    let span = tracing::info_span!(
        "taskmill.enqueue",
        otel.name = tracing::field::Empty,
        otel.kind = "producer",
        messaging.system = "taskmill",
        messaging.operation.type = "send",
        messaging.destination.name = tracing::field::Empty,
        messaging.batch.message_count = tasks.len(),
    );
    if !span.is_disabled() {
        match topic {
            Some(topic) => {
                span.record("otel.name", format_args!("send {topic}"));
                span.record("messaging.destination.name", topic);
            }
            None => {
                span.record("otel.name", "send");
            }
        }
    }
    span
}
