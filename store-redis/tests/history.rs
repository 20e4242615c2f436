//! History and control in the Redis layout: finished tasks kept by id and by finish time,
//! pruned oldest first; cancels from every INPUT index and of running tasks; errors kept
//! bounded; the retry limit resolved at the first claim; progress kept beside WORK; and
//! namespaces written before history read and carried on. Each test also looks at the keys
//! where the layout matters, so that it fails if the tasks went elsewhere.

use futures_util::StreamExt;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, ClaimOptions, LeaseRef, ListOptions,
    Outcome, OutcomeKind, Progress, PruneOptions, RenewOptions, RequeueOptions, TopicClaim,
};
use taskmill_core::{
    Event, Payload, Queue, Store, StoreExt, Task, TaskId, TaskRecord, Timestamp, MAX_KEPT_ERRORS,
};
use taskmill_redis::RedisStore;
use taskmill_testkit::{apply_outcome_at, claim_at, enqueue, get, ready, recover, T0};

mod common;

use common::Setup;

impl Setup {
    /// The members of a sorted set of `topic` with their scores, lowest first.
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

    /// The finished tasks of `topic` in the order pruning takes them, (id, finished_at):
    /// the `finish_log` list (`finished_at:id` entries) and the `finished` sorted set
    /// merged.
    async fn finish_order(&mut self, topic: &str) -> Vec<(u64, i64)> {
        let log: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key(topic, "finish_log"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.raw)
            .await
            .unwrap();
        let mut all: Vec<(u64, i64)> = log
            .iter()
            .map(|entry| {
                let (at, id) = entry.split_once(':').unwrap();
                (id.parse().unwrap(), at.parse().unwrap())
            })
            .collect();
        assert!(
            all.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0),
            "log out of order (by time or by id): {all:?}"
        );
        all.extend(self.zset(topic, "finished").await);
        all.sort_by_key(|&(_, at)| at);
        all
    }

    /// The stored record of `id` of `topic`, as text.
    async fn raw_record(&mut self, topic: &str, id: TaskId) -> Option<String> {
        redis::cmd("HGET")
            .arg(self.key(topic, "tasks"))
            .arg(id.get())
            .query_async(&mut self.raw)
            .await
            .unwrap()
    }

    /// How many script calls Redis has run so far.
    async fn script_calls(&mut self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.raw)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
            .and_then(|l| l.split([',', '=']).nth(1))
            .map_or(0, |n| n.parse().unwrap())
    }
}

fn outcome(record: &TaskRecord, kind: OutcomeKind) -> Outcome {
    Outcome::new(LeaseRef::of(record), kind)
}

async fn apply(store: &RedisStore, outcomes: &[Outcome], now: Timestamp) -> Vec<Applied> {
    store
        .apply(outcomes, &ApplyOptions::new(now))
        .await
        .unwrap()
}

fn json(text: &str) -> Payload {
    Payload::from_json(text.to_owned()).unwrap()
}

