//! The overview: totals, throughput, topics, and live events.

use super::format::wait;
use super::{action, count, layout, state_url, unworked_warning, Section};
use crate::context::Ctx;
use crate::data::{Observed, State};
use maud::{html, Markup};
use taskmill_core::TopicStats;

/// The figures of the summary bar, in order.
const SUMMARY: [Figure; 7] = [
    Figure::Processed,
    Figure::Failed,
    Figure::State(State::RUNNING),
    Figure::Waiting(Waiting::Pending),
    Figure::Waiting(Waiting::Scheduled),
    Figure::Waiting(Waiting::Retrying),
    Figure::State(State::DEAD),
];

/// A part of the waiting tasks (INPUT), split by time at the stats' read: each is listed
/// on its own tab.
#[derive(Clone, Copy)]
enum Waiting {
    /// Due now.
    Pending,
    /// Not yet due, never run.
    Scheduled,
    /// Not yet due, after a failed or interrupted run.
    Retrying,
}

impl Waiting {
    /// Every part, in the order the topic table shows them.
    const ALL: [Waiting; 3] = [Waiting::Pending, Waiting::Scheduled, Waiting::Retrying];

    fn label(self) -> &'static str {
        match self {
            Waiting::Pending => "Pending",
            Waiting::Scheduled => "Scheduled",
            Waiting::Retrying => "Retrying",
        }
    }

    /// The name in the stats stream (as [`TaskStatus`](taskmill_core::TaskStatus) names it).
    fn key(self) -> &'static str {
        match self {
            Waiting::Pending => "pending",
            Waiting::Scheduled => "scheduled",
            Waiting::Retrying => "retrying",
        }
    }

    fn count(self, stats: &TopicStats) -> u64 {
        match self {
            Waiting::Pending => stats.sizes.pending(),
            Waiting::Scheduled => stats.sizes.scheduled,
            Waiting::Retrying => stats.sizes.retrying,
        }
    }

    /// The tab that lists them.
    fn state(self) -> State {
        match self {
            Waiting::Pending => State::PENDING,
            Waiting::Scheduled => State::SCHEDULED,
            Waiting::Retrying => State::RETRYING,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Waiting::Pending => "Due now, waiting for a worker",
            Waiting::Scheduled => "Not due yet: waiting for their first run",
            Waiting::Retrying => "Not due yet: waiting to run again after a failed run",
        }
    }
}

/// One figure of the summary bar.
#[derive(Clone, Copy)]
enum Figure {
    /// The `completed` counter.
    Processed,
    /// The `failed` counter: tasks that went to DEAD.
    Failed,
    /// How many tasks are in a state now.
    State(State),
    /// How many waiting tasks are due, scheduled or retrying now.
    Waiting(Waiting),
}

impl Figure {
    fn label(self) -> &'static str {
        match self {
            Figure::Processed => "Processed",
            Figure::Failed => "Failed",
            Figure::State(state) => state.label(),
            Figure::Waiting(part) => part.label(),
        }
    }

    /// The tasks behind the figure, where a page lists them.
    fn state(self) -> Option<State> {
        match self {
            Figure::Processed => None,
            Figure::Failed => Some(State::DEAD),
            Figure::State(state) => Some(state),
            Figure::Waiting(part) => Some(part.state()),
        }
    }

    fn tone(self) -> &'static str {
        match self {
            Figure::Processed => "stat good",
            Figure::Failed => "stat bad",
            Figure::State(state) if state.is_dead() => "stat bad",
            Figure::State(_) | Figure::Waiting(_) => "stat",
        }
    }

    /// The element showing the figure, kept current by the stats stream.
    fn cell(self, stats: &TopicStats) -> Markup {
        match self {
            Figure::Processed => counter("processed", stats.counters.completed),
            Figure::Failed => counter("failed", stats.counters.failed),
            Figure::State(state) => {
                html! { span.num data-state=(state.slug()) { (count(state.count(stats))) } }
            }
            Figure::Waiting(part) => counter(part.key(), part.count(stats)),
        }
    }
}

/// A counter, named as in the stats stream.
fn counter(key: &str, value: u64) -> Markup {
    html! { span.num data-count=(key) { (count(value)) } }
}

