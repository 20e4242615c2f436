//! The schedules: every periodic task the store keeps, with its ticks, and pause / resume.

use super::format::time;
use super::queue::when;
use super::{action, layout, state_url, task_url, Section};
use crate::context::Ctx;
use crate::data::{ScheduleRow, State};
use maud::{html, Markup};
use taskmill_core::{Timestamp, TICK_GRACE};

/// What the schedules page shows.
pub(crate) struct SchedulesView<'a> {
    pub(crate) rows: &'a [ScheduleRow],
    /// The schedule a link pointed at (a task page's "fired by"), marked in the table.
    pub(crate) target: Option<&'a str>,
    /// A line saying what the last action did.
    pub(crate) notice: Option<String>,
    pub(crate) now: Timestamp,
}

pub(crate) fn schedules(ctx: &Ctx, view: &SchedulesView<'_>) -> Markup {
    let paused = view.rows.iter().filter(|r| r.info.state.paused).count();
    let body = html! {
        div.page-head {
            h1 { "Schedules" }
            @if !view.rows.is_empty() {
                span.muted {
                    (view.rows.len()) " schedules"
                    @if paused > 0 { " · " (paused) " paused" }
                }
            }
        }
        @if let Some(notice) = &view.notice {
            p.notice role="status" { (notice) }
        }
        section.card.flush {
            @if view.rows.is_empty() {
                p.empty {
                    "No schedules yet. A manager registers its schedules when it starts, and they show up here."
                }
            } @else {
                div.table-wrap { (table(ctx, view)) }
            }
        }
        p.hint.page-foot {
            "Times are UTC; hover over one for the exact time. A paused schedule skips its ticks on every manager \
             until it is resumed, and does not catch up on them."
        }
    };
    layout(ctx, "Schedules", Section::Schedules, body)
}

fn table(ctx: &Ctx, view: &SchedulesView<'_>) -> Markup {
    html! {
        table.grid.schedules {
            thead { tr {
                th { "Name" }
                th { "Cadence" }
                th { "Zone" }
                th { "Topic" }
                th { "Status" }
                th { "Last tick" }
                th { "Next tick" }
                th { "Last task" }
                th.n title="How long after its tick the last fired tick's task was enqueued" { "Fired" }
                @if ctx.can_act() { th.actions { span.sr { "Actions" } } }
            } }
            tbody {
                @for row in view.rows { (schedule_row(ctx, view, row)) }
            }
        }
    }
}

fn schedule_row(ctx: &Ctx, view: &SchedulesView<'_>, row: &ScheduleRow) -> Markup {
    let s = &row.info.state;
    let name: &str = &s.name;
    let classes = [
        s.paused.then_some("is-paused"),
        (view.target == Some(name)).then_some("is-target"),
    ];
    let class = classes.into_iter().flatten().collect::<Vec<_>>().join(" ");
    html! {
        tr data-schedule=(name) class=[(!class.is_empty()).then_some(class)]
            aria-current=[(view.target == Some(name)).then_some("true")] {
            td.schedule-name title=(name) { (name) }
            td {
                @if s.spec.is_empty() {
                    span.muted title="Fired by a manager but never registered" { "not registered" }
                } @else {
                    code.cadence { (s.spec) }
                }
            }
            td.zone { (s.zone) }
            td.topic { a href=(state_url(ctx, State::PENDING, Some(&s.topic))) { (s.topic) } }
            td {
                @if s.paused { span.badge.warn { "paused" } } @else { span.badge.ok { "active" } }
            }
            td { (when(s.last_tick, view.now)) }
            td { (when(row.info.next_tick, view.now)) }
            td.last-task {
                @match (s.last_task, &row.last_task) {
                    (Some(id), Some(task)) => {
                        a.num href=(task_url(ctx, id)) { (id) }
                        " "
                        @let status = task.status(view.now);
                        span class={ "badge status-" (status.as_str()) } { (status.as_str()) }
                    }
                    (Some(id), None) => {
                        a.num href=(task_url(ctx, id)) { (id) }
                        " " span.muted title="Deleted, or pruned after its retention" { "gone" }
                    }
                    (None, _) => span.muted { "—" },
                }
            }
            td.n { (fired(row)) }
            @if ctx.can_act() {
                td.actions {
                    @if s.paused {
                        (action(ctx, "/schedules/resume", "Resume", "small primary", &[("name", name)]))
                    } @else {
                        (action(ctx, "/schedules/pause", "Pause", "small", &[("name", name)]))
                    }
                }
            }
        }
    }
}

/// How late the last fired tick's task was enqueued: `fired_at` minus the tick its task's
/// header names (a manager whose clock runs ahead fires early). Without the task (deleted
/// or pruned), only when it was fired.
fn fired(row: &ScheduleRow) -> Markup {
    let Some(fired_at) = row.info.state.fired_at else {
        return html! { span.muted { "—" } };
    };
    let title = format!("fired at {} UTC", time(fired_at));
    let Some(tick) = row.last_task.as_ref().and_then(|t| t.schedule_tick()) else {
        return html! { span.num.muted title=(title) { (time(fired_at)) } };
    };
    let ms = fired_at.as_millis() - tick.tick.as_millis();
    let late = u128::from(ms.unsigned_abs()) > TICK_GRACE.as_millis();
    html! {
        span.num class=[late.then_some("bad")] title=(title) { (lateness(ms)) }
    }
}

/// `+120 ms`, `+3.4 s`, `−1.2 s`, `+2 min`: a signed gap, late positive.
fn lateness(ms: i64) -> String {
    let sign = if ms < 0 { "−" } else { "+" };
    let abs = ms.unsigned_abs();
    let magnitude = match abs {
        0..=999 => format!("{abs} ms"),
        1_000..=59_999 => format!("{:.1} s", abs as f64 / 1000.0),
        _ => super::format::wait(std::time::Duration::from_millis(abs)),
    };
    format!("{sign}{magnitude}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_reads_signed_in_one_unit() {
        assert_eq!(lateness(0), "+0 ms");
        assert_eq!(lateness(120), "+120 ms");
        assert_eq!(lateness(3_449), "+3.4 s");
        assert_eq!(lateness(-1_200), "−1.2 s");
        assert_eq!(lateness(150_000), "+2 min");
    }
}
