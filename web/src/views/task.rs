//! One task, everything the store keeps about it.

use super::format::{pretty_json, time};
use super::queue::when;
use super::{action, layout, schedules_url, state_url, Section};
use crate::context::Ctx;
use crate::data::State;
use maud::{html, Markup};
use taskmill_core::{TaskRecord, TaskStatus, Timestamp, MAX_KEPT_ERRORS};

pub(crate) fn task(ctx: &Ctx, task: &TaskRecord, now: Timestamp) -> Markup {
    let state = State::of(task, now);
    let status = task.status(now);
    let args = pretty_json(task.args.as_str());
    let path = |verb: &str| format!("/tasks/{}/{verb}", task.id);
    let body = html! {
        nav.crumbs {
            a href=(ctx.url("/")) { "Overview" }
            " / "
            a href=(state_url(ctx, state, Some(&task.topic))) { (state.label()) " · " (task.topic) }
        }
        div.page-head {
            h1 {
                "Task " span.num { (task.id) }
                span class={ "badge state-" (state.slug()) } { (state.label()) }
            }
            div.tools {
                @if state.is_retryable() { (action(ctx, &path("retry"), "Retry now", "primary", &[])) }
                @if state.is_cancellable() && !task.is_cancel_requested() {
                    (action(ctx, &path("cancel"), "Cancel", "", &[]))
                }
                (action(ctx, &path("delete"), "Delete", "danger", &[]))
            }
        }
        div.task-grid {
            section.card {
                h2 { "Details" }
                dl.facts {
                    dt { "Topic" } dd { (task.topic) }
                    @if let Some(tick) = task.schedule_tick() {
                        dt { "Fired by" } dd #fired-by {
                            "schedule " a href=(schedules_url(ctx, Some(&tick.schedule))) { (tick.schedule) }
                            // The exact tick, short enough for one line; how long ago on hover.
                            " at tick " time datetime=(tick.tick) title=(super::format::relative(tick.tick, now)) {
                                span.num { (time(tick.tick)) } span.muted { " UTC" }
                            }
                        }
                    }
                    dt { "Status" } dd { (status_line(&status, now)) }
                    dt { "Attempt" } dd {
                        span.num { (task.attempt) }
                        @if let Some(retries) = task.max_retries { span.muted { " of " (u64::from(retries) + 1) " runs" } }
                    }
                    dt { "Max retries" } dd {
                        @match task.max_retries {
                            Some(retries) => span.num { (retries) },
                            None => span.muted { "the running manager's, set at the first run" },
                        }
                    }
                    dt { "Priority" } dd.num { (task.priority) span.muted { " (lower runs first)" } }
                    dt { "Unique key" } dd {
                        (optional(task.unique_key.as_deref()))
                        @if task.unique_key.is_some() && task.unique_while_kept { span.muted { " (held while kept)" } }
                    }
                    @if let Some(by) = &task.cancelled_by {
                        // Set when the cancel is asked for: on a running task, its run has
                        // not ended yet.
                        dt { (if state.is_running() { "Cancel requested by" } else { "Cancelled by" }) }
                        dd #cancelled-by { code { (by) } }
                    }
                    @if let Some(external) = &task.external_id {
                        dt { "External id" } dd { code { (external) } }
                    }
                }
            }
            section.card {
                h2 { "Times" }
                dl.facts {
                    dt { "Enqueued" } dd { (exact(Some(task.enqueued_at), now)) }
                    dt { "Due" } dd #due { (exact(Some(task.run_at), now)) }
                    dt { "First started" } dd { (exact(task.first_started_at, now)) }
                    dt { "Last started" } dd { (exact(task.started_at, now)) }
                    dt { "Finished" } dd { (exact(task.finished_at, now)) }
                }
                h2 { "Lease" }
                dl.facts {
                    dt { "Worker" } dd { (optional(task.lease.as_ref().map(|l| &*l.owner))) }
                    dt { "Deadline" } dd { (exact(task.lease.as_ref().map(|l| l.deadline), now)) }
                }
            }
        }
        @if !task.headers.is_empty() {
            section.card {
                h2 { "Headers" }
                table.grid.headers #headers {
                    thead { tr { th { "Key" } th { "Value" } } }
                    tbody {
                        @for (key, value) in &task.headers {
                            tr { td { code { (key) } } td { code.wrap { (value) } } }
                        }
                    }
                }
            }
        }
        @if let Some(result) = &task.result {
            section.card {
                h2 { "Result" }
                (json_block(result.as_str(), "result"))
            }
        }
        @if let Some(progress) = &task.progress {
            section.card {
                h2 { "Progress" }
                (json_block(progress.as_str(), "progress"))
            }
        }
        @if !task.errors.is_empty() {
            section.card {
                h2 { "Errors" span.muted { " · the last " (task.errors.len()) ", newest first" } }
                // The record keeps the last MAX_KEPT_ERRORS; say so when older ones are gone.
                @if let Some(first) = task.errors.first().filter(|e| e.attempt > 1 && task.errors.len() >= MAX_KEPT_ERRORS) {
                    p.muted #errors-dropped {
                        "The errors of attempts before " span.num { (first.attempt) }
                        " are not kept: a task keeps the last " (MAX_KEPT_ERRORS) "."
                    }
                }
                table.grid.errors #errors {
                    thead { tr { th.n { "Attempt" } th { "When" } th { "Error" } } }
                    tbody {
                        @for error in task.errors.iter().rev() {
                            tr {
                                td.n.num { (error.attempt) }
                                td { (exact(Some(error.at), now)) }
                                td { pre.error { (error.message) } }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Arguments" }
            @match &args {
                Some(pretty) => pre.json #args { (pretty) },
                None => {
                    p.notice.bad { "The stored arguments are not valid JSON; shown as stored." }
                    pre.json #args { (task.args.as_str()) }
                }
            }
        }
    };
    layout(ctx, &format!("Task {}", task.id), Section::Other, body)
}

/// The status with what refines it: who runs it since when, when it runs next.
fn status_line(status: &TaskStatus, now: Timestamp) -> Markup {
    html! {
        span class={ "badge status-" (status.as_str()) } { (status.as_str()) }
        @match status {
            TaskStatus::Running { owner, since, cancel_requested } => {
                " by " code { (owner) } " since " (exact(Some(*since), now))
                @if *cancel_requested { " " strong { "cancel requested" } }
            }
            TaskStatus::Scheduled { at } | TaskStatus::Retrying { at } => {
                " until " (exact(Some(*at), now))
            }
            _ => {}
        }
    }
}

/// Stored JSON, pretty when it parses and as stored when it does not.
fn json_block(json: &str, id: &str) -> Markup {
    match pretty_json(json) {
        Some(pretty) => html! { pre.json id=(id) { (pretty) } },
        None => html! {
            p.notice.bad { "Not valid JSON; shown as stored." }
            pre.json id=(id) { (json) }
        },
    }
}

fn optional(value: Option<&str>) -> Markup {
    match value {
        Some(value) => html! { code { (value) } },
        None => html! { span.muted { "—" } },
    }
}

/// The exact time, then how far it is from now.
fn exact(at: Option<Timestamp>, now: Timestamp) -> Markup {
    match at {
        Some(at) => {
            html! { span.num { (time(at)) } " " span.muted { "UTC · " (when(Some(at), now)) } }
        }
        None => when(None, now),
    }
}
