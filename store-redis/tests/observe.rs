//! Headers and the earliest `run_at` in the Redis layout: a task without headers is
//! stored byte for byte as before headers existed, one with headers keeps them through
//! every script that rewrites its record; the fresh list's run_ats never decrease, the
//! `due` set holds the ready set's tasks by run_at, and a namespace written before either
//! gets them on its first stats; stats split INPUT by time in all three indexes. Each test
//! also looks at the keys, so that it fails if the tasks went elsewhere.

use std::time::Duration;
use taskmill_core::store::{EnqueueOptions, OutcomeKind};
use taskmill_core::{Headers, Queue, Store, Task, TaskId, Timestamp};
use taskmill_testkit::{apply_outcome_at, cancel_at, claim_at, enqueue, get, T0};

mod common;

use common::Setup;

fn at(offset_ms: u64) -> Timestamp {
    T0 + Duration::from_millis(offset_ms)
}

impl Setup {
    /// The stored record of `id` of `topic`, as text.
    async fn raw_record(&mut self, topic: &str, id: TaskId) -> String {
        redis::cmd("HGET")
            .arg(self.key(topic, "tasks"))
            .arg(id.get())
            .query_async(&mut self.raw)
            .await
            .unwrap()
    }

    /// The ids in `topic`'s fresh list, head first.
    async fn fresh(&mut self, topic: &str) -> Vec<u64> {
        redis::cmd("LRANGE")
            .arg(self.key(topic, "fresh"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.raw)
            .await
            .unwrap()
    }

    /// The (id, score) entries of a sorted set of `topic`, lowest score first.
    async fn zset(&mut self, topic: &str, suffix: &str) -> Vec<(u64, i64)> {
        redis::cmd("ZRANGE")
            .arg(self.key(topic, suffix))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.raw)
            .await
            .unwrap()
    }

    /// Enqueues `tasks` of `topic` at `now`; their ids.
    async fn enqueue_at(&self, tasks: Vec<Task>, now: Timestamp) -> Vec<TaskId> {
        let results = self
            .store
            .enqueue(tasks, &EnqueueOptions::new(now))
            .await
            .unwrap();
        assert!(results.iter().all(|r| r.is_new()), "{results:?}");
        results.iter().map(|r| r.id()).collect()
    }

    async fn earliest(&self, topic: &str) -> Option<Timestamp> {
        self.store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .topic(topic)
            .earliest_run_at
    }

    /// Runs `pipe` on the raw connection.
    async fn run(&mut self, pipe: redis::Pipeline) {
        let _: () = pipe.query_async(&mut self.raw).await.unwrap();
    }
}

fn headers() -> Headers {
    let mut h = Headers::new();
    h.insert("traceparent", "00-4bf92f3577b34da6-00f067aa0ba902b7-01")
        .unwrap();
    h.insert("x-note", "a:b\\c \"d\" é").unwrap();
    h
}

fn with_headers(mut task: Task) -> Task {
    for (k, v) in &headers() {
        task = task.header(k, v).unwrap();
    }
    task
}

fn in_topic(topic: &str, n: u64) -> Task {
    Task::new(topic, &n).unwrap()
}

fn t(n: u64) -> Task {
    in_topic("t", n)
}

/// A task without headers is written exactly as before headers existed; one with headers
/// has flag `h`, and keeps them through a retry, a release-free rewrite (dead), a cancel
/// and a kept completion, whose scripts take the record apart or append to it.
#[tokio::test]
async fn headers_cost_nothing_when_absent_and_survive_every_rewrite() {
    let mut s = Setup::new().await;
    let ids = s
        .enqueue_at(
            vec![
                t(1),
                with_headers(t(2)),
                with_headers(t(3)),
                with_headers(t(4)),
            ],
            T0,
        )
        .await;
    let bare = s.raw_record("t", ids[0]).await;
    assert_eq!(bare, format!("v2:0::0:{0}:{0}:::::::::::1", T0.as_millis()));
    let stored = s.raw_record("t", ids[1]).await;
    let json = serde_json::to_string(&headers()).unwrap();
    assert_eq!(
        stored,
        format!(
            "v2:0::0:{0}:{0}::::h:::::::{1}:{json}2",
            T0.as_millis(),
            json.len()
        )
    );

    let claimed = claim_at(&s.store, &["t"], 4, T0).await;
    assert_eq!(claimed.len(), 4);
    assert!(claimed[1..].iter().all(|r| r.headers == headers()));
    assert!(claimed[0].headers.is_empty());
    apply_outcome_at(&s.store, &claimed[1], OutcomeKind::retry(T0, "again"), T0).await;
    apply_outcome_at(&s.store, &claimed[2], OutcomeKind::dead("no"), T0).await;
    apply_outcome_at(&s.store, &claimed[3], OutcomeKind::complete(), T0).await;
    apply_outcome_at(&s.store, &claimed[0], OutcomeKind::complete(), T0).await;
    for (id, queue) in [
        (ids[1], Queue::Input),
        (ids[2], Queue::Dead),
        (ids[3], Queue::Completed),
    ] {
        let record = get(&s.store, id).await;
        assert_eq!((record.queue, &record.headers), (queue, &headers()));
    }
    assert!(get(&s.store, ids[0]).await.headers.is_empty());
    // The retried record was packed again by Lua: still flag `h`, same headers.
    assert!(s.raw_record("t", ids[1]).await.contains(&json));
    cancel_at(&s.store, &[ids[1]], "tester", T0).await;
    let cancelled = get(&s.store, ids[1]).await;
    assert_eq!(
        (cancelled.queue, &cancelled.headers),
        (Queue::Cancelled, &headers())
    );
}

