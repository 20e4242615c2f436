//! How fast each page answers with a million tasks stored.
//!
//! `cargo run --release -p taskmill-web --example measure [memory|sqlite]...` fills a store
//! (both by default) with 1,000,000 tasks over five topics (per topic 150,000 pending, 200
//! running, the rest dead), then sends each page's request to the router, in process, and
//! prints the median and slowest of 20 answers. Set `MEASURE_TASKS` for another total.
//! Last, it times retrying every dead task of one topic, which works a page at a time.

use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, ListOptions, Outcome,
    OutcomeKind, StatsOptions, TopicClaim,
};
use taskmill_core::{Queue, Store, Task, Timestamp};
use taskmill_web::{router, DashboardOptions};
use tower::ServiceExt;

const TOPICS: [&str; 5] = ["emails", "thumbnails", "reports", "webhooks", "billing"];
const BATCH: usize = 10_000;
const RUNS: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::var("MEASURE_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut kinds: Vec<String> = std::env::args().skip(1).collect();
    if kinds.is_empty() {
        kinds = vec!["memory".into(), "sqlite".into()];
    }
    for kind in kinds {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = match kind.as_str() {
            "memory" => Arc::new(taskmill_memory::MemoryStore::new()),
            "sqlite" => {
                Arc::new(taskmill_sqlite::SqliteStore::open(dir.path().join("tasks.db")).await?)
            }
            other => return Err(format!("unknown store {other:?} (memory or sqlite)").into()),
        };
        let started = Instant::now();
        fill(&*store, total).await?;
        let sizes = store
            .stats(&StatsOptions::new(Timestamp::now()))
            .await?
            .total
            .sizes;
        println!(
            "\n{kind}: {} tasks ({} pending, {} running, {} dead), filled in {:.1} s",
            sizes.total(),
            sizes.input,
            sizes.work,
            sizes.dead,
            started.elapsed().as_secs_f64()
        );
        measure(store).await?;
    }
    Ok(())
}

/// Per topic: enqueue its share, claim 200 into WORK, and fail a third to DEAD.
async fn fill(store: &dyn Store, total: usize) -> Result<(), Box<dyn std::error::Error>> {
    let per_topic = total / TOPICS.len();
    let dead_per_topic = per_topic - per_topic * 3 / 4 - 200;
    for topic in TOPICS {
        let mut left = per_topic;
        while left > 0 {
            let n = left.min(BATCH);
            let tasks = (0..n)
                .map(|i| {
                    Task::new(
                        topic,
                        &serde_json::json!({"n": i, "to": "someone@example.com"}),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            store
                .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
                .await?;
            left -= n;
        }
        // The oldest tasks die: they are claimed first.
        let mut left = dead_per_topic;
        while left > 0 {
            let claimed = claim(store, topic, left.min(BATCH)).await?;
            let outcomes: Vec<Outcome> = claimed
                .iter()
                .map(|lease| {
                    Outcome::new(
                        lease.clone(),
                        OutcomeKind::dead("upstream said 503 three times"),
                    )
                })
                .collect();
            store
                .apply(&outcomes, &ApplyOptions::new(Timestamp::now()))
                .await?;
            left -= claimed.len();
        }
        claim(store, topic, 200).await?;
    }
    Ok(())
}

async fn claim(store: &dyn Store, topic: &str, n: usize) -> taskmill_core::Result<Vec<LeaseRef>> {
    let request = ClaimOptions::new([TopicClaim::new(topic)], n, "measure", Timestamp::now())
        .lease(Duration::from_secs(3600));
    Ok(store
        .claim(&request)
        .await?
        .iter()
        .filter_map(|c| match c {
            Claimed::Ready(record) => Some(LeaseRef::of(record)),
            Claimed::Corrupt { .. } => None,
        })
        .collect())
}

async fn measure(store: Arc<dyn Store>) -> Result<(), Box<dyn std::error::Error>> {
    // A cursor 40 % of the way through the ids, so that a later page is timed too.
    let deep = store
        .stats(&StatsOptions::new(Timestamp::now()))
        .await?
        .total
        .sizes
        .total()
        * 2
        / 5;
    let any = store
        .list(&ListOptions::new(Queue::Dead).limit(1))
        .await?
        .tasks[0]
        .id;

    let app = router(store.clone(), DashboardOptions::default());
    let pages = [
        ("overview", "/".to_owned()),
        ("pending, first page", "/queues/input".to_owned()),
        (
            "pending, one topic",
            "/queues/input?topic=reports".to_owned(),
        ),
        (
            "pending, deep cursor",
            format!("/queues/input?after={deep}"),
        ),
        ("running", "/queues/work".to_owned()),
        ("dead, first page", "/queues/dead".to_owned()),
        ("dead, one topic", "/queues/dead?topic=webhooks".to_owned()),
        ("dead, deep cursor", format!("/queues/dead?after={deep}")),
        ("task", format!("/tasks/{any}")),
        (
            "bulk confirmation",
            "/bulk?action=retry&topic=billing".to_owned(),
        ),
    ];
    println!("{:<22} {:>10} {:>10}", "page", "median", "slowest");
    for (name, uri) in pages {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let response = app
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty())?)
                .await?;
            let status = response.status();
            axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            times.push(started.elapsed());
            assert!(status.is_success(), "{uri}: {status}");
        }
        times.sort();
        println!(
            "{name:<22} {:>7.1} ms {:>7.1} ms",
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1])
        );
    }

    // Retry every dead task of one topic through the form, as the button does.
    let dead = store
        .stats(&StatsOptions::new(Timestamp::now()))
        .await?
        .topic("billing")
        .sizes
        .dead;
    let html = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty())?)
        .await?;
    let html = String::from_utf8(
        axum::body::to_bytes(html.into_body(), usize::MAX)
            .await?
            .to_vec(),
    )?;
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no CSRF token on the overview")?;
    let started = Instant::now();
    let request = Request::post("/bulk")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={csrf}&action=retry&topic=billing"
        )))?;
    let response = app.oneshot(request).await?;
    assert!(
        response.status().is_redirection(),
        "bulk retry: {}",
        response.status()
    );
    let took = started.elapsed();
    println!(
        "retry all dead of one topic: {dead} tasks in {:.2} s ({:.0} tasks/s)",
        took.as_secs_f64(),
        dead as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
