//! How fast each page of the dashboard answers with a million tasks stored.
//!
//! ```sh
//! cargo run --release -p taskmill-web --example large                       # memory://
//! cargo run --release -p taskmill-web --example large -- sqlite:///tmp/large.db
//! ```
//!
//! Fills an empty store (any URL `taskmill::open` takes that this build has: `memory://`,
//! `sqlite://PATH`) with `LARGE_TASKS` (1,000,000) tasks: four busy topics, enqueued in
//! interleaved batches, each with most tasks pending (a tenth of them scheduled an hour
//! ahead), 8 % completed and kept, 8 % dead, a few cancelled and a few running; and a rare
//! topic of 0.2 % enqueued last, so that a page of it sits behind every other task. Three
//! schedules are registered. Then it sends each page's request to the router in process
//! (tower's `oneshot`, no network), `RUNS` times, and prints the median and slowest answer
//! of each: the overview, every state's tab (first page, a page deep in by cursor, and one
//! topic's, and the rare topic's), the largest page (500 tasks), a task, the schedules, a
//! bulk confirmation. A page whose median is over 200 ms is named at the end.

use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::{
    ApplyOptions, CancelOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, ListOptions,
    Outcome, OutcomeKind, RegisterOptions, ScheduleEntry, StatsOptions, TopicClaim,
};
use taskmill_core::{Queue, Store, Task, TaskId, Timestamp};
use taskmill_web::{router, DashboardOptions};
use tower::ServiceExt;

/// The busy topics; each gets an equal share.
const TOPICS: [&str; 4] = ["emails", "thumbnails", "reports", "webhooks"];
/// The rare topic, enqueued after all the others.
const RARE: &str = "audit";
const BATCH: usize = 10_000;
/// Requests per page.
const RUNS: usize = 15;

type Failure = Box<dyn std::error::Error>;

/// The ids of each state's tasks, as filled (for cursors deep into each queue).
#[derive(Default)]
struct Filled {
    completed: Vec<TaskId>,
    dead: Vec<TaskId>,
    cancelled: Vec<TaskId>,
    running: Vec<TaskId>,
    pending: Vec<TaskId>,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let total: usize = std::env::var("LARGE_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".to_owned());
    let store = taskmill::open(&url).await?;
    let now = || StatsOptions::new(Timestamp::now());
    if store.stats(&now()).await?.total.sizes.total() > 0 {
        return Err(format!("{url} is not empty: give a new file or memory://").into());
    }
    let started = Instant::now();
    let filled = fill(&*store, total).await?;
    let sizes = store.stats(&now()).await?.total.sizes;
    println!(
        "{url}: {} tasks ({} pending, {} scheduled, {} running, {} dead, {} completed, \
         {} cancelled), filled in {:.0} s",
        sizes.total(),
        sizes.pending(),
        sizes.scheduled,
        sizes.work,
        sizes.dead,
        sizes.completed,
        sizes.cancelled,
        started.elapsed().as_secs_f64()
    );
    measure(store, &filled).await
}

fn task(topic: &str, i: usize, now: Timestamp) -> Result<Task, Failure> {
    let task = Task::new(
        topic,
        &serde_json::json!({"n": i, "to": "someone@example.com", "template": "welcome"}),
    )?;
    // A tenth are scheduled an hour ahead: pending, but not due.
    Ok(if i % 10 == 9 {
        task.run_at(now + Duration::from_secs(3600))
    } else {
        task
    })
}

