//! Scrapes through the axum router (no network), parses the exposition, and checks every
//! figure against what the test made happen.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{parse, Exposition, FailingStats};
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::{
    Backoff, Client, Clock, Manager, Store, Task, TaskContext, TaskError, Timestamp, TopicOptions,
};
use taskmill_memory::MemoryStore;
use taskmill_metrics::{Metrics, CONTENT_TYPE};
use taskmill_testkit::wait_until;
use tokio::sync::Notify;
use tower::ServiceExt;

const LIMIT: Duration = Duration::from_secs(10);

/// A scrape's status, content type and body.
async fn scrape(app: &Router) -> (StatusCode, String, String) {
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// A successful scrape, parsed.
async fn scrape_ok(app: &Router) -> Exposition {
    let (status, content_type, body) = scrape(app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, CONTENT_TYPE);
    parse(&body)
}

const COUNTERS: [&str; 9] = [
    "enqueued",
    "started",
    "completed",
    "retried",
    "failed",
    "cancelled",
    "recovered",
    "released",
    "requeued",
];

/// Asserts every counter of `topic`: those named in `nonzero` with their values, the rest 0.
fn assert_counters(m: &Exposition, topic: &str, nonzero: &[(&str, f64)]) {
    for counter in COUNTERS {
        let expected = nonzero
            .iter()
            .find(|(name, _)| *name == counter)
            .map_or(0.0, |(_, v)| *v);
        let name = format!("taskmill_tasks_{counter}_total");
        assert_eq!(
            m.value(&name, &[("topic", topic)]),
            Some(expected),
            "{name}{{topic={topic:?}}}"
        );
    }
}

/// Asserts every queue size of `topic`: those named with their values, the rest 0.
fn assert_sizes(m: &Exposition, topic: &str, nonzero: &[(&str, f64)]) {
    for queue in ["input", "work", "dead", "completed", "cancelled"] {
        let expected = nonzero
            .iter()
            .find(|(name, _)| *name == queue)
            .map_or(0.0, |(_, v)| *v);
        assert_eq!(
            m.value("taskmill_queue_size", &[("topic", topic), ("queue", queue)]),
            Some(expected),
            "taskmill_queue_size{{topic={topic:?},queue={queue:?}}}"
        );
    }
}

/// Asserts every state's size of `topic`: those named with their values, the rest 0.
fn assert_states(m: &Exposition, topic: &str, nonzero: &[(&str, f64)]) {
    let states = [
        "pending",
        "scheduled",
        "retrying",
        "running",
        "dead",
        "completed",
        "cancelled",
    ];
    for state in states {
        let expected = nonzero
            .iter()
            .find(|(name, _)| *name == state)
            .map_or(0.0, |(_, v)| *v);
        assert_eq!(
            m.value(
                "taskmill_tasks_in_state",
                &[("topic", topic), ("state", state)]
            ),
            Some(expected),
            "taskmill_tasks_in_state{{topic={topic:?},state={state:?}}}"
        );
    }
}

/// The count of runs of `topic` with `outcome` in the duration histogram, checked against
/// its `+Inf` bucket.
fn runs(m: &Exposition, topic: &str, outcome: &str) -> Option<f64> {
    let labels = [("topic", topic), ("outcome", outcome)];
    let count = m.value("taskmill_run_duration_seconds_count", &labels);
    let inf = m.value(
        "taskmill_run_duration_seconds_bucket",
        &[("topic", topic), ("outcome", outcome), ("le", "+Inf")],
    );
    assert_eq!(count, inf, "{topic}/{outcome}: _count and the +Inf bucket");
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_reports_every_topic_exactly() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::shared(store.clone());
    let metrics = Metrics::new(client.clone());
    let app: Router = Router::new().merge(metrics.router());

    client.pause("held").await.unwrap();
    let manager = Manager::builder_shared(store.clone())
        .observer(metrics.clone())
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .poll_interval(Duration::from_millis(10))
        .topic("doomed", TopicOptions::new().retries(5))
        .topic(
            "again",
            TopicOptions::new().backoff(Backoff::constant(Duration::from_secs(3600))),
        )
        .build();
    let ok = |_ctx: TaskContext| async { Ok::<_, TaskError>(()) };
    manager.register("ok", ok).unwrap();
    manager.register("held", ok).unwrap();
    manager.register("later", ok).unwrap();
    manager
        .register("flaky", |ctx: TaskContext| async move {
            match ctx.attempt() {
                1 => Err(TaskError::msg("the first attempt fails")),
                _ => Ok(()),
            }
        })
        .unwrap();
    manager
        .register("again", |_ctx: TaskContext| async {
            Err::<(), _>(TaskError::msg("fails, to retry in an hour"))
        })
        .unwrap();
    manager
        .register("doomed", |_ctx: TaskContext| async {
            Err::<(), _>(TaskError::permanent(TaskError::msg("hopeless")))
        })
        .unwrap();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    manager
        .register("slow", {
            let (entered, release) = (entered.clone(), release.clone());
            move |_ctx: TaskContext| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    entered.notify_one();
                    release.notified().await;
                    Ok::<_, TaskError>(())
                }
            }
        })
        .unwrap();

    for i in 0..3 {
        client.enqueue(Task::new("ok", &i).unwrap()).await.unwrap();
    }
    client
        .enqueue(Task::new("flaky", &0).unwrap())
        .await
        .unwrap();
    client
        .enqueue(Task::new("doomed", &0).unwrap())
        .await
        .unwrap();
    client
        .enqueue(Task::new("again", &0).unwrap())
        .await
        .unwrap();
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(
            client
                .enqueue(Task::new("held", &i).unwrap())
                .await
                .unwrap()
                .id(),
        );
    }
    client.cancel(&held[..1]).await.unwrap();
    let later = Task::new("later", &0)
        .unwrap()
        .delay(Duration::from_secs(3600));
    client.enqueue(later).await.unwrap();
    // A topic nobody processes, with a task due 90 s ago: its latency is at least that.
    let old = Task::new("old", &0)
        .unwrap()
        .run_at(Timestamp::now() - Duration::from_secs(90));
    client.enqueue(old).await.unwrap();

    manager.start().await.unwrap();
    wait_until("ok, flaky and doomed have finished", LIMIT, || async {
        let stats = client.stats().await.unwrap();
        stats.topic("ok").counters.completed == 3
            && stats.topic("flaky").counters.completed == 1
            && stats.topic("doomed").counters.failed == 1
            && stats.topic("again").counters.retried == 1
    })
    .await;

    // A run in progress: counted by this process and by the store.
    client
        .enqueue(Task::new("slow", &0).unwrap())
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, entered.notified())
        .await
        .expect("the slow task starts");
    let m = scrape_ok(&app).await;
    assert_eq!(
        m.value("taskmill_runs_in_progress", &[("topic", "slow")]),
        Some(1.0)
    );
    assert_counters(&m, "slow", &[("enqueued", 1.0), ("started", 1.0)]);
    assert_sizes(&m, "slow", &[("work", 1.0)]);
    assert_states(&m, "slow", &[("running", 1.0)]);
    assert_eq!(runs(&m, "slow", "ok"), Some(0.0), "not ended yet");
    release.notify_one();
    wait_until("slow has completed", LIMIT, || async {
        client
            .stats()
            .await
            .unwrap()
            .topic("slow")
            .counters
            .completed
            == 1
    })
    .await;

    let m = scrape_ok(&app).await;
    assert_counters(
        &m,
        "ok",
        &[("enqueued", 3.0), ("started", 3.0), ("completed", 3.0)],
    );
    assert_sizes(&m, "ok", &[("completed", 3.0)]);
    assert_counters(
        &m,
        "flaky",
        &[
            ("enqueued", 1.0),
            ("started", 2.0),
            ("retried", 1.0),
            ("completed", 1.0),
        ],
    );
    assert_sizes(&m, "flaky", &[("completed", 1.0)]);
    assert_counters(
        &m,
        "doomed",
        &[("enqueued", 1.0), ("started", 1.0), ("failed", 1.0)],
    );
    assert_sizes(&m, "doomed", &[("dead", 1.0)]);
    assert_counters(&m, "held", &[("enqueued", 3.0), ("cancelled", 1.0)]);
    assert_sizes(&m, "held", &[("input", 2.0), ("cancelled", 1.0)]);
    assert_states(&m, "held", &[("pending", 2.0), ("cancelled", 1.0)]);
    assert_counters(&m, "later", &[("enqueued", 1.0)]);
    assert_sizes(&m, "later", &[("input", 1.0)]);
    assert_states(&m, "later", &[("scheduled", 1.0)]);
    assert_counters(&m, "old", &[("enqueued", 1.0)]);
    assert_sizes(&m, "old", &[("input", 1.0)]);
    assert_states(&m, "old", &[("pending", 1.0)]);
    assert_sizes(&m, "again", &[("input", 1.0)]);
    assert_states(&m, "again", &[("retrying", 1.0)]);
    assert_states(&m, "doomed", &[("dead", 1.0)]);
    assert_counters(
        &m,
        "slow",
        &[("enqueued", 1.0), ("started", 1.0), ("completed", 1.0)],
    );
    assert_sizes(&m, "slow", &[("completed", 1.0)]);
    assert_states(&m, "slow", &[("completed", 1.0)]);

    for (topic, paused) in [("held", 1.0), ("ok", 0.0), ("old", 0.0)] {
        assert_eq!(
            m.value("taskmill_topic_paused", &[("topic", topic)]),
            Some(paused),
            "{topic}"
        );
    }
    // The paused topic's tasks are due and waiting; the scheduled one is not due yet.
    let latency = |topic| m.value("taskmill_queue_latency_seconds", &[("topic", topic)]);
    assert!(latency("held").unwrap() >= 0.0);
    assert_eq!(latency("later"), Some(0.0), "scheduled, not due");
    let old = latency("old").unwrap();
    assert!(
        (90.0..3600.0).contains(&old),
        "the old task's latency: {old}"
    );
    for topic in ["ok", "flaky", "doomed", "slow"] {
        assert_eq!(latency(topic), Some(0.0), "{topic}: nothing waits");
    }

    // This process's runs, by outcome as the chain returned it.
    for (topic, ok_runs, err_runs) in [
        ("ok", 3.0, 0.0),
        ("flaky", 1.0, 1.0),
        ("doomed", 0.0, 1.0),
        ("slow", 1.0, 0.0),
    ] {
        assert_eq!(runs(&m, topic, "ok"), Some(ok_runs), "{topic} ok");
        assert_eq!(runs(&m, topic, "err"), Some(err_runs), "{topic} err");
        assert_eq!(
            m.value("taskmill_runs_in_progress", &[("topic", topic)]),
            Some(0.0),
            "{topic}"
        );
    }
    // Topics this process never ran have no run figures.
    assert_eq!(runs(&m, "held", "ok"), None);
    assert_eq!(
        m.value("taskmill_runs_in_progress", &[("topic", "old")]),
        None
    );
    // The slow run took as long as the test held it; the others next to nothing.
    let slow_sum = m
        .value(
            "taskmill_run_duration_seconds_sum",
            &[("topic", "slow"), ("outcome", "ok")],
        )
        .unwrap();
    assert!(slow_sum > 0.0, "{slow_sum}");

    assert_eq!(m.kind("taskmill_tasks_completed"), Some("counter"));
    assert_eq!(m.kind("taskmill_queue_size"), Some("gauge"));
    assert_eq!(m.kind("taskmill_tasks_in_state"), Some("gauge"));
    assert_eq!(m.kind("taskmill_queue_latency_seconds"), Some("gauge"));
    assert_eq!(m.kind("taskmill_run_duration_seconds"), Some("histogram"));
    assert_eq!(m.kind("taskmill_runs_in_progress"), Some("gauge"));
    assert_eq!(m.kind("taskmill_topic_paused"), Some("gauge"));

    manager.close_with_timeout(LIMIT).await.unwrap();
}

