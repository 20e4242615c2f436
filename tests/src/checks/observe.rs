//! What operators and middleware observe: task headers on every path through the store,
//! the earliest `run_at` in stats (queue latency), and middleware around runs and
//! enqueues on a manager.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::{
    EnqueueOptions, Enqueued, ListOptions, OutcomeKind, StatsOptions, Waiting,
};
use taskmill_core::{
    async_trait, Backoff, Client, EnqueueNext, Headers, Manager, ManagerBuilder, Middleware, Next,
    Queue, QueueSizes, RunEnd, RunObserver, Store, Task, TaskContext, TaskError, TaskId,
    TaskStatus, Timestamp, TopicOptions, MAX_HEADERS, MAX_HEADERS_BYTES,
};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// Headers that exercise every rule: JSON and HTML metacharacters, non-ASCII text, and
/// an empty value.
fn awkward_headers() -> Headers {
    let mut headers = Headers::new();
    headers
        .insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
    headers
        .insert("x-note", r#"<script>alert("x")</script> \ "q" é ü 日本"#)
        .unwrap();
    headers.insert("empty", "").unwrap();
    headers
}

fn with_headers(task: Task, headers: &Headers) -> Task {
    headers
        .iter()
        .fold(task, |t, (k, v)| t.header(k, v).expect("a valid header"))
}

/// The earliest `run_at` of `topic` (or of all topics) in the store's stats.
async fn earliest(store: &dyn Store, topic: Option<&str>) -> Option<Timestamp> {
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    match topic {
        Some(topic) => stats.topic(topic).earliest_run_at,
        None => stats.total.earliest_run_at,
    }
}

/// Each topic's INPUT split at `now` as [`TaskRecord::status`](taskmill_core::TaskRecord::status)
/// says, from a listing of INPUT: (pending, scheduled, retrying) by topic, and in total
/// under `""`.
async fn split_by_status(store: &dyn Store, now: Timestamp) -> BTreeMap<String, [u64; 3]> {
    let mut split: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    let mut opts = ListOptions::new(Queue::Input).limit(100);
    // Bounded: each page moves the cursor past its tasks, and the store holds few.
    for _ in 0..100 {
        let page = store.list(&opts).await.unwrap();
        for task in &page.tasks {
            let slot = match task.status(now) {
                TaskStatus::Pending => 0,
                TaskStatus::Scheduled { .. } => 1,
                TaskStatus::Retrying { .. } => 2,
                other => panic!("task {} listed in INPUT is {other:?}", task.id),
            };
            for key in [task.topic.to_string(), String::new()] {
                split.entry(key).or_default()[slot] += 1;
            }
        }
        match page.next {
            Some(next) => opts = opts.after(next),
            None => return split,
        }
    }
    panic!("INPUT did not end within 100 pages");
}

/// Asserts that the stats at `now` split INPUT as `expected` says per topic
/// ((pending, scheduled, retrying); the total is their sum), and as the tasks' statuses at
/// `now` do.
async fn assert_split(store: &dyn Store, now: Timestamp, expected: &[(&str, [u64; 3])]) {
    let stats = store.stats(&StatsOptions::new(now)).await.unwrap();
    let of = |sizes: QueueSizes| [sizes.pending(), sizes.scheduled, sizes.retrying];
    let mut total = [0; 3];
    for (topic, want) in expected {
        assert_eq!(of(stats.topic(topic).sizes), *want, "{topic} at {now:?}");
        for (t, w) in total.iter_mut().zip(want) {
            *t += w;
        }
    }
    assert_eq!(of(stats.total.sizes), total, "the total at {now:?}");
    let topics: Vec<&str> = expected.iter().map(|(t, _)| *t).collect();
    assert_waiting_lists(store, now, &topics).await;
    let mut by_status = split_by_status(store, now).await;
    let listed_total = by_status.remove("").unwrap_or_default();
    assert_eq!(listed_total, total, "the tasks' statuses at {now:?}");
    for (topic, want) in expected {
        assert_eq!(
            by_status.get(*topic).copied().unwrap_or_default(),
            *want,
            "{topic}'s tasks' statuses at {now:?}"
        );
    }
}

/// The ids of INPUT (of `topic`, if given) whose status at `now` is `kind`'s, from a
/// listing of all of INPUT, in id order.
async fn input_ids_in(
    store: &dyn Store,
    kind: Waiting,
    now: Timestamp,
    topic: Option<&str>,
) -> Vec<TaskId> {
    let mut found = Vec::new();
    let mut opts = ListOptions::new(Queue::Input).limit(100);
    if let Some(t) = topic {
        opts = opts.topic(t);
    }
    // Bounded: each page moves the cursor past its tasks, and the store holds few.
    for _ in 0..100 {
        let page = store.list(&opts).await.unwrap();
        found.extend(page.tasks.iter().filter_map(|task| {
            let status = task.status(now);
            let is = match kind {
                Waiting::Pending => status == TaskStatus::Pending,
                Waiting::Scheduled => matches!(status, TaskStatus::Scheduled { .. }),
                Waiting::Retrying => matches!(status, TaskStatus::Retrying { .. }),
            };
            is.then_some(task.id)
        }));
        match page.next {
            Some(next) => opts = opts.after(next),
            None => return found,
        }
    }
    panic!("INPUT did not end within 100 pages");
}

/// Asserts that a listing of each part of INPUT at `now` (in all topics and in each of
/// `topics`), paged two at a time, gives exactly the INPUT tasks whose status at `now` is
/// that part's, in id order, each once, as many as the stats split at `now` counts.
async fn assert_waiting_lists(store: &dyn Store, now: Timestamp, topics: &[&str]) {
    let stats = store.stats(&StatsOptions::new(now)).await.unwrap();
    let scopes = std::iter::once(None).chain(topics.iter().map(|t| Some(*t)));
    for topic in scopes {
        let sizes = match topic {
            Some(t) => stats.topic(t).sizes,
            None => stats.total.sizes,
        };
        for kind in Waiting::ALL {
            let mut opts = ListOptions::waiting(kind, now).limit(2);
            if let Some(t) = topic {
                opts = opts.topic(t);
            }
            let mut listed: Vec<TaskId> = Vec::new();
            let mut done = false;
            // Bounded: each page moves the cursor past its tasks, and the store holds few.
            for _ in 0..100 {
                let page = store.list(&opts).await.unwrap();
                assert!(
                    page.tasks.len() <= 2,
                    "{kind:?} {topic:?}: a page over its limit"
                );
                for task in &page.tasks {
                    assert_eq!(task.queue, Queue::Input, "{kind:?} lists INPUT only");
                    assert!(
                        topic.is_none_or(|t| *task.topic == *t),
                        "{kind:?} of {topic:?} listed a task of {}",
                        task.topic
                    );
                }
                listed.extend(page.tasks.iter().map(|t| t.id));
                match page.next {
                    Some(next) => opts = opts.after(next),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            assert!(done, "{kind:?} {topic:?} did not end within 100 pages");
            let want = input_ids_in(store, kind, now, topic).await;
            assert_eq!(listed, want, "{kind:?} of {topic:?} at {now:?}");
            assert_eq!(
                listed.len() as u64,
                kind.count(&sizes),
                "{kind:?} of {topic:?} at {now:?}: listed as many as stats count"
            );
        }
    }
}

fn builder(store: &Arc<dyn Store>) -> ManagerBuilder {
    Manager::builder_shared(store.clone())
        .poll_interval(Duration::from_millis(50))
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .stats_interval(None)
}

type Trail = Arc<Mutex<Vec<String>>>;

/// What a processor saw of each run: its arguments, `x-request-id` and `x-stamped-by`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// Writes `name>` before the rest of the chain and `<name ok|err` after, and stamps
/// `x-stamped-by: name` on every task it enqueues.
struct Tracer {
    name: &'static str,
    trail: Trail,
}

#[async_trait]
impl Middleware for Tracer {
    async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
        self.trail.lock().unwrap().push(format!("{}>", self.name));
        let outcome = next.run(ctx).await;
        let how = if outcome.is_ok() { "ok" } else { "err" };
        self.trail
            .lock()
            .unwrap()
            .push(format!("<{} {how}", self.name));
        outcome
    }

    async fn enqueue(
        &self,
        mut tasks: Vec<Task>,
        next: EnqueueNext<'_>,
    ) -> taskmill_core::Result<Vec<Enqueued>> {
        for task in &mut tasks {
            task.headers_mut().insert("x-stamped-by", self.name)?;
        }
        next.enqueue(tasks).await
    }
}

/// Answers every run itself: completes `ok-*` tasks' topics, fails the rest for good.
struct ShortCircuit;

#[async_trait]
impl Middleware for ShortCircuit {
    async fn run(&self, ctx: TaskContext, _next: Next<'_>) -> Result<(), TaskError> {
        match ctx.topic().starts_with("ok") {
            true => Ok(()),
            false => Err(TaskError::permanent(TaskError::msg(
                "refused by middleware",
            ))),
        }
    }
}

struct Panics;

#[async_trait]
impl Middleware for Panics {
    async fn run(&self, _ctx: TaskContext, _next: Next<'_>) -> Result<(), TaskError> {
        panic!("the middleware broke")
    }
}

/// Never calls the rest of the chain, and never returns, on the topics it names.
struct Stalls(&'static [&'static str]);

#[async_trait]
impl Middleware for Stalls {
    async fn run(&self, ctx: TaskContext, next: Next<'_>) -> Result<(), TaskError> {
        match self.0.contains(&ctx.topic()) {
            true => std::future::pending().await,
            false => next.run(ctx).await,
        }
    }
}

/// Waits until `id` is in `queue`, and returns its record.
async fn wait_in(store: &Arc<dyn Store>, id: TaskId, queue: Queue) -> taskmill_core::TaskRecord {
    wait_until(&format!("task {id} in {queue}"), PATIENCE, || async {
        store
            .get(id)
            .await
            .unwrap()
            .is_some_and(|r| r.queue == queue)
    })
    .await;
    get(&**store, id).await
}

/// What a [`RunObserver`] was told: `start <topic> <attempt>` and
/// `end <topic> <attempt> <how>`.
#[derive(Clone, Default)]
struct Told(Trail);

impl RunObserver for Told {
    fn started(&self, record: &taskmill_core::TaskRecord) {
        let line = format!("start {} {}", record.topic, record.attempt);
        self.0.lock().unwrap().push(line);
    }

    fn ended(&self, record: &taskmill_core::TaskRecord, end: RunEnd, elapsed: Duration) {
        let how = match end {
            RunEnd::Completed => "completed",
            RunEnd::Failed => "failed",
            RunEnd::Released => "released",
            _ => "other",
        };
        // The duration is the worker's: it covers the run, here at least its 5 ms sleep.
        if record.topic.as_ref() == "slow" {
            assert!(elapsed >= Duration::from_millis(5), "{elapsed:?}");
        }
        let line = format!("end {} {} {how}", record.topic, record.attempt);
        self.0.lock().unwrap().push(line);
    }
}

checks!(
    mod observe;

    /// A task's headers come back as enqueued from every queue: in INPUT, from a claim,
    /// after a retry, in COMPLETED, DEAD and CANCELLED, and in lists. A task without
    /// headers has none.
    pub async fn headers_are_kept_on_every_path(store: Arc<dyn Store>) {
        let headers = awkward_headers();
        let ids = enqueue(
            &*store,
            vec![
                with_headers(task("t", 1), &headers),
                with_headers(task("t", 2), &headers),
                with_headers(task("t", 3), &headers),
                task("t", 4),
            ],
        )
        .await;
        assert_eq!(get(&*store, ids[0]).await.headers, headers, "in INPUT");
        assert!(get(&*store, ids[3]).await.headers.is_empty());
        let claimed = claim(&*store, &["t"], 2).await;
        assert!(claimed.iter().all(|r| r.headers == headers), "from a claim");
        apply_outcome(&*store, &claimed[0], OutcomeKind::retry(T0, "again")).await;
        apply_outcome(&*store, &claimed[1], OutcomeKind::dead("no")).await;
        assert_eq!(get(&*store, ids[0]).await.headers, headers, "after a retry");
        assert_eq!(get(&*store, ids[1]).await.headers, headers, "in DEAD");
        let again = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!((again.id, &again.headers), (ids[0], &headers));
        apply_outcome(&*store, &again, OutcomeKind::complete()).await;
        assert_eq!(get(&*store, ids[0]).await.headers, headers, "in COMPLETED");
        cancel_at(&*store, &[ids[2]], "tester", T0).await;
        assert_eq!(get(&*store, ids[2]).await.headers, headers, "in CANCELLED");
        for queue in [Queue::Completed, Queue::Dead, Queue::Cancelled] {
            let page = store.list(&ListOptions::new(queue)).await.unwrap();
            assert_eq!(page.tasks.len(), 1, "{queue}");
            assert_eq!(page.tasks[0].headers, headers, "listed in {queue}");
        }
        let page = store.list(&ListOptions::new(Queue::Input)).await.unwrap();
        assert_eq!(taskmill_testkit::ids(&page.tasks), [ids[3]]);
        assert!(page.tasks[0].headers.is_empty());
    }

    /// Headers at the limits (the most headers, the most bytes) are kept exactly.
    pub async fn headers_at_the_limits_are_kept(store: Arc<dyn Store>) {
        let mut headers = Headers::new();
        let value_len = MAX_HEADERS_BYTES / MAX_HEADERS - 4;
        for i in 0..MAX_HEADERS {
            let value: String = (0..value_len)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect();
            headers.insert(format!("k{i:02}"), value).unwrap();
        }
        assert_eq!(headers.len(), MAX_HEADERS);
        let id = enqueue(&*store, vec![with_headers(task("t", 1), &headers)]).await[0];
        assert_eq!(get(&*store, id).await.headers, headers);
        assert_eq!(claim(&*store, &["t"], 1).await[0].headers, headers);
    }

    /// Stats give each topic's earliest `run_at` in INPUT, due or scheduled, whatever the
    /// claim order, and follow claims, retries, cancels and deletes; the total is the
    /// earliest of all topics.
    pub async fn stats_report_the_earliest_run_at_in_input(store: Arc<dyn Store>) {
        assert_eq!(earliest(&*store, None).await, None, "an empty store");
        let opts = EnqueueOptions::new(at(100));
        let enqueued = store
            .enqueue(
                vec![
                    task("t", 1).priority(5),                       // due at 100, claimed last
                    task("t", 2).run_at(at(40)),                    // due since 40
                    task("t", 3).priority(-1),                      // due at 100, claimed first
                    task("t", 4).delay(Duration::from_millis(900)), // scheduled for 1000
                    task("u", 5).run_at(at(70)),
                ],
                &opts,
            )
            .await
            .unwrap();
        let id: Vec<TaskId> = enqueued.iter().map(|e| e.id()).collect();
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(40)));
        assert_eq!(earliest(&*store, Some("u")).await, Some(at(70)));
        assert_eq!(
            earliest(&*store, None).await,
            Some(at(40)),
            "the earliest of all"
        );
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(
            stats.topic("t").latency(at(140)),
            Duration::from_millis(100)
        );
        assert_eq!(
            stats.topic("t").latency(at(10)),
            Duration::ZERO,
            "not yet due"
        );

        // Claims go by priority: task 3 first, then 2; the earliest follows what is left.
        let first = claim_at(&*store, &["t"], 1, at(100)).await.remove(0);
        assert_eq!(first.id, id[2]);
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(40)));
        let second = claim_at(&*store, &["t"], 1, at(100)).await.remove(0);
        assert_eq!(second.id, id[1]);
        assert_eq!(
            earliest(&*store, Some("t")).await,
            Some(at(100)),
            "task 1 is left"
        );

        // A retry comes back at its own time; a completed task leaves INPUT for good.
        apply_outcome_at(
            &*store,
            &second,
            OutcomeKind::retry(at(60), "again"),
            at(100),
        )
        .await;
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(60)));
        apply_outcome_at(&*store, &first, OutcomeKind::complete(), at(100)).await;
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(60)));

        // Cancels and deletes take tasks out; what is left is the scheduled one.
        cancel_at(&*store, &[id[1]], "tester", at(110)).await;
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(100)));
        assert_eq!(store.delete(&[id[0]]).await.unwrap(), vec![true]);
        assert_eq!(
            earliest(&*store, Some("t")).await,
            Some(at(1000)),
            "only task 4, scheduled"
        );
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("t")
                .latency(at(500)),
            Duration::ZERO
        );

        // Claimed when due, the topic has nothing waiting.
        let last = claim_at(&*store, &["t"], 5, at(1000)).await;
        assert_eq!(ids(&last), [id[3]]);
        assert_eq!(earliest(&*store, Some("t")).await, None);
        assert_eq!(
            earliest(&*store, None).await,
            Some(at(70)),
            "u's task remains"
        );
    }

    /// Stats split INPUT at their `now` into pending (due), scheduled (not yet due, never
    /// run) and retrying (not yet due, run before), per topic and in total, exactly as the
    /// tasks' statuses at that `now` say: through scheduled tasks coming due, a retry
    /// waiting and coming due, claims, a paused topic, a cancel and a recovery.
    pub async fn stats_split_input_into_pending_scheduled_and_retrying(store: Arc<dyn Store>) {
        let store = &*store;
        let opts = EnqueueOptions::new(at(0));
        let mut batch = tasks("t", 0..3);
        batch.push(task("t", 3).run_at(at(1000)));
        batch.push(task("t", 4).run_at(at(2000)));
        batch.push(task("u", 0));
        batch.push(task("u", 1).run_at(at(500)));
        batch.push(task("p", 0));
        batch.push(task("p", 1).run_at(at(1000)));
        let id: Vec<TaskId> = store
            .enqueue(batch, &opts)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id())
            .collect();
        store.set_paused("p", true).await.unwrap();
        assert_split(
            store,
            at(0),
            &[("t", [3, 2, 0]), ("u", [1, 1, 0]), ("p", [1, 1, 0])],
        )
        .await;

        // One run of t fails and retries at 1500; another stays running.
        let failed = claim_at(store, &["t"], 1, at(10)).await.remove(0);
        apply_outcome_at(
            store,
            &failed,
            OutcomeKind::retry(at(1500), "again"),
            at(10),
        )
        .await;
        let running = claim_at(store, &["t"], 1, at(10)).await.remove(0);
        assert_ne!(running.id, failed.id);
        let t_stats = store
            .stats(&StatsOptions::new(at(10)))
            .await
            .unwrap()
            .topic("t");
        assert_eq!((t_stats.sizes.input, t_stats.sizes.work), (4, 1));
        let p_stats = store
            .stats(&StatsOptions::new(at(10)))
            .await
            .unwrap()
            .topic("p");
        assert!(p_stats.paused, "p is paused, its tasks still counted");
        let now_at = |ms| async move {
            assert_split(
                store,
                at(ms),
                &match ms {
                    10 => [("t", [1, 2, 1]), ("u", [1, 1, 0]), ("p", [1, 1, 0])],
                    500 => [("t", [1, 2, 1]), ("u", [2, 0, 0]), ("p", [1, 1, 0])],
                    1000 => [("t", [2, 1, 1]), ("u", [2, 0, 0]), ("p", [2, 0, 0])],
                    1500 => [("t", [3, 1, 0]), ("u", [2, 0, 0]), ("p", [2, 0, 0])],
                    _ => [("t", [4, 0, 0]), ("u", [2, 0, 0]), ("p", [2, 0, 0])],
                },
            )
            .await
        };
        // Read in any order: stats never move a task between the store's indexes.
        for ms in [2000, 10, 1500, 500, 1000, 10, 2000] {
            now_at(ms).await;
        }

        // A claim at 1000 takes t's due tasks, the one scheduled for 1000 among them; the
        // retry and the task for 2000 are left.
        let claimed = claim_at(store, &["t"], 10, at(1000)).await;
        assert_eq!(
            claimed.len(),
            2,
            "the due task and the one scheduled for 1000"
        );
        let split = |t| [("t", t), ("u", [2, 0, 0]), ("p", [2, 0, 0])];
        assert_split(store, at(1000), &split([0, 1, 1])).await;
        assert_split(store, at(1499), &split([0, 1, 1])).await;
        assert_split(store, at(1500), &split([1, 1, 0])).await;

        // The retry runs at 1500 and fails again, for 3000; the task for 2000 is
        // cancelled.
        let again = claim_at(store, &["t"], 10, at(1500)).await;
        assert_eq!(ids(&again), [failed.id]);
        apply_outcome_at(
            store,
            &again[0],
            OutcomeKind::retry(at(3000), "still"),
            at(1500),
        )
        .await;
        cancel_at(store, &[id[4]], "tester", at(1500)).await;
        assert_split(store, at(1500), &split([0, 0, 1])).await;
        assert_split(store, at(2999), &split([0, 0, 1])).await;
        assert_split(store, at(3000), &split([1, 0, 0])).await;

        // The leases of the three running tasks run out: recovered, they are due at once,
        // so pending although they ran before.
        let late = at(1000) + LEASE + Duration::from_secs(1);
        let recovered = recover(store, late, 10).await;
        let mut expected: Vec<TaskId> = ids(&claimed);
        expected.push(running.id);
        expected.sort();
        let mut got: Vec<TaskId> = recovered
            .iter()
            .filter(|r| r.queue == Queue::Input)
            .map(|r| r.id)
            .collect();
        got.sort();
        assert_eq!(got, expected);
        assert_split(store, late, &split([4, 0, 0])).await;

        // A scheduled task deleted and a retrying one cancelled count nowhere.
        let gone = store
            .enqueue(
                vec![task("u", 2).run_at(late + Duration::from_secs(60))],
                &EnqueueOptions::new(late),
            )
            .await
            .unwrap()[0]
            .id();
        assert_split(
            store,
            late,
            &[("t", [4, 0, 0]), ("u", [2, 1, 0]), ("p", [2, 0, 0])],
        )
        .await;
        assert_eq!(store.delete(&[gone]).await.unwrap(), [true]);
        let again = claim_at(store, &["t"], 1, late).await.remove(0);
        let retry_at = late + Duration::from_secs(60);
        apply_outcome_at(store, &again, OutcomeKind::retry(retry_at, "later"), late).await;
        assert_split(store, late, &split([3, 0, 1])).await;
        cancel_at(store, &[again.id], "tester", late).await;
        assert_split(store, late, &split([3, 0, 0])).await;
        assert_split(store, retry_at, &split([3, 0, 0])).await;
    }

    /// A listing of INPUT's pending, scheduled or retrying tasks at a `now` gives exactly
    /// the INPUT tasks whose status at `now` says so, in id order across pages (two at a
    /// time, with the `after` cursor), in all topics or one, as many as the stats split
    /// at that `now` counts; a filter on another queue is a misuse.
    pub async fn listings_split_input_like_the_stats(store: Arc<dyn Store>) {
        let client = Client::shared(store.clone()).clock(taskmill_core::Clock::manual(at(1500)));
        let store = &*store;
        let mut batch = Vec::new();
        for (topic, n) in [("a", 0..5), ("b", 0..3)] {
            for i in n {
                // Every other task is scheduled, at 1000, 2000, ...
                let t = task(topic, i);
                batch.push(match i % 2 {
                    0 => t,
                    _ => t.run_at(at(1000 * (i + 1))),
                });
            }
        }
        store
            .enqueue(batch, &EnqueueOptions::new(at(0)))
            .await
            .unwrap();
        // Two runs of a and one of b fail and retry later; one of a stays running.
        let claimed = claim_at(store, &["a"], 3, at(10)).await;
        assert_eq!(claimed.len(), 3, "a's due tasks");
        for (n, run) in claimed[..2].iter().enumerate() {
            let retry = OutcomeKind::retry(at(1500 + 1000 * n as u64), "again");
            apply_outcome_at(store, run, retry, at(10)).await;
        }
        let b = claim_at(store, &["b"], 1, at(10)).await.remove(0);
        apply_outcome_at(store, &b, OutcomeKind::retry(at(3000), "again"), at(10)).await;
        // More due tasks, enqueued after the claims.
        store
            .enqueue(tasks("b", 10..13), &EnqueueOptions::new(at(10)))
            .await
            .unwrap();
        let stats = store.stats(&StatsOptions::new(at(10))).await.unwrap();
        let of = |s: QueueSizes| [s.pending(), s.scheduled, s.retrying];
        assert_eq!(of(stats.topic("a").sizes), [0, 2, 2], "a at 10");
        assert_eq!(of(stats.topic("b").sizes), [4, 1, 1], "b at 10");
        for ms in [10, 1000, 1499, 1500, 2000, 3000, 9000, 10] {
            assert_waiting_lists(store, at(ms), &["a", "b", "none"]).await;
        }
        // A client lists the same parts at its clock's `now`, on INPUT whatever queue the
        // options named.
        for kind in Waiting::ALL {
            let direct = store
                .list(&ListOptions::waiting(kind, at(1500)).topic("a"))
                .await
                .unwrap();
            let via_client = client
                .list_waiting(kind, ListOptions::new(Queue::Dead).topic("a"))
                .await
                .unwrap();
            let ids = |page: &taskmill_core::store::Page| -> Vec<TaskId> {
                page.tasks.iter().map(|t| t.id).collect()
            };
            assert_eq!(ids(&via_client), ids(&direct), "{kind:?}");
        }
        let mut work = ListOptions::new(Queue::Work);
        work.waiting = Some((Waiting::Pending, at(10)));
        let misuse = store.list(&work).await.unwrap_err();
        assert_eq!(misuse.kind(), taskmill_core::ErrorKind::Misuse, "{misuse}");
    }

    /// A dead task requeued, and a task recovered from an expired lease, count from the
    /// `run_at` they get back.
    pub async fn the_earliest_run_at_follows_requeues_and_recoveries(store: Arc<dyn Store>) {
        let id = enqueue(&*store, tasks("t", 0..2)).await;
        let claimed = claim(&*store, &["t"], 2).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::dead("no")).await;
        assert_eq!(earliest(&*store, Some("t")).await, None, "nothing in INPUT");
        let requeued = store
            .requeue(
                &[id[0]],
                &taskmill_core::store::RequeueOptions::new(at(500)),
            )
            .await
            .unwrap();
        assert_eq!(requeued, [true]);
        assert_eq!(earliest(&*store, Some("t")).await, Some(at(500)));
        let late = T0 + LEASE + Duration::from_secs(1);
        assert_eq!(recover(&*store, late, 10).await.len(), 1);
        assert_eq!(
            earliest(&*store, Some("t")).await,
            Some(at(500).min(get(&*store, id[1]).await.run_at)),
            "the recovered task is due at its new run_at"
        );
    }

    /// Headers set at enqueue reach the processor through any store, and a middleware's
    /// enqueue side stamps tasks: the manager's own on its client, a bare client's on
    /// its enqueues.
    pub async fn headers_and_stamps_reach_the_processor(store: Arc<dyn Store>) {
        let trail: Trail = Arc::default();
        let seen: Seen = Arc::default();
        let manager = builder(&store)
            .middleware(Tracer {
                name: "manager",
                trail: trail.clone(),
            })
            .build();
        let sink = seen.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                let sink = sink.clone();
                async move {
                    let h = ctx.headers();
                    sink.lock().unwrap().push((
                        ctx.raw_args().to_owned(),
                        h.get("x-request-id").map(str::to_owned),
                        h.get("x-stamped-by").map(str::to_owned),
                    ));
                    Ok::<_, TaskError>(())
                }
            })
            .unwrap();
        manager.start().await.unwrap();
        let own = task("t", 1).header("x-request-id", "req-1").unwrap();
        let a = manager.client().enqueue(own).await.unwrap().id();
        let bare = Client::shared(store.clone()).middleware(Tracer {
            name: "web",
            trail: trail.clone(),
        });
        let b = bare
            .enqueue(task("t", 2).header("x-request-id", "req-2").unwrap())
            .await
            .unwrap()
            .id();
        let c = Client::shared(store.clone())
            .enqueue(task("t", 3))
            .await
            .unwrap()
            .id();
        for id in [a, b, c] {
            wait_in(&store, id, Queue::Completed).await;
        }
        manager.close().await.unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            seen,
            [
                ("1".into(), s("req-1"), s("manager")),
                ("2".into(), s("req-2"), s("web")),
                ("3".into(), None, None),
            ]
        );
        assert_eq!(
            get(&*store, b).await.headers.get("x-stamped-by"),
            Some("web"),
            "stored"
        );
    }

    /// Middleware wraps runs in order (the manager's, first registered outermost, then the
    /// topic's), sees the outcome, and applies to its topics only.
    pub async fn middleware_wraps_runs_in_order(store: Arc<dyn Store>) {
        let trail: Trail = Arc::default();
        let tracer = |name| Tracer {
            name,
            trail: trail.clone(),
        };
        let manager = builder(&store)
            .concurrency(1)
            .middleware(tracer("outer"))
            .middleware(tracer("inner"))
            .topic(
                "fails",
                TopicOptions::new().retries(0).middleware(tracer("topic")),
            )
            .build();
        let log = trail.clone();
        manager
            .register("fails", move |_ctx: TaskContext| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push("processor".into());
                    Err::<(), _>(TaskError::msg("boom"))
                }
            })
            .unwrap();
        manager
            .register("plain", |_ctx: TaskContext| async {
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager.start().await.unwrap();
        let failing = manager.enqueue(task("fails", 1)).await.unwrap().id();
        wait_in(&store, failing, Queue::Dead).await;
        let plain = manager.enqueue(task("plain", 2)).await.unwrap().id();
        wait_in(&store, plain, Queue::Completed).await;
        manager.close().await.unwrap();
        let trail = trail.lock().unwrap().clone();
        assert_eq!(
            trail,
            [
                "outer>",
                "inner>",
                "topic>",
                "processor",
                "<topic err",
                "<inner err",
                "<outer err",
                "outer>",
                "inner>",
                "<inner ok",
                "<outer ok",
            ]
        );
    }

    /// A middleware that does not call the rest of the chain decides the run: its `Ok`
    /// completes the task and its `Err` fails it, and the processor never runs.
    pub async fn middleware_can_short_circuit_a_run(store: Arc<dyn Store>) {
        let ran = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let manager = builder(&store).middleware(ShortCircuit).build();
        for topic in ["ok-topic", "refused"] {
            let ran = ran.clone();
            manager
                .register(topic, move |_ctx: TaskContext| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { Ok::<_, TaskError>(()) }
                })
                .unwrap();
        }
        manager.start().await.unwrap();
        let ok = manager.enqueue(task("ok-topic", 1)).await.unwrap().id();
        let refused = manager.enqueue(task("refused", 2)).await.unwrap().id();
        wait_in(&store, ok, Queue::Completed).await;
        let dead = wait_in(&store, refused, Queue::Dead).await;
        manager.close().await.unwrap();
        assert_eq!(dead.last_error(), Some("refused by middleware"));
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a processor ran"
        );
    }

    /// A middleware that panics fails its run like a panicking processor; the manager goes on.
    pub async fn a_panicking_middleware_fails_only_its_run(store: Arc<dyn Store>) {
        let manager = builder(&store)
            .topic("broken", TopicOptions::new().retries(0).middleware(Panics))
            .build();
        for topic in ["broken", "fine"] {
            manager
                .register(topic, |_ctx: TaskContext| async { Ok::<_, TaskError>(()) })
                .unwrap();
        }
        manager.start().await.unwrap();
        let broken = manager.enqueue(task("broken", 1)).await.unwrap().id();
        let fine = manager.enqueue(task("fine", 2)).await.unwrap().id();
        let dead = wait_in(&store, broken, Queue::Dead).await;
        wait_in(&store, fine, Queue::Completed).await;
        manager.close().await.unwrap();
        let error = dead.last_error().unwrap_or_default();
        assert!(error.contains("panicked: the middleware broke"), "{error}");
    }

    /// A topic's timeout bounds its runs' middleware too, the manager's and the topic's
    /// own: a middleware that never returns fails the run as timed out, and the processor
    /// never runs.
    pub async fn the_timeout_bounds_a_stalled_middleware(store: Arc<dyn Store>) {
        let ran = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let limited = || {
            TopicOptions::new()
                .timeout(Duration::from_millis(100))
                .retries(0)
        };
        let manager = builder(&store)
            .middleware(Stalls(&["manager-stalls"]))
            .topic("manager-stalls", limited())
            .topic(
                "topic-stalls",
                limited().middleware(Stalls(&["topic-stalls"])),
            )
            .build();
        for topic in ["manager-stalls", "topic-stalls"] {
            let ran = ran.clone();
            manager
                .register(topic, move |_ctx: TaskContext| {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { Ok::<_, TaskError>(()) }
                })
                .unwrap();
        }
        manager.start().await.unwrap();
        let ids = [
            manager
                .enqueue(task("manager-stalls", 1))
                .await
                .unwrap()
                .id(),
            manager.enqueue(task("topic-stalls", 2)).await.unwrap().id(),
        ];
        for id in ids {
            let dead = wait_in(&store, id, Queue::Dead).await;
            let error = dead.last_error().unwrap_or_default();
            assert!(error.contains("timed out after 100ms"), "{error}");
        }
        manager.close().await.unwrap();
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a processor ran"
        );
    }

    /// A run observer is told of every run's start and end, with how it ended: completed,
    /// failed (an error, a panic, a timeout), or released (cancelled); per topic observers
    /// only of their topic's runs.
    pub async fn observers_are_told_every_run_start_and_end(store: Arc<dyn Store>) {
        let (all, only_slow) = (Told::default(), Told::default());
        let manager = builder(&store)
            .observer(all.clone())
            .default_retries(1)
            .topic("slow", TopicOptions::new().observer(only_slow.clone()))
            .topic(
                "stuck",
                TopicOptions::new()
                    .timeout(Duration::from_millis(20))
                    .retries(0),
            )
            .build();
        manager
            .register("slow", |_ctx: TaskContext| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager
            .register("flaky", |ctx: TaskContext| async move {
                match ctx.attempt() {
                    1 => Err(TaskError::msg("first try fails")),
                    _ => Ok(()),
                }
            })
            .unwrap();
        manager
            .register("panics", |_ctx: TaskContext| async {
                panic!("observed");
                #[allow(unreachable_code)]
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager
            .register("stuck", |_ctx: TaskContext| async {
                std::future::pending::<Result<(), TaskError>>().await
            })
            .unwrap();
        manager
            .register("waits", |ctx: TaskContext| async move {
                ctx.cancelled().await;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager.start().await.unwrap();
        let enqueue = |topic: &'static str| {
            let manager = manager.clone();
            async move { manager.enqueue(task(topic, 0)).await.unwrap().id() }
        };
        let slow = enqueue("slow").await;
        let flaky = enqueue("flaky").await;
        let panics = enqueue("panics").await;
        let stuck = enqueue("stuck").await;
        let waits = enqueue("waits").await;
        wait_in(&store, slow, Queue::Completed).await;
        wait_in(&store, flaky, Queue::Completed).await;
        wait_in(&store, panics, Queue::Dead).await;
        wait_in(&store, stuck, Queue::Dead).await;
        wait_until("the waiting run started", PATIENCE, || async {
            get(&*store, waits).await.queue == Queue::Work
        })
        .await;
        manager.client().cancel(&[waits]).await.unwrap();
        wait_in(&store, waits, Queue::Cancelled).await;
        manager.close().await.unwrap();

        let mut told = all.0.lock().unwrap().clone();
        told.sort();
        assert_eq!(
            told,
            [
                "end flaky 1 failed",
                "end flaky 2 completed",
                "end panics 1 failed",
                "end panics 2 failed",
                "end slow 1 completed",
                "end stuck 1 failed",
                "end waits 1 released",
                "start flaky 1",
                "start flaky 2",
                "start panics 1",
                "start panics 2",
                "start slow 1",
                "start stuck 1",
                "start waits 1",
            ]
        );
        let told_slow = only_slow.0.lock().unwrap().clone();
        assert_eq!(told_slow, ["start slow 1", "end slow 1 completed"]);
    }
);