/// Completed and cancelled tasks are listed by id and pruned by finish time, per topic
/// with its own retention, oldest first, within the limit; a prune with nothing due runs
/// no script at all.
#[tokio::test]
async fn finished_tasks_are_kept_by_id_and_pruned_by_finish_time() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let a = enqueue(
        &store,
        (0..4).map(|i| Task::new("a", &i).unwrap()).collect(),
    )
    .await;
    enqueue(
        &store,
        (0..2).map(|i| Task::new("b", &i).unwrap()).collect(),
    )
    .await;
    let claimed = claim_at(&store, &["a", "b"], 10, T0).await;
    assert_eq!(claimed.len(), 6);
    let at = |s: u64| T0 + Duration::from_secs(s);
    // Finished out of id order: a[3] first, then a[0], a[1] cancelled, a[2]; b later.
    let finish_order = [(3, 1), (0, 2), (2, 4)];
    for (i, second) in finish_order {
        let r = claimed.iter().find(|r| r.id == a[i]).unwrap();
        assert_eq!(
            apply(&store, &[outcome(r, OutcomeKind::complete())], at(second)).await,
            [Applied::Done]
        );
    }
    let by = CancelOptions::new(at(3), "ops");
    assert_eq!(
        store.cancel(&[a[1]], &by).await.unwrap(),
        [Cancellation::Requested]
    );
    let r1 = claimed.iter().find(|r| r.id == a[1]).unwrap();
    assert_eq!(
        apply(&store, &[outcome(r1, OutcomeKind::complete())], at(3)).await,
        [Applied::Cancelled]
    );
    for r in claimed.iter().filter(|r| r.topic.as_ref() == "b") {
        apply(&store, &[outcome(r, OutcomeKind::complete())], at(1)).await;
    }
    let ms = |s: u64| at(s).as_millis();
    // a[3] finished first, into the empty log, which lists it by id too; the rest have
    // lower ids than the log's tail, so they are in `completed` (and `finished`) instead.
    assert_eq!(
        s.zset("a", "completed").await,
        [
            (a[0].get(), a[0].get() as i64),
            (a[2].get(), a[2].get() as i64)
        ]
    );
    assert_eq!(
        s.zset("a", "cancelled").await,
        [(a[1].get(), a[1].get() as i64)]
    );
    assert_eq!(
        s.finish_order("a").await,
        [
            (a[3].get(), ms(1)),
            (a[0].get(), ms(2)),
            (a[1].get(), ms(3)),
            (a[2].get(), ms(4))
        ]
    );
    let page = store
        .list(&ListOptions::new(Queue::Completed).topic("a").limit(2))
        .await
        .unwrap();
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [a[0], a[2]]
    );
    assert_eq!(page.next, Some(a[2]));
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("a")
        .sizes;
    assert_eq!(
        (sizes.completed, sizes.cancelled, sizes.active()),
        (3, 1, 0)
    );

    // Nothing due: a zero-length retention one second before the first finish.
    let calls = s.script_calls().await;
    let none = PruneOptions::new(at(0), Duration::ZERO);
    assert_eq!(store.prune(&none).await.unwrap(), 0);
    assert_eq!(
        s.script_calls().await,
        calls,
        "a prune with nothing due ran a script"
    );

    // At 10 s with a 7 s retention (b: 10 s), the cutoff is 3 s: a[3], a[0], a[1] are due,
    // at most two per call.
    let opts = PruneOptions::new(at(10), Duration::from_secs(7))
        .topic("b", Duration::from_secs(10))
        .limit(2);
    assert_eq!(store.prune(&opts).await.unwrap(), 2);
    assert_eq!(
        s.finish_order("a").await,
        [(a[1].get(), ms(3)), (a[2].get(), ms(4))]
    );
    assert!(s.raw_record("a", a[3]).await.is_none());
    assert!(store.get(a[0]).await.unwrap().is_none());
    assert_eq!(store.prune(&opts).await.unwrap(), 1);
    assert_eq!(store.prune(&opts).await.unwrap(), 0);
    assert_eq!(get(&store, a[2]).await.queue, Queue::Completed);
    assert_eq!(s.zset("a", "cancelled").await, []);
    assert_eq!(
        s.finish_order("b").await.len(),
        2,
        "b's retention is longer"
    );
    let later = PruneOptions::new(at(11), Duration::from_secs(7));
    assert_eq!(store.prune(&later).await.unwrap(), 3);
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes;
    assert_eq!(sizes.total(), 0, "{sizes:?}");
}