/// The scripts find a unique key behind the headers' length: a duplicate is refused, and
/// the key is freed when its task completes.
#[tokio::test]
async fn unique_keys_of_tasks_with_headers_are_found_and_freed() {
    let s = Setup::new().await;
    let keyed = |n| with_headers(t(n).unique_key("k"));
    let first = enqueue(&s.store, vec![keyed(1)]).await[0];
    let again = s
        .store
        .enqueue(vec![keyed(2)], &EnqueueOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(again[0].id(), first, "{again:?}");
    assert!(!again[0].is_new());
    let claimed = claim_at(&s.store, &["t"], 1, T0).await.remove(0);
    apply_outcome_at(&s.store, &claimed, OutcomeKind::complete(), T0).await;
    let third = s
        .store
        .enqueue(vec![keyed(3)], &EnqueueOptions::new(T0))
        .await
        .unwrap();
    assert!(third[0].is_new(), "the key was not freed: {third:?}");
}

/// Due tasks whose run_at is before one ahead of them in the chunk, or before the list's
/// last one (an enqueuer whose clock is behind), go to the ready set and `due`; the list's
/// run_ats never decrease, so its head has its earliest.
#[tokio::test]
async fn the_fresh_list_keeps_run_at_order_and_due_mirrors_the_ready_set() {
    let mut s = Setup::new().await;
    let first = s
        .enqueue_at(
            vec![t(1).run_at(at(50)), t(2).run_at(at(30)), t(3)],
            at(100),
        )
        .await;
    // Task 2 is due before task 1, which is ahead of it.
    assert_eq!(s.fresh("t").await, [first[0].get(), first[2].get()]);
    assert_eq!(
        s.zset("t", "due").await,
        [(first[1].get(), at(30).as_millis())]
    );
    assert_eq!(s.earliest("t").await, Some(at(30)));
    // An enqueuer whose clock is behind the list's last run_at (100).
    let behind = s.enqueue_at(vec![t(4), t(5)], at(90)).await;
    assert_eq!(s.fresh("t").await, [first[0].get(), first[2].get()]);
    assert_eq!(s.zset("t", "due").await.len(), 3);
    // One ahead of it appends.
    let ahead = s.enqueue_at(vec![t(6)], at(120)).await;
    assert_eq!(s.fresh("t").await.last(), Some(&ahead[0].get()));

    // Claims take the list's head and the ready set's first, and `due` follows.
    let claimed = claim_at(&s.store, &["t"], 2, at(200)).await;
    assert_eq!(taskmill_testkit::ids(&claimed), [first[0], first[1]]);
    assert_eq!(s.earliest("t").await, Some(at(90)));
    let claimed = claim_at(&s.store, &["t"], 3, at(200)).await;
    assert_eq!(
        taskmill_testkit::ids(&claimed),
        [first[2], behind[0], behind[1]]
    );
    assert_eq!(s.zset("t", "due").await, []);
    assert_eq!(s.earliest("t").await, Some(at(120)));
    // A scheduled task promoted by a claim enters `due` at its run_at, and leaves it when
    // claimed.
    let later = s.enqueue_at(vec![t(7).run_at(at(300))], at(200)).await;
    assert_eq!(s.earliest("t").await, Some(at(120)));
    let claimed = claim_at(&s.store, &["t"], 1, at(400)).await;
    assert_eq!(taskmill_testkit::ids(&claimed), [ahead[0]]);
    assert_eq!(
        s.zset("t", "due").await,
        [(later[0].get(), at(300).as_millis())]
    );
    assert_eq!(s.earliest("t").await, Some(at(300)));
    assert_eq!(claim_at(&s.store, &["t"], 1, at(400)).await.len(), 1);
    assert_eq!(s.earliest("t").await, None);
    assert_eq!(s.zset("t", "due").await, []);
}

/// Stats read with a `now` behind the calls that filed tasks as due (another process's
/// clock): the tasks of `fresh` and `due` whose `run_at` is after it count as scheduled or
/// retrying, as their statuses at that `now` say; the walk of `fresh`'s tail stops at the
/// first task due.
#[tokio::test]
async fn stats_behind_the_writers_clock_split_fresh_and_due_too() {
    let mut s = Setup::new().await;
    let ids = s
        .enqueue_at(
            (1..=40).map(|i| t(i).run_at(at(i * 10))).collect(),
            at(1000),
        )
        .await;
    assert_eq!(s.fresh("t").await.len(), 40, "all due at 1000, in fresh");
    // One run fails and retries at 900, due at the apply's `now` (1000): in `ready` and
    // `due`, not `scheduled`.
    let failed = claim_at(&s.store, &["t"], 1, at(1000)).await.remove(0);
    assert_eq!(failed.id, ids[0]);
    apply_outcome_at(
        &s.store,
        &failed,
        OutcomeKind::retry(at(900), "again"),
        at(1000),
    )
    .await;
    assert_eq!(
        s.zset("t", "due").await,
        [(ids[0].get(), at(900).as_millis())]
    );
    let split = |now| {
        let store = &s.store;
        async move {
            let sizes = store
                .stats(&taskmill_core::store::StatsOptions::new(now))
                .await
                .unwrap()
                .topic("t")
                .sizes;
            (sizes.pending(), sizes.scheduled, sizes.retrying)
        }
    };
    // At 255: tasks 2..=25 (run_at 20..=250) due; 26..=40 (260..=400) and the retry not.
    assert_eq!(split(at(255)).await, (24, 15, 1));
    assert_eq!(split(at(0)).await, (0, 39, 1));
    assert_eq!(split(at(400)).await, (39, 0, 1));
    assert_eq!(split(at(900)).await, (40, 0, 0));
}

/// A namespace written before `due` and `fresh_run_at` existed: its ready tasks are
/// missing from `due`, and its list's run_ats may decrease. Its first stats add them to
/// `due` and give the list its field, or move the list to the ready set when out of
/// order; claims still go by priority, then id.
#[tokio::test]
async fn a_namespace_before_the_run_at_indexes_gets_them_on_its_first_stats() {
    let mut s = Setup::new().await;
    // Topic "a": a list in run_at order and a ready task.
    let a = s
        .enqueue_at(
            vec![
                in_topic("a", 1),
                in_topic("a", 2),
                in_topic("a", 3).priority(4).run_at(at(10)),
            ],
            at(100),
        )
        .await;
    // Topic "b": a list whose run_ats decrease, as an old enqueuer could write it.
    let b_first = s
        .enqueue_at(vec![in_topic("b", 1), in_topic("b", 2)], at(100))
        .await;
    let b_late = s
        .enqueue_at(vec![in_topic("b", 3).run_at(at(20))], at(100))
        .await;
    let mut pipe = redis::pipe();
    for topic in ["a", "b"] {
        pipe.cmd("DEL").arg(s.key(topic, "due"));
        pipe.cmd("HDEL")
            .arg(s.key(topic, "meta"))
            .arg("fresh_run_at")
            .arg("due_indexed");
    }
    pipe.cmd("ZREM")
        .arg(s.key("b", "ready"))
        .arg(b_late[0].get());
    pipe.cmd("RPUSH")
        .arg(s.key("b", "fresh"))
        .arg(b_late[0].get());
    s.run(pipe).await;
    assert_eq!(s.fresh("b").await.len(), 3);

    let stats = s.store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.topic("a").earliest_run_at, Some(at(10)));
    assert_eq!(stats.topic("b").earliest_run_at, Some(at(20)));
    assert_eq!(stats.topic("b").sizes.input, 3);
    // "a" kept its list, now with its field; "b"'s moved to the ready set.
    assert_eq!(s.fresh("a").await, [a[0].get(), a[1].get()]);
    assert_eq!(s.zset("a", "due").await, [(a[2].get(), at(10).as_millis())]);
    assert_eq!(s.fresh("b").await, Vec::<u64>::new());
    assert_eq!(s.zset("b", "due").await.len(), 3);
    // New enqueues append to "a"'s list again.
    let more = s.enqueue_at(vec![in_topic("a", 4)], at(150)).await;
    assert_eq!(s.fresh("a").await.last(), Some(&more[0].get()));
    let claimed = claim_at(&s.store, &["b"], 3, at(200)).await;
    assert_eq!(
        taskmill_testkit::ids(&claimed),
        [b_first[0], b_first[1], b_late[0]]
    );
    assert_eq!(s.earliest("b").await, None);
}
