//! The maintenance loop: renews the leases of leased runs, runs the reaper, and publishes
//! stats, each on its own interval.

use super::Shared;
use crate::event::Event;
use crate::store::{Applied, LeaseRef, RecoverOptions, RenewOptions};
use crate::task::Queue;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::warn;

/// The most expired leases recovered in one reaper pass.
const MAX_RECOVER_BATCH: usize = 1000;

impl Shared {
    /// Runs until `stop_maintenance` (shutdown step 5).
    pub(super) async fn maintenance_loop(self: Arc<Self>) {
        self.announce().await;
        let mut renew =
            tokio::time::interval(self.config.renew_interval.max(Duration::from_millis(1)));
        let mut reap =
            tokio::time::interval(self.config.reap_interval.max(Duration::from_millis(1)));
        let mut stats = self.config.stats_interval.map(|d| {
            let mut i =
                tokio::time::interval_at(Instant::now() + d, d.max(Duration::from_millis(1)));
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        reap.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let stats_tick = async {
                match stats.as_mut() {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.stop_maintenance.cancelled() => return,
                _ = renew.tick() => self.renew_leases().await,
                _ = reap.tick() => self.reap().await,
                _ = stats_tick => self.publish_stats().await,
            }
        }
    }

    /// Renews every leased run's lease; cancels the runs whose lease the store says is lost.
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
            if applied == Applied::Stale {
                // The same task may be leased again by now, under a new claim.
                if let Some(run) = leased
                    .get(&lease.id)
                    .filter(|r| r.record.is_owned_by(lease.token))
                {
                    warn!(id = %lease.id, topic = %lease.topic, "lease lost; cancelling the run");
                    run.cancel();
                }
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
                let events = recovered
                    .into_iter()
                    .map(|r| {
                        warn!(id = %r.id, topic = %r.topic, queue = %r.queue, "recovered a task whose lease expired");
                        match r.queue {
                            Queue::Cancelled => Event::TaskCancelled {
                                id: r.id,
                                topic: r.topic,
                                by: None,
                                was_running: true,
                            },
                            queue => Event::TaskRecovered {
                                id: r.id,
                                topic: r.topic,
                                dead: queue == Queue::Dead,
                            },
                        }
                    })
                    .collect();
                self.publish(events).await;
            }
            Err(e) => warn!(error = %e, "reaper failed"),
        }
    }

    async fn publish_stats(&self) {
        match self.store.stats().await {
            Ok(stats) => {
                let event = Event::ManagerStats {
                    manager: self.id.clone(),
                    stats: Box::new(stats),
                    at: self.config.clock.now(),
                };
                self.publish(vec![event]).await;
            }
            Err(e) => warn!(error = %e, "cannot read stats"),
        }
    }
}