/// A completion that is not kept leaves nothing behind, as a completion did before
/// history; a kept one keeps its result and the progress of its run.
#[tokio::test]
async fn completions_are_kept_with_their_result_or_removed() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let ids = enqueue(
        &store,
        (0..3)
            .map(|i| Task::new("t", &i).unwrap().unique_key(format!("k{i}")))
            .collect(),
    )
    .await;
    let claimed = claim_at(&store, &["t"], 3, T0).await;
    let progress = |r: &TaskRecord, value: &str| Progress {
        lease: LeaseRef::of(r),
        value: json(value),
    };
    assert_eq!(
        store
            .progress(&[
                progress(&claimed[0], "1"),
                progress(&claimed[1], "{\"of\":2}")
            ])
            .await
            .unwrap(),
        [Applied::Done, Applied::Done]
    );
    // Beside WORK while it runs: the record is left as the claim found it.
    let running = get(&store, ids[1]).await;
    assert_eq!(running.progress.unwrap().as_str(), "{\"of\":2}");
    assert!(!s.raw_record("t", ids[1]).await.unwrap().contains("of"));
    let outcomes = [
        outcome(&claimed[0], OutcomeKind::complete()).keep(false),
        outcome(
            &claimed[1],
            OutcomeKind::complete_with(Some(json("[\"r\"]"))),
        ),
        outcome(&claimed[2], OutcomeKind::complete()).progress(Some(json("3"))),
    ];
    assert_eq!(apply(&store, &outcomes, T0).await, [Applied::Done; 3]);
    assert!(store.get(ids[0]).await.unwrap().is_none());
    assert!(s.raw_record("t", ids[0]).await.is_none());
    let kept = get(&store, ids[1]).await;
    assert_eq!(
        (
            kept.queue,
            kept.result.unwrap().as_str(),
            kept.progress.unwrap().as_str()
        ),
        (Queue::Completed, "[\"r\"]", "{\"of\":2}")
    );
    assert_eq!(get(&store, ids[2]).await.progress.unwrap().as_str(), "3");
    // The record is as enqueued; how the run ended is beside it, in `ends`.
    let raw = s.raw_record("t", ids[1]).await.unwrap();
    assert!(raw.ends_with(":k11") && !raw.contains('\x1e'), "{raw:?}");
    let end: String = redis::cmd("HGET")
        .arg(s.key("t", "ends"))
        .arg(ids[1].get())
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert!(end.ends_with(";25:5:8:[\"r\"]{\"of\":2}"), "{end:?}");
    let hash_len: u64 = redis::cmd("HLEN")
        .arg(s.key("t", "progress"))
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(hash_len, 0, "progress left beside WORK");
    let ids_finished: Vec<u64> = s.finish_order("t").await.iter().map(|e| e.0).collect();
    assert_eq!(ids_finished, [ids[1].get(), ids[2].get()]);
    let c = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .counters;
    assert_eq!(c.completed, 3);
    // Every key is free again: completed tasks do not hold theirs.
    let again = taskmill_testkit::enqueue_results(
        &store,
        (0..3)
            .map(|i| Task::new("t", &i).unwrap().unique_key(format!("k{i}")))
            .collect(),
    )
    .await;
    assert!(again.iter().all(|e| e.is_new()), "{again:?}");
}

