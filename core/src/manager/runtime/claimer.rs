//! The claimer: claims batches of due tasks while few enough runs are in flight, and hands
//! them to the workers.

use super::outcome::{OutcomeOf, PendingOutcome, Report};
use super::round_robin::WeightedRoundRobin;
use super::Shared;
use crate::event::Event;
use crate::manager::exchange::{Exchange, Producer};
use crate::manager::run::Run;
use crate::store::{ClaimOptions, ClaimTopics, Claimed, OutcomeKind, TopicClaim, WakeStream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

impl Shared {
    /// Claims until `stop_claiming`; hands corrupt records to the flusher through
    /// `producer`. As it ends, however it ends, the job queue closes (shutdown step 1).
    pub(super) async fn claim_loop(self: Arc<Self>, producer: Producer<Arc<Run>, PendingOutcome>) {
        struct CloseOnExit(Arc<Exchange<Arc<Run>, PendingOutcome>>);
        impl Drop for CloseOnExit {
            fn drop(&mut self) {
                self.0.close_jobs();
            }
        }
        let _close = CloseOnExit(self.exchange.clone());
        self.announce().await;
        if self.topics.is_empty() {
            // A manager that only runs schedules claims nothing.
            return;
        }
        let low_water = self.config.concurrency;
        let capacity = 2 * low_water;
        let mut wakeups = match self.store.wakeups().await {
            Ok(stream) => Some(stream),
            Err(e) => {
                warn!(error = %e, "store gives no wake-ups; polling only");
                None
            }
        };
        let topics = self.claim_topics();
        let mut order = WeightedRoundRobin::new(
            topics
                .iter()
                .map(|t| {
                    self.config
                        .topic(&t.topic)
                        .and_then(|o| o.weight)
                        .unwrap_or(1)
                })
                .collect(),
        );
        let mut failures = 0u32;
        loop {
            if self.stop_claiming.is_cancelled() {
                return;
            }
            let in_flight = self.exchange.in_flight();
            if in_flight > low_water {
                // Enough work in hand: wait until workers bring it down to the low-water mark.
                tokio::select! {
                    _ = self.stop_claiming.cancelled() => return,
                    _ = self.exchange.room() => {}
                }
                continue;
            }
            let limit = capacity - in_flight;
            // Each claim starts from the next topic in weighted turn (a claim fills up from
            // its first topic), so busy topics share the workers by weight.
            let first = order.next();
            let req = ClaimOptions::with_topics(
                topics.clone(),
                limit,
                self.id.clone(),
                self.config.clock.now(),
            )
            .first(first)
            .lease(self.config.lease);
            // A claim in flight is never dropped: it could strand tasks until their lease
            // expires. Shutdown waits for it, then releases what it claimed.
            match self.store.claim(&req).await {
                Ok(batch) => {
                    failures = 0;
                    let full = batch.len() == limit;
                    self.dispatch(batch, &producer).await;
                    if !full && !self.wait_for_work(&mut wakeups).await {
                        return;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(50 << failures.min(6))
                        .min(self.config.poll_interval.max(Duration::from_millis(50)));
                    warn!(error = %e, retry_in = ?pause, "claim failed");
                    tokio::select! {
                        _ = self.stop_claiming.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// The registered topics as a claim names them, in a fixed order.
    fn claim_topics(&self) -> ClaimTopics {
        let mut topics: Vec<TopicClaim> = self
            .topics
            .keys()
            .map(|topic| {
                let mut claim =
                    TopicClaim::new(topic.clone()).max_retries(self.config.retries_for(topic));
                claim.max_running = self.config.topic(topic).and_then(|o| o.max_running);
                claim
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics.into_iter().collect()
    }

    /// Waits for a wake-up, the poll interval, or shutdown; false on shutdown.
    async fn wait_for_work(&self, wakeups: &mut Option<WakeStream>) -> bool {
        let wake = async {
            match wakeups.as_mut() {
                Some(stream) => {
                    if stream.next().await.is_none() {
                        warn!("store wake-up stream ended; polling only");
                        *wakeups = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.stop_claiming.cancelled() => false,
            _ = wake => true,
            _ = tokio::time::sleep(self.config.poll_interval) => true,
        }
    }

    /// Hands claimed tasks to the workers; corrupt records go straight to the flusher as
    /// dead.
    async fn dispatch(&self, batch: Vec<Claimed>, producer: &Producer<Arc<Run>, PendingOutcome>) {
        let mut runs = Vec::with_capacity(batch.len());
        for claimed in batch {
            match claimed {
                Claimed::Ready(record) => runs.push(Arc::new(Run::new(record))),
                Claimed::Corrupt { lease, error } => {
                    let error = format!("corrupt task record: {error}");
                    warn!(id = %lease.id, topic = %lease.topic, %error, "moving corrupt task to dead");
                    let keep = self.config.keeps(&lease.topic);
                    producer.push_outcome(PendingOutcome {
                        of: OutcomeOf::Corrupt(lease),
                        kind: OutcomeKind::dead(error),
                        keep,
                        report: Report {
                            attempt: 0,
                            duration_ms: 0,
                            result: None,
                        },
                    });
                }
            }
        }
        // Event-order rules 2 and 4.
        if let Some(_order) = self.order_events_if(self.store.has_subscribers()).await {
            let starts = runs
                .iter()
                .map(|run| Event::TaskStart {
                    id: run.record.id,
                    topic: run.record.topic.clone(),
                    attempt: run.record.attempt,
                    manager: self.id.clone(),
                })
                .collect();
            self.publish(starts).await;
        }
        self.lease_runs(&runs);
        self.exchange.push_jobs(runs);
    }
}
