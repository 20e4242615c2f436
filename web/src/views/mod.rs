//! The pages, as maud templates.
//!
//! maud rather than askama: templates are Rust expressions checked by the compiler like
//! any other code (a renamed field breaks the build, not a page), parts of a page are
//! plain functions, and every interpolated value is HTML-escaped unless it is explicitly
//! wrapped in `PreEscaped`, which this crate never does with anything a task carries.
//! Nothing is read at run time: the templates are compiled into the binary.

pub(crate) mod format;
mod overview;
mod queue;
mod schedules;
mod simple;
mod task;

pub(crate) use format::count;
pub(crate) use overview::overview;
pub(crate) use queue::{queue, QueueView};
pub(crate) use schedules::{schedules, SchedulesView};
pub(crate) use simple::{confirm_bulk, error, login};
pub(crate) use task::task;

use crate::assets::Asset;
use crate::context::Ctx;
use crate::data::State;
use crate::guard::CSRF_FIELD;
use maud::{html, Markup, DOCTYPE};

/// Which part of the dashboard a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    State(State),
    Schedules,
    Other,
    /// The sign-in form: no navigation, nothing that needs a signed-in visitor.
    SignIn,
}

/// The frame around every page.
fn layout(ctx: &Ctx, title: &str, section: Section, body: Markup) -> Markup {
    let options = ctx.options();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="referrer" content="same-origin";
                title { (title) " · " (options.title) }
                link rel="icon" type="image/svg+xml" href=(Asset::Icon.url(ctx));
                link rel="stylesheet" href=(Asset::Css.url(ctx));
                script src=(Asset::Js.url(ctx)) defer {}
            }
            body data-base=(ctx.base) {
                header.top {
                    a.brand href=(ctx.url("/")) {
                        img.logo src=(Asset::Icon.url(ctx)) alt="" width="20" height="20";
                        span { (options.title) }
                    }
                    @if section != Section::SignIn { (navigation(ctx, section)) }
                }
                main { (body) }
            }
        }
    }
}

/// The sections, the live indicator, and signing out.
fn navigation(ctx: &Ctx, section: Section) -> Markup {
    let options = ctx.options();
    html! {
        nav.sections {
            a href=(ctx.url("/")) aria-current=[current(section == Section::Overview)] { "Overview" }
            @for state in State::ALL {
                a href=(state_url(ctx, state, None))
                    aria-current=[current(section == Section::State(state))] { (state.label()) }
            }
            a href=(schedules_url(ctx, None)) aria-current=[current(section == Section::Schedules)] { "Schedules" }
        }
        div.top-end {
            @if options.read_only {
                span.badge.muted title="Actions that change tasks are turned off" { "read-only" }
            }
            span.live #live data-state="off" title="Live updates" { span.dot {} span.live-label { "live" } }
            @if options.token.is_some() {
                form.inline method="post" action=(ctx.url("/logout")) {
                    (csrf(ctx))
                    button.link type="submit" { "Sign out" }
                }
            }
        }
    }
}

fn current(yes: bool) -> Option<&'static str> {
    yes.then_some("page")
}

/// The hidden field that proves a form comes from one of the dashboard's own pages.
fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.dash.csrf); }
}

/// A button that POSTs to `path` and then returns the browser to this page; nothing when
/// the dashboard is read-only.
fn action(ctx: &Ctx, path: &str, label: &str, style: &str, fields: &[(&str, &str)]) -> Markup {
    if !ctx.can_act() {
        return html! {};
    }
    html! {
        form.inline method="post" action=(ctx.url(path)) {
            (csrf(ctx))
            input type="hidden" name="next" value=(ctx.here);
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button class={ "btn " (style) } type="submit" { (label) }
        }
    }
}

/// The link to a page of tasks in `state`, of `topic` or of all topics.
fn state_url(ctx: &Ctx, state: State, topic: Option<&str>) -> String {
    let mut url = ctx.url(&format!("/queues/{}", state.slug()));
    if let Some(topic) = topic {
        url.push('?');
        url.push_str(&query(&[("topic", topic)]));
    }
    url
}

/// The link to the schedules page, marking schedule `name` when given.
fn schedules_url(ctx: &Ctx, name: Option<&str>) -> String {
    let mut url = ctx.url("/schedules");
    if let Some(name) = name {
        url.push('?');
        url.push_str(&query(&[("name", name)]));
    }
    url
}

/// An URL query string of `pairs`.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    query.finish()
}

/// What the “no worker” flag says, for a threshold of `after`.
fn unworked_warning(after: std::time::Duration) -> String {
    format!(
        "no worker has taken a task for {}; is a manager running this topic?",
        format::wait(after)
    )
}

/// The page of one task.
fn task_url(ctx: &Ctx, id: taskmill_core::TaskId) -> String {
    ctx.url(&format!("/tasks/{id}"))
}