/// A task that holds its key while kept holds it until it is pruned, cancelled at once or
/// completed.
#[tokio::test]
async fn a_key_held_while_kept_is_freed_by_the_prune() {
    let s = Setup::new().await;
    let store = s.store.clone();
    let task = || {
        Task::new("t", &1)
            .unwrap()
            .unique_key("once")
            .unique_while_kept()
    };
    let first = enqueue(&store, vec![task()]).await[0];
    let claimed = claim_at(&store, &["t"], 1, T0).await;
    apply_outcome_at(&store, &claimed[0], OutcomeKind::complete(), T0).await;
    let again = taskmill_testkit::enqueue_results(&store, vec![task()]).await;
    assert_eq!(again[0].id(), first);
    assert!(!again[0].is_new());
    let pruned = store
        .prune(&PruneOptions::new(T0, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let second = enqueue(&store, vec![task()]).await[0];
    // Cancelled from INPUT: kept, and the key with it.
    let by = CancelOptions::new(T0, "ops");
    assert_eq!(
        store.cancel(&[second], &by).await.unwrap(),
        [Cancellation::Cancelled]
    );
    let held = taskmill_testkit::enqueue_results(&store, vec![task()]).await;
    assert_eq!(held[0].id(), second);
    // Without the flag a cancelled task frees its key at once.
    let plain = enqueue(&store, vec![Task::new("t", &2).unwrap().unique_key("k")]).await[0];
    store.cancel(&[plain], &by).await.unwrap();
    let free = taskmill_testkit::enqueue_results(
        &store,
        vec![Task::new("t", &2).unwrap().unique_key("k")],
    )
    .await;
    assert!(free[0].is_new());
}

/// The errors of failed attempts are a JSON array in the record, bounded to the newest
/// MAX_KEPT_ERRORS whatever the messages hold (quotes, braces, what looks like an entry).
#[tokio::test]
async fn errors_stay_bounded_and_exact_whatever_the_messages() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let id = enqueue(&store, vec![Task::new("t", &1).unwrap().max_retries(100)]).await[0];
    let message = |n: usize| match n % 4 {
        0 => format!("plain {n}"),
        1 => format!("{{\"attempt\":{n},\"at\":0,\"message\":\"x\"}},{{\"attempt\":"),
        2 => format!("quote \" backslash \\ slash / tab \t newline \n é {n}"),
        _ => format!("}}],[{{\"attempt\":{n}\\"),
    };
    let total = MAX_KEPT_ERRORS + 3;
    let mut now = T0;
    for n in 1..=total {
        let claimed = claim_at(&store, &["t"], 1, now).await;
        assert_eq!(claimed.len(), 1, "attempt {n}");
        let kind = if n == total {
            OutcomeKind::dead(message(n))
        } else {
            OutcomeKind::retry(now, message(n))
        };
        apply_outcome_at(&store, &claimed[0], kind, now).await;
        now = now + Duration::from_millis(1);
    }
    let dead = get(&store, id).await;
    assert_eq!(dead.queue, Queue::Dead);
    assert_eq!(dead.errors.len(), MAX_KEPT_ERRORS);
    for (e, n) in dead.errors.iter().zip(total - MAX_KEPT_ERRORS + 1..) {
        assert_eq!(e.attempt as usize, n);
        assert_eq!(&*e.message, message(n));
        assert_eq!(e.at, T0 + Duration::from_millis(n as u64 - 1));
    }
    let raw = s.raw_record("t", id).await.unwrap();
    assert!(raw.starts_with("v2:"), "{raw}");
}

/// The retry limit of a task that sets none is written at its first claim and kept: a
/// later claim with another limit does not change it.
#[tokio::test]
async fn the_retry_limit_is_resolved_at_the_first_claim_for_good() {
    let s = Setup::new().await;
    let store = s.store.clone();
    let id = enqueue(&store, vec![Task::new("t", &1).unwrap()]).await[0];
    assert_eq!(get(&store, id).await.max_retries, None);
    let claim = |retries: u32, now: Timestamp| {
        let store = store.clone();
        async move {
            let req = ClaimOptions::new([TopicClaim::new("t").max_retries(retries)], 1, "m", now)
                .lease(Duration::from_secs(1));
            ready(store.claim(&req).await.unwrap())
        }
    };
    let r = claim(1, T0).await;
    assert_eq!(r[0].max_retries, Some(1));
    assert_eq!(get(&store, id).await.max_retries, Some(1));
    apply_outcome_at(&store, &r[0], OutcomeKind::release(), T0).await;
    let stored = get(&store, id).await;
    assert_eq!(
        (stored.max_retries, stored.first_started_at, stored.attempt),
        (Some(1), Some(T0), 0)
    );
    let later = T0 + Duration::from_secs(5);
    let r = claim(9, later).await;
    assert_eq!(
        (r[0].max_retries, r[0].first_started_at, r[0].started_at),
        (Some(1), Some(T0), Some(later))
    );
    // The lease expires twice: the first recovery leaves a retry (1 of 1), the second
    // none, whatever the claims' own limit.
    let reaped = recover(&store, later + Duration::from_secs(2), 10).await;
    assert_eq!(reaped[0].queue, Queue::Input);
    let again = later + Duration::from_secs(3);
    claim(9, again).await;
    let reaped = recover(&store, again + Duration::from_secs(2), 10).await;
    assert_eq!(reaped[0].queue, Queue::Dead);
    let dead = get(&store, id).await;
    assert_eq!(
        (dead.attempt, dead.last_error()),
        (2, Some(taskmill_core::LEASE_EXPIRED_ERROR))
    );
}

/// Cancel takes a waiting task out of whichever INPUT index holds it (the fresh list, the
/// ready set, the scheduled set) with an event, requests the cancel of a running one, and
/// refuses the others.
#[tokio::test]
async fn cancel_takes_waiting_tasks_from_every_index_and_flags_running_ones() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let mut events = store.subscribe().await.unwrap();
    let later = T0 + Duration::from_secs(3600);
    let ids = enqueue(
        &store,
        vec![
            Task::new("t", &0).unwrap(),
            Task::new("t", &1).unwrap(),
            Task::new("t", &2).unwrap().priority(5),
            Task::new("t", &3).unwrap().run_at(later),
            Task::new("t", &4).unwrap(),
            Task::new("t", &5).unwrap(),
        ],
    )
    .await;
    let fresh: Vec<u64> = redis::cmd("LRANGE")
        .arg(s.key("t", "fresh"))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(
        fresh,
        [ids[0].get(), ids[1].get(), ids[4].get(), ids[5].get()]
    );
    // ids[0] runs; ids[4] will be dead.
    let claimed = claim_at(&store, &["t"], 1, T0).await;
    assert_eq!(claimed[0].id, ids[0]);
    let by = CancelOptions::new(T0 + Duration::from_secs(1), "ops");
    let answers = store
        .cancel(
            &[ids[1], ids[2], ids[3], ids[0], ids[1], TaskId::new(999_999)],
            &by,
        )
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            Cancellation::Cancelled,
            Cancellation::Cancelled,
            Cancellation::Cancelled,
            Cancellation::Requested,
            Cancellation::Refused(Queue::Cancelled),
            Cancellation::NotFound,
        ]
    );
    let fresh: Vec<u64> = redis::cmd("LRANGE")
        .arg(s.key("t", "fresh"))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(fresh, [ids[4].get(), ids[5].get()]);
    assert_eq!(s.zset("t", "scheduled").await, []);
    assert_eq!(s.zset("t", "later").await, []);
    assert_eq!(s.zset("t", "ready").await, []);
    for id in &ids[1..4] {
        let r = get(&store, *id).await;
        assert_eq!(
            (r.queue, r.cancelled_by.as_deref(), r.finished_at, r.attempt),
            (Queue::Cancelled, Some("ops"), Some(by.now), 0)
        );
    }
    let mut cancelled = Vec::new();
    while cancelled.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("no cancel event")
            .unwrap();
        if let Event::TaskCancelled {
            id,
            by,
            was_running,
            topic,
        } = event
        {
            assert_eq!(
                (by.as_deref(), was_running, &*topic),
                (Some("ops"), false, "t")
            );
            cancelled.push(id);
        }
    }
    assert_eq!(cancelled, ids[1..4]);
    let input: Vec<TaskId> = store
        .list_all(Queue::Input, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(input, [ids[4], ids[5]]);

    // The running one: flagged, renewals refused and the deadline left alone, progress
    // still stored, a second request keeps the first author.
    let running = get(&store, ids[0]).await;
    assert_eq!(running.cancelled_by.as_deref(), Some("ops"));
    let second = CancelOptions::new(T0, "someone else");
    assert_eq!(
        store.cancel(&[ids[0]], &second).await.unwrap(),
        [Cancellation::Requested]
    );
    let lease = LeaseRef::of(&claimed[0]);
    let renewed = store
        .renew(
            std::slice::from_ref(&lease),
            &RenewOptions::new(T0 + Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_eq!(renewed, [Applied::Cancelled]);
    assert_eq!(
        get(&store, ids[0]).await.lease.unwrap().deadline,
        claimed[0].lease.as_ref().unwrap().deadline
    );
    let update = Progress {
        lease: lease.clone(),
        value: json("7"),
    };
    assert_eq!(
        store.progress(&[update]).await.unwrap(),
        [Applied::Cancelled]
    );
    // Whatever the outcome, it ends CANCELLED with the run counted.
    let now = T0 + Duration::from_secs(2);
    assert_eq!(
        apply(
            &store,
            &[outcome(&claimed[0], OutcomeKind::retry(now, "x"))],
            now
        )
        .await,
        [Applied::Cancelled]
    );
    let r = get(&store, ids[0]).await;
    assert_eq!(
        (r.queue, r.attempt, r.cancelled_by.as_deref(), r.finished_at),
        (Queue::Cancelled, 1, Some("ops"), Some(now))
    );
    assert_eq!((r.progress.unwrap().as_str(), r.errors.len()), ("7", 0));
    let requests: u64 = redis::cmd("EXISTS")
        .arg(s.key("t", "cancels"))
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(requests, 0, "a request outlived its run");

    // DEAD and COMPLETED refuse.
    let claimed = claim_at(&store, &["t"], 2, now).await;
    apply(
        &store,
        &[
            outcome(&claimed[0], OutcomeKind::dead("x")),
            outcome(&claimed[1], OutcomeKind::complete()),
        ],
        now,
    )
    .await;
    assert_eq!(
        store.cancel(&[ids[4], ids[5]], &by).await.unwrap(),
        [
            Cancellation::Refused(Queue::Dead),
            Cancellation::Refused(Queue::Completed)
        ]
    );
    let counters = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .counters;
    assert_eq!(counters.cancelled, 4);
    // A dead task requeued can be cancelled again like any waiting task.
    store
        .requeue(&[ids[4]], &RequeueOptions::new(now))
        .await
        .unwrap();
    assert_eq!(
        store.cancel(&[ids[4]], &by).await.unwrap(),
        [Cancellation::Cancelled]
    );
}

/// The reaper ends a run with a cancel request CANCELLED, kept whatever else.
#[tokio::test]
async fn the_reaper_cancels_an_expired_run_with_a_request() {
    let s = Setup::new().await;
    let store = s.store.clone();
    let id = enqueue(&store, vec![Task::new("t", &1).unwrap()]).await[0];
    let claimed = claim_at(&store, &["t"], 1, T0).await;
    store
        .progress(&[Progress {
            lease: LeaseRef::of(&claimed[0]),
            value: json("\"half\""),
        }])
        .await
        .unwrap();
    store
        .cancel(&[id], &CancelOptions::new(T0, "ops"))
        .await
        .unwrap();
    let late = T0 + Duration::from_secs(600);
    let reaped = recover(&store, late, 10).await;
    assert_eq!(reaped[0].queue, Queue::Cancelled);
    let r = get(&store, id).await;
    assert_eq!(
        (r.queue, r.attempt, r.finished_at, r.cancelled_by.as_deref()),
        (Queue::Cancelled, 1, Some(late), Some("ops"))
    );
    assert_eq!(r.progress.unwrap().as_str(), "\"half\"");
    let c = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .counters;
    assert_eq!((c.recovered, c.cancelled, c.failed), (1, 1, 0));
    assert_eq!(
        apply(
            &store,
            &[outcome(&claimed[0], OutcomeKind::complete())],
            late
        )
        .await,
        [Applied::Stale]
    );
}

/// A namespace written before history: records without the `v2:` mark (last_error,
/// failed_at) and leases without the run's start are read, and the scripts that change
/// them write the current form.
#[tokio::test]
async fn a_namespace_written_before_history_is_read_and_carried_on() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    // Three tasks as the old layout left them: 1 retried once (waiting in ready), 2 dead,
    // 3 running under an old lease that has expired by now.
    let band = 32768u64 << 37;
    let deadline = T0.as_millis() + 1000;
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(format!("{}:ids", s.namespace)).arg(3);
    pipe.cmd("SADD")
        .arg(format!("{}:topics", s.namespace))
        .arg("t");
    pipe.cmd("HSET")
        .arg(s.key("t", "tasks"))
        .arg(1)
        .arg(format!(
            "1:2:0:{0}:{0}::::4:oops{{\"n\":1}}",
            T0.as_millis()
        ))
        .arg(2)
        .arg(format!(
            "3:2:0:{0}:{0}:{1}:3:1:4:extkgone{{\"n\":2}}",
            T0.as_millis(),
            T0.as_millis() + 5
        ))
        .arg(3)
        .arg(format!("0:0:0:{0}:{0}:::::{{\"n\":3}}", T0.as_millis()));
    pipe.cmd("ZADD")
        .arg(s.key("t", "ready"))
        .arg(band + 1)
        .arg(1);
    pipe.cmd("ZADD").arg(s.key("t", "dead")).arg(2).arg(2);
    pipe.cmd("HSET")
        .arg(s.key("t", "leases"))
        .arg(3)
        .arg(format!("7:{deadline}:old:owner"));
    pipe.cmd("HSET").arg(s.key("t", "meta")).arg("token").arg(7);
    let _: () = pipe.query_async(&mut s.raw).await.unwrap();

    let one = get(&store, TaskId::new(1)).await;
    assert_eq!(
        (one.queue, one.attempt, one.max_retries, one.last_error()),
        (Queue::Input, 1, Some(2), Some("oops"))
    );
    assert_eq!(
        one.errors[0].at,
        Timestamp::EPOCH,
        "an old retry's time is unknown"
    );
    let two = get(&store, TaskId::new(2)).await;
    assert_eq!(
        (
            two.queue,
            two.finished_at,
            two.external_id.as_deref(),
            two.unique_key.as_deref()
        ),
        (
            Queue::Dead,
            Some(T0 + Duration::from_millis(5)),
            Some("ext"),
            Some("k")
        )
    );
    assert_eq!(
        (
            two.errors[0].attempt,
            two.errors[0].at,
            &*two.errors[0].message
        ),
        (3, T0 + Duration::from_millis(5), "gone")
    );
    let three = get(&store, TaskId::new(3)).await;
    let lease = three.lease.clone().unwrap();
    assert_eq!(
        (three.queue, three.attempt, &*lease.owner, lease.token),
        (Queue::Work, 1, "old:owner", 7)
    );
    assert_eq!((three.started_at, three.max_retries), (None, Some(0)));
    let work = store.list_all(Queue::Work, None).await.unwrap();
    assert_eq!(work.len(), 1);

    // The old lease expires with no retry left: DEAD, the errors in the new form.
    let reaped = recover(&store, T0 + Duration::from_secs(2), 10).await;
    assert_eq!(reaped[0].queue, Queue::Dead);
    let three = get(&store, TaskId::new(3)).await;
    assert_eq!(
        (three.attempt, three.last_error()),
        (1, Some(taskmill_core::LEASE_EXPIRED_ERROR))
    );
    // The retried one fails again: its old error is kept beside the new one.
    let claimed = claim_at(&store, &["t"], 1, T0).await;
    assert_eq!(claimed[0].id, TaskId::new(1));
    assert_eq!(claimed[0].attempt, 2);
    apply_outcome_at(&store, &claimed[0], OutcomeKind::retry(T0, "again"), T0).await;
    let one = get(&store, TaskId::new(1)).await;
    let messages: Vec<&str> = one.errors.iter().map(|e| &*e.message).collect();
    assert_eq!(messages, ["oops", "again"]);
    assert!(s
        .raw_record("t", TaskId::new(1))
        .await
        .unwrap()
        .starts_with("v2:"));
    // The dead one requeued and completed: kept with the history it had.
    store
        .requeue(&[TaskId::new(2)], &RequeueOptions::new(T0))
        .await
        .unwrap();
    let claimed = claim_at(&store, &["t"], 2, T0).await;
    let two = claimed.iter().find(|r| r.id == TaskId::new(2)).unwrap();
    apply_outcome_at(&store, two, OutcomeKind::complete(), T0).await;
    let two = get(&store, TaskId::new(2)).await;
    assert_eq!(
        (two.queue, two.last_error(), two.external_id.as_deref()),
        (Queue::Completed, Some("gone"), Some("ext"))
    );
}

/// A deleted finished task leaves its `finish_log` entry behind; pruning drops it on the
/// way without counting it, so a prune that removes fewer than its limit still means
/// nothing is left to prune.
#[tokio::test]
async fn stale_log_entries_of_deleted_tasks_do_not_count_against_the_limit() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let ids = enqueue(
        &store,
        (0..4).map(|i| Task::new("t", &i).unwrap()).collect(),
    )
    .await;
    let at = |s: u64| T0 + Duration::from_secs(s);
    let claimed = claim_at(&store, &["t"], 4, T0).await;
    for r in &claimed {
        apply(&store, &[outcome(r, OutcomeKind::complete())], at(1)).await;
    }
    assert_eq!(s.finish_order("t").await.len(), 4);
    assert_eq!(store.delete(&ids[..2]).await.unwrap(), [true, true]);
    // Both entries are still logged, and both are stale.
    assert_eq!(s.finish_order("t").await.len(), 4);
    let opts = PruneOptions::new(at(5), Duration::ZERO).limit(2);
    assert_eq!(store.prune(&opts).await.unwrap(), 2);
    assert_eq!(s.finish_order("t").await, []);
    assert!(store.get(ids[2]).await.unwrap().is_none());
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .total(),
        0
    );
}

