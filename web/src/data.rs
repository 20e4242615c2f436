//! Everything the dashboard reads from or does to the store, in one place.
//!
//! Pages and actions call [`Source`] and nothing else; it wraps the
//! [`Client`](taskmill_core::Client), so that what the dashboard may do is one short
//! list. The vocabulary of states the dashboard shows (which tabs exist, what a
//! row can do) lives here too, for the same reason.

use crate::unworked::Sightings;
use futures_util::{stream, StreamExt, TryStreamExt};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::{Cancellation, ListOptions, Page, StatsOptions, Waiting};
use taskmill_core::{
    Client, Clock, Event, EventStream, Queue, Result, ScheduleInfo, Stats, Store, TaskId,
    TaskRecord, Timestamp, TopicStats,
};

/// How many last tasks of schedules the schedules page reads from the store at once.
const LAST_TASK_READS: usize = 16;

/// A schedule as the schedules page shows it: what the store keeps, its next tick, and the
/// task its last fired tick enqueued (`None` when it never fired, or the task was deleted
/// or pruned since).
pub(crate) struct ScheduleRow {
    pub(crate) info: ScheduleInfo,
    pub(crate) last_task: Option<TaskRecord>,
}

/// The dashboard's handle on a store: a [`Client`] that cancels as `dashboard`, the clock
/// it reads, and what it has seen of the topics' claims.
#[derive(Clone)]
pub(crate) struct Source {
    client: Client,
    clock: Clock,
    /// Fed by every stats read, pages' and live streams' alike.
    sightings: Arc<Mutex<Sightings>>,
}

/// Stats as the dashboard read them: when, and which topics they show nobody working on.
pub(crate) struct Observed {
    pub(crate) stats: Stats,
    /// The time just before the read: what latency and relative times are judged at.
    pub(crate) at: Timestamp,
    /// The topics flagged “no worker” (see [`unworked`](crate::unworked)).
    pub(crate) unworked: BTreeSet<String>,
    /// The threshold they were flagged by.
    pub(crate) unworked_after: Duration,
}

impl Observed {
    /// Whether `topic` is flagged “no worker”.
    pub(crate) fn is_unworked(&self, topic: &str) -> bool {
        self.unworked.contains(topic)
    }
}

/// A state a task can be in, as the dashboard shows it: one tab of a queue page. INPUT is
/// three tabs, split by time as the stats split it (and as the summary bar counts them):
/// a queue and, for INPUT, the part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State(Queue, Option<Waiting>);

impl State {
    /// Waiting and due now (its URL name stays `input`, the queue's, as links had it).
    pub(crate) const PENDING: State = State(Queue::Input, Some(Waiting::Pending));
    /// Waiting and not yet due, never run.
    pub(crate) const SCHEDULED: State = State(Queue::Input, Some(Waiting::Scheduled));
    /// Waiting and not yet due, after a failed or interrupted run.
    pub(crate) const RETRYING: State = State(Queue::Input, Some(Waiting::Retrying));
    /// Claimed by a worker.
    pub(crate) const RUNNING: State = State(Queue::Work, None);
    /// Failed for good.
    pub(crate) const DEAD: State = State(Queue::Dead, None);
    /// Succeeded, kept as history.
    pub(crate) const COMPLETED: State = State(Queue::Completed, None);
    /// Cancelled, kept as history.
    pub(crate) const CANCELLED: State = State(Queue::Cancelled, None);

    /// Every state, in lifecycle order: the tabs of a queue page.
    pub(crate) const ALL: [State; 7] = [
        State::PENDING,
        State::SCHEDULED,
        State::RETRYING,
        State::RUNNING,
        State::DEAD,
        State::COMPLETED,
        State::CANCELLED,
    ];

    /// The state named in a URL (`input` or `pending`, `scheduled`, `retrying`, `work`,
    /// `dead`, `completed`, `cancelled`).
    pub(crate) fn parse(slug: &str) -> Option<State> {
        match slug {
            "pending" => Some(State::PENDING),
            "scheduled" => Some(State::SCHEDULED),
            "retrying" => Some(State::RETRYING),
            _ => slug.parse().ok().map(State::of_queue),
        }
    }

    /// The tab of a queue: INPUT's is Pending.
    fn of_queue(queue: Queue) -> State {
        match queue {
            Queue::Input => State::PENDING,
            queue => State(queue, None),
        }
    }

