//! The flusher: applies the workers' outcomes to the store in batches and publishes their
//! events once the store accepted them.

use super::outcome::Report;
use super::Shared;
use crate::store::{Applied, ApplyOptions, LeaseRef, Outcome, OutcomeKind};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// The most outcomes applied in one store call.
const MAX_OUTCOME_BATCH: usize = 1024;

impl Shared {
    /// Applies outcomes until the last producer (claimer and workers) is gone and every
    /// outcome is applied (shutdown step 4).
    pub(super) async fn flush_loop(self: Arc<Self>) {
        let mut pending = Vec::with_capacity(MAX_OUTCOME_BATCH);
        while self
            .exchange
            .take_outcomes(&mut pending, MAX_OUTCOME_BATCH)
            .await
        {
            // Runs leave the leased map here, a batch under one lock, rather than one lock
            // per run in the workers, which would make every worker contend for it. They
            // leave before their outcome is applied, so a retried task claimed again is
            // never confused with its last run.
            {
                let mut leased = self.leased();
                for p in &pending {
                    leased.remove(&p.id());
                }
            }
            let mut runs = Vec::with_capacity(pending.len());
            // Cancelled runs whose record goes with their outcome (retention 0).
            let mut unkept_cancels = Vec::new();
            let (outcomes, reports): (Vec<Outcome>, Vec<Report>) = pending
                .drain(..)
                .map(|p| {
                    let (outcome, report, run) = p.into_parts();
                    if !outcome.keep && run.as_ref().is_some_and(|r| r.is_cancelled()) {
                        unkept_cancels.push(outcome.lease.id);
                    }
                    runs.extend(run);
                    (outcome, report)
                })
                .unzip();
            let watched = self.store.has_subscribers();
            // Who cancelled a task is on its record, which an outcome that is not kept
            // removes: for the event, it is read first. Only when someone watches, and only
            // for runs this manager stopped (cancels are rare).
            let mut cancelled_by = FxHashMap::default();
            if watched {
                for id in unkept_cancels {
                    cancelled_by.insert(id, self.cancelled_by(id).await);
                }
            }
            // Event-order rule 4, for the batches that send a task back to INPUT. Completions
            // and failures need no order with a later claim, and taking the lock for them
            // would hold back every dispatch by an apply's round trip on a store that
            // cannot tell whether anyone watches.
            let requeues = outcomes
                .iter()
                .any(|o| matches!(o.kind, OutcomeKind::Retry { .. } | OutcomeKind::Release));
            let order = self.order_events_if(watched && requeues).await;
            let applied = self.apply_with_retry(&outcomes).await;
            // Dropped once the store let go of its copies, so that the last reference to a
            // completed task's arguments goes here and their memory is freed outside the
            // store's lock (where a claim would wait for it).
            drop(runs);
            let Some(applied) = applied else {
                continue;
            };
            let mut events = Vec::new();
            for ((outcome, report), applied) in outcomes.into_iter().zip(reports).zip(applied) {
                match applied {
                    Applied::Done if watched => events.push(report.event(outcome)),
                    Applied::Done => {}
                    Applied::Cancelled if watched => {
                        let LeaseRef { id, topic, .. } = outcome.lease;
                        events.push(match cancelled_by.remove(&id) {
                            Some(by) => Self::cancelled_event_by(id, topic, by),
                            None => self.cancelled_event(id, topic).await,
                        });
                    }
                    Applied::Cancelled => {}
                    Applied::Stale => warn!(
                        id = %outcome.lease.id,
                        topic = %outcome.lease.topic,
                        "outcome was stale: the lease was lost, another claim may run the task"
                    ),
                }
            }
            self.publish(events).await;
            drop(order);
        }
    }

    /// Applies outcomes, retrying store errors until the leases would have expired anyway;
    /// then gives up, and the reaper returns the tasks to INPUT (they run again: at least
    /// once, never lost).
    async fn apply_with_retry(&self, outcomes: &[Outcome]) -> Option<Vec<Applied>> {
        let give_up = Instant::now() + self.config.lease;
        let mut pause = Duration::from_millis(20);
        loop {
            match self
                .store
                .apply(outcomes, &ApplyOptions::new(self.config.clock.now()))
                .await
            {
                Ok(applied) => return Some(applied),
                Err(e) if Instant::now() + pause < give_up => {
                    warn!(error = %e, retry_in = ?pause, count = outcomes.len(), "cannot store outcomes; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    warn!(error = %e, count = outcomes.len(), "giving up storing outcomes; the reaper will return these tasks");
                    return None;
                }
            }
        }
    }
}
