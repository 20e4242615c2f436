//! The vocabulary of schedules in the store: [`ScheduleEntry`] registers one, [`Tick`]
//! fires one tick, [`Fired`] says what became of it, [`ScheduleState`] is what the store
//! keeps.

use super::results::Enqueued;
use crate::schedule::Overlap;
use crate::task::{Task, TaskId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A schedule as a manager registers it ([`Store::register_schedules`]): what listing
/// shows of it.
///
/// [`Store::register_schedules`]: super::Store::register_schedules
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleEntry {
    /// The schedule's name, its identity.
    pub name: Arc<str>,
    /// Its cadence, as [`Cadence::spec`](crate::Cadence::spec) writes it.
    pub spec: Arc<str>,
    /// The time zone the cadence is read in.
    pub zone: Arc<str>,
    /// The topic its task goes to.
    pub topic: Arc<str>,
}

impl ScheduleEntry {
    /// An entry.
    pub fn new(
        name: impl Into<Arc<str>>,
        spec: impl Into<Arc<str>>,
        zone: impl Into<Arc<str>>,
        topic: impl Into<Arc<str>>,
    ) -> Self {
        ScheduleEntry {
            name: name.into(),
            spec: spec.into(),
            zone: zone.into(),
            topic: topic.into(),
        }
    }
}

/// One tick of a schedule to fire ([`Store::fire`](super::Store::fire)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Tick {
    /// The schedule's name.
    pub schedule: Arc<str>,
    /// The tick: the instant the cadence names, which is the same in every manager.
    pub at: Timestamp,
    /// The task to enqueue.
    pub task: Task,
    /// Whether to fire while the previous tick's task is unfinished.
    pub overlap: Overlap,
}

impl Tick {
    /// A tick.
    pub fn new(schedule: impl Into<Arc<str>>, at: Timestamp, task: Task, overlap: Overlap) -> Self {
        Tick {
            schedule: schedule.into(),
            at,
            task,
            overlap,
        }
    }
}

/// What became of a [`Tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fired {
    /// The tick was fired: its task was enqueued (or was a duplicate of a task holding its
    /// unique key), and it is the schedule's last tick now.
    Enqueued(Enqueued),
    /// The schedule's last tick is this one or later: another manager fired it (or skipped
    /// it). Nothing changed.
    Stale {
        /// The schedule's last tick.
        last: Timestamp,
    },
    /// The schedule is paused: the tick is its last tick now, and nothing was enqueued.
    Paused,
    /// The previous tick's task is unfinished and the tick asked for
    /// [`Overlap::Skip`]: the tick is the schedule's last tick now, and nothing was
    /// enqueued.
    Overlapped {
        /// The unfinished task.
        running: TaskId,
    },
}

/// What the store keeps of a schedule ([`Store::schedules`](super::Store::schedules)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleState {
    /// The name.
    pub name: Arc<str>,
    /// The cadence last registered ([`ScheduleEntry::spec`]); empty if the schedule was
    /// fired without being registered.
    pub spec: Arc<str>,
    /// The time zone last registered.
    pub zone: Arc<str>,
    /// The topic last registered (or fired to).
    pub topic: Arc<str>,
    /// Whether ticks are skipped rather than fired.
    pub paused: bool,
    /// The last tick fired, paused or overlapped, if any.
    pub last_tick: Option<Timestamp>,
    /// The task the last fired tick enqueued (or the duplicate it met).
    pub last_task: Option<TaskId>,
    /// When the last tick was fired (the store's `now` then), which says how late it was.
    pub fired_at: Option<Timestamp>,
    /// When a manager last registered the schedule.
    pub seen_at: Timestamp,
}

impl ScheduleState {
    /// The state of a schedule new to the store, registered by `entry` at `now`.
    pub fn new(entry: &ScheduleEntry, now: Timestamp) -> Self {
        ScheduleState {
            name: entry.name.clone(),
            spec: entry.spec.clone(),
            zone: entry.zone.clone(),
            topic: entry.topic.clone(),
            paused: false,
            last_tick: None,
            last_task: None,
            fired_at: None,
            seen_at: now,
        }
    }

    /// Records `entry` as registered at `now`, keeping the ticks and the paused flag.
    pub fn register(&mut self, entry: &ScheduleEntry, now: Timestamp) {
        self.spec = entry.spec.clone();
        self.zone = entry.zone.clone();
        self.topic = entry.topic.clone();
        self.seen_at = self.seen_at.max(now);
    }

    /// The state of a schedule fired before any registration: what the tick tells.
    pub fn unregistered(tick: &Tick, now: Timestamp) -> Self {
        let entry = ScheduleEntry::new(tick.schedule.clone(), "", "", tick.task.topic());
        Self::new(&entry, now)
    }

    /// The first half of [`Store::fire`](super::Store::fire)'s decision, for a backend
    /// that holds the state in hand: whether `tick` is fired, and if not, what to answer.
    /// `unfinished` says whether a task (the previous tick's) is in INPUT or WORK.
    ///
    /// On `None` the caller enqueues the tick's task and then calls
    /// [`fired`](Self::fired) with the result; otherwise the caller stores the state (it
    /// may have changed) and answers the [`Fired`] given.
    pub fn decide(
        &mut self,
        tick: &Tick,
        unfinished: impl FnOnce(TaskId) -> bool,
    ) -> Option<Fired> {
        if let Some(last) = self.last_tick.filter(|last| *last >= tick.at) {
            return Some(Fired::Stale { last });
        }
        if self.paused {
            self.last_tick = Some(tick.at);
            return Some(Fired::Paused);
        }
        if tick.overlap == Overlap::Skip {
            if let Some(running) = self.last_task.filter(|id| unfinished(*id)) {
                self.last_tick = Some(tick.at);
                return Some(Fired::Overlapped { running });
            }
        }
        None
    }

    /// Records that `tick` was fired at `now` and enqueued as `enqueued`.
    pub fn fired(&mut self, tick: &Tick, enqueued: Enqueued, now: Timestamp) {
        self.last_tick = Some(tick.at);
        self.last_task = Some(enqueued.id());
        self.fired_at = Some(now);
    }
}