/// Every completed task of `topic`, listed page by page (pages of `limit`).
async fn list_completed(store: &RedisStore, topic: &str, limit: usize) -> Vec<TaskId> {
    let mut all = Vec::new();
    let mut after = None;
    // Bounded: each page holds at least one task or ends the listing.
    for _ in 0..100 {
        let mut opts = ListOptions::new(Queue::Completed).topic(topic).limit(limit);
        if let Some(id) = after {
            opts = opts.after(id);
        }
        let page = store.list(&opts).await.unwrap();
        all.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
    panic!("listing did not end");
}

async fn completed_size(store: &RedisStore) -> u64 {
    store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes
        .completed
}

/// A log written before it was kept in id order (times ascending, ids not, every
/// completed task in `completed` too) is moved to `finished` by the next completion,
/// which then files new tasks in the log only; listing, stats, get, delete and prune see
/// the old and the new tasks alike.
#[tokio::test]
async fn a_finish_log_out_of_id_order_is_moved_to_finished_and_still_read() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let ids = enqueue(
        &store,
        (0..6).map(|i| Task::new("t", &i).unwrap()).collect(),
    )
    .await;
    let at = |s: u64| T0 + Duration::from_secs(s);
    let ms = |s: u64| at(s).as_millis();
    let claimed = claim_at(&store, &["t"], 6, T0).await;
    let of = |id: TaskId| claimed.iter().find(|r| r.id == id).unwrap();
    for &id in &ids[..4] {
        apply(&store, &[outcome(of(id), OutcomeKind::complete())], at(1)).await;
    }
    // Rewrite the four as the version before left them: finished at 1..4 s in the order
    // 3, 0, 2, 1, all logged and all in `completed`, no `log_ids` or `logged` in meta.
    let order = [(ids[3], 1), (ids[0], 2), (ids[2], 3), (ids[1], 4)];
    let mut cmd = redis::pipe();
    cmd.del(s.key("t", "finish_log"))
        .del(s.key("t", "finished"));
    for (id, second) in order {
        cmd.rpush(
            s.key("t", "finish_log"),
            format!("{}:{}", ms(second), id.get()),
        );
        cmd.zadd(s.key("t", "completed"), id.get(), id.get());
    }
    cmd.hdel(s.key("t", "meta"), &["log_ids", "logged"]);
    let () = cmd.query_async(&mut s.raw).await.unwrap();
    assert_eq!(list_completed(&store, "t", 3).await, ids[..4]);
    assert_eq!(completed_size(&store).await, 4);

    // The next completion moves the old log to `finished` and logs anew, by id.
    for &id in &ids[4..] {
        apply(&store, &[outcome(of(id), OutcomeKind::complete())], at(5)).await;
    }
    let log: Vec<String> = redis::cmd("LRANGE")
        .arg(s.key("t", "finish_log"))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(
        log,
        [
            format!("{}:{}", ms(5), ids[4].get()),
            format!("{}:{}", ms(5), ids[5].get())
        ]
    );
    assert_eq!(
        s.zset("t", "finished").await,
        [
            (ids[3].get(), ms(1)),
            (ids[0].get(), ms(2)),
            (ids[2].get(), ms(3)),
            (ids[1].get(), ms(4))
        ]
    );
    assert_eq!(
        s.zset("t", "completed").await.len(),
        4,
        "new tasks only logged"
    );
    for limit in [1, 2, 4, 10] {
        assert_eq!(
            list_completed(&store, "t", limit).await,
            ids,
            "pages of {limit}"
        );
    }
    assert_eq!(completed_size(&store).await, 6);
    assert_eq!(get(&store, ids[5]).await.queue, Queue::Completed);

    // Delete one old and one new; prune the rest, oldest first.
    assert_eq!(store.delete(&[ids[0], ids[4]]).await.unwrap(), [true, true]);
    assert_eq!(completed_size(&store).await, 4);
    assert!(store.get(ids[4]).await.unwrap().is_none());
    assert_eq!(
        list_completed(&store, "t", 2).await,
        [ids[1], ids[2], ids[3], ids[5]]
    );
    let opts = PruneOptions::new(at(3), Duration::ZERO);
    assert_eq!(
        store.prune(&opts).await.unwrap(),
        2,
        "ids 3 and 2 (0 is deleted)"
    );
    assert_eq!(list_completed(&store, "t", 2).await, [ids[1], ids[5]]);
    let opts = PruneOptions::new(at(10), Duration::ZERO);
    assert_eq!(store.prune(&opts).await.unwrap(), 2);
    assert_eq!(completed_size(&store).await, 0);
    assert_eq!(s.finish_order("t").await, []);
}

