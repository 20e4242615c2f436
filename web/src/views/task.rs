//! One task, everything the store keeps about it.

use super::format::{pretty_json, time};
use super::queue::when;
use super::{action, layout, state_url, Section};
use crate::context::Ctx;
use crate::data::State;
use maud::{html, Markup};
use taskmill_core::{TaskRecord, Timestamp};

pub(crate) fn task(ctx: &Ctx, task: &TaskRecord, now: Timestamp) -> Markup {
    let state = State::of(task);
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
                (action(ctx, &path("delete"), "Delete", "danger", &[]))
            }
        }
        div.task-grid {
            section.card {
                h2 { "Details" }
                dl.facts {
                    dt { "Topic" } dd { (task.topic) }
                    dt { "State" } dd { (state.label()) }
                    dt { "Attempt" } dd { span.num { (task.attempt) } span.muted { " of " (task.max_retries + 1) " runs" } }
                    dt { "Max retries" } dd.num { (task.max_retries) }
                    dt { "Priority" } dd.num { (task.priority) span.muted { " (lower runs first)" } }
                    dt { "Unique key" } dd { (optional(task.unique_key.as_deref())) }
                    @if let Some(external) = &task.external_id {
                        dt { "External id" } dd { code { (external) } }
                    }
                }
            }
            section.card {
                h2 { "Times" }
                dl.facts {
                    dt { "Enqueued" } dd { (exact(Some(task.enqueued_at), now)) }
                    dt { "Run at" } dd { (exact(Some(task.run_at), now)) }
                    dt { "Failed at" } dd { (exact(task.failed_at, now)) }
                }
                h2 { "Lease" }
                dl.facts {
                    dt { "Worker" } dd { (optional(task.lease.as_ref().map(|l| &*l.owner))) }
                    dt { "Deadline" } dd { (exact(task.lease.as_ref().map(|l| l.deadline), now)) }
                }
            }
        }
        @if let Some(error) = &task.last_error {
            section.card {
                h2 { "Last error" }
                pre.error { (error) }
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
