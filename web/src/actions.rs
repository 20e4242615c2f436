//! The POSTs that change the store. Each is guarded (same origin, CSRF token, not
//! read-only) by [`guard`](crate::guard) before it gets here, and ends in a redirect, so
//! reloading the page it lands on repeats nothing.

use crate::context::{is_local_path, Ctx};
use crate::data::{Bulk, State};
use crate::error::Failure;
use crate::pages::{parse_id, ScheduleDone};
use crate::views::query;
use axum::extract::{Form, Path};
use axum::http::StatusCode;
use axum::response::Redirect;
use serde::Deserialize;
use taskmill_core::TaskId;

/// Where to send the browser afterwards: a path inside the dashboard.
#[derive(Deserialize)]
pub(crate) struct Back {
    next: Option<String>,
}

impl Back {
    fn redirect(self, ctx: &Ctx, fallback: &str) -> Redirect {
        let to = self.next.filter(|n| is_local_path(n));
        Redirect::to(&ctx.url(to.as_deref().unwrap_or(fallback)))
    }

    /// Back where the browser came from, else to task `id`'s page.
    fn or_task(self, ctx: &Ctx, id: TaskId) -> Redirect {
        self.redirect(ctx, &format!("/tasks/{id}"))
    }
}

/// `POST /tasks/{id}/retry`: a dead task back to pending.
pub(crate) async fn retry(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(back): Form<Back>,
) -> Result<Redirect, Failure> {
    let id = parse_id(&ctx, &id)?;
    ctx.source()
        .retry(id)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(back.or_task(&ctx, id))
}

/// `POST /tasks/{id}/cancel`: a waiting task is cancelled at once, a running one is asked
/// to stop; either way the browser lands back where it was.
pub(crate) async fn cancel(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(back): Form<Back>,
) -> Result<Redirect, Failure> {
    let id = parse_id(&ctx, &id)?;
    ctx.source()
        .cancel(id)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(back.or_task(&ctx, id))
}

/// `POST /tasks/{id}/delete`. From the task's own page, goes on to the list it was in.
pub(crate) async fn delete(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(back): Form<Back>,
) -> Result<Redirect, Failure> {
    let id = parse_id(&ctx, &id)?;
    let source = ctx.source();
    let task = source.task(id).await.map_err(|e| ctx.store_failure(e))?;
    source.delete(id).await.map_err(|e| ctx.store_failure(e))?;
    let own_page = format!("/tasks/{id}");
    let list = match &task {
        Some(task) => format!(
            "/queues/{}?{}",
            State::of(task, source.now()).slug(),
            query(&[("topic", &task.topic)])
        ),
        None => "/".to_owned(),
    };
    if back.next.as_deref() == Some(own_page.as_str()) {
        return Ok(Redirect::to(&ctx.url(&list)));
    }
    Ok(back.redirect(&ctx, &list))
}

/// The fields of pause and resume.
#[derive(Deserialize)]
pub(crate) struct TopicForm {
    topic: String,
    next: Option<String>,
}

/// `POST /topics/pause`.
pub(crate) async fn pause(ctx: Ctx, Form(form): Form<TopicForm>) -> Result<Redirect, Failure> {
    set_paused(ctx, form, true).await
}

/// `POST /topics/resume`.
pub(crate) async fn resume(ctx: Ctx, Form(form): Form<TopicForm>) -> Result<Redirect, Failure> {
    set_paused(ctx, form, false).await
}

async fn set_paused(ctx: Ctx, form: TopicForm, paused: bool) -> Result<Redirect, Failure> {
    ctx.source()
        .set_paused(&form.topic, paused)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(Back { next: form.next }.redirect(&ctx, "/"))
}

/// The fields of a schedule's pause and resume.
#[derive(Deserialize)]
pub(crate) struct ScheduleForm {
    name: String,
}

/// `POST /schedules/pause`.
pub(crate) async fn pause_schedule(
    ctx: Ctx,
    Form(form): Form<ScheduleForm>,
) -> Result<Redirect, Failure> {
    set_schedule_paused(ctx, form, true).await
}

/// `POST /schedules/resume`.
pub(crate) async fn resume_schedule(
    ctx: Ctx,
    Form(form): Form<ScheduleForm>,
) -> Result<Redirect, Failure> {
    set_schedule_paused(ctx, form, false).await
}

/// Pauses or resumes the schedule, then shows the schedules page with it marked and a
/// notice saying what was done. The name travels in the form and the query, each
/// percent-encoded, never in the path: a name may hold any character but a control one.
async fn set_schedule_paused(
    ctx: Ctx,
    form: ScheduleForm,
    paused: bool,
) -> Result<Redirect, Failure> {
    let (verb, done) = match paused {
        true => ("pause", ScheduleDone::Paused),
        false => ("resume", ScheduleDone::Resumed),
    };
    ctx.source()
        .set_schedule_paused(&form.name, paused)
        .await
        .map_err(|e| ctx.store_failure_while(&format!("Cannot {verb} the schedule"), e))?;
    let pairs = [("name", form.name.as_str()), ("done", done.slug())];
    Ok(Redirect::to(
        &ctx.url(&format!("/schedules?{}", query(&pairs))),
    ))
}

/// The fields of a bulk action.
#[derive(Deserialize)]
pub(crate) struct BulkForm {
    action: Bulk,
    topic: Option<String>,
}

/// `POST /bulk`: retries or deletes every dead task (of a topic), or cancels every waiting
/// task of a topic, a page at a time; then shows the state it acted on, with a notice.
pub(crate) async fn bulk(ctx: Ctx, Form(form): Form<BulkForm>) -> Result<Redirect, Failure> {
    let topic = form.topic.as_deref().filter(|t| !t.is_empty());
    if form.action.needs_topic() && topic.is_none() {
        return Err(bulk_needs_topic(&ctx));
    }
    let done = ctx
        .source()
        .bulk(form.action, topic)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    let done = done.to_string();
    let mut pairs = vec![("done", form.action.slug()), ("count", done.as_str())];
    if let Some(topic) = topic {
        pairs.push(("topic", topic));
    }
    Ok(Redirect::to(&ctx.url(&format!(
        "/queues/{}?{}",
        form.action.state().slug(),
        query(&pairs)
    ))))
}

/// The answer to a bulk cancel that names no topic.
pub(crate) fn bulk_needs_topic(ctx: &Ctx) -> Failure {
    ctx.failure(
        StatusCode::BAD_REQUEST,
        "Cancelling every waiting task takes a topic: choose one on the pending tab.",
    )
}