/// The queue latency is the age of the oldest due task at scrape time, by the metrics'
/// clock: here tokio's paused clock, so the figures are exact.
#[tokio::test(start_paused = true)]
async fn latency_is_the_age_of_the_oldest_due_task() {
    let clock = Clock::tokio();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::shared(store).clock(clock.clone());
    let metrics = Metrics::builder(client.clone()).clock(clock).build();
    let app: Router = metrics.router();

    client.enqueue(Task::new("due", &0).unwrap()).await.unwrap();
    let soon = Task::new("soon", &0)
        .unwrap()
        .delay(Duration::from_secs(60));
    client.enqueue(soon).await.unwrap();
    let latency = |m: &Exposition, topic| {
        m.value("taskmill_queue_latency_seconds", &[("topic", topic)])
            .unwrap()
    };
    let m = scrape_ok(&app).await;
    assert_eq!((latency(&m, "due"), latency(&m, "soon")), (0.0, 0.0));

    tokio::time::advance(Duration::from_secs(90)).await;
    let m = scrape_ok(&app).await;
    assert_eq!(latency(&m, "due"), 90.0);
    assert_eq!(latency(&m, "soon"), 30.0, "due 60 s in, scraped at 90 s");

    // A later task behind it does not change the oldest one's age.
    client.enqueue(Task::new("due", &1).unwrap()).await.unwrap();
    tokio::time::advance(Duration::from_millis(1_500)).await;
    let m = scrape_ok(&app).await;
    assert_eq!(latency(&m, "due"), 91.5);
}

