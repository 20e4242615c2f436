//! The Store contract: what a backend must do for the Manager to keep its guarantees.
//!
//! [`Store`] holds the operations that define a backend; [`StoreExt`] holds conveniences
//! built only from them and is implemented for every store. The building blocks a backend
//! uses to implement it (record transitions, the in-process bus) are in
//! [`raw`](crate::raw).
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the [`Store`] trait, the rules below |
//! | `options.rs` | the options of each method ([`EnqueueOptions`], [`ClaimOptions`], …) |
//! | `outcome.rs` | a claim's vocabulary: [`LeaseRef`], [`Outcome`], [`OutcomeKind`], [`Applied`] |
//! | `results.rs` | what methods hand back: [`Enqueued`], [`Claimed`], [`Recovered`], [`Page`] |
//! | `schedule.rs` | schedules: [`ScheduleEntry`], [`Tick`], [`Fired`], [`ScheduleState`] |
//! | `capabilities.rs` | [`Capabilities`] |
//! | `ext.rs` | [`StoreExt`] |
//! | `forward.rs` | `Store` for `Arc<S>` and `Box<S>` |
//!
//! # Arguments
//!
//! A method takes, positionally, what it acts on: the batch (tasks, leases, outcomes,
//! ids), the one id, or the topic and the flag it sets on it. Everything else it needs,
//! the time, limits and tuning, travels in one options struct named after the method
//! ([`EnqueueOptions`], [`ClaimOptions`], [`RenewOptions`], [`ApplyOptions`],
//! [`RecoverOptions`], [`PruneOptions`], [`ListOptions`], [`RequeueOptions`],
//! [`CancelOptions`], [`RegisterOptions`], [`PruneSchedulesOptions`], [`StatsOptions`]), passed by reference; a method that needs nothing else has none. Options
//! are `#[non_exhaustive]`, so a new parameter is a new field, not a new signature in every
//! backend. They are small values built on the stack: the hot path (claim, apply, renew)
//! allocates nothing for them beyond the claim's topic list.
//!
//! Stores never read a clock: each time-dependent call carries `now` in its options.
//!
//! # One trait
//!
//! `Store` stays one trait, although it serves three callers: the manager's queue
//! operations (enqueue, claim, renew, progress, apply, recover, prune, and the schedules'
//! register and fire), inspection and administration (stats, get, list, requeue, delete,
//! cancel, pause, schedules), and the event bus
//! (publish, subscribe, wake-ups, cancellations). River splits its driver by caller and apalis by ability because their
//! backends differ in what they can do at all; taskmill's do not. Every backend implements
//! every operation (the in-process [`LocalBus`](crate::raw::LocalBus) gives any store the
//! bus), and what differs is how far a guarantee reaches, which [`Capabilities`] says. The
//! manager needs all three parts on one `Arc<dyn Store>`, and so does the client the CLI is
//! built on, so split traits would come back together as one supertrait, with an impl
//! block, a forwarding impl and a suite per part, and a trait object that cannot be
//! narrowed to one part without trait upcasting (newer than this crate's minimum Rust).
//! New operations join the section of their caller; one that some backend cannot carry
//! out returns [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) there, and gets a
//! [`Capabilities`] flag.

use crate::error::Result;
use crate::event::{Event, EventStream};
use crate::stats::Stats;
use crate::task::{Task, TaskId, TaskRecord};
use async_trait::async_trait;
use futures_util::stream::BoxStream;

mod capabilities;
mod ext;
mod forward;
mod options;
mod outcome;
mod results;
mod schedule;
pub(crate) mod url;

pub use capabilities::Capabilities;
pub use ext::StoreExt;
pub use options::{
    ApplyOptions, CancelOptions, ClaimOptions, ClaimTopics, EnqueueOptions, ListOptions,
    PruneOptions, PruneSchedulesOptions, RecoverOptions, RegisterOptions, RenewOptions,
    RequeueOptions, StatsOptions, TopicClaim, Waiting, DEFAULT_MAX_RETRIES,
};
pub use outcome::{Applied, Cancellation, LeaseRef, Outcome, OutcomeKind, Progress};
pub use results::{Claimed, Enqueued, Page, Recovered, LEASE_EXPIRED_ERROR};
pub use schedule::{Fired, ScheduleEntry, ScheduleState, Tick};

