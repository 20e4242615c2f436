//! A page of tasks in one state, of one topic or all.

use super::format::{compact_json, preview, relative, time};
use super::{action, count, layout, query, state_url, task_url, unworked_warning, Section};
use crate::context::Ctx;
use crate::data::{Bulk, State};
use maud::{html, Markup};
use std::time::Duration;
use taskmill_core::store::Page;
use taskmill_core::{Stats, TaskId, TaskRecord, Timestamp};

/// What a queue page shows.
pub(crate) struct QueueView<'a> {
    pub(crate) state: State,
    pub(crate) topic: Option<&'a str>,
    pub(crate) stats: &'a Stats,
    pub(crate) page: &'a Page,
    /// The cursor this page started after; `None` on the first page.
    pub(crate) after: Option<TaskId>,
    /// A line saying what the last action did.
    pub(crate) notice: Option<String>,
    /// Whether the page's topic is flagged “no worker”, and the threshold of the flag.
    pub(crate) unworked: bool,
    pub(crate) unworked_after: Duration,
    pub(crate) now: Timestamp,
}

pub(crate) fn queue(ctx: &Ctx, view: &QueueView<'_>) -> Markup {
    let state = view.state;
    let figures = view.topic.map_or(view.stats.total, |t| view.stats.topic(t));
    let title = match view.topic {
        Some(topic) => format!("{} · {topic}", state.label()),
        None => state.label().to_owned(),
    };
    let body = html! {
        div.page-head {
            h1 {
                (state.label()) " tasks"
                @if let Some(topic) = view.topic {
                    " in " span.chip { (topic) a.clear href=(state_url(ctx, state, None)) title="All topics" { "×" } }
                }
            }
            div.tools {
                form.filter method="get" action=(state_url(ctx, state, None)) {
                    label.sr for="topic" { "Topic" }
                    select #topic name="topic" data-autosubmit {
                        option value="" selected[view.topic.is_none()] { "All topics" }
                        @for name in view.stats.topics.keys() {
                            option value=(name) selected[view.topic == Some(name.as_str())] { (name) }
                        }
                    }
                    button.btn.small.js-hide type="submit" { "Filter" }
                }
                form.search method="get" action=(ctx.url("/tasks")) {
                    label.sr for="find" { "Find a task by id" }
                    input #find type="search" name="id" inputmode="numeric" placeholder="Task id" autocomplete="off";
                    button.btn.small type="submit" { "Find" }
                }
            }
        }
        nav.tabs {
            @for tab in State::ALL {
                a.tab href=(state_url(ctx, tab, view.topic)) aria-current=[(tab == state).then_some("page")]
                    data-topic=[view.topic] {
                    (tab.label())
                    span.num.count data-state=(tab.slug()) data-alert[tab.is_dead()]
                        class=[(tab.is_dead() && tab.count(&figures) > 0).then_some("bad")] {
                        (count(tab.count(&figures)))
                    }
                }
            }
        }
        @if let Some(notice) = &view.notice {
            p.notice role="status" { (notice) }
        }
        // Rendered hidden when not flagged, so that the stats stream can show it.
        @if let Some(topic) = view.topic {
            p.notice.warn #unworked data-topic=(topic) data-unworked hidden[!view.unworked] {
                span.badge.warn { "no worker" } " " (capitalized(&unworked_warning(view.unworked_after)))
            }
        }
        @if state.is_retryable() && ctx.can_act() && state.count(&figures) > 0 {
            div.bulk data-topic=[view.topic] {
                @let scope = view.topic.map_or("of every topic".to_owned(), |t| format!("of {t}"));
                span.muted { "All " span.num data-state=(state.slug()) { (count(state.count(&figures))) } " dead tasks " (scope) ":" }
                a.btn.small href=(bulk_url(ctx, Bulk::Retry, view.topic)) { "Retry all" }
                a.btn.small.danger href=(bulk_url(ctx, Bulk::Delete, view.topic)) { "Delete all" }
            }
        }
        // Cancelling every waiting task is offered per topic only (`Bulk::needs_topic`).
        // On each of INPUT's tabs, for all of INPUT: pending, scheduled and retrying.
        @if state.is_waiting() && ctx.can_act() && figures.sizes.input > 0 {
            @if let Some(topic) = view.topic {
                div.bulk data-topic=(topic) {
                    span.muted { "All " span.num data-count="waiting" { (count(figures.sizes.input)) } " waiting tasks of " (topic) ":" }
                    a.btn.small.danger #cancel-all href=(bulk_url(ctx, Bulk::Cancel, Some(topic))) { "Cancel all waiting" }
                }
            }
        }
        section.card.flush {
            @if view.page.tasks.is_empty() {
                p.empty {
                    @if view.after.is_some() { "No more tasks." } @else { "No " (state.label().to_lowercase()) " tasks." }
                }
            } @else {
                div.table-wrap { (table(ctx, view)) }
            }
        }
        nav.pager {
            @if view.after.is_some() {
                a.btn.small href=(page_url(ctx, view, None)) { "← First page" }
            }
            span.muted { (view.page.tasks.len()) " shown" }
            @if let Some(next) = view.page.next {
                a.btn.small href=(page_url(ctx, view, Some(next))) rel="next" { "Next page →" }
            }
        }
    };
    layout(ctx, &title, Section::State(state), body)
}

