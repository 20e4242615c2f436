//! Periodic tasks: a [`Schedule`] names a [`Cadence`] and the task each tick enqueues.
//!
//! # Exactly once per tick
//!
//! Every manager that registers a schedule computes its ticks from the cadence and, as
//! each comes, asks the store to fire it ([`Store::fire`](crate::Store::fire)). The store
//! decides in one atomic step, together with the enqueue: the tick is fired only if it is
//! later than the last tick it fired for that schedule, and the enqueue and the new last
//! tick are written together. So any number of managers on any number of machines enqueue
//! one task per tick, with no leader and no agreement on the time beyond the tick's own
//! name: a manager whose clock runs ahead fires a tick a little early (its task then runs
//! that much early), one whose clock runs behind finds the tick fired, and neither makes a
//! tick fire twice or get lost while another manager is on time.
//!
//! # Missed ticks and overlap
//!
//! A tick is *on time* when a manager reaches it within [`TICK_GRACE`] of its instant (a
//! short stall or a restart is not a miss), and every on-time tick fires: a manager back
//! within the grace fires the ticks it missed in order, and one joining a schedule fires
//! the on-time ticks since its last fired one. When no manager ran at a tick,
//! [`Missed`] says what the first manager back does: skip it (the default) or fire the
//! most recent missed tick within a window. [`Overlap`] says whether a tick fires while
//! the task of the schedule's previous tick is still waiting or running.
//!
//! A schedule that no manager registers any more stops firing at once; its state in the
//! store (last tick, paused flag) is removed once no manager has registered it for
//! [`SCHEDULE_RETENTION`].

mod cadence;

pub use cadence::{Cadence, MIN_INTERVAL};

use crate::error::{Error, Result};
use crate::task::Task;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How late a manager may reach a tick for it to count as on time.
pub const TICK_GRACE: Duration = Duration::from_secs(10);

/// How long a schedule's state is kept in the store after the last manager registering it
/// went away.
pub const SCHEDULE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 128;

/// The header a fired task carries with its schedule's name.
pub const SCHEDULE_HEADER: &str = "taskmill.schedule";

/// The header a fired task carries with its tick, in RFC 3339 (UTC, milliseconds).
pub const TICK_HEADER: &str = "taskmill.tick";

/// What the first manager back does about ticks that passed while no manager ran (or
/// while every manager was stalled for longer than [`TICK_GRACE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Missed {
    /// Missed ticks are skipped: the schedule goes on at its next tick.
    #[default]
    Skip,
    /// The most recent missed tick is fired once, if it is no older than `within`; older
    /// ones are skipped. A schedule never fired before skips what it missed.
    Latest {
        /// How far back a missed tick is still fired.
        within: Duration,
    },
}

impl Missed {
    /// How old a tick may be when it is fired.
    pub(crate) fn window(self) -> Duration {
        match self {
            Missed::Skip => TICK_GRACE,
            Missed::Latest { within } => within.max(TICK_GRACE),
        }
    }
}

/// Whether a tick fires while the task of the schedule's previous tick is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overlap {
    /// Fire every tick, whatever became of the previous one.
    #[default]
    Allow,
    /// Skip a tick while the previous tick's task is waiting, retrying or running (in
    /// INPUT or WORK); a dead previous task does not block.
    Skip,
}

/// A periodic task: every tick of its cadence enqueues a copy of its task, exactly once
/// however many managers register it.
///
/// The name is the schedule's identity in the store: managers registering the same name
/// share its ticks, and should register the same cadence and task (the store shows the
/// one registered last).
///
/// ```
/// use std::time::Duration;
/// use taskmill_core::{Missed, Overlap, Schedule, Task};
///
/// let nightly = Schedule::new(
///     "nightly-report",
///     "0 30 2 * * *",
///     Task::new("reports", &serde_json::json!({ "kind": "daily" }))?,
/// )?
/// .zone("Europe/Berlin")?
/// .missed(Missed::Latest { within: Duration::from_secs(6 * 3600) })
/// .overlap(Overlap::Skip);
/// assert_eq!(nightly.name(), "nightly-report");
///
/// let heartbeat = Schedule::every("heartbeat", Duration::from_secs(30), Task::new("ping", &())?)?;
/// assert_eq!(heartbeat.cadence().spec(), "@every 30s");
/// # Ok::<_, taskmill_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    name: Arc<str>,
    cadence: Cadence,
    task: Task,
    missed: Missed,
    overlap: Overlap,
}

impl Schedule {
    /// A schedule named `name` that enqueues `task` at every tick of `expression` (see
    /// [`Cadence`] for the syntax), read in UTC.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) for an invalid name or
    /// expression, or a task whose headers leave no room for the two a fired task gets.
    pub fn new(name: impl Into<Arc<str>>, expression: &str, task: Task) -> Result<Self> {
        Self::with_cadence(name, Cadence::cron(expression)?, task)
    }