    /// The state of a stored task at `now`.
    pub(crate) fn of(task: &TaskRecord, now: Timestamp) -> State {
        let part = Waiting::ALL
            .into_iter()
            .find(|part| part.holds(task.run_at, task.attempt, now));
        match task.queue {
            Queue::Input => State(Queue::Input, part),
            queue => State(queue, None),
        }
    }

    /// The name in URLs and in the stats stream's fields.
    pub(crate) fn slug(self) -> &'static str {
        match self.1 {
            Some(Waiting::Scheduled) => "scheduled",
            Some(Waiting::Retrying) => "retrying",
            _ => self.0.as_str(),
        }
    }

    /// The name people read.
    pub(crate) fn label(self) -> &'static str {
        match (self.0, self.1) {
            (Queue::Input, Some(Waiting::Scheduled)) => "Scheduled",
            (Queue::Input, Some(Waiting::Retrying)) => "Retrying",
            (Queue::Input, _) => "Pending",
            (Queue::Work, _) => "Running",
            (Queue::Dead, _) => "Dead",
            (Queue::Completed, _) => "Completed",
            (Queue::Cancelled, _) => "Cancelled",
            _ => "Unknown",
        }
    }

    /// How many tasks of `stats` are in this state: INPUT's parts as the stats split it.
    pub(crate) fn count(self, stats: &TopicStats) -> u64 {
        match self.1 {
            Some(part) => part.count(&stats.sizes),
            None => stats.sizes.of(self.0),
        }
    }

    /// Whether it is a part of the waiting tasks (INPUT).
    pub(crate) fn is_waiting(self) -> bool {
        self.0 == Queue::Input
    }

    /// Whether its tasks can still be cancelled: waiting or running.
    pub(crate) fn is_cancellable(self) -> bool {
        matches!(self.0, Queue::Input | Queue::Work)
    }

    /// Whether its tasks are history: finished, kept until pruned.
    pub(crate) fn is_finished(self) -> bool {
        self.0.is_finished()
    }

    /// Whether its tasks can be sent back to run again.
    pub(crate) fn is_retryable(self) -> bool {
        self.0 == Queue::Dead
    }

    /// Whether its tasks are dead.
    pub(crate) fn is_dead(self) -> bool {
        self.0 == Queue::Dead
    }

    /// Whether its tasks hold a lease.
    pub(crate) fn is_running(self) -> bool {
        self.0 == Queue::Work
    }
}

/// A bulk action on every task of a state: the dead tasks of a topic or of all topics
/// (retry, delete), or the waiting tasks of one topic (cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Bulk {
    /// Send every dead task back to pending.
    Retry,
    /// Remove every dead task.
    Delete,
    /// Cancel every waiting task (pending, scheduled, retrying) of one topic; running tasks
    /// are left alone.
    Cancel,
}

impl Bulk {
    /// The name in URLs.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Bulk::Retry => "retry",
            Bulk::Delete => "delete",
            Bulk::Cancel => "cancel",
        }
    }

    /// The tab of the tasks it acts on, where it comes back to: Dead, or Pending (the
    /// first of INPUT's tabs) for a cancel, which acts on all of INPUT.
    pub(crate) fn state(self) -> State {
        match self {
            Bulk::Retry | Bulk::Delete => State::DEAD,
            Bulk::Cancel => State::PENDING,
        }
    }

    /// How many tasks of `figures` it acts on: the dead ones, or every waiting one
    /// (pending, scheduled and retrying, whichever tab it was asked from).
    pub(crate) fn count(self, figures: &TopicStats) -> u64 {
        match self {
            Bulk::Retry | Bulk::Delete => figures.sizes.dead,
            Bulk::Cancel => figures.sizes.input,
        }
    }

    /// Whether it must name a topic. Cancelling every waiting task of every topic would
    /// stop a whole system from one click, so the dashboard only offers it per topic.
    pub(crate) fn needs_topic(self) -> bool {
        self == Bulk::Cancel
    }
}

impl Source {
    pub(crate) fn new(store: Arc<dyn Store>, clock: Clock, unworked_after: Duration) -> Self {
        Source {
            client: Client::shared(store).by("dashboard").clock(clock.clone()),
            clock,
            sightings: Arc::new(Mutex::new(Sightings::new(unworked_after))),
        }
    }