async fn enqueue(store: &dyn Store, topic: &str, n: usize) -> Result<Vec<TaskId>, Failure> {
    let now = Timestamp::now();
    let tasks = (0..n)
        .map(|i| task(topic, i, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(store
        .enqueue(tasks, &EnqueueOptions::new(now))
        .await?
        .iter()
        .map(|e| e.id())
        .collect())
}

async fn fill(store: &dyn Store, total: usize) -> Result<Filled, Failure> {
    let rare = total / 500;
    let per_topic = (total - rare) / TOPICS.len();
    let mut filled = Filled::default();
    // Interleaved, as topics fed at once are: a batch of each in turn.
    let mut left = per_topic;
    while left > 0 {
        let n = left.min(BATCH);
        for topic in TOPICS {
            filled.pending.extend(enqueue(store, topic, n).await?);
        }
        left -= n;
    }
    let finished = per_topic * 8 / 100;
    for topic in TOPICS {
        // The oldest due tasks are claimed first: they complete, the next ones die.
        settle(
            store,
            topic,
            finished,
            OutcomeKind::complete(),
            &mut filled.completed,
        )
        .await?;
        let dead = OutcomeKind::dead("upstream said 503 three times");
        settle(store, topic, finished, dead, &mut filled.dead).await?;
        let waiting = store
            .list(&ListOptions::new(Queue::Input).topic(topic).limit(500))
            .await?;
        let ids: Vec<TaskId> = waiting.tasks.iter().map(|t| t.id).collect();
        store
            .cancel(&ids, &CancelOptions::new(Timestamp::now(), "large"))
            .await?;
        filled.cancelled.extend(ids);
        for lease in claim(store, topic, 250).await? {
            filled.running.push(lease.id);
        }
    }
    let mut left = rare;
    while left > 0 {
        let n = left.min(BATCH);
        filled.pending.extend(enqueue(store, RARE, n).await?);
        left -= n;
    }
    settle(
        store,
        RARE,
        rare / 40,
        OutcomeKind::dead("no"),
        &mut filled.dead,
    )
    .await?;
    let entries = [
        ScheduleEntry::new("digest", "0 0 7 * * *", "Europe/Berlin", "emails"),
        ScheduleEntry::new("cleanup", "@every 10m", "UTC", "reports"),
        ScheduleEntry::new("audit export", "0 30 2 * * *", "UTC", RARE),
    ];
    store
        .register_schedules(&entries, &RegisterOptions::new(Timestamp::now()))
        .await?;
    filled.pending.sort();
    filled.dead.sort();
    Ok(filled)
}

/// Claims `n` due tasks of `topic` and applies `outcome` to each, recording their ids.
async fn settle(
    store: &dyn Store,
    topic: &str,
    n: usize,
    outcome: OutcomeKind,
    ids: &mut Vec<TaskId>,
) -> Result<(), Failure> {
    let mut left = n;
    while left > 0 {
        let claimed = claim(store, topic, left.min(BATCH)).await?;
        if claimed.is_empty() {
            break;
        }
        let outcomes: Vec<Outcome> = claimed
            .iter()
            .map(|lease| Outcome::new(lease.clone(), outcome.clone()))
            .collect();
        store
            .apply(&outcomes, &ApplyOptions::new(Timestamp::now()))
            .await?;
        ids.extend(claimed.iter().map(|l| l.id));
        left -= claimed.len();
    }
    Ok(())
}

async fn claim(store: &dyn Store, topic: &str, n: usize) -> taskmill_core::Result<Vec<LeaseRef>> {
    let request = ClaimOptions::new([TopicClaim::new(topic)], n, "large", Timestamp::now())
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

/// The id halfway through `ids`: a cursor deep into their queue.
fn middle(ids: &[TaskId]) -> TaskId {
    ids[ids.len() / 2]
}

async fn measure(store: Arc<dyn Store>, filled: &Filled) -> Result<(), Failure> {
    let app = router(store.clone(), DashboardOptions::default());
    let mut pages: Vec<(String, String)> = vec![("overview".into(), "/".into())];
    for (slug, ids) in [
        ("input", &filled.pending),
        ("work", &filled.running),
        ("dead", &filled.dead),
        ("completed", &filled.completed),
        ("cancelled", &filled.cancelled),
    ] {
        pages.push((format!("{slug}, first page"), format!("/queues/{slug}")));
        let deep = middle(ids);
        pages.push((
            format!("{slug}, after {deep}"),
            format!("/queues/{slug}?after={deep}"),
        ));
        pages.push((
            format!("{slug}, topic reports"),
            format!("/queues/{slug}?topic=reports"),
        ));
    }
    pages.extend([
        ("input, 500 a page".into(), "/queues/input?limit=500".into()),
        (
            "input, rare topic".into(),
            format!("/queues/input?topic={RARE}"),
        ),
        (
            "dead, rare topic".into(),
            format!("/queues/dead?topic={RARE}"),
        ),
        ("scheduled, first page".into(), "/queues/scheduled".into()),
        (
            "scheduled, topic reports".into(),
            "/queues/scheduled?topic=reports".into(),
        ),
        ("retrying, first page".into(), "/queues/retrying".into()),
        (
            "task (dead)".into(),
            format!("/tasks/{}", middle(&filled.dead)),
        ),
        (
            "task (pending)".into(),
            format!("/tasks/{}", middle(&filled.pending)),
        ),
        ("schedules".into(), "/schedules".into()),
        (
            "bulk confirmation".into(),
            "/bulk?action=cancel&topic=reports".into(),
        ),
    ]);
    println!("\n| page | median | slowest | KiB |");
    println!("|---|---:|---:|---:|");
    let mut slow = Vec::new();
    for (name, uri) in pages {
        let mut times = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let response = app
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty())?)
                .await?;
            let status = response.status();
            bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await?
                .len();
            times.push(started.elapsed());
            if !status.is_success() {
                return Err(format!("{uri}: {status}").into());
            }
        }
        times.sort();
        let median = ms(times[RUNS / 2]);
        println!(
            "| {name} | {median:.1} ms | {:.1} ms | {:.0} |",
            ms(times[RUNS - 1]),
            bytes as f64 / 1024.0
        );
        if median > 200.0 {
            slow.push(format!("{name} ({uri})"));
        }
    }
    if !slow.is_empty() {
        println!("\nover 200 ms (median): {}", slow.join(", "));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