    /// A schedule that ticks every `interval` (see [`Cadence::every`]).
    pub fn every(name: impl Into<Arc<str>>, interval: Duration, task: Task) -> Result<Self> {
        Self::with_cadence(name, Cadence::every(interval)?, task)
    }

    /// A schedule with a cadence built beforehand.
    pub fn with_cadence(name: impl Into<Arc<str>>, cadence: Cadence, task: Task) -> Result<Self> {
        let name = name.into();
        validate_name(&name)?;
        let schedule = Schedule {
            name,
            cadence,
            task,
            missed: Missed::default(),
            overlap: Overlap::default(),
        };
        // The headers a fire adds must fit: fail here, not at every tick. A tick in year
        // 9999 writes the longest RFC 3339 value.
        schedule.task_for(Timestamp::from_millis(253_402_300_799_999))?;
        Ok(schedule)
    }

    /// Reads the expression in `zone`, an IANA name such as `America/New_York`.
    pub fn zone(mut self, zone: &str) -> Result<Self> {
        self.cadence = self.cadence.in_zone(zone)?;
        Ok(self)
    }

    /// What to do about missed ticks (default [`Missed::Skip`]).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// Whether a tick fires while the previous tick's task is unfinished (default
    /// [`Overlap::Allow`]).
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// When it ticks.
    pub fn cadence(&self) -> &Cadence {
        &self.cadence
    }

    /// The task each tick enqueues (before the schedule's headers are added).
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The missed-tick policy.
    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The overlap policy.
    pub fn overlap_policy(&self) -> Overlap {
        self.overlap
    }

    /// The task the tick at `tick` enqueues: the template with [`SCHEDULE_HEADER`] and
    /// [`TICK_HEADER`].
    pub fn task_for(&self, tick: Timestamp) -> Result<Task> {
        self.task
            .clone()
            .header(SCHEDULE_HEADER, &*self.name)?
            .header(TICK_HEADER, tick.to_string())
    }
}

/// A schedule's tick, as an enqueue event and a fired task's headers name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleTick {
    /// The schedule's name.
    pub schedule: Arc<str>,
    /// The tick.
    pub tick: Timestamp,
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::misuse("a schedule name must not be empty"));
    }
    if name.len() > MAX_SCHEDULE_NAME_BYTES {
        return Err(Error::misuse(format!(
            "schedule name is {} bytes, over the limit of {MAX_SCHEDULE_NAME_BYTES}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::misuse(format!(
            "schedule name {name:?} contains a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn task() -> Task {
        Task::new("t", &1).unwrap()
    }

    #[test]
    fn names_are_checked_when_the_schedule_is_built() {
        for bad in [
            String::new(),
            "x".repeat(MAX_SCHEDULE_NAME_BYTES + 1),
            "tab\there".into(),
        ] {
            let e = Schedule::new(bad.as_str(), "@hourly", task()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Misuse, "{bad:?}");
        }
        let longest = "é".repeat(MAX_SCHEDULE_NAME_BYTES / 2);
        let schedule = Schedule::new(longest.as_str(), "@hourly", task()).unwrap();
        assert_eq!(schedule.name(), longest);
    }

    #[test]
    fn a_fired_task_carries_the_schedule_and_tick_in_its_headers() {
        let schedule = Schedule::every("s", Duration::from_secs(60), task()).unwrap();
        let tick = Timestamp::from_millis(1_700_000_040_000);
        let fired = schedule.task_for(tick).unwrap();
        assert_eq!(fired.headers().get(SCHEDULE_HEADER), Some("s"));
        assert_eq!(
            fired.headers().get(TICK_HEADER),
            Some("2023-11-14T22:14:00.000Z")
        );
        // The template itself is left as it was.
        assert!(schedule.task().headers().get(SCHEDULE_HEADER).is_none());
    }

    #[test]
    fn a_template_without_room_for_the_schedule_headers_is_refused() {
        let full =
            (0..crate::MAX_HEADERS).fold(task(), |t, i| t.header(format!("h{i}"), "v").unwrap());
        let e = Schedule::every("s", Duration::from_secs(60), full).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
    }

    #[test]
    fn the_missed_window_is_never_below_the_grace() {
        assert_eq!(Missed::Skip.window(), TICK_GRACE);
        let short = Missed::Latest {
            within: Duration::from_secs(1),
        };
        assert_eq!(short.window(), TICK_GRACE);
        let long = Missed::Latest {
            within: Duration::from_secs(3600),
        };
        assert_eq!(long.window(), Duration::from_secs(3600));
    }
}
