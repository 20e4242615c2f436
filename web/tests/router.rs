//! The dashboard's router, driven with requests as a browser sends them: pages, paging,
//! actions, the live stream, and each security rule.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{
    attribute_after, claim, claim_at, dead, enqueue, fire, get, memory, post, post_with, register,
    send,
};
use futures_util::StreamExt;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    ApplyOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, ListOptions,
    Outcome, OutcomeKind, Page, StatsOptions,
};
use taskmill_core::{Error, Payload, Queue, Result, Schedule, Store, StoreExt, Task, Timestamp};
use taskmill_web::{router, DashboardOptions};
use tower::ServiceExt;

fn open(store: Arc<dyn Store>) -> Router {
    router(store, DashboardOptions::default())
}

#[tokio::test]
async fn overview_shows_counts_and_topics() {
    let (_, store) = memory();
    for i in 0..3 {
        enqueue(&*store, "emails", json!({ "i": i })).await;
    }
    dead(&*store, "thumbnails", 2, "bad image").await;
    // Waiting beside the 3 due: 2 scheduled for later, and 1 retrying after a failure.
    let later = Timestamp::now() + Duration::from_secs(3600);
    for i in 0..2 {
        let task = Task::new("emails", &json!({ "later": i }))
            .unwrap()
            .run_at(later);
        store
            .enqueue_one(task, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }
    enqueue(&*store, "reports", json!({})).await;
    let failed = claim(&*store, "reports", "test").await;
    let retry = Outcome::new(
        LeaseRef::of(&failed[0]),
        OutcomeKind::retry(later, "try again"),
    );
    store
        .apply(&[retry], &ApplyOptions::new(Timestamp::now()))
        .await
        .unwrap();
    store.set_paused("emails", true).await.unwrap();

    let reply = send(&open(store.clone()), get("/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = &reply.body;
    let summary = &html[html.find(r#"class="summary""#).unwrap()..html.find("chart-card").unwrap()];
    let labels: Vec<&str> = summary
        .split(r#"<span class="label">"#)
        .skip(1)
        .map(|s| &s[..s.find('<').unwrap()])
        .collect();
    assert_eq!(
        labels,
        [
            "Processed",
            "Failed",
            "Running",
            "Pending",
            "Scheduled",
            "Retrying",
            "Dead"
        ]
    );
    for (key, n) in [("pending", 3), ("scheduled", 2), ("retrying", 1)] {
        let cell = format!(r#"<span class="num" data-count="{key}">{n}</span>"#);
        assert!(summary.contains(&cell), "{cell} in {summary}");
    }
    // The topic table splits each topic's waiting tasks the same way.
    let row = &html[html.find(r#"data-topic="emails""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    for (key, n) in [("pending", 3), ("scheduled", 2), ("retrying", 0)] {
        assert!(
            row.contains(&format!(r#"data-count="{key}">{n}</a>"#)),
            "{key} {n} in {row}"
        );
    }
    let row = &html[html.find(r#"data-topic="reports""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(r#"data-count="retrying">1</a>"#), "{row}");
    // Each topic row carries both rates, which the stats stream fills in.
    for rate in ["processed", "failed"] {
        assert!(
            row.contains(&format!(r#"data-rate="{rate}""#)),
            "{rate} in {row}"
        );
    }
    assert!(
        html.contains(r#"<span class="num" data-state="dead">2</span>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<span class="num" data-count="failed">2</span>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-topic="emails" class="is-paused""#),
        "{html}"
    );
    assert!(html.contains(r#"data-topic="thumbnails">"#), "{html}");
    assert!(html.contains(r#"action="/topics/resume""#), "{html}");

    // INPUT's tabs list the parts the summary counts: Pending only the due tasks.
    let app = open(store.clone());
    for (slug, topic, n) in [
        ("input", "", 3),
        ("pending", "?topic=reports", 0),
        ("input", "?topic=emails", 3),
        ("scheduled", "", 2),
        ("retrying", "", 1),
        ("retrying", "?topic=emails", 0),
    ] {
        let page = send(&app, get(&format!("/queues/{slug}{topic}")))
            .await
            .body;
        let rows = links(&page)
            .iter()
            .filter(|l| l.starts_with("/tasks/") && l[7..].parse::<u64>().is_ok())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(rows, n, "{slug}{topic}: {page}");
        // `pending` is another name of the tab at `input`.
        let tab = slug.replace("pending", "input");
        let tab = format!(r#"data-state="{tab}">{n}</span>"#);
        assert!(page.contains(&tab), "{tab} in {slug}{topic}: {page}");
    }
}

/// Every href, src and form action of a page.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in [r#"href=""#, r#"src=""#, r#"action=""#] {
        let mut rest = html;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let end = rest.find('"').expect("a closed attribute");
            found.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    found
}

#[tokio::test]
async fn every_link_works_under_a_prefix() {
    let (_, store) = memory();
    let id = enqueue(&*store, "a/b c", json!({})).await;
    dead(&*store, "a/b c", 1, "boom").await;
    let every = Schedule::every(
        "every/minute ?",
        Duration::from_secs(60),
        Task::new("a/b c", &1).unwrap(),
    )
    .unwrap();
    register(&*store, &[&every]).await;
    let now = Timestamp::now();
    let fired = fire(&*store, &every, now, now).await;
    let app = Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "the application's own page" }),
        )
        .nest("/admin/tasks", open(store));

    let mut pages = vec![
        "/admin/tasks".to_owned(),
        format!("/admin/tasks/tasks/{id}"),
    ];
    pages.push("/admin/tasks/queues/dead?topic=a%2Fb+c".to_owned());
    pages.push("/admin/tasks/bulk?action=retry".to_owned());
    pages.push("/admin/tasks/schedules".to_owned());
    pages.push(format!("/admin/tasks/tasks/{fired}"));
    let mut checked = 0;
    for page in pages {
        let reply = send(&app, get(&page)).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
        for link in links(&reply.body) {
            assert!(
                link.starts_with("/admin/tasks/") || link == "/admin/tasks",
                "{page} links to {link}"
            );
            let form = reply.body.contains(&format!(r#"action="{link}""#));
            if !form {
                let target = send(&app, get(&link)).await;
                assert_eq!(target.status, StatusCode::OK, "{link} (linked from {page})");
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} links were followed");
    // The application's own route is untouched.
    assert_eq!(
        send(&app, get("/")).await.body,
        "the application's own page"
    );
}

#[tokio::test]
async fn queue_pages_follow_the_cursor_to_the_end() {
    let (_, store) = memory();
    let ids = dead(&*store, "t", 120, "no").await;
    let app = open(store);
    let mut seen = Vec::new();
    let mut next = Some("/queues/dead".to_owned());
    for _ in 0..10 {
        let Some(uri) = next.take() else { break };
        let reply = send(&app, get(&uri)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let mut rest = reply.body.as_str();
        while let Some(id) = attribute_after(rest, r#"<tr data-id=""#) {
            seen.push(id.parse::<u64>().unwrap());
            rest = &rest[rest.find(r#"<tr data-id=""#).unwrap() + 10..];
        }
        next = reply.body.find(r#"rel="next""#).map(|at| {
            let anchor = &reply.body[..at];
            let start = anchor.rfind(r#"href=""#).expect("the link has an href") + 6;
            anchor[start..]
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
        });
    }
    let expected: Vec<u64> = ids.iter().map(|i| i.get()).collect();
    assert_eq!(
        seen, expected,
        "pages of 50 visit every dead task once, in order"
    );
}

#[tokio::test]
async fn task_page_shows_what_the_store_keeps() {
    let (_, store) = memory();
    // Keys out of alphabetical order: the page keeps the stored order.
    let args = Payload::from_json(r#"{"to":"ada@example.com","tags":[1,2]}"#).unwrap();
    let task = Task::with_payload("emails", args)
        .unwrap()
        .priority(-3)
        .max_retries(4)
        .unique_key("welcome:ada");
    let id = store
        .enqueue_one(task, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap()
        .id();
    claim(&*store, "emails", "worker-7").await;
    let reply = send(&open(store.clone()), get(&format!("/tasks/{id}"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = &reply.body;
    for expected in [
        "<pre class=\"json\" id=\"args\">{\n  &quot;to&quot;: &quot;ada@example.com&quot;,\n  &quot;tags&quot;: [\n    1,\n    2\n  ]\n}</pre>",
        "welcome:ada",
        "worker-7",
        "Running",
        ">-3<",
        ">4<",
        " of 5 runs",
    ] {
        assert!(html.contains(expected), "missing {expected:?} in\n{html}");
    }

    let id = dead(&*store, "thumbs", 1, "decoder: EOF").await[0];
    let html = send(&open(store), get(&format!("/tasks/{id}"))).await.body;
    assert!(
        html.contains(r#"<pre class="error">decoder: EOF</pre>"#),
        "{html}"
    );
    assert!(html.contains("Finished"), "{html}");
    assert!(html.contains("the last 1, newest first"), "{html}");
    assert!(html.contains("Retry now"), "{html}");
}

#[tokio::test]
async fn missing_and_malformed_addresses_say_so() {
    let (_, store) = memory();
    let app = open(store);
    assert_eq!(
        send(&app, get("/tasks/999")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get("/tasks/abc")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, get("/queues/nowhere")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get("/no/such/page")).await.status,
        StatusCode::NOT_FOUND
    );
    let found = send(&app, get("/tasks?id=+42+")).await;
    assert_eq!(
        (found.status, found.location()),
        (StatusCode::SEE_OTHER, "/tasks/42")
    );
}

#[tokio::test]
async fn markup_in_a_task_renders_as_text() {
    let (_, store) = memory();
    let evil = "<script>alert(1)</script>";
    let topic = "<img src=x onerror=alert(2)>";
    let id = dead(&*store, topic, 1, "<b onmouseover=alert(3)>error</b>").await[0];
    let pending = enqueue(&*store, topic, json!({ "html": evil })).await;
    let app = open(store);
    for uri in [
        "/".to_owned(),
        "/queues/dead".to_owned(),
        "/queues/input".to_owned(),
        format!("/tasks/{id}"),
        format!("/tasks/{pending}"),
        "/bulk?action=delete&topic=%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E".to_owned(),
    ] {
        let html = send(&app, get(&uri)).await.body;
        for raw in ["<script>alert", "<img src=x", "<b onmouseover"] {
            assert!(
                !html.contains(raw),
                "{uri} contains {raw:?} unescaped:\n{html}"
            );
        }
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{uri} does not show the markup as text:\n{html}"
        );
    }
}

#[tokio::test]
async fn a_task_page_shows_its_headers_as_text() {
    let (_, store) = memory();
    let task = Task::new("t", &1)
        .unwrap()
        .header("x-request-id", "req-7")
        .unwrap()
        .header("x-evil", "<script>alert(4)</script>")
        .unwrap();
    let id = store
        .enqueue_one(task, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap()
        .id();
    let html = send(&open(store), get(&format!("/tasks/{id}"))).await.body;
    assert!(html.contains("Headers"), "{html}");
    assert!(html.contains("<code>x-request-id</code>"), "{html}");
    assert!(html.contains("req-7"), "{html}");
    assert!(!html.contains("<script>alert(4)"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(4)&lt;/script&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn the_overview_shows_each_topics_latency() {
    let (_, store) = memory();
    let now = Timestamp::now();
    let waiting = Task::new("late", &1)
        .unwrap()
        .run_at(now - Duration::from_secs(125));
    store
        .enqueue(
            vec![
                waiting,
                Task::new("fresh", &2)
                    .unwrap()
                    .delay(Duration::from_secs(60)),
            ],
            &EnqueueOptions::new(now),
        )
        .await
        .unwrap();
    let html = send(&open(store), get("/")).await.body;
    let latency = |topic: &str| {
        let row = &html[html.find(&format!("data-topic=\"{topic}\"")).expect(topic)..];
        let cell = &row[row.find("data-latency").expect("a latency cell")..];
        cell[cell.find('>').unwrap() + 1..cell.find('<').unwrap()].to_owned()
    };
    assert_eq!(latency("late"), "2 min", "waited since 125 s ago");
    assert_eq!(latency("fresh"), "0 s", "not due yet");
}

/// The row of `topic` in the overview, from its `<tr>` to its `</tr>`.
fn topic_row<'a>(html: &'a str, topic: &str) -> &'a str {
    let row = &html[html
        .find(&format!("<tr data-topic=\"{topic}\""))
        .unwrap_or_else(|| panic!("no row of {topic} in {html}"))..];
    &row[..row.find("</tr>").unwrap()]
}

/// Whether the overview flags `topic` “no worker”: its badge is there and not hidden.
fn flagged(html: &str, topic: &str) -> bool {
    let row = topic_row(html, topic);
    let badge = &row[row.find("data-unworked").expect("a no-worker badge")..];
    let tag = &badge[..badge.find('>').unwrap()];
    !tag.contains("hidden")
}

/// The “no worker” flag through the router, on a manual clock moved between requests: a
/// topic whose due task waits with no claim is flagged once the dashboard has a snapshot a
/// threshold old; one whose counter moved, one paused and one running are not.
#[tokio::test]
async fn a_topic_no_worker_claims_from_is_flagged_on_the_overview_and_its_page() {
    let (_, store) = memory();
    let real = Timestamp::now();
    for topic in ["orphan", "busy", "paused", "running"] {
        let tasks = (0..2).map(|i| Task::new(topic, &i).unwrap()).collect();
        store
            .enqueue(tasks, &EnqueueOptions::new(real))
            .await
            .unwrap();
    }
    store.set_paused("paused", true).await.unwrap();
    // One of "running" runs; "busy" has one claim and completion to come.
    let claimed = ClaimOptions::new(
        [taskmill_core::store::TopicClaim::new("running")],
        1,
        "w",
        real,
    );
    store.claim(&claimed).await.unwrap();

    // The tasks have waited two minutes by the dashboard's clock.
    let clock = taskmill_core::Clock::manual(real + Duration::from_secs(120));
    let app = router(
        store.clone(),
        DashboardOptions::default().clock(clock.clone()),
    );
    let html = send(&app, get("/")).await.body;
    for topic in ["orphan", "busy", "paused", "running"] {
        assert!(
            !flagged(&html, topic),
            "{topic}: no snapshot 60 s old yet:\n{html}"
        );
    }
    assert!(
        topic_row(&html, "orphan").contains(
            r#"title="no worker has taken a task for 1 min; is a manager running this topic?""#
        ),
        "{html}"
    );

    clock.advance(Duration::from_secs(30));
    send(&app, get("/queues/input")).await; // another snapshot, as any page takes
                                            // A worker takes one of "busy" and completes it; its other task still waits.
    let claimed = ClaimOptions::new(
        [taskmill_core::store::TopicClaim::new("busy")],
        1,
        "w",
        real,
    );
    let run = match &store.claim(&claimed).await.unwrap()[..] {
        [Claimed::Ready(record)] => LeaseRef::of(record),
        other => panic!("{other:?}"),
    };
    store
        .apply(
            &[Outcome::new(run, OutcomeKind::complete())],
            &ApplyOptions::new(real),
        )
        .await
        .unwrap();

    clock.advance(Duration::from_secs(31)); // 61 s after the first snapshot
    let html = send(&app, get("/")).await.body;
    assert!(flagged(&html, "orphan"), "{html}");
    for topic in ["busy", "paused", "running"] {
        assert!(!flagged(&html, topic), "{topic}:\n{html}");
    }
    let page = send(&app, get("/queues/input?topic=orphan")).await.body;
    let notice = &page[page.find(r#"id="unworked""#).expect("a notice")..];
    let notice = &notice[..notice.find("</p>").unwrap()];
    assert!(
        !notice[..notice.find('>').unwrap()].contains("hidden"),
        "{notice}"
    );
    assert!(
        notice.contains("No worker has taken a task for 1 min; is a manager running this topic?"),
        "{notice}"
    );
    let page = send(&app, get("/queues/input?topic=busy")).await.body;
    let notice = &page[page.find(r#"id="unworked""#).expect("a hidden notice")..];
    assert!(
        notice[..notice.find('>').unwrap()].contains("hidden"),
        "{notice}"
    );

    // The live stream says the same, for the page's script.
    let response = app
        .clone()
        .oneshot(Request::get("/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = read_until(&mut body, "\n\n").await;
    let topics: serde_json::Value = serde_json::from_str(
        first
            .trim()
            .strip_prefix("event: stats\ndata: ")
            .expect(&first),
    )
    .unwrap();
    let flags: Vec<(&str, bool)> = topics["topics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, figures)| (name.as_str(), figures["unworked"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        flags,
        [
            ("busy", false),
            ("orphan", true),
            ("paused", false),
            ("running", false)
        ]
    );
    assert_eq!(topics["total"]["unworked"], false);

    // A claim clears it: the counter moved within the last 60 s.
    let claimed = ClaimOptions::new(
        [taskmill_core::store::TopicClaim::new("orphan")],
        1,
        "w",
        real,
    );
    let run = match &store.claim(&claimed).await.unwrap()[..] {
        [Claimed::Ready(record)] => LeaseRef::of(record),
        other => panic!("{other:?}"),
    };
    store
        .apply(
            &[Outcome::new(run, OutcomeKind::complete())],
            &ApplyOptions::new(real),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(!flagged(&send(&app, get("/")).await.body, "orphan"));
}

#[test]
fn the_no_worker_threshold_defaults_to_a_minute() {
    let options = DashboardOptions::default();
    assert_eq!(options.unworked_after, Duration::from_secs(60));
    let options = options.unworked_after(Duration::from_secs(300));
    assert_eq!(options.unworked_after, Duration::from_secs(300));
}

#[tokio::test]
async fn pages_forbid_inline_script_and_framing() {
    let (_, store) = memory();
    let reply = send(&open(store), get("/")).await;
    let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        !reply.body.contains("<script>"),
        "no inline script: {}",
        reply.body
    );
}

#[tokio::test]
async fn assets_are_compiled_in_and_cacheable() {
    let (_, store) = memory();
    let app = open(store);
    let html = send(&app, get("/")).await.body;
    for (name, kind) in [
        ("app.css", "text/css"),
        ("app.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let url = attribute_after(&html, &format!("/assets/{name}?v="))
            .map(|v| format!("/assets/{name}?v={v}"))
            .unwrap_or_else(|| panic!("no link to {name}"));
        let reply = send(&app, get(&url)).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}");
        assert!(reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(reply.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(
            !reply.body.contains("http://") && !reply.body.contains("https://")
                || name == "icon.svg",
            "{name} loads nothing from elsewhere"
        );
    }
}

// Actions.

#[tokio::test]
async fn retry_sends_a_dead_task_back_and_returns_to_the_page() {
    let (_, store) = memory();
    let ids = dead(&*store, "t", 2, "no").await;
    let app = open(store.clone());
    let page = send(&app, get("/queues/dead?topic=t")).await;
    let reply = send(
        &app,
        post(
            &format!("/tasks/{}/retry", ids[0]),
            &[("csrf", &page.csrf()), ("next", "/queues/dead?topic=t")],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/queues/dead?topic=t");
    assert_eq!(
        store.get(ids[0]).await.unwrap().unwrap().queue,
        Queue::Input
    );
    assert_eq!(store.get(ids[1]).await.unwrap().unwrap().queue, Queue::Dead);
}

#[tokio::test]
async fn a_completed_task_shows_its_result_and_progress_as_text() {
    let (_, store) = memory();
    let id = enqueue(&*store, "t", json!({"n": 1})).await;
    let claimed = claim(&*store, "t", "worker-1").await;
    let hostile = Payload::new(&json!({"html": "<script>alert(1)</script>"})).unwrap();
    let outcome = Outcome::new(
        LeaseRef::of(&claimed[0]),
        OutcomeKind::complete_with(Some(hostile.clone())),
    )
    .progress(Some(Payload::new(&json!({"done": 7})).unwrap()));
    store
        .apply(&[outcome], &ApplyOptions::new(Timestamp::now()))
        .await
        .unwrap();
    let app = open(store.clone());
    let html = send(&app, get(&format!("/tasks/{id}"))).await.body;
    assert!(html.contains("status-completed"), "{html}");
    assert!(html.contains(r#"<pre class="json" id="result">"#), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        html.contains(r#"<pre class="json" id="progress">"#),
        "{html}"
    );
    let tab = send(&app, get("/queues/completed")).await.body;
    assert!(tab.contains(&format!("data-id=\"{id}\"")), "{tab}");
    assert!(tab.contains("&lt;script&gt;"), "{tab}");
}

#[tokio::test]
async fn cancel_ends_a_waiting_task_and_the_page_shows_who() {
    let (_, store) = memory();
    let id = enqueue(&*store, "t", json!({"n": 1})).await;
    let app = open(store.clone());
    let own = format!("/tasks/{id}");
    let page = send(&app, get(&own)).await;
    assert!(
        page.body.contains(&format!("/tasks/{id}/cancel")),
        "{}",
        page.body
    );
    let reply = send(
        &app,
        post(
            &format!("/tasks/{id}/cancel"),
            &[("csrf", &page.csrf()), ("next", &own)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), own);
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.queue, Queue::Cancelled);
    let html = send(&app, get(&own)).await.body;
    assert!(html.contains("status-cancelled"), "{html}");
    assert!(html.contains("<code>dashboard</code>"), "{html}");
    assert!(
        !html.contains(&format!("/tasks/{id}/cancel")),
        "a cancelled task offers Cancel again: {html}"
    );
    let tab = send(&app, get("/queues/cancelled?topic=t")).await.body;
    assert!(tab.contains(&format!("data-id=\"{id}\"")), "{tab}");
}

/// Every attempt's error with its number and time, the result and progress, every time
/// the record keeps, and who asked for a cancel: a task that failed twice, then ran a
/// third time with a cancel requested.
#[tokio::test]
async fn the_task_page_shows_every_error_every_time_and_who_cancelled() {
    let (_, store) = memory();
    // A minute between each step, so that each time shows apart from the others.
    let start = Timestamp::now().as_millis() - 600_000;
    let at = |minutes: i64| Timestamp::from_millis(start + minutes * 60_000);
    let task = Task::new("t", &json!({"n": 1})).unwrap();
    let id = store
        .enqueue_one(task, &EnqueueOptions::new(at(0)))
        .await
        .unwrap()
        .id();
    for (attempt, error) in [(1, "disk <full>"), (2, "timeout after 30s")] {
        let claimed = claim_at(
            &*store,
            "t",
            &format!("worker-{attempt}"),
            at(3 * attempt - 2),
        )
        .await;
        let retry = Outcome::new(
            LeaseRef::of(&claimed[0]),
            OutcomeKind::retry(at(3 * attempt), error),
        )
        .progress(Some(
            Payload::new(&json!({"step": attempt, "of": "<3>"})).unwrap(),
        ));
        store
            .apply(&[retry], &ApplyOptions::new(at(3 * attempt - 1)))
            .await
            .unwrap();
    }
    claim_at(&*store, "t", "worker-3", at(7)).await;
    let client = taskmill_core::Client::shared(store.clone()).by("ops <ada>");
    assert_eq!(
        client.cancel(&[id]).await.unwrap(),
        [Cancellation::Requested]
    );
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.errors.len(), 2);

    let app = open(store.clone());
    let html = send(&app, get(&format!("/tasks/{id}"))).await.body;
    // Newest first, each with its attempt and time; markup in a message is text.
    let errors = &html[html.find(r#"id="errors""#).expect("an errors table")..];
    let second = errors.find("timeout after 30s").expect("attempt 2's error");
    let first = errors.find("disk &lt;full&gt;").expect("attempt 1's error");
    assert!(second < first, "newest first: {errors}");
    for e in &record.errors {
        let row = format!(
            r#"<td class="n num">{}</td><td><span class="num">{}</span>"#,
            e.attempt,
            shown(e.at)
        );
        assert!(
            errors.contains(&row),
            "attempt {} as {row} in {errors}",
            e.attempt
        );
    }
    assert!(
        !html.contains("errors-dropped"),
        "nothing was dropped: {html}"
    );
    assert!(
        html.contains(
            r#"<pre class="json" id="progress">{
  &quot;of&quot;: &quot;&lt;3&gt;&quot;,
  &quot;step&quot;: 2
}</pre>"#
        ),
        "{html}"
    );
    assert!(html.contains("Cancel requested by"), "{html}");
    assert!(html.contains("<code>ops &lt;ada&gt;</code>"), "{html}");
    assert!(
        html.contains("cancel requested"),
        "the status says so: {html}"
    );
    assert_eq!(record.run_at, at(6), "due when the second retry said");
    for (label, at) in [
        ("Enqueued", Some(at(0))),
        ("Due", Some(at(6))),
        ("First started", Some(at(1))),
        ("Last started", Some(at(7))),
        ("Finished", None),
    ] {
        let cell = &html[html
            .find(&format!("<dt>{label}</dt>"))
            .unwrap_or_else(|| panic!("no {label}"))..];
        let cell = &cell[..cell.find("</dd>").unwrap()];
        match at {
            Some(at) => assert!(
                cell.contains(&shown(at)),
                "{label}: {cell}, not {}",
                shown(at)
            ),
            None => assert!(cell.contains("—"), "{label}: {cell}"),
        }
    }
    // No second cancel is offered while the first is pending, on the page or the row.
    assert!(!html.contains(&format!("/tasks/{id}/cancel")), "{html}");
    let tab = send(&app, get("/queues/work?topic=t")).await.body;
    assert!(tab.contains(r#"<span class="badge warn" title="Asked by ops &lt;ada&gt;; its run ends cancelled">cancel requested</span>"#), "{tab}");
    assert!(!tab.contains(&format!("/tasks/{id}/cancel")), "{tab}");
}

/// A time as the task page writes it (UTC, to the second).
fn shown(at: Timestamp) -> String {
    let text = at.to_string();
    text.replace('T', " ")
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

/// A task that failed more often than a record keeps errors for says the oldest are gone.
#[tokio::test]
async fn the_task_page_says_when_older_errors_were_dropped() {
    let (_, store) = memory();
    let id = enqueue(&*store, "t", json!(1)).await;
    let runs = taskmill_core::MAX_KEPT_ERRORS + 2;
    for attempt in 1..=runs {
        let claimed = claim(&*store, "t", "w").await;
        let retry = Outcome::new(
            LeaseRef::of(&claimed[0]),
            OutcomeKind::retry(Timestamp::now(), format!("failure {attempt}")),
        );
        store
            .apply(&[retry], &ApplyOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }
    let html = send(&open(store), get(&format!("/tasks/{id}"))).await.body;
    assert!(html.contains(&format!("failure {runs}<")), "{html}");
    assert!(!html.contains("failure 2<"), "{html}");
    let note = &html[html.find(r#"id="errors-dropped""#).expect("a note")..];
    assert!(note.starts_with(r#"id="errors-dropped">The errors of attempts before <span class="num">3</span> are not kept: a task keeps the last 10."#), "{note}");
}

/// Cancel on the rows of the pending and running tabs, through the guarded POST, back to
/// the same page.
#[tokio::test]
async fn rows_of_waiting_and_running_tasks_cancel() {
    let (_, store) = memory();
    let running = enqueue(&*store, "t", json!(0)).await;
    claim(&*store, "t", "worker-1").await;
    let waiting = enqueue(&*store, "t", json!(1)).await;
    let dead_id = dead(&*store, "d", 1, "no").await[0];
    let app = open(store.clone());
    for (tab, id) in [
        ("/queues/input?topic=t", waiting),
        ("/queues/work?topic=t", running),
    ] {
        let page = send(&app, get(tab)).await;
        let form = format!(r#"action="/tasks/{id}/cancel""#);
        assert!(page.body.contains(&form), "{tab}: {}", page.body);
        let reply = send(
            &app,
            post(
                &format!("/tasks/{id}/cancel"),
                &[("csrf", &page.csrf()), ("next", tab)],
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.location(), tab);
    }
    assert_eq!(
        store.get(waiting).await.unwrap().unwrap().queue,
        Queue::Cancelled
    );
    let record = store.get(running).await.unwrap().unwrap();
    assert_eq!(
        (record.queue, record.cancelled_by.as_deref()),
        (Queue::Work, Some("dashboard"))
    );
    // Dead and finished rows offer no cancel.
    for tab in ["/queues/dead", "/queues/cancelled"] {
        let html = send(&app, get(tab)).await.body;
        assert!(!html.contains("/cancel\""), "{tab}: {html}");
        assert!(!html.contains(r#"/cancel""#), "{tab}: {html}");
    }
    assert_eq!(
        store.get(dead_id).await.unwrap().unwrap().queue,
        Queue::Dead
    );
}

/// "Cancel all waiting" of a topic: offered on its pending tab only, confirmed first,
/// then done a page at a time; running tasks and other topics are left alone.
#[tokio::test]
async fn cancel_all_waiting_of_a_topic_confirms_first() {
    let (_, inner) = memory();
    let running = enqueue(&*inner, "a", json!(0)).await;
    claim(&*inner, "a", "worker-1").await;
    let tasks = (0..1_100).map(|i| Task::new("a", &i).unwrap()).collect();
    inner
        .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap();
    let later = Task::new("a", &"later")
        .unwrap()
        .run_at(Timestamp::from_millis(
            Timestamp::now().as_millis() + 3_600_000,
        ));
    inner
        .enqueue_one(later, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap();
    enqueue(&*inner, "b", json!(1)).await;
    let store = Arc::new(Counted::new(inner));
    let app = open(store.clone());

    let all = send(&app, get("/queues/input")).await.body;
    assert!(
        !all.contains("Cancel all waiting"),
        "not for every topic at once: {all}"
    );
    assert!(!send(&app, get("/queues/dead?topic=a"))
        .await
        .body
        .contains("Cancel all waiting"));
    let tab = send(&app, get("/queues/input?topic=a")).await.body;
    assert!(
        tab.contains(r#"href="/bulk?action=cancel&amp;topic=a""#),
        "{tab}"
    );
    assert_eq!(
        send(&app, get("/bulk?action=cancel")).await.status,
        StatusCode::BAD_REQUEST
    );

    let confirm = send(&app, get("/bulk?action=cancel&topic=a")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Cancel all waiting tasks?"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains(
            r#"<strong class="num">1,101</strong> waiting tasks of topic <strong>a</strong>"#
        ),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains(r#"name="action" value="cancel""#));
    // Nothing changed by looking.
    assert_eq!(
        store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await
            .unwrap()
            .topic("a")
            .sizes
            .input,
        1_101
    );

    let no_topic = send(
        &app,
        post("/bulk", &[("csrf", &confirm.csrf()), ("action", "cancel")]),
    )
    .await;
    assert_eq!(no_topic.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await
            .unwrap()
            .total
            .sizes
            .input,
        1_102
    );

    let lists = store.lists.load(Ordering::Relaxed);
    let reply = send(
        &app,
        post(
            "/bulk",
            &[
                ("csrf", &confirm.csrf()),
                ("action", "cancel"),
                ("topic", "a"),
            ],
        ),
    )
    .await;
    assert_eq!(
        reply.location(),
        "/queues/input?done=cancel&count=1101&topic=a"
    );
    let stats = store
        .stats(&StatsOptions::new(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(
        (
            stats.topic("a").sizes.input,
            stats.topic("a").sizes.cancelled,
            stats.topic("a").sizes.work
        ),
        (0, 1_101, 1)
    );
    assert_eq!(
        stats.topic("b").sizes.input,
        1,
        "another topic's tasks stay"
    );
    assert_eq!(
        store.get(running).await.unwrap().unwrap().cancelled_by,
        None,
        "running tasks are left alone"
    );
    assert!(
        store.lists.load(Ordering::Relaxed) - lists >= 3,
        "1,101 tasks took several pages"
    );
    assert!(store.largest_page.load(Ordering::Relaxed) <= 500);
    let page = send(&app, get(reply.location())).await.body;
    assert!(page.contains("Cancelled 1,101 waiting tasks."), "{page}");
}

#[tokio::test]
async fn delete_from_the_task_page_goes_to_its_list() {
    let (_, store) = memory();
    let id = dead(&*store, "t", 1, "no").await[0];
    let app = open(store.clone());
    let page = send(&app, get(&format!("/tasks/{id}"))).await;
    let own = format!("/tasks/{id}");
    let reply = send(
        &app,
        post(
            &format!("/tasks/{id}/delete"),
            &[("csrf", &page.csrf()), ("next", &own)],
        ),
    )
    .await;
    assert_eq!(reply.location(), "/queues/dead?topic=t");
    assert_eq!(store.get(id).await.unwrap(), None);
}

#[tokio::test]
async fn pause_and_resume_a_topic() {
    let (_, store) = memory();
    enqueue(&*store, "t", json!(1)).await;
    let app = open(store.clone());
    let csrf = send(&app, get("/")).await.csrf();
    let reply = send(
        &app,
        post(
            "/topics/pause",
            &[("csrf", &csrf), ("topic", "t"), ("next", "/")],
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.location()),
        (StatusCode::SEE_OTHER, "/")
    );
    assert!(
        store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await
            .unwrap()
            .topic("t")
            .paused
    );
    send(
        &app,
        post("/topics/resume", &[("csrf", &csrf), ("topic", "t")]),
    )
    .await;
    assert!(
        !store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await
            .unwrap()
            .topic("t")
            .paused
    );
}

#[tokio::test]
async fn redirects_stay_inside_the_dashboard() {
    let (_, store) = memory();
    enqueue(&*store, "t", json!(1)).await;
    let app = open(store);
    let csrf = send(&app, get("/")).await.csrf();
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "relative",
    ] {
        let reply = send(
            &app,
            post(
                "/topics/pause",
                &[("csrf", &csrf), ("topic", "t"), ("next", next)],
            ),
        )
        .await;
        assert_eq!(reply.location(), "/", "next={next}");
    }
}

/// A store around the memory store that counts how it is listed, and, with
/// `no_schedules`, answers every schedule call `Unsupported`, as a store that keeps no
/// schedules does.
struct Counted {
    inner: Arc<dyn Store>,
    lists: AtomicUsize,
    largest_page: AtomicUsize,
    no_schedules: bool,
}

impl Counted {
    fn new(inner: Arc<dyn Store>) -> Self {
        Counted {
            inner,
            lists: AtomicUsize::new(0),
            largest_page: AtomicUsize::new(0),
            no_schedules: false,
        }
    }

    fn schedules_kept(&self) -> Result<()> {
        match self.no_schedules {
            true => Err(Error::unsupported("schedules are not stored by this store")),
            false => Ok(()),
        }
    }
}

taskmill_testkit::forward_store! {
    impl Store for Counted {
        forward |s| &s.inner;
        async fn list(&self, opts: &ListOptions) -> Result<Page> {
            self.lists.fetch_add(1, Ordering::Relaxed);
            self.largest_page.fetch_max(opts.limit, Ordering::Relaxed);
            self.inner.list(opts).await
        }
        async fn register_schedules(
            &self,
            entries: &[taskmill_core::store::ScheduleEntry],
            opts: &taskmill_core::store::RegisterOptions,
        ) -> Result<Vec<taskmill_core::store::ScheduleState>> {
            self.schedules_kept()?;
            self.inner.register_schedules(entries, opts).await
        }
        async fn fire(
            &self,
            ticks: Vec<taskmill_core::store::Tick>,
            opts: &EnqueueOptions,
        ) -> Result<Vec<taskmill_core::store::Fired>> {
            self.schedules_kept()?;
            self.inner.fire(ticks, opts).await
        }
        async fn schedules(&self) -> Result<Vec<taskmill_core::store::ScheduleState>> {
            self.schedules_kept()?;
            self.inner.schedules().await
        }
        async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
            self.schedules_kept()?;
            self.inner.set_schedule_paused(name, paused).await
        }
        async fn prune_schedules(
            &self,
            opts: &taskmill_core::store::PruneSchedulesOptions,
        ) -> Result<u64> {
            self.schedules_kept()?;
            self.inner.prune_schedules(opts).await
        }
    }
}

#[tokio::test]
async fn bulk_actions_confirm_first_and_work_a_page_at_a_time() {
    let (_, inner) = memory();
    dead(&*inner, "a", 1_200, "no").await;
    dead(&*inner, "b", 10, "no").await;
    let store = Arc::new(Counted::new(inner));
    let app = open(store.clone());

    let confirm = send(&app, get("/bulk?action=retry&topic=a")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm
            .body
            .contains(r#"<strong class="num">1,200</strong>"#),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains(r#"name="topic" value="a""#));

    let reply = send(
        &app,
        post(
            "/bulk",
            &[
                ("csrf", &confirm.csrf()),
                ("action", "retry"),
                ("topic", "a"),
            ],
        ),
    )
    .await;
    assert_eq!(
        reply.location(),
        "/queues/dead?done=retry&count=1200&topic=a"
    );
    let stats = store
        .stats(&StatsOptions::new(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(
        (stats.topic("a").sizes.dead, stats.topic("a").sizes.input),
        (0, 1_200)
    );
    assert_eq!(
        stats.topic("b").sizes.dead,
        10,
        "another topic's dead tasks stay"
    );
    assert!(
        store.lists.load(Ordering::Relaxed) >= 3,
        "1,200 tasks took several pages"
    );
    assert!(store.largest_page.load(Ordering::Relaxed) <= 500);

    let page = send(&app, get(reply.location())).await;
    assert!(
        page.body.contains("Sent 1,200 dead tasks back to pending."),
        "{}",
        page.body
    );

    let reply = send(
        &app,
        post("/bulk", &[("csrf", &confirm.csrf()), ("action", "delete")]),
    )
    .await;
    assert_eq!(reply.location(), "/queues/dead?done=delete&count=10");
    assert_eq!(
        store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await
            .unwrap()
            .total
            .sizes
            .dead,
        0
    );
}

#[tokio::test]
async fn pages_list_one_page_however_large_the_queue() {
    let (_, inner) = memory();
    dead(&*inner, "a", 2_000, "no").await;
    let store = Arc::new(Counted::new(inner));
    let app = open(store.clone());
    for uri in [
        "/",
        "/queues/dead",
        "/queues/dead?topic=a&limit=100000",
        "/queues/input",
    ] {
        send(&app, get(uri)).await;
    }
    assert_eq!(
        store.lists.load(Ordering::Relaxed),
        3,
        "one list call per queue page"
    );
    assert!(store.largest_page.load(Ordering::Relaxed) <= 500);
}

// The live stream.

/// Reads the event stream until an event whose text contains `needle`, for up to 5 s.
async fn read_until(body: &mut axum::body::BodyDataStream, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; got:\n{seen}"))
            .expect("the stream stays open")
            .expect("a readable chunk");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    seen
}

#[tokio::test]
async fn the_event_stream_sends_stats_and_relays_store_events() {
    let (_, store) = memory();
    dead(&*store, "t", 2, "no").await;
    let response = open(store.clone())
        .oneshot(Request::get("/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body().into_data_stream();
    let first = read_until(&mut body, "\n\n").await;
    assert!(first.starts_with("event: stats\ndata: {"), "{first}");
    assert!(first.contains(r#""total":{"processed":0,"failed":2,"retried":0,"pending":0,"scheduled":0,"retrying":0,"waiting":0,"states":{"cancelled":0,"completed":0,"dead":2,"input":0,"retrying":0,"scheduled":0,"work":0},"paused":false,"latency":"0 s","unworked":false}"#), "{first}");

    let id = enqueue(&*store, "t", json!("hello")).await;
    let relayed = read_until(&mut body, "TASK_ENQUEUE").await;
    assert!(
        relayed.contains(&format!(
            r#"event: task
data: {{"type":"TASK_ENQUEUE","id":{id},"topic":"t""#
        )),
        "{relayed}"
    );
}

// Security: the token.

fn with_token(store: Arc<dyn Store>) -> Router {
    router(store, DashboardOptions::default().token("s3cret"))
}

fn bearer(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn with_a_token_every_request_needs_it() {
    let (_, store) = memory();
    let id = enqueue(&*store, "t", json!(1)).await;
    let app = with_token(store);
    for uri in [
        "/",
        "/queues/input",
        &format!("/tasks/{id}"),
        "/events",
        "/bulk?action=retry",
        "/nowhere",
    ] {
        let anonymous = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            !anonymous.body.contains("data-topic"),
            "{uri} leaks nothing"
        );
        assert_eq!(
            send(&app, bearer(uri, "wrong")).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    assert_eq!(
        send(&app, bearer("/", "s3cret")).await.status,
        StatusCode::OK
    );
    // A browser is sent to the sign-in form, and back afterwards.
    let to_login = send(&app, get("/queues/input?topic=t")).await;
    assert_eq!(to_login.status, StatusCode::SEE_OTHER);
    assert_eq!(
        to_login.location(),
        "/login?next=%2Fqueues%2Finput%3Ftopic%3Dt"
    );
    assert_eq!(send(&app, get("/login")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie() {
    let (_, store) = memory();
    let app = Router::new().nest("/ops", with_token(store));
    let wrong = send(
        &app,
        post("/ops/login", &[("token", "guess"), ("next", "/")]),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());

    let right = send(
        &app,
        post(
            "/ops/login",
            &[("token", "s3cret"), ("next", "/queues/dead")],
        ),
    )
    .await;
    assert_eq!(
        (right.status, right.location()),
        (StatusCode::SEE_OTHER, "/ops/queues/dead")
    );
    let cookie = right.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("; Path=/ops; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cret"),
        "the cookie is not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    let signed_in = Request::get("/ops")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, signed_in).await.status, StatusCode::OK);
    let forged = Request::get("/ops")
        .header(header::COOKIE, "taskmill_session=00000000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, forged).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn assets_and_the_sign_in_form_need_no_token() {
    let (_, store) = memory();
    let app = with_token(store);
    let login = send(&app, get("/login")).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        !login.body.contains(r#"name="csrf""#),
        "the public form does not carry the CSRF token"
    );
    let css = attribute_after(&login.body, "/assets/app.css?v=").unwrap();
    let reply = send(
        &app,
        Request::get(format!("/assets/app.css?v={css}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

// Security: CSRF and origin.

#[tokio::test]
async fn a_post_without_the_form_token_changes_nothing() {
    let (_, store) = memory();
    let id = dead(&*store, "t", 1, "no").await[0];
    let app = open(store.clone());
    let retry = format!("/tasks/{id}/retry");
    let other = send(&open(store.clone()), get("/")).await.csrf();
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "0123")],
        vec![("csrf", other.as_str())],
    ] {
        let reply = send(&app, post(&retry, &fields)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{fields:?}");
    }
    assert_eq!(
        store.get(id).await.unwrap().unwrap().queue,
        Queue::Dead,
        "still dead"
    );
    let csrf = send(&app, get("/")).await.csrf();
    assert_eq!(
        send(&app, post(&retry, &[("csrf", &csrf)])).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(store.get(id).await.unwrap().unwrap().queue, Queue::Input);
}

#[tokio::test]
async fn a_cross_origin_post_is_refused_even_with_the_token() {
    let (_, store) = memory();
    let id = dead(&*store, "t", 1, "no").await[0];
    let app = open(store.clone());
    let csrf = send(&app, get("/")).await.csrf();
    let retry = format!("/tasks/{id}/retry");
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ],
        vec![("origin", "null"), ("host", "127.0.0.1:8080")],
    ] {
        let reply = send(&app, post_with(&retry, &[("csrf", &csrf)], &headers)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Signing in is checked for origin too.
    let login = post_with(
        "/login",
        &[("token", "x")],
        &[("sec-fetch-site", "cross-site")],
    );
    assert_eq!(
        send(&with_token(store.clone()), login).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(store.get(id).await.unwrap().unwrap().queue, Queue::Dead);
    let same = post_with(
        &retry,
        &[("csrf", &csrf)],
        &[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ],
    );
    assert_eq!(send(&app, same).await.status, StatusCode::SEE_OTHER);
}

// Security: read-only.

#[tokio::test]
async fn read_only_hides_the_buttons_and_refuses_the_posts() {
    let (_, store) = memory();
    let id = dead(&*store, "t", 1, "no").await[0];
    let nightly = Schedule::new("nightly", "0 0 3 * * *", Task::new("t", &1).unwrap()).unwrap();
    register(&*store, &[&nightly]).await;
    let waiting = enqueue(&*store, "w", json!(1)).await;
    let app = router(store.clone(), DashboardOptions::default().read_only(true));
    for uri in [
        "/".to_owned(),
        "/queues/dead".to_owned(),
        "/queues/input?topic=w".to_owned(),
        format!("/tasks/{id}"),
        "/schedules".to_owned(),
    ] {
        let html = send(&app, get(&uri)).await.body;
        assert!(
            !html.contains(r#"method="post""#),
            "{uri} has a form:\n{html}"
        );
        // Any retry button or link ("Retry", "Retry all", "Retry now"); the overview's
        // "Retrying" figure is no action.
        let offers_retry = html.replace("Retrying", "").contains("Retry");
        assert!(!offers_retry, "{uri} offers a retry:\n{html}");
        assert!(html.contains("read-only"), "{uri} says it is read-only");
    }
    for uri in ["/bulk?action=delete", "/bulk?action=cancel&topic=w"] {
        assert_eq!(
            send(&app, get(uri)).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    // Refused for being read-only, before any token is looked at.
    for (uri, fields) in [
        (format!("/tasks/{id}/retry"), vec![]),
        (format!("/tasks/{id}/delete"), vec![]),
        ("/topics/pause".to_owned(), vec![("topic", "t")]),
        ("/schedules/pause".to_owned(), vec![("name", "nightly")]),
        ("/bulk".to_owned(), vec![("action", "delete")]),
        (format!("/tasks/{waiting}/cancel"), vec![]),
        (
            "/bulk".to_owned(),
            vec![("action", "cancel"), ("topic", "w")],
        ),
    ] {
        let reply = send(&app, post(&uri, &fields)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(reply.body.contains("read-only"), "{uri}: {}", reply.body);
    }
    let stats = store
        .stats(&StatsOptions::new(Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(
        (stats.total.sizes.dead, stats.topic("t").paused),
        (1, false)
    );
    assert!(!store.schedules().await.unwrap()[0].paused);
    assert_eq!(
        store.get(waiting).await.unwrap().unwrap().queue,
        Queue::Input
    );
}

// Schedules.

/// The name no page may show raw: markup, both quotes, an ampersand, a slash, a space and
/// a non-ASCII letter.
const HOSTILE: &str = "<script>\"'&/ é";

#[tokio::test]
async fn the_schedules_page_shows_each_schedule_with_its_name_escaped() {
    let (_, store) = memory();
    let hostile = Schedule::every(
        HOSTILE,
        Duration::from_secs(60),
        Task::new("reports", &1).unwrap(),
    )
    .unwrap();
    let nightly = Schedule::new("nightly", "0 30 2 * * *", Task::new("mail", &2).unwrap())
        .unwrap()
        .zone("Europe/Berlin")
        .unwrap();
    register(&*store, &[&hostile, &nightly]).await;
    // Reached 1.5 s after its tick.
    let now = Timestamp::now();
    let tick = Timestamp::from_millis(now.as_millis() / 60_000 * 60_000);
    let id = fire(&*store, &hostile, tick, tick + Duration::from_millis(1_500)).await;
    let app = open(store.clone());

    let reply = send(&app, get("/schedules")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = &reply.body;
    let escaped = "&lt;script&gt;&quot;'&amp;/ é";
    assert!(
        !html.contains(HOSTILE),
        "the raw name is on the page:\n{html}"
    );
    assert!(!html.contains("<script>\""), "{html}");
    for expected in [
        format!(r#"<tr data-schedule="{escaped}">"#),
        format!(r#"<td class="schedule-name" title="{escaped}">{escaped}</td>"#),
        format!(r#"<input type="hidden" name="name" value="{escaped}">"#),
        r#"<code class="cadence">@every 1m</code>"#.to_owned(),
        r#"<code class="cadence">0 30 2 * * *</code>"#.to_owned(),
        r#"<td class="zone">Europe/Berlin</td>"#.to_owned(),
        r#"<a href="/queues/input?topic=reports">reports</a>"#.to_owned(),
        format!(r#"<a class="num" href="/tasks/{id}">{id}</a>"#),
        r#"<span class="badge status-pending">pending</span>"#.to_owned(),
        ">+1.5 s<".to_owned(),
        r#"action="/schedules/pause""#.to_owned(),
        r#"<a href="/schedules" aria-current="page">Schedules</a>"#.to_owned(),
    ] {
        assert!(html.contains(&expected), "missing {expected:?} in\n{html}");
    }
    assert_eq!(
        html.matches(r#"<span class="badge ok">active</span>"#)
            .count(),
        2
    );

    // The task it fired says so, and links back with the name percent-encoded.
    let task = send(&app, get(&format!("/tasks/{id}"))).await.body;
    let link = "/schedules?name=%3Cscript%3E%22%27%26%2F+%C3%A9";
    assert!(
        task.contains(&format!(
            r#"schedule <a href="{link}">{escaped}</a> at tick "#
        )),
        "{task}"
    );
    assert!(!task.contains(HOSTILE), "{task}");
    let marked = send(&app, get(link)).await;
    assert_eq!(marked.status, StatusCode::OK);
    assert!(
        marked.body.contains(&format!(
            r#"<tr data-schedule="{escaped}" class="is-target" aria-current="true">"#
        )),
        "{}",
        marked.body
    );
    // A task no schedule fired says nothing of one.
    let plain = enqueue(&*store, "reports", json!(3)).await;
    let page = send(&app, get(&format!("/tasks/{plain}"))).await.body;
    assert!(!page.contains("Fired by"), "{page}");
}

#[tokio::test]
async fn a_schedule_is_paused_and_resumed_through_the_router() {
    let (_, store) = memory();
    let hostile = Schedule::every(
        HOSTILE,
        Duration::from_secs(60),
        Task::new("reports", &1).unwrap(),
    )
    .unwrap();
    register(&*store, &[&hostile]).await;
    let app = open(store.clone());
    let csrf = send(&app, get("/schedules")).await.csrf();
    let paused = |store: Arc<dyn Store>| async move { store.schedules().await.unwrap()[0].paused };

    let reply = send(
        &app,
        post(
            "/schedules/pause",
            &[("csrf", &csrf), ("name", HOSTILE), ("next", "/schedules")],
        ),
    )
    .await;
    let back = "/schedules?name=%3Cscript%3E%22%27%26%2F+%C3%A9&done=paused";
    assert_eq!(
        (reply.status, reply.location()),
        (StatusCode::SEE_OTHER, back)
    );
    assert!(paused(store.clone()).await);
    let page = send(&app, get(back)).await.body;
    assert!(
        page.contains("Paused schedule &lt;script&gt;&quot;'&amp;/ é: every manager skips"),
        "{page}"
    );
    assert!(
        page.contains(r#"<span class="badge warn">paused</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"action="/schedules/resume""#), "{page}");
    assert!(!page.contains(r#"action="/schedules/pause""#), "{page}");
    // Its forms come back to the page without the notice.
    assert!(page.contains(r#"name="next" value="/schedules""#), "{page}");

    let reply = send(
        &app,
        post("/schedules/resume", &[("csrf", &csrf), ("name", HOSTILE)]),
    )
    .await;
    assert_eq!(
        reply.location(),
        "/schedules?name=%3Cscript%3E%22%27%26%2F+%C3%A9&done=resumed"
    );
    assert!(!paused(store.clone()).await);

    // An unknown name is refused with a page that says so, and is not created.
    let reply = send(
        &app,
        post(
            "/schedules/pause",
            &[("csrf", &csrf), ("name", "<b>nope</b>")],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(
        reply
            .body
            .contains("Cannot pause the schedule: not found: no schedule named &quot;&lt;b&gt;nope&lt;/b&gt;&quot;"),
        "{}",
        reply.body
    );
    assert_eq!(store.schedules().await.unwrap().len(), 1);

    // The write guard covers these forms like every other: no token, another origin.
    let fields = [("name", HOSTILE)];
    assert_eq!(
        send(&app, post("/schedules/pause", &fields)).await.status,
        StatusCode::FORBIDDEN
    );
    let with_token = [("csrf", csrf.as_str()), ("name", HOSTILE)];
    let cross = post_with(
        "/schedules/pause",
        &with_token,
        &[("sec-fetch-site", "cross-site")],
    );
    assert_eq!(send(&app, cross).await.status, StatusCode::FORBIDDEN);
    assert!(!paused(store.clone()).await);
}

#[tokio::test]
async fn a_store_that_keeps_no_schedules_gets_a_page_that_says_so() {
    let (_, inner) = memory();
    // A topic, so that the overview has a form to take the CSRF token from.
    enqueue(&*inner, "t", json!(1)).await;
    let store = Arc::new(Counted {
        no_schedules: true,
        ..Counted::new(inner)
    });
    let app = open(store);
    let reply = send(&app, get("/schedules")).await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        reply.body.contains(
            "<p>Cannot list the schedules: unsupported: schedules are not stored by this store</p>"
        ),
        "{}",
        reply.body
    );
    // Still a page of the dashboard, with its navigation.
    assert!(
        reply.body.contains(r#"<a href="/schedules">Schedules</a>"#),
        "{}",
        reply.body
    );
    let csrf = send(&app, get("/")).await.csrf();
    let reply = send(
        &app,
        post("/schedules/pause", &[("csrf", &csrf), ("name", "nightly")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        reply
            .body
            .contains("Cannot pause the schedule: unsupported"),
        "{}",
        reply.body
    );
}