    /// The time by the dashboard's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Counters, sizes and paused flags, totals and per topic; each read is also a
    /// snapshot for the “no worker” flag, and judged by the ones before it.
    pub(crate) async fn stats(&self) -> Result<Observed> {
        let at = self.now();
        // Read at `at`, so the split of INPUT by time and the latency agree.
        let stats = self.client.store().stats(&StatsOptions::new(at)).await?;
        let mut sightings = self.sightings.lock().unwrap_or_else(|e| e.into_inner());
        let unworked = sightings.observe(at, &stats);
        Ok(Observed {
            unworked_after: sightings.after(),
            stats,
            at,
            unworked,
        })
    }

    /// One page of tasks in `state`, ascending by id, after the cursor.
    pub(crate) async fn page(
        &self,
        state: State,
        topic: Option<&str>,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Page> {
        // INPUT's tabs list their part as of now: what the stats read at about the same
        // time count.
        let mut query = match state.1 {
            Some(part) => ListOptions::waiting(part, self.now()),
            None => ListOptions::new(state.0),
        }
        .limit(limit);
        if let Some(topic) = topic {
            query = query.topic(topic);
        }
        if let Some(after) = after {
            query = query.after(after);
        }
        self.client.list(query).await
    }

    /// One task, wherever it is.
    pub(crate) async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        self.client.get(id).await
    }

    /// Sends a dead task back to pending; whether it was dead.
    pub(crate) async fn retry(&self, id: TaskId) -> Result<bool> {
        let moved = self.client.requeue(&[id]).await?;
        Ok(moved.first().copied().unwrap_or(false))
    }

    /// Cancels a task on behalf of the dashboard: at once when it waits, by request when
    /// it runs.
    pub(crate) async fn cancel(&self, id: TaskId) -> Result<Cancellation> {
        let done = self.client.cancel(&[id]).await?;
        Ok(done.first().copied().unwrap_or(Cancellation::NotFound))
    }

    /// Removes a task; whether it existed.
    pub(crate) async fn delete(&self, id: TaskId) -> Result<bool> {
        let gone = self.client.delete(&[id]).await?;
        Ok(gone.first().copied().unwrap_or(false))
    }

    /// Pauses or resumes claiming from a topic.
    pub(crate) async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        match paused {
            true => self.client.pause(topic).await,
            false => self.client.resume(topic).await,
        }
    }

    /// Every schedule the store keeps, by name, each with its last task.
    ///
    /// The last task is read because the store's state cannot say how late the last fired
    /// tick was by itself: `last_tick` also moves on ticks skipped while paused or
    /// overlapping, while `fired_at` stays with the tick that fired, whose instant only
    /// the task's tick header keeps. One read per schedule, a few at a time.
    pub(crate) async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        let infos = self.client.schedules().await?;
        stream::iter(infos)
            .map(|info| async move {
                let last_task = match info.state.last_task {
                    Some(id) => self.client.get(id).await?,
                    None => None,
                };
                Ok::<_, taskmill_core::Error>(ScheduleRow { info, last_task })
            })
            .buffered(LAST_TASK_READS)
            .try_collect()
            .await
    }

    /// Pauses or resumes a schedule; `NotFound` for a name the store does not know.
    pub(crate) async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<()> {
        match paused {
            true => self.client.pause_schedule(name).await,
            false => self.client.resume_schedule(name).await,
        }
    }

    /// Applies `action` to every task of its state (of `topic`), a page at a time (the
    /// client's bulk calls), so that no more than one page is held however many there are.
    /// Returns how many it moved, removed or cancelled.
    pub(crate) async fn bulk(&self, action: Bulk, topic: Option<&str>) -> Result<u64> {
        match action {
            Bulk::Retry => self.client.requeue_dead(topic).await,
            Bulk::Delete => self.client.delete_dead(topic).await,
            Bulk::Cancel => self.client.cancel_waiting(topic).await,
        }
    }

    /// Task events from now on; stats snapshots are polled, not relayed.
    pub(crate) async fn events(&self) -> Result<EventStream> {
        let events = self.client.watch().await?;
        Ok(events
            .filter(|e| std::future::ready(!matches!(e, Event::ManagerStats { .. })))
            .boxed())
    }
}