pub(crate) fn overview(ctx: &Ctx, observed: &Observed) -> Markup {
    let (stats, now) = (&observed.stats, observed.at);
    let warning = unworked_warning(observed.unworked_after);
    let body = html! {
        section.summary {
            @for figure in SUMMARY {
                @match figure.state() {
                    Some(state) => a class=(figure.tone()) href=(state_url(ctx, state, None)) {
                        span.label { (figure.label()) } (figure.cell(&stats.total))
                    },
                    None => div class=(figure.tone()) { span.label { (figure.label()) } (figure.cell(&stats.total)) },
                }
            }
        }
        section.card.chart-card {
            div.card-head {
                h2 { "Throughput" }
                div.legend {
                    span.key.good { i {} "processed " b.num #rate-processed { "–" } " /s" }
                    span.key.bad { i {} "failed " b.num #rate-failed { "–" } " /s" }
                }
            }
            canvas #chart height="160" aria-label="Tasks processed and failed per second, up to the last two minutes" {}
        }
        section.card {
            div.card-head {
                h2 { "Topics" }
                span.hint #new-topics hidden { "New topics appeared — " a href=(ctx.url("/")) { "reload" } }
            }
            @if stats.topics.is_empty() {
                p.empty { "No topics yet. Enqueue a task and its topic shows up here." }
            } @else {
                div.table-wrap { table.grid.topics {
                    thead { tr {
                        th { "Topic" }
                        @for state in State::ALL {
                            @if state == State::PENDING {
                                @for part in Waiting::ALL {
                                    th.n.split[!matches!(part, Waiting::Pending)] title=(part.title()) { (part.label()) }
                                }
                            } @else if state.is_waiting() {
                                // Shown with Pending's, above.
                            } @else {
                                th.n { (state.label()) }
                            }
                        }
                        th.n { "Processed" }
                        th.n { "Failed" }
                        th.n.wide { "Retried" }
                        th.n title="Processed / failed per second, over the last update" { "Rate /s" }
                        th.n title="How long the oldest due task has waited" { "Latency" }
                        th { "Status" }
                        @if ctx.can_act() { th.actions { span.sr { "Actions" } } }
                    } }
                    tbody {
                        @for (name, topic) in &stats.topics {
                            tr data-topic=(name) class=[topic.paused.then_some("is-paused")] {
                                td.topic { a href=(state_url(ctx, State::PENDING, Some(name))) { (name) } }
                                @for state in State::ALL {
                                    @if state == State::PENDING {
                                        // The waiting tasks split by time, each part linking to its tab; the
                                        // scheduled and retrying columns show where the window is wide enough.
                                        @for part in Waiting::ALL {
                                            td.n.split[!matches!(part, Waiting::Pending)] { a.num.quiet href=(state_url(ctx, part.state(), Some(name))) data-count=(part.key()) { (count(part.count(topic))) } }
                                        }
                                    } @else if state.is_waiting() {
                                        // Shown with Pending's, above.
                                    } @else {
                                        td.n { a.num.quiet href=(state_url(ctx, state, Some(name))) data-state=(state.slug()) data-alert[state.is_dead()]
                                            class=[(state.is_dead() && state.count(topic) > 0).then_some("bad")] { (count(state.count(topic))) } }
                                    }
                                }
                                td.n { (counter("processed", topic.counters.completed)) }
                                td.n { (counter("failed", topic.counters.failed)) }
                                td.n.wide { (counter("retried", topic.counters.retried)) }
                                // Both rates come from the stats stream's per-topic counters, as the chart's.
                                td.n {
                                    span.num.muted data-rate="processed" title="processed per second" { "–" }
                                    span.muted { " / " }
                                    span.num.muted data-rate="failed" title="failed per second" { "–" }
                                }
                                td.n { span.num data-latency { (wait(topic.latency(now))) } }
                                td {
                                    span.badge.warn.when-paused { "paused" }
                                    span.badge.ok.when-active { "active" }
                                    // Kept current by the stats stream, like the rest of the row.
                                    " "
                                    span.badge.warn.unworked data-unworked title=(warning)
                                        hidden[!observed.is_unworked(name)] {
                                        "no worker" span.sr { ": " (warning) }
                                    }
                                }
                                @if ctx.can_act() {
                                    td.actions {
                                        span.when-active { (action(ctx, "/topics/pause", "Pause", "small", &[("topic", name)])) }
                                        span.when-paused { (action(ctx, "/topics/resume", "Resume", "small primary", &[("topic", name)])) }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            div.card-head {
                h2 { "Events" }
                span.hint { "as they happen, newest first" }
            }
            ol.events #events {
                li.empty #events-empty { "Waiting for events…" }
            }
        }
    };
    layout(ctx, "Overview", Section::Overview, body)
}