/// A store that cannot read its statistics answers 503 with the reason, and the next
/// scrape after it recovers is whole again.
#[tokio::test]
async fn a_store_error_answers_503_with_the_reason() {
    let store = Arc::new(FailingStats::new(MemoryStore::new()));
    let metrics = Metrics::new(Client::shared(store.clone()));
    let app: Router = metrics.router();
    metrics
        .client()
        .enqueue(Task::new("t", &0).unwrap())
        .await
        .unwrap();

    store.fail(true);
    let (status, content_type, body) = scrape(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(
        body.contains("could not be read") && body.contains("the disk is on fire"),
        "{body}"
    );
    let err = metrics.render().await.unwrap_err();
    assert!(err.to_string().contains("the disk is on fire"), "{err}");

    store.fail(false);
    let m = scrape_ok(&app).await;
    assert_eq!(
        m.value("taskmill_tasks_enqueued_total", &[("topic", "t")]),
        Some(1.0)
    );
}

/// Runs that never return (cut off by their topic's timeout, or panicking) leave no run
/// counted in progress, and are observed as failed runs (`err`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_cut_off_or_panicking_count_as_failed_and_leave() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let metrics = Metrics::new(Client::shared(store.clone()));
    let app: Router = metrics.router();
    let manager = Manager::builder_shared(store.clone())
        .observer(metrics.clone())
        .default_retries(0)
        .topic(
            "stuck",
            TopicOptions::new().timeout(Duration::from_millis(20)),
        )
        .build();
    manager
        .register("stuck", |_ctx: TaskContext| async {
            std::future::pending::<Result<(), TaskError>>().await
        })
        .unwrap();
    manager
        .register("panics", |_ctx: TaskContext| async {
            panic!("a processor bug");
            #[allow(unreachable_code)]
            Ok::<_, TaskError>(())
        })
        .unwrap();
    manager.start().await.unwrap();
    for topic in ["stuck", "panics"] {
        manager
            .enqueue(Task::new(topic, &0).unwrap())
            .await
            .unwrap();
    }
    wait_until("both tasks are dead", LIMIT, || async {
        let stats = manager.stats().await.unwrap();
        stats.topic("stuck").counters.failed == 1 && stats.topic("panics").counters.failed == 1
    })
    .await;
    let m = scrape_ok(&app).await;
    for topic in ["stuck", "panics"] {
        assert_eq!(
            m.value("taskmill_runs_in_progress", &[("topic", topic)]),
            Some(0.0),
            "{topic}"
        );
        assert_eq!(runs(&m, topic, "ok"), Some(0.0), "{topic}");
        assert_eq!(runs(&m, topic, "err"), Some(1.0), "{topic}");
        assert_sizes(&m, topic, &[("dead", 1.0)]);
    }
    manager.close_with_timeout(LIMIT).await.unwrap();
}

