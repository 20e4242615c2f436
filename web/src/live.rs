//! `GET /events`: the live stream a page listens to, as server-sent events.
//!
//! Two kinds of event: `stats`, a snapshot of counters and sizes once a second (it also
//! keeps the connection alive), and `task`, each event the store publishes, as the JSON
//! the core serializes it to. Each connection polls stats on its own; the dashboard is
//! meant for a handful of operators, and a snapshot is one cheap store call.

use crate::context::Ctx;
use crate::data::{Observed, Source, State};
use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use taskmill_core::{Event, Timestamp, TopicStats};
use tokio::time::Instant;

/// How often a stats snapshot is sent.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// At most this many task events a second go to one page: more than a person can read,
/// and few enough that a store running 100,000 tasks a second does not flood a browser.
const EVENTS_PER_SECOND: u32 = 50;

type EventResult = Result<SseEvent, Infallible>;

/// `GET /events`.
pub(crate) async fn events(ctx: Ctx) -> Sse<BoxStream<'static, EventResult>> {
    let source = ctx.source().clone();
    let tasks: BoxStream<'static, EventResult> = match source.events().await {
        Ok(events) => events
            .scan(Throttle::new(Instant::now()), |throttle, event| {
                std::future::ready(Some(throttle.admit(event, Instant::now())))
            })
            .flat_map(stream::iter)
            .map(|event| {
                let data = serde_json::to_string(&event).unwrap_or_default();
                Ok(SseEvent::default().event("task").data(data))
            })
            .boxed(),
        Err(error) => stream::once(async move { Ok(problem(&error)) }).boxed(),
    };
    Sse::new(stream::select(stats(source), tasks).boxed())
}

/// A snapshot now, then one every [`STATS_EVERY`].
fn stats(source: Source) -> BoxStream<'static, EventResult> {
    let mut ticks = tokio::time::interval(STATS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stream::unfold((source, ticks), |(source, mut ticks)| async move {
        ticks.tick().await;
        let event = match source.stats().await {
            Ok(observed) => {
                let data = serde_json::to_string(&Snapshot::of(&observed)).unwrap_or_default();
                SseEvent::default().event("stats").data(data)
            }
            Err(error) => problem(&error),
        };
        Some((Ok(event), (source, ticks)))
    })
    .boxed()
}

/// Lets [`EVENTS_PER_SECOND`] events through per second and counts the rest, which the
/// page hears of as one [`Event::Lagged`] before the next event let through.
struct Throttle {
    window: Instant,
    sent: u32,
    dropped: u64,
}

impl Throttle {
    fn new(now: Instant) -> Self {
        Throttle {
            window: now,
            sent: 0,
            dropped: 0,
        }
    }

    /// The events to send for `event`, arriving at `now`: none when it is dropped.
    fn admit(&mut self, event: Event, now: Instant) -> Vec<Event> {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.sent = 0;
        }
        if self.sent == EVENTS_PER_SECOND {
            self.dropped += 1;
            return Vec::new();
        }
        self.sent += 1;
        match std::mem::take(&mut self.dropped) {
            0 => vec![event],
            missed => vec![Event::Lagged { missed }, event],
        }
    }
}

fn problem(error: &taskmill_core::Error) -> SseEvent {
    SseEvent::default().event("problem").data(error.to_string())
}

/// The `stats` event's data: what the page's script reads.
#[derive(Serialize)]
struct Snapshot<'a> {
    /// The server's time, in milliseconds since the epoch: rates are per second of it.
    at: i64,
    total: Figures,
    topics: BTreeMap<&'a str, Figures>,
}

/// The figures of all topics or one, named as the page's `data-count` and `data-state`
/// attributes name them.
#[derive(Serialize)]
struct Figures {
    processed: u64,
    failed: u64,
    retried: u64,
    /// The waiting tasks (INPUT) split by time: due now, not yet due and never run, not
    /// yet due after a failed run.
    pending: u64,
    scheduled: u64,
    retrying: u64,
    /// All of them (INPUT's size).
    waiting: u64,
    /// Tasks per state, by the state's URL name.
    states: BTreeMap<&'static str, u64>,
    paused: bool,
    /// The queue latency (how long the oldest due task has waited), as the page shows it.
    latency: String,
    /// Flagged “no worker” (see [`unworked`](crate::unworked)); never for the totals.
    unworked: bool,
}

impl Snapshot<'_> {
    fn of(observed: &Observed) -> Snapshot<'_> {
        let now = observed.at;
        Snapshot {
            at: now.as_millis(),
            total: Figures::of(&observed.stats.total, now, false),
            topics: observed
                .stats
                .topics
                .iter()
                .map(|(name, topic)| {
                    let unworked = observed.is_unworked(name);
                    (name.as_str(), Figures::of(topic, now, unworked))
                })
                .collect(),
        }
    }
}

impl Figures {
    fn of(stats: &TopicStats, now: Timestamp, unworked: bool) -> Figures {
        Figures {
            unworked,
            processed: stats.counters.completed,
            failed: stats.counters.failed,
            retried: stats.counters.retried,
            pending: stats.sizes.pending(),
            scheduled: stats.sizes.scheduled,
            retrying: stats.sizes.retrying,
            waiting: stats.sizes.input,
            states: State::ALL
                .into_iter()
                .map(|s| (s.slug(), s.count(stats)))
                .collect(),
            paused: stats.paused,
            latency: crate::views::format::wait(stats.latency(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmill_core::TaskId;

    fn event(n: u64) -> Event {
        Event::TaskEnqueue {
            id: TaskId::new(n),
            topic: "t".into(),
            run_at: Timestamp::EPOCH,
            tick: None,
        }
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_and_counted() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let sent: usize = (0..1_000)
            .map(|n| throttle.admit(event(n), start).len())
            .sum();
        assert_eq!(sent, EVENTS_PER_SECOND as usize);
        let next = throttle.admit(event(1_000), start + Duration::from_secs(1));
        let missed = 1_000 - u64::from(EVENTS_PER_SECOND);
        assert_eq!(next, [Event::Lagged { missed }, event(1_000)]);
        assert_eq!(
            throttle.admit(event(1_001), start + Duration::from_secs(1)),
            [event(1_001)]
        );
    }
}