fn table(ctx: &Ctx, view: &QueueView<'_>) -> Markup {
    let state = view.state;
    html! {
        table.grid.tasks {
            thead { tr {
                th.n { "ID" }
                @if view.topic.is_none() { th { "Topic" } }
                // Beside an error, arguments are what a narrow window can do without.
                th class=[state.is_dead().then_some("wide")] { "Arguments" }
                th.n { "Attempt" }
                @if state.is_dead() {
                    th { "Error" }
                    th { "Failed" }
                } @else if state.is_finished() {
                    th { (if state == State::COMPLETED { "Result" } else { "Cancelled by" }) }
                    th { "Finished" }
                } @else if state.is_running() {
                    th { "Worker" }
                    th { "Lease ends" }
                } @else {
                    th.n.wide { "Priority" }
                    th { "Due" }
                }
                @if ctx.can_act() { th.actions { span.sr { "Actions" } } }
            } }
            tbody {
                @for task in &view.page.tasks { (row(ctx, view, task)) }
            }
        }
    }
}

fn row(ctx: &Ctx, view: &QueueView<'_>, task: &TaskRecord) -> Markup {
    let state = view.state;
    let args = preview(&compact_json(task.args.as_str()), 160);
    let path = |verb: &str| format!("/tasks/{}/{verb}", task.id);
    html! {
        tr data-id=(task.id) {
            td.n { a.num href=(task_url(ctx, task.id)) { (task.id) } }
            @if view.topic.is_none() { td.topic { (task.topic) } }
            td class=[state.is_dead().then_some("wide")] { code.args title=(args) { (args) } }
            td.n {
                span.num { (task.attempt) }
                @if let Some(retries) = task.max_retries { span.muted { "/" (u64::from(retries) + 1) } }
            }
            @if state.is_dead() {
                td.reason { (preview(task.last_error().unwrap_or(""), 140)) }
                td { (when(task.finished_at, view.now)) }
            } @else if state.is_finished() {
                @if state == State::COMPLETED {
                    td { code.args { (preview(&task.result.as_ref().map_or(String::new(), |r| compact_json(r.as_str())), 100)) } }
                } @else {
                    td { (task.cancelled_by.as_deref().unwrap_or("")) }
                }
                td { (when(task.finished_at, view.now)) }
            } @else if state.is_running() {
                td { (task.lease.as_ref().map_or("", |l| &*l.owner)) }
                td { (when(task.lease.as_ref().map(|l| l.deadline), view.now)) }
            } @else {
                td.n.wide { (task.priority) }
                td { (when(Some(task.run_at), view.now)) }
            }
            @if ctx.can_act() {
                td.actions {
                    @if state.is_retryable() { (action(ctx, &path("retry"), "Retry", "small", &[])) }
                    @if state.is_cancellable() {
                        @if task.is_cancel_requested() {
                            span.badge.warn title=(format!("Asked by {}; its run ends cancelled", task.cancelled_by.as_deref().unwrap_or("someone"))) { "cancel requested" }
                        } @else {
                            (action(ctx, &path("cancel"), "Cancel", "small", &[]))
                        }
                    }
                    (action(ctx, &path("delete"), "Delete", "small danger", &[]))
                }
            }
        }
    }
}

/// A time as "3 min ago", with the exact time on hover.
pub(super) fn when(at: Option<Timestamp>, now: Timestamp) -> Markup {
    match at {
        Some(at) => html! { time datetime=(at) title=(time(at)) { (relative(at, now)) } },
        None => html! { span.muted { "—" } },
    }
}

fn page_url(ctx: &Ctx, view: &QueueView<'_>, after: Option<TaskId>) -> String {
    let after = after.map(|a| a.to_string());
    let pairs: Vec<(&str, &str)> = [("topic", view.topic), ("after", after.as_deref())]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let base = state_url(ctx, view.state, None);
    if pairs.is_empty() {
        base
    } else {
        format!("{base}?{}", query(&pairs))
    }
}

fn bulk_url(ctx: &Ctx, action: Bulk, topic: Option<&str>) -> String {
    let mut pairs = vec![("action", action.slug())];
    if let Some(topic) = topic {
        pairs.push(("topic", topic));
    }
    ctx.url(&format!("/bulk?{}", query(&pairs)))
}

/// `text` with its first letter in upper case, to start a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