/// A stream that yields whenever work may have become available in the store.
pub type WakeStream = BoxStream<'static, ()>;

/// A stream of the ids of running tasks whose cancel was requested.
pub type CancelStream = BoxStream<'static, TaskId>;

/// A backend that keeps tasks in five queues (INPUT, WORK, DEAD, and the history of
/// COMPLETED and CANCELLED), with stats and events.
///
/// Object safe: `Arc<dyn Store>` holds a store chosen at run time, and `Arc<S>` and
/// `Box<S>` are stores themselves.
///
/// Every method is atomic per task: a task is in exactly one queue before and after,
/// and the stats counters move in the same step as the transition they count. Methods
/// taking a batch may apply it in several steps, but never leave one task half-moved.
///
/// Errors carry an [`ErrorKind`](crate::ErrorKind): `Unavailable` when the backend cannot
/// be reached (nothing was changed, or the call can be repeated safely), `Storage` when it
/// refused the write, `Corrupt` when stored data cannot be decoded.
///
/// No method has a default body, so a wrapper that forgets to forward one does not compile.
///
/// The methods come in three groups (see the [module docs](self) for why they share one
/// trait): queue operations ([`enqueue`](Self::enqueue) to [`prune`](Self::prune)),
/// inspection and administration ([`stats`](Self::stats) to
/// [`set_paused`](Self::set_paused)), and the event bus ([`publish`](Self::publish) to
/// [`cancellations`](Self::cancellations)).
///
/// # Unique keys
/// A task [holds its unique key](TaskRecord::holds_unique_key) while it is in INPUT, WORK
/// or DEAD, and while it is kept in COMPLETED or CANCELLED if it asked for
/// [`unique_while_kept`](crate::Task::unique_while_kept). Every move that ends the holding
/// (finish, prune, delete) frees the key in the same step, unless another task holds it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    // Queue operations: what the manager runs tasks with.

    /// Adds tasks to INPUT.
    ///
    /// # Behavior
    /// - Returns one [`Enqueued`] per task, in order. Each new task gets a fresh id, larger
    ///   than every id the store handed out before; ids grow in batch order.
    /// - A task whose unique key is held by a task of the same topic (see the trait docs),
    ///   or earlier in the same batch, is not added: its entry is `Duplicate(existing id)`.
    ///   The same key in another topic is another key.
    /// - Counts `enqueued` once per new task. A new task's record is the one
    ///   [`TaskExt::into_record`](crate::raw::TaskExt::into_record) builds from `opts`: due
    ///   at its `run_at`, attempt 0, its retry limit unset unless the task sets one.
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

    /// Moves up to `opts.limit` due tasks of `opts.topics` from INPUT to WORK, each under a
    /// new lease (owner, a fresh fencing token, deadline `opts.now + opts.lease`).
    ///
    /// # Behavior
    /// - A task is due when `run_at <= opts.now`. Within a topic, due tasks are claimed in
    ///   ascending `priority`, then ascending id (FIFO). Topics are tried in
    ///   [`ClaimOptions::in_order`]: from `opts.first`, wrapping round.
    /// - Paused topics are skipped. A topic with `max_running` gives at most as many tasks
    ///   as keep its WORK size (store-wide) within the limit.
    /// - Each claimed task's `attempt` goes up by 1, `started_at` (and, the first time,
    ///   `first_started_at`) is `opts.now`, and a task with no retry limit gets its topic's
    ///   [`TopicClaim::max_retries`] for good. Counts `started` once per task.
    /// - A task whose record cannot be decoded is claimed all the same and returned as
    ///   [`Claimed::Corrupt`].
    /// - No task is returned by two claims unless the first lease was recovered in between.
    ///
    /// # Cancel safety
    /// Dropping the future may leave tasks claimed by nobody; the reaper returns them when
    /// their lease expires.
    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>>;

    /// Extends leases to `opts.deadline`.
    ///
    /// # Behavior
    /// - Returns one [`Applied`] per lease, in order: `Done` when the token still owns the
    ///   task (the deadline is set), `Cancelled` when it owns it but a cancel was requested
    ///   (the deadline is left as it was, so the lease runs out), `Stale` otherwise
    ///   (nothing changes).
    /// - This is how a manager that cannot receive [`cancellations`](Store::cancellations)
    ///   from other processes learns of a cancel: within one renew interval.
    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>>;

    /// Stores the latest progress of runs on their records.
    ///
    /// # Behavior
    /// - Returns one [`Applied`] per update, in order: `Done` (stored), `Cancelled`
    ///   (stored, and a cancel was requested), or `Stale` (the token no longer owns the
    ///   task: nothing changes). Counts nothing and publishes nothing (the manager publishes
    ///   [`Event::TaskProgress`] itself, at every report).
    async fn progress(&self, updates: &[Progress]) -> Result<Vec<Applied>>;

    /// Applies outcomes of runs at `opts.now`.
    ///
    /// # Behavior
    /// - Returns one [`Applied`] per outcome, in order. An outcome whose token no longer
    ///   owns the task returns `Stale` and changes nothing: no move, no counter.
    /// - A task with a cancel request ends CANCELLED whatever the outcome (its result and
    ///   progress are stored, its attempt is left as it is, `finished_at = now`), counts
    ///   `cancelled`, and returns `Cancelled`.
    /// - Otherwise it returns `Done`. `Complete` puts the task in COMPLETED with its result
    ///   and `finished_at = now`. `Retry` puts it in INPUT due at `at`; `Dead` in DEAD with
    ///   `finished_at = now`; each adds its error to `errors` as
    ///   [`AttemptError`](crate::AttemptError) `{ attempt, at: now, message }`,
    ///   dropping the oldest beyond [`MAX_KEPT_ERRORS`](crate::MAX_KEPT_ERRORS).
    ///   `Release` puts it in INPUT due at `now` with `attempt` one less. Each clears the
    ///   lease and counts its counter (see [`OutcomeKind`]).
    /// - A finished task (COMPLETED or CANCELLED) of an outcome with `keep == false` is
    ///   removed instead. A finished task frees its unique key unless it holds it while kept.
    /// - An outcome's `progress`, if set, is stored first.
    /// - An outcome kind the backend does not know fails the call with `Unsupported`.
    /// - Outcomes that put tasks back in INPUT wake [`wakeups`](Store::wakeups) streams.
    ///
    /// # Cancel safety
    /// Dropping the future may leave some outcomes applied and others not; applying the same
    /// outcomes again returns `Stale` for those already applied.
    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>>;

    /// The reaper: moves up to `opts.limit` tasks whose lease deadline is before `opts.now`
    /// out of WORK.
    ///
    /// # Behavior
    /// - A task with a cancel request goes to CANCELLED (counts `cancelled` too). One with
    ///   retries left ([`TaskRecord::has_retries_left`]) goes back to INPUT, due now; one
    ///   without goes to DEAD with [`LEASE_EXPIRED_ERROR`] added to its errors (counts
    ///   `failed` too). Each counts `recovered`, sets `finished_at = now` when it ends, and
    ///   any outcome for the old lease is then `Stale`. Recovered tasks are kept (a
    ///   cancelled one until pruned).
    /// - Returns the tasks it moved.
    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>>;

    /// Removes up to `opts.limit` finished records (COMPLETED and CANCELLED) whose
    /// `finished_at` is at or before their topic's cutoff ([`PruneOptions::cutoff_of`]).
    ///
    /// # Behavior
    /// - Returns how many it removed; fewer than `opts.limit` means none is left to prune.
    ///   A pruned task frees its unique key if it held it. Counts nothing.
    /// - Its cost does not grow with the number of records kept but not yet due for
    ///   pruning: each backend keeps finished tasks in `finished_at` order per topic.
    async fn prune(&self, opts: &PruneOptions) -> Result<u64>;

    // Inspection and administration: what the CLI, a dashboard and a client use.

    /// A snapshot of counters and queue sizes (every queue, COMPLETED and CANCELLED too),
    /// totals and per topic, with paused flags.
    ///
    /// # Behavior
    /// - Each topic that has counted anything, holds a task or is paused has an entry.
    /// - A topic's [`earliest_run_at`](crate::TopicStats::earliest_run_at) is the smallest
    ///   `run_at` of its tasks in INPUT (due or scheduled), `None` when it has none. It is
    ///   read from an index in `run_at` order: its cost does not grow with the number of
    ///   tasks waiting.
    /// - A topic's INPUT size is split by time at `opts.now`, as
    ///   [`TaskRecord::status`] would: [`scheduled`](crate::QueueSizes::scheduled) counts
    ///   its INPUT tasks with `run_at > opts.now` and `attempt == 0` (waiting for their
    ///   first run), [`retrying`](crate::QueueSizes::retrying) those with `run_at >
    ///   opts.now` and `attempt > 0` (waiting to run again after a failed or interrupted
    ///   run), and [`pending`](crate::QueueSizes::pending) is the rest, the due ones. The
    ///   split is exact for any `opts.now` no earlier than the `now` of the calls that put
    ///   the tasks in INPUT and claimed from the topic (a store may file a task as due once
    ///   a call at a later time found it so); a store whose index is ordered by `run_at`
    ///   alone is exact for every `opts.now`.
    /// - Cost: the split never visits a due task. It counts the tasks not yet due through
    ///   an index in `run_at` order, from `opts.now` on: at most O(tasks not yet due) per
    ///   topic, less where the backend counts a range without visiting it (each store's
    ///   README says which). Everything else is read from counters.
    async fn stats(&self, opts: &StatsOptions) -> Result<Stats>;

    /// The task with this id, in whichever queue it is; `None` if the store does not hold it.
    ///
    /// # Behavior
    /// - Fails with `Corrupt` when the stored record cannot be decoded.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>>;

    /// A page of one queue, in ascending id order.
    ///
    /// # Behavior
    /// - Returns up to `opts.limit` tasks of `opts.queue` (and `opts.topic`, if set) with
    ///   ids above `opts.after`. `next` is the last id of the page when more may follow.
    /// - Paging through with `next` visits each task that stays in the queue exactly once.
    /// - A record that cannot be decoded never fails the page: it is shown as far as it can
    ///   be read, or left out with a warning. [`get`](Store::get) reports it as `Corrupt`,
    ///   and [`delete`](Store::delete) removes it.
    /// - With [`opts.waiting`](ListOptions::waiting) `(kind, now)`, only the INPUT tasks
    ///   that [`Waiting::holds`] at `now` (as [`TaskRecord::status`] at `now` says), still
    ///   in id order after `opts.after`; their number is the matching part of the stats
    ///   split at the same `now` ([`Waiting::count`]), exact under the same condition.
    ///   Fails with `Misuse` when `opts.queue` is not INPUT ([`ListOptions::validate`]).
    /// - Cost of a waiting filter: `Scheduled` and `Retrying` read the tasks not yet due
    ///   from the index in `run_at` order that stats count (O(tasks not yet due) in the
    ///   topic, or all topics, then a sort by id), never a due task. `Pending` walks INPUT
    ///   as an unfiltered page does and skips the tasks not yet due: O(INPUT) at worst.
    async fn list(&self, opts: &ListOptions) -> Result<Page>;

    /// Sends dead tasks back to INPUT, due at `opts.now`, with attempt reset to 0.
    ///
    /// # Behavior
    /// - Returns, per id, whether it was in DEAD and moved. Counts `requeued` per move.
    /// - Keeps its errors (the history of its attempts) and clears `finished_at`.
    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>>;

    /// Removes tasks from whichever queue holds them and frees the unique keys they hold.
    ///
    /// # Behavior
    /// - Returns, per id, whether it existed. A deleted task in WORK makes its run's outcome
    ///   `Stale`.
    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>>;

    /// Cancels tasks on behalf of `opts.by`.
    ///
    /// # Behavior
    /// - Returns one [`Cancellation`] per id, in order.
    /// - A task in INPUT (pending, scheduled or retrying) moves to CANCELLED at once, with
    ///   `cancelled_by`, `finished_at = now`; it frees its unique key unless it holds it
    ///   while kept, counts `cancelled`, and the store publishes an
    ///   [`Event::TaskCancelled`] with `was_running: false`.
    /// - A task in WORK gets `cancelled_by` (its cancel request; a second request keeps the
    ///   first `by`) and stays where it is: its next outcome, or the reaper, ends it
    ///   CANCELLED, and its renewals are refused. Its id is sent to every
    ///   [`cancellations`](Store::cancellations) stream (across processes where
    ///   [`Capabilities::cross_process_events`]).
    /// - A task in DEAD, COMPLETED or CANCELLED is `Refused` and unchanged; an unknown id is
    ///   `NotFound`.
    async fn cancel(&self, ids: &[TaskId], opts: &CancelOptions) -> Result<Vec<Cancellation>>;

    /// Pauses (`true`) or resumes (`false`) claiming from a topic, store-wide.
    ///
    /// # Behavior
    /// - A paused topic's tasks are not claimed; running ones finish normally. Resuming
    ///   wakes [`wakeups`](Store::wakeups) streams.
    /// - Fails with `Misuse` for a topic name that
    ///   [`validate_topic`](crate::raw::validate_topic) rejects.
    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()>;

    // Schedules: the ticks of periodic tasks (see the `schedule` docs of the crate root's
    // `Schedule`).

    /// Records that a manager registers these schedules at `opts.now`.
    ///
    /// # Behavior
    /// - Returns one [`ScheduleState`] per entry, in order, as stored after the call.
    /// - A schedule new to the store gets [`ScheduleState::new`]: not paused, never fired.
    /// - A known one gets [`ScheduleState::register`]: its spec, zone and topic are the
    ///   entry's, `seen_at` is `opts.now` (never earlier than before), and its ticks and
    ///   paused flag stay.
    async fn register_schedules(
        &self,
        entries: &[ScheduleEntry],
        opts: &RegisterOptions,
    ) -> Result<Vec<ScheduleState>>;

    /// Fires ticks: per tick, decides and enqueues in one atomic step.
    ///
    /// # Behavior
    /// - Returns one [`Fired`] per tick, in order, as [`ScheduleState::decide`] and
    ///   [`ScheduleState::fired`] describe: a tick no later than the schedule's last tick
    ///   is `Stale` and changes nothing; in a paused schedule, or with
    ///   [`Overlap::Skip`](crate::Overlap::Skip) while the last task is in INPUT or WORK, it
    ///   becomes the last tick without an enqueue; otherwise its task is enqueued exactly as
    ///   [`enqueue`](Store::enqueue) would (a fresh id, unique keys, counters, wake-ups) and
    ///   it becomes the last tick, with `last_task` and `fired_at = opts.now`, in the same
    ///   step. Of any number of calls with the same tick, from any handles and processes,
    ///   at most one enqueues.
    /// - The enqueue event of a fired task carries the tick
    ///   ([`Event::TaskEnqueue::tick`](crate::Event::TaskEnqueue)).
    /// - A tick of a schedule the store does not know creates its state
    ///   ([`ScheduleState::unregistered`]) and fires.
    /// - On error, a tick was either fired whole or not at all.
    async fn fire(&self, ticks: Vec<Tick>, opts: &EnqueueOptions) -> Result<Vec<Fired>>;

    /// Every schedule the store keeps, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleState>>;

    /// Pauses (`true`) or resumes (`false`) a schedule, store-wide.
    ///
    /// # Behavior
    /// - Returns whether the store knows the schedule; an unknown one is not created.
    /// - While paused, a fired tick is `Paused`: it becomes the last tick, so resuming does
    ///   not catch up on the ticks of the pause.
    async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool>;

    /// Removes the state of schedules no manager registered since `opts.seen_before`.
    ///
    /// # Behavior
    /// - Removes each schedule whose `seen_at` is earlier than `opts.seen_before`, and
    ///   returns how many it removed. Their tasks stay.
    async fn prune_schedules(&self, opts: &PruneSchedulesOptions) -> Result<u64>;

    // The event bus: events for watchers, wake-ups for managers.

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
    ///   `true` is always correct; a store that knows better saves its publishers the work.
    fn has_subscribers(&self) -> bool;

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

    /// A stream of the ids of running tasks whose cancel was requested
    /// ([`cancel`](Store::cancel) answered `Requested`), for the manager that runs them.
    ///
    /// # Behavior
    /// - A request made after this call returns is delivered, even before the stream is
    ///   first polled, to the streams of this store handle (and its clones), and to those
    ///   of other handles and processes where [`Capabilities::cross_process_events`]. A
    ///   request may be delivered more than once, or (a lagging stream, a dropped
    ///   connection) not at all: the stored request, which [`renew`](Store::renew)
    ///   reports, is what a manager relies on in the end.
    async fn cancellations(&self) -> Result<CancelStream>;
}