/// CANCELLED tasks logged between completed ones are skipped by the listing of COMPLETED,
/// which reads the id-ordered log; the log holds all four in id order.
#[tokio::test]
async fn completed_listing_skips_cancelled_entries_of_the_log() {
    let mut s = Setup::new().await;
    let store = s.store.clone();
    let ids = enqueue(
        &store,
        (0..4).map(|i| Task::new("t", &i).unwrap()).collect(),
    )
    .await;
    let at = |s: u64| T0 + Duration::from_secs(s);
    let first = claim_at(&store, &["t"], 1, T0).await;
    apply(
        &store,
        &[outcome(&first[0], OutcomeKind::complete())],
        at(1),
    )
    .await;
    store
        .cancel(&[ids[1]], &CancelOptions::new(at(2), "ops"))
        .await
        .unwrap();
    let rest = claim_at(&store, &["t"], 2, T0).await;
    let done: Vec<Outcome> = rest
        .iter()
        .map(|r| outcome(r, OutcomeKind::complete()))
        .collect();
    apply(&store, &done, at(3)).await;
    let logged: Vec<u64> = s.finish_order("t").await.iter().map(|e| e.0).collect();
    assert_eq!(logged, ids.iter().map(|i| i.get()).collect::<Vec<_>>());
    assert_eq!(s.zset("t", "completed").await, [], "all listed by the log");
    for limit in [1, 2, 10] {
        assert_eq!(
            list_completed(&store, "t", limit).await,
            [ids[0], ids[2], ids[3]],
            "pages of {limit}"
        );
    }
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes;
    assert_eq!((sizes.completed, sizes.cancelled), (3, 1));
}
