//! The scheduler loop: fires the ticks of the manager's schedules through
//! [`Store::fire`](crate::Store::fire), which decides each tick once for every manager
//! (see the [`Schedule`] docs for the guarantee and the policies).

use super::Shared;
use crate::schedule::{Schedule, TICK_GRACE};
use crate::store::{EnqueueOptions, Fired, RegisterOptions, ScheduleEntry, Tick};
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long the loop waits before trying again after the store failed a call.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The most ticks of one schedule fired in one store call: the on-time ticks of a burst
/// (a restart within [`TICK_GRACE`], a clock that ran behind) are bounded by the grace
/// over the shortest interval, well under this.
const MAX_DUE: usize = 64;

/// One schedule and where this manager is in its ticks.
struct Plan {
    schedule: Schedule,
    /// The first tick not yet decided by the store as far as this manager knows; `None`
    /// when the cadence has no more ticks.
    next: Option<Timestamp>,
    /// Whether the store has ever fired the schedule: one never fired does not catch up on
    /// ticks from before this manager planned it.
    fired_before: bool,
    /// When this manager planned it.
    since: Timestamp,
}

impl Plan {
    /// Plans `schedule` at `since`, given the last tick the store holds for it: the ticks
    /// after that one are this manager's to fire. A schedule never fired starts at its
    /// latest tick if that is on time, else at its next.
    fn new(schedule: Schedule, last_tick: Option<Timestamp>, since: Timestamp) -> Self {
        let cadence = schedule.cadence();
        let next = match last_tick {
            Some(last) => cadence.next_after(last),
            None => cadence
                .latest_at(since)
                .filter(|t| since.saturating_since(*t) <= TICK_GRACE)
                .or_else(|| cadence.next_after(since)),
        };
        Plan {
            next,
            fired_before: last_tick.is_some(),
            since,
            schedule,
        }
    }

    /// Whether a missed tick at `tick` may still be fired at `now`, by the policy.
    fn in_window(&self, tick: Timestamp, now: Timestamp) -> bool {
        let window = match self.fired_before || tick >= self.since {
            true => self.schedule.missed_policy().window(),
            false => TICK_GRACE,
        };
        now.saturating_since(tick) <= window
    }

    /// The ticks to fire at `now`, in order: every tick from `next` on that is on time
    /// (at most [`TICK_GRACE`] old), and before them the most recent older one, a missed
    /// tick, if the missed-tick policy still fires it. Missed ticks it does not fire are
    /// skipped (and logged).
    fn due(&mut self, now: Timestamp) -> Vec<Timestamp> {
        let Some(next) = self.next.filter(|next| *next <= now) else {
            return Vec::new();
        };
        let cadence = self.schedule.cadence();
        let on_time_from = now - TICK_GRACE;
        let mut due = Vec::new();
        let mut from = next;
        if next < on_time_from {
            let before = on_time_from - Duration::from_millis(1);
            if let Some(missed) = cadence.latest_at(before).filter(|t| *t >= next) {
                match self.in_window(missed, now) {
                    true => due.push(missed),
                    false => info!(
                        schedule = %self.schedule.name(),
                        tick = %missed,
                        late = ?now.saturating_since(missed),
                        "skipping missed ticks"
                    ),
                }
            }
            match cadence.next_after(before) {
                Some(first_on_time) => from = first_on_time,
                None => {
                    self.next = None;
                    return due;
                }
            }
        }
        let mut tick = Some(from);
        while let Some(at) = tick.filter(|t| *t <= now && due.len() < MAX_DUE) {
            due.push(at);
            tick = cadence.next_after(at);
        }
        if due.is_empty() {
            self.next = tick;
        }
        due
    }

    /// Moves past `tick`, which the store has decided.
    fn decided(&mut self, tick: Timestamp) {
        self.fired_before = true;
        self.next = self.schedule.cadence().next_after(tick);
    }
}