/// Given to some topics only ([`TopicOptions::observer`]), the layer times those alone;
/// the store-wide figures still cover every topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_topic_observer_times_only_its_topics() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let metrics = Metrics::new(Client::shared(store.clone()));
    let app: Router = metrics.router();
    let manager = Manager::builder_shared(store.clone())
        .topic("timed", TopicOptions::new().observer(metrics.clone()))
        .build();
    let ok = |_ctx: TaskContext| async { Ok::<_, TaskError>(()) };
    manager.register("timed", ok).unwrap();
    manager.register("untimed", ok).unwrap();
    manager.start().await.unwrap();
    for topic in ["timed", "untimed", "timed"] {
        manager
            .enqueue(Task::new(topic, &0).unwrap())
            .await
            .unwrap();
    }
    wait_until("all three ran", LIMIT, || async {
        manager.stats().await.unwrap().total.counters.completed == 3
    })
    .await;
    let m = scrape_ok(&app).await;
    assert_eq!(runs(&m, "timed", "ok"), Some(2.0));
    assert_eq!(runs(&m, "untimed", "ok"), None);
    assert_counters(
        &m,
        "untimed",
        &[("enqueued", 1.0), ("started", 1.0), ("completed", 1.0)],
    );
    manager.close_with_timeout(LIMIT).await.unwrap();
}

/// The exposition is well formed: what the parser checks, on a scrape of an empty store
/// and of one topic with an awkward name.
#[tokio::test]
async fn the_exposition_is_well_formed() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let metrics = Metrics::new(Client::shared(store));
    let m = parse(&metrics.render().await.unwrap());
    assert!(m.samples.is_empty(), "an empty store has no samples");
    assert_eq!(m.kind("taskmill_tasks_enqueued"), Some("counter"));

    let topic = "emails \"v2\" \\ send";
    metrics
        .client()
        .enqueue(Task::new(topic, &0).unwrap())
        .await
        .unwrap();
    let m = parse(&metrics.render().await.unwrap());
    assert_eq!(
        m.value("taskmill_tasks_enqueued_total", &[("topic", topic)]),
        Some(1.0)
    );
}
