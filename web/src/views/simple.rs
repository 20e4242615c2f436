//! Small pages: signing in, confirming a bulk action, an error.

use super::{count, csrf, layout, state_url, Section};
use crate::context::Ctx;
use crate::data::Bulk;
use axum::http::StatusCode;
use maud::{html, Markup};

pub(crate) fn login(ctx: &Ctx, next: Option<&str>, problem: Option<&str>) -> Markup {
    let body = html! {
        section.card.narrow {
            h1 { "Sign in" }
            p.muted { "This dashboard needs its access token." }
            @if let Some(problem) = problem { p.notice.bad role="alert" { (problem) } }
            form.stack method="post" action=(ctx.url("/login")) {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                button.btn.primary type="submit" { "Sign in" }
            }
        }
    };
    layout(ctx, "Sign in", Section::SignIn, body)
}

pub(crate) fn confirm_bulk(ctx: &Ctx, action: Bulk, topic: Option<&str>, tasks: u64) -> Markup {
    let (verb, what, effect, style) = match action {
        Bulk::Retry => (
            "Retry",
            "dead",
            "They go back to pending and run again.",
            "primary",
        ),
        Bulk::Delete => ("Delete", "dead", "They are removed for good.", "danger"),
        Bulk::Cancel => (
            "Cancel",
            "waiting",
            "They never run, and end cancelled. Running tasks are left alone.",
            "danger",
        ),
    };
    let state = action.state();
    let back = state_url(ctx, state, topic);
    let body = html! {
        section.card.narrow {
            h1 { (verb) " all " (what) " tasks?" }
            p {
                (verb) " " strong.num { (count(tasks)) } " " (what) " tasks "
                @match topic { Some(topic) => { "of topic " strong { (topic) } }, None => "of every topic" }
                ". " (effect)
            }
            p.muted {
                "Tasks that " (if action == Bulk::Cancel { "are enqueued" } else { "die" })
                " while this runs are included; they are handled a page at a time."
            }
            form.inline-row method="post" action=(ctx.url("/bulk")) {
                (csrf(ctx))
                input type="hidden" name="action" value=(action.slug());
                @if let Some(topic) = topic { input type="hidden" name="topic" value=(topic); }
                button class={ "btn " (style) } type="submit" { "Yes, " (verb.to_lowercase()) " them" }
                a.btn href=(back) { (if action == Bulk::Cancel { "Keep them" } else { "Cancel" }) }
            }
        }
    };
    layout(
        ctx,
        &format!("{verb} all {what}"),
        Section::State(state),
        body,
    )
}

pub(crate) fn error(ctx: &Ctx, status: StatusCode, message: &str) -> Markup {
    let body = html! {
        section.card.narrow {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
            p { (message) }
            p { a href=(ctx.url("/")) { "Back to the overview" } }
        }
    };
    layout(
        ctx,
        status.canonical_reason().unwrap_or("Error"),
        Section::Other,
        body,
    )
}
