//! The pages a browser GETs.

use crate::context::Ctx;
use crate::data::{Bulk, State};
use crate::error::Failure;
use crate::views::{self, count, QueueView, SchedulesView};
use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::try_join;
use maud::Markup;
use serde::Deserialize;
use taskmill_core::TaskId;

/// Tasks on a queue page unless the query asks for another number.
const PAGE: usize = 50;
/// The most tasks one page may ask for.
const MAX_PAGE: usize = 500;

/// A rendered page: never cached, since it shows live state.
fn page(markup: Markup) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], markup).into_response()
}

/// `GET /`.
pub(crate) async fn overview(ctx: Ctx) -> Result<Response, Failure> {
    let observed = ctx
        .source()
        .stats()
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(page(views::overview(&ctx, &observed)))
}

/// The query of a queue page.
#[derive(Deserialize)]
pub(crate) struct QueueQuery {
    topic: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    /// The bulk action that led here, and how many tasks it changed.
    done: Option<Bulk>,
    count: Option<u64>,
}

/// `GET /queues/{state}`: one page of tasks in a state, of one topic or all.
pub(crate) async fn queue(
    ctx: Ctx,
    Path(slug): Path<String>,
    Query(query): Query<QueueQuery>,
) -> Result<Response, Failure> {
    let state = State::parse(&slug).ok_or_else(|| {
        ctx.failure(
            StatusCode::NOT_FOUND,
            format!("There is no state {slug:?}."),
        )
    })?;
    let topic = query.topic.as_deref().filter(|t| !t.is_empty());
    let after = query.after.map(TaskId::new);
    let limit = query.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let source = ctx.source();
    let (observed, tasks) = try_join(source.stats(), source.page(state, topic, after, limit))
        .await
        .map_err(|e| ctx.store_failure(e))?;
    // Forms on this page come back to it without the notice, which was about this visit.
    let mut ctx = ctx;
    if query.done.is_some() {
        let mut pairs = Vec::new();
        pairs.extend(topic.map(|t| ("topic", t)));
        let search = views::query(&pairs);
        let path = format!("/queues/{}", state.slug());
        ctx.here = if search.is_empty() {
            path
        } else {
            format!("{path}?{search}")
        }
        .into();
    }
    let notice = query.done.map(|done| {
        let n = count(query.count.unwrap_or(0));
        match done {
            Bulk::Retry => format!("Sent {n} dead tasks back to pending."),
            Bulk::Delete => format!("Deleted {n} dead tasks."),
            Bulk::Cancel => format!("Cancelled {n} waiting tasks."),
        }
    });
    let view = QueueView {
        state,
        topic,
        stats: &observed.stats,
        page: &tasks,
        after,
        notice,
        unworked: topic.is_some_and(|t| observed.is_unworked(t)),
        unworked_after: observed.unworked_after,
        now: observed.at,
    };
    Ok(page(views::queue(&ctx, &view)))
}

/// The query of the schedules page.
#[derive(Deserialize)]
pub(crate) struct SchedulesQuery {
    /// The schedule to mark: the one a task page linked to, or the one just changed.
    name: Option<String>,
    /// What the action that led here did to it.
    done: Option<ScheduleDone>,
}

/// What a schedule action did, for the notice after its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ScheduleDone {
    Paused,
    Resumed,
}

impl ScheduleDone {
    /// The name in URLs.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            ScheduleDone::Paused => "paused",
            ScheduleDone::Resumed => "resumed",
        }
    }
}

/// `GET /schedules`: every schedule the store keeps.
pub(crate) async fn schedules(
    ctx: Ctx,
    Query(query): Query<SchedulesQuery>,
) -> Result<Response, Failure> {
    let rows = ctx
        .source()
        .schedules()
        .await
        .map_err(|e| ctx.store_failure_while("Cannot list the schedules", e))?;
    let name = query.name.as_deref().filter(|n| !n.is_empty());
    let notice = match (query.done, name) {
        (Some(ScheduleDone::Paused), Some(name)) => Some(format!(
            "Paused schedule {name}: every manager skips its ticks until it is resumed."
        )),
        (Some(ScheduleDone::Resumed), Some(name)) => Some(format!(
            "Resumed schedule {name}: it fires again from its next tick."
        )),
        _ => None,
    };
    // Forms on this page come back to it without the notice, which was about this visit.
    let mut ctx = ctx;
    if query.done.is_some() {
        ctx.here = "/schedules".into();
    }
    let view = SchedulesView {
        rows: &rows,
        target: name,
        notice,
        now: ctx.source().now(),
    };
    Ok(page(views::schedules(&ctx, &view)))
}

/// The query of the search box.
#[derive(Deserialize)]
pub(crate) struct FindQuery {
    id: String,
}

/// `GET /tasks?id=N`: the search box, which goes to the task's page.
pub(crate) async fn find(ctx: Ctx, Query(query): Query<FindQuery>) -> Result<Response, Failure> {
    let id = parse_id(&ctx, &query.id)?;
    Ok(Redirect::to(&ctx.url(&format!("/tasks/{id}"))).into_response())
}

/// `GET /tasks/{id}`.
pub(crate) async fn task(ctx: Ctx, Path(id): Path<String>) -> Result<Response, Failure> {
    let id = parse_id(&ctx, &id)?;
    match ctx
        .source()
        .task(id)
        .await
        .map_err(|e| ctx.store_failure(e))?
    {
        Some(task) => Ok(page(views::task(&ctx, &task, ctx.source().now()))),
        None => Err(ctx.failure(
            StatusCode::NOT_FOUND,
            format!(
                "No task {id}: it was deleted, or pruned after its retention, or never existed."
            ),
        )),
    }
}

pub(crate) fn parse_id(ctx: &Ctx, text: &str) -> Result<TaskId, Failure> {
    text.trim().parse().map_err(|_| {
        ctx.failure(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a task id (a whole number)."),
        )
    })
}

/// The query of the bulk confirmation.
#[derive(Deserialize)]
pub(crate) struct BulkQuery {
    action: Bulk,
    topic: Option<String>,
}

/// `GET /bulk?action=retry|delete|cancel[&topic=T]`: asks before acting on every dead
/// task, or on every waiting task of a topic.
pub(crate) async fn confirm_bulk(
    ctx: Ctx,
    Query(query): Query<BulkQuery>,
) -> Result<Response, Failure> {
    if !ctx.can_act() {
        return Err(ctx.failure(StatusCode::FORBIDDEN, "The dashboard is read-only."));
    }
    let topic = query.topic.as_deref().filter(|t| !t.is_empty());
    if query.action.needs_topic() && topic.is_none() {
        return Err(crate::actions::bulk_needs_topic(&ctx));
    }
    let stats = ctx
        .source()
        .stats()
        .await
        .map_err(|e| ctx.store_failure(e))?
        .stats;
    let figures = topic.map_or(stats.total, |t| stats.topic(t));
    let tasks = query.action.count(&figures);
    Ok(page(views::confirm_bulk(&ctx, query.action, topic, tasks)))
}

/// Any other path.
pub(crate) async fn not_found(ctx: Ctx) -> Failure {
    ctx.failure(StatusCode::NOT_FOUND, "There is no such page.")
}