impl Shared {
    /// Runs until `stop_claiming` (shutdown step 1): no tick is fired once a close began.
    ///
    /// `started` is the clock's time when the manager started: ticks from then on are the
    /// manager's to fire by the missed-tick policy, however long registering takes.
    pub(super) async fn schedule_loop(
        self: Arc<Self>,
        schedules: Vec<Schedule>,
        started: Timestamp,
    ) {
        self.announce().await;
        let clock = self.config.clock.clone();
        let entries: Vec<ScheduleEntry> = schedules
            .iter()
            .map(|s| {
                ScheduleEntry::new(
                    s.name(),
                    s.cadence().spec(),
                    s.cadence().zone(),
                    s.task().topic(),
                )
            })
            .collect();
        let states = loop {
            let opts = RegisterOptions::new(clock.now());
            match self.store.register_schedules(&entries, &opts).await {
                Ok(states) => break states,
                Err(e) => {
                    warn!(error = %e, "cannot register schedules; trying again");
                    tokio::select! {
                        _ = self.stop_claiming.cancelled() => return,
                        _ = tokio::time::sleep(RETRY_DELAY) => continue,
                    }
                }
            }
        };
        let mut plans: Vec<Plan> = schedules
            .into_iter()
            .zip(states)
            .map(|(schedule, state)| Plan::new(schedule, state.last_tick, started))
            .collect();
        // Registering again tells the store the schedules are still in use (see
        // `SCHEDULE_RETENTION`); the first registration was just above.
        let every = self
            .config
            .schedule_register_interval
            .max(Duration::from_millis(1));
        let mut register = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        register.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if retry_at.is_none() {
                let now = clock.now();
                if !self.fire_due(&mut plans, now).await {
                    retry_at = Some(tokio::time::Instant::now() + RETRY_DELAY);
                }
            }
            let wake = plans.iter().filter_map(|p| p.next).min();
            let clock_reaches = async {
                match (retry_at, wake) {
                    (Some(at), _) => tokio::time::sleep_until(at).await,
                    (None, Some(wake)) => clock.sleep_until(wake).await,
                    (None, None) => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop_claiming.cancelled() => return,
                _ = register.tick() => {
                    let opts = RegisterOptions::new(clock.now());
                    if let Err(e) = self.store.register_schedules(&entries, &opts).await {
                        warn!(error = %e, "cannot register schedules again");
                    }
                }
                _ = clock_reaches => retry_at = None,
            }
        }
    }

    /// Fires every due tick in one store call; `false` when the store failed it (the ticks
    /// stay due, to be tried again while they are in their window).
    async fn fire_due(&self, plans: &mut [Plan], now: Timestamp) -> bool {
        let mut due = Vec::new();
        let mut ticks = Vec::new();
        for (i, plan) in plans.iter_mut().enumerate() {
            for at in plan.due(now) {
                match plan.schedule.task_for(at) {
                    Ok(task) => {
                        due.push((i, at));
                        let name = plan.schedule.name_arc().clone();
                        ticks.push(Tick::new(name, at, task, plan.schedule.overlap_policy()));
                    }
                    // Checked at registration; a failure here is a bug, not a reason to stop.
                    Err(e) => {
                        warn!(schedule = %plan.schedule.name(), error = %e, "cannot build the tick's task");
                        plan.decided(at);
                    }
                }
            }
        }
        if ticks.is_empty() {
            return true;
        }
        let fired = match self.store.fire(ticks, &EnqueueOptions::new(now)).await {
            Ok(fired) => fired,
            Err(e) => {
                warn!(error = %e, count = due.len(), "cannot fire schedule ticks; trying again");
                return false;
            }
        };
        for ((i, at), fired) in due.into_iter().zip(fired) {
            let plan = &mut plans[i];
            let name = plan.schedule.name();
            // Every tick up to the store's last is decided: another manager fired it.
            let decided = match fired {
                Fired::Stale { last } => last.max(at),
                _ => at,
            };
            match fired {
                Fired::Enqueued(enqueued) => {
                    debug!(schedule = %name, tick = %at, id = %enqueued.id(), "fired")
                }
                Fired::Stale { last } => {
                    debug!(schedule = %name, tick = %at, %last, "already fired")
                }
                Fired::Paused => debug!(schedule = %name, tick = %at, "paused; tick skipped"),
                Fired::Overlapped { running } => debug!(
                    schedule = %name, tick = %at, %running,
                    "previous task unfinished; tick skipped"
                ),
            }
            plan.decided(decided);
        }
        true
    }
}
