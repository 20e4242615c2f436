//! The maintenance loop: renews the leases of leased runs, follows the store's cancel
//! requests, writes runs' progress, runs the reaper, prunes finished tasks (and the
//! schedules no manager registers any more), and publishes stats, each on its own
//! interval.

use super::Shared;
use crate::event::Event;
use crate::store::{
    Applied, LeaseRef, Progress, PruneSchedulesOptions, RecoverOptions, RenewOptions, StatsOptions,
};
use crate::task::Queue;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, warn};

/// The most expired leases recovered in one reaper pass.
const MAX_RECOVER_BATCH: usize = 1000;

/// The most finished records one prune call removes.
const PRUNE_BATCH: usize = 1000;

/// The most prune calls in one round: a round goes on while calls come back full, and
/// leaves the rest to the next round.
const MAX_PRUNE_CALLS: u32 = 100;

/// A tick every `period` (at least 1 ms), the first at once; late ticks are not bunched.
fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// As [`every`], the first tick one `period` from now.
fn after(period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(1));
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

impl Shared {
    /// Runs until `stop_maintenance` (shutdown step 5).
    ///
    /// One store call at a time: a round of pruning goes one batch per turn of the loop,
    /// so a renewal that falls due meanwhile waits for one batch, never for the round.
    pub(super) async fn maintenance_loop(self: Arc<Self>) {
        self.announce().await;
        let mut cancels = self.cancel_requests_slot().take();
        let mut renew = every(self.config.renew_interval);
        let mut reap = every(self.config.reap_interval);
        let mut progress = every(self.config.progress_interval);
        let mut prune = every(self.config.prune_interval);
        // Schedules are pruned from one interval after the start on, not at once: the
        // scheduler registers the manager's own schedules at its start, and a manager
        // starting after a week with no manager running must not prune them first (and
        // lose their last tick and paused flag).
        let mut prune_schedules = after(self.config.prune_interval);
        let mut stats = self.config.stats_interval.map(after);
        let mut prune_calls_left = 0;
        loop {
            let stats_tick = async {
                match stats.as_mut() {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            };
            let cancel_request = async {
                match cancels.as_mut() {
                    Some(stream) => {
                        let next = stream.next().await;
                        if next.is_none() {
                            warn!("store's cancel requests ended; running tasks learn of cancels at lease renewal");
                            cancels = None;
                        }
                        next
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop_maintenance.cancelled() => return,
                requested = cancel_request => {
                    if let Some(id) = requested {
                        self.cancel_requested(id);
                    }
                }
                _ = renew.tick() => {
                    self.early_cancels().rotate();
                    self.renew_leases().await;
                }
                _ = reap.tick() => self.reap().await,
                _ = progress.tick() => self.write_progress().await,
                _ = stats_tick => self.publish_stats().await,
                _ = prune.tick() => prune_calls_left = MAX_PRUNE_CALLS,
                _ = prune_schedules.tick() => self.prune_schedules().await,
                _ = std::future::ready(()), if prune_calls_left > 0 => {
                    prune_calls_left = match self.prune_batch().await {
                        true => prune_calls_left - 1,
                        false => 0,
                    };
                }
            }
        }
    }

    /// Removes the state of schedules no manager registered for
    /// [`SCHEDULE_RETENTION`](crate::SCHEDULE_RETENTION).
    async fn prune_schedules(&self) {
        let seen_before = self.config.clock.now() - crate::SCHEDULE_RETENTION;
        match self
            .store
            .prune_schedules(&PruneSchedulesOptions::new(seen_before))
            .await
        {
            Ok(0) => {}
            Ok(n) => debug!(count = n, "removed schedules no manager registers"),
            Err(e) => warn!(error = %e, "cannot prune schedules"),
        }
    }

    /// Renews every leased run's lease; cancels the runs whose lease the store says is lost
    /// or whose cancel was requested.
    async fn renew_leases(&self) {
        let leases: Vec<LeaseRef> = self
            .leased()
            .values()
            .map(|run| LeaseRef::of(&run.record))
            .collect();
        if leases.is_empty() {
            return;
        }
        let deadline = self.config.clock.now() + self.config.lease;
        let applied = match self
            .store
            .renew(&leases, &RenewOptions::new(deadline))
            .await
        {
            Ok(applied) => applied,
            Err(e) => {
                warn!(error = %e, count = leases.len(), "cannot renew leases");
                return;
            }
        };
        let leased = self.leased();
        for (lease, applied) in leases.iter().zip(applied) {
            let why = match applied {
                Applied::Stale => "lease lost; cancelling the run",
                Applied::Cancelled => "cancel requested; cancelling the run",
                _ => continue,
            };
            // The same task may be leased again by now, under a new claim.
            if let Some(run) = leased
                .get(&lease.id)
                .filter(|r| r.record.is_owned_by(lease.token))
            {
                match applied {
                    Applied::Stale => warn!(id = %lease.id, topic = %lease.topic, "{why}"),
                    _ => debug!(id = %lease.id, topic = %lease.topic, "{why}"),
                }
                run.cancel();
            }
        }
    }

    /// Writes the progress that leased runs reported since it was last written, one value
    /// per run.
    async fn write_progress(&self) {
        let mut written = Vec::new();
        let updates: Vec<Progress> = self
            .leased()
            .values()
            .filter_map(|run| {
                let (value, version) = run.unwritten_progress()?;
                written.push((run.clone(), version));
                Some(Progress {
                    lease: LeaseRef::of(&run.record),
                    value,
                })
            })
            .collect();
        if updates.is_empty() {
            return;
        }
        match self.store.progress(&updates).await {
            Ok(applied) => {
                for ((run, version), applied) in written.into_iter().zip(applied) {
                    match applied {
                        Applied::Done => run.progress_written(version),
                        Applied::Cancelled => {
                            run.progress_written(version);
                            run.cancel();
                        }
                        // The lease is gone, and the next renewal cancels the run.
                        _ => {}
                    }
                }
            }
            // Left unwritten: the next round, or the outcome, writes the latest value.
            Err(e) => warn!(error = %e, count = updates.len(), "cannot store progress"),
        }
    }

    /// One prune call; whether it came back full (more may be due).
    async fn prune_batch(&self) -> bool {
        let opts = self
            .config
            .prune_options(self.config.clock.now(), PRUNE_BATCH);
        match self.store.prune(&opts).await {
            Ok(pruned) => {
                if pruned > 0 {
                    debug!(pruned, "pruned finished tasks past their retention");
                }
                pruned >= PRUNE_BATCH as u64
            }
            Err(e) => {
                warn!(error = %e, "cannot prune finished tasks");
                false
            }
        }
    }

    /// Returns tasks whose lease expired (their manager died or stalled) to INPUT.
    async fn reap(&self) {
        // Event-order rule 4: held until the recoveries' events are out.
        let _order = self.order_events_if(self.store.has_subscribers()).await;
        match self
            .store
            .recover(&RecoverOptions::new(self.config.clock.now()).limit(MAX_RECOVER_BATCH))
            .await
        {
            Ok(recovered) => {
                let watched = self.store.has_subscribers();
                let mut events = Vec::new();
                for r in recovered {
                    warn!(id = %r.id, topic = %r.topic, queue = %r.queue, "recovered a task whose lease expired");
                    if !watched {
                        continue;
                    }
                    events.push(match r.queue {
                        Queue::Cancelled => self.cancelled_event(r.id, r.topic).await,
                        queue => Event::TaskRecovered {
                            id: r.id,
                            topic: r.topic,
                            dead: queue == Queue::Dead,
                        },
                    });
                }
                self.publish(events).await;
            }
            Err(e) => warn!(error = %e, "reaper failed"),
        }
    }

    async fn publish_stats(&self) {
        let now = self.config.clock.now();
        match self.store.stats(&StatsOptions::new(now)).await {
            Ok(stats) => {
                let event = Event::ManagerStats {
                    manager: self.id.clone(),
                    stats: Box::new(stats),
                    at: now,
                };
                self.publish(vec![event]).await;
            }
            Err(e) => warn!(error = %e, "cannot read stats"),
        }
    }
}
