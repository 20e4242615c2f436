//! What the dashboard's tests share: a memory store with tasks in each state, and
//! requests sent straight to the router.
#![allow(dead_code)] // each test binary uses its own part

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use std::sync::Arc;
use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, Fired, LeaseRef, Outcome, OutcomeKind,
    RegisterOptions, ScheduleEntry, Tick, TopicClaim,
};
use taskmill_core::{Overlap, Schedule, Store, StoreExt, Task, TaskId, TaskRecord, Timestamp};
use tower::ServiceExt;

/// Enqueues one task of `topic` with `args`.
pub async fn enqueue(store: &dyn Store, topic: &str, args: Value) -> TaskId {
    let task = Task::new(topic, &args).expect("a valid task");
    store
        .enqueue_one(task, &EnqueueOptions::new(Timestamp::now()))
        .await
        .expect("enqueue")
        .id()
}

/// Claims every due task of `topic` into WORK under `owner`'s lease.
pub async fn claim(store: &dyn Store, topic: &str, owner: &str) -> Vec<TaskRecord> {
    claim_at(store, topic, owner, Timestamp::now()).await
}

/// Claims every task of `topic` due at `now` into WORK under `owner`'s lease, as a
/// manager whose clock reads `now`.
pub async fn claim_at(
    store: &dyn Store,
    topic: &str,
    owner: &str,
    now: Timestamp,
) -> Vec<TaskRecord> {
    let request = ClaimOptions::new([TopicClaim::new(topic)], usize::MAX, owner, now);
    store
        .claim(&request)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| match c {
            Claimed::Ready(record) => record,
            Claimed::Corrupt { error, .. } => panic!("corrupt task: {error}"),
        })
        .collect()
}

/// Makes `n` dead tasks of `topic` (args `{"n": i}`), each failed with `error`.
pub async fn dead(store: &dyn Store, topic: &str, n: usize, error: &str) -> Vec<TaskId> {
    let tasks = (0..n)
        .map(|i| Task::new(topic, &serde_json::json!({ "n": i })).expect("a valid task"))
        .collect();
    store
        .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
        .await
        .expect("enqueue");
    let outcomes: Vec<Outcome> = claim(store, topic, "test")
        .await
        .iter()
        .map(|record| Outcome::new(LeaseRef::of(record), OutcomeKind::dead(error)))
        .collect();
    store
        .apply(&outcomes, &ApplyOptions::new(Timestamp::now()))
        .await
        .expect("apply");
    outcomes.into_iter().map(|o| o.lease.id).collect()
}

/// Registers `schedules` in the store, as a manager starting with them does.
pub async fn register(store: &dyn Store, schedules: &[&Schedule]) {
    let entries: Vec<ScheduleEntry> = schedules
        .iter()
        .map(|s| {
            ScheduleEntry::new(
                s.name(),
                s.cadence().spec(),
                s.cadence().zone(),
                s.task().topic(),
            )
        })
        .collect();
    store
        .register_schedules(&entries, &RegisterOptions::new(Timestamp::now()))
        .await
        .expect("register the schedules");
}

/// Fires `schedule`'s tick `at` as a manager reaching it at `now` does, and returns the
/// task it enqueued.
pub async fn fire(store: &dyn Store, schedule: &Schedule, at: Timestamp, now: Timestamp) -> TaskId {
    let tick = Tick::new(
        schedule.name(),
        at,
        schedule.task_for(at).expect("the tick's task"),
        Overlap::Allow,
    );
    match store
        .fire(vec![tick], &EnqueueOptions::new(now))
        .await
        .expect("fire")
        .as_slice()
    {
        [Fired::Enqueued(enqueued)] => enqueued.id(),
        other => panic!("the tick was not fired: {other:?}"),
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location in a {} reply", self.status))
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        attribute_after(&self.body, r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body))
    }
}

/// The text from after `marker` up to the next `"`.
pub fn attribute_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

/// Sends `request` to `app` and reads the whole body.
pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("a readable body");
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("UTF-8"),
    }
}

/// A GET of `uri` as a browser sends it.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .expect("a valid request")
}

/// A form POST of `fields` to `uri`, from the same origin as a browser sends it.
pub fn post(uri: &str, fields: &[(&str, &str)]) -> Request<Body> {
    post_with(uri, fields, &[("sec-fetch-site", "same-origin")])
}

/// A form POST of `fields` with these extra headers.
pub fn post_with(uri: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Request<Body> {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        body.append_pair(k, v);
    }
    let mut request =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request
        .body(Body::from(body.finish()))
        .expect("a valid request")
}

/// The memory store as the dashboard takes it.
pub fn memory() -> (Arc<taskmill_memory::MemoryStore>, Arc<dyn Store>) {
    let store = Arc::new(taskmill_memory::MemoryStore::new());
    let shared: Arc<dyn Store> = store.clone();
    (store, shared)
}
