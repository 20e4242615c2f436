//! What a store keeps of a task's history: its status, result, progress, errors and times,
//! the COMPLETED and CANCELLED queues, pruning, the retry limit written at the first claim,
//! and the admin calls over many tasks.

use crate::Harness;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    Applied, Cancellation, ClaimOptions, EnqueueOptions, Enqueued, LeaseRef, ListOptions, Outcome,
    OutcomeKind, Progress, PruneOptions, Recovered, RequeueOptions, TopicClaim,
};
use taskmill_core::{
    Counters, Payload, Queue, Store, StoreExt, TaskId, TaskRecord, TaskStatus, Timestamp,
    MAX_ERROR_BYTES, MAX_KEPT_ERRORS,
};
use taskmill_testkit::*;

/// A payload of `value`.
fn json(value: serde_json::Value) -> Payload {
    Payload::new(&value).expect("a JSON value serializes")
}

/// A payload's JSON value (stores may keep the text differently, never the value).
fn value(payload: &Option<Payload>) -> Option<serde_json::Value> {
    payload
        .as_ref()
        .map(|p| p.decode().expect("a stored payload decodes"))
}

/// Claims up to `limit` tasks of `topic` at `now`, writing `retries` into those with no
/// retry limit of their own.
async fn claim_with_retries(
    store: &dyn Store,
    topic: &str,
    retries: u32,
    limit: usize,
    now: Timestamp,
) -> Vec<TaskRecord> {
    let opts = ClaimOptions::new(
        [TopicClaim::new(topic).max_retries(retries)],
        limit,
        OWNER,
        now,
    )
    .lease(LEASE);
    ready(store.claim(&opts).await.expect("claim"))
}

/// Applies one outcome at `now` that does not keep a finished task.
async fn apply_not_kept(
    store: &dyn Store,
    record: &TaskRecord,
    kind: OutcomeKind,
    now: Timestamp,
) -> Applied {
    apply_one(
        store,
        Outcome::new(LeaseRef::of(record), kind).keep(false),
        now,
    )
    .await
}

/// Every record of `queue` (and `topic`), paging `limit` at a time; fails on a page larger
/// than asked, a record of another queue or topic, or ids out of order.
async fn list_paged(
    store: &dyn Store,
    queue: Queue,
    topic: Option<&str>,
    limit: usize,
) -> Vec<TaskId> {
    let mut opts = ListOptions::new(queue).limit(limit);
    opts.topic = topic.map(Arc::from);
    let mut seen = Vec::new();
    // Bounded: each page but the last holds `limit` tasks, and fewer than 10,000 exist.
    for _ in 0..10_000 {
        let page = store.list(&opts).await.expect("list");
        assert!(page.tasks.len() <= limit, "a page over its limit");
        for record in &page.tasks {
            assert_eq!(record.queue, queue, "list of {queue} shows {record:?}");
            if let Some(topic) = topic {
                assert_eq!(&*record.topic, topic, "list of topic {topic}");
            }
        }
        seen.extend(page.tasks.iter().map(|r| r.id));
        match page.next {
            Some(next) => opts.after = Some(next),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "pages of {queue} not in ascending id order: {seen:?}"
    );
    seen
}

checks!(
    mod history;

    /// status() says where a task stands in every state: scheduled, pending, running (with
    /// its owner and start), retrying (with its next run), dead, completed and cancelled;
    /// after a prune or a delete the store no longer has it.
    pub async fn status_reports_every_state(store: Arc<dyn Store>) {
        let id = enqueue(
            &*store,
            vec![
                task("t", 0).run_at(at(60_000)),
                task("t", 1),
                task("t", 2),
                task("t", 3),
                task("t", 4),
                task("t", 5),
            ],
        )
        .await;
        let now = at(5);
        let status = |record: TaskRecord| record.status(now);
        assert_eq!(
            status(get(&*store, id[0]).await),
            TaskStatus::Scheduled { at: at(60_000) }
        );
        assert_eq!(status(get(&*store, id[1]).await), TaskStatus::Pending);
        let claimed = claim_as(&*store, "worker-9", &["t"], 4, now).await;
        assert_eq!(ids(&claimed), id[1..5]);
        assert_eq!(
            status(get(&*store, id[1]).await),
            TaskStatus::Running {
                owner: "worker-9".into(),
                since: now,
                cancel_requested: false
            }
        );
        let kind = OutcomeKind::retry(at(50_000), "again");
        apply_outcome_at(&*store, &claimed[1], kind, at(6)).await;
        assert_eq!(
            status(get(&*store, id[2]).await),
            TaskStatus::Retrying { at: at(50_000) }
        );
        assert_eq!(
            get(&*store, id[2]).await.status(at(50_000)),
            TaskStatus::Pending,
            "a retry that is due is pending"
        );
        apply_outcome(&*store, &claimed[2], OutcomeKind::dead("x")).await;
        assert_eq!(status(get(&*store, id[3]).await), TaskStatus::Dead);
        apply_outcome_at(&*store, &claimed[3], OutcomeKind::complete(), at(7)).await;
        assert_eq!(status(get(&*store, id[4]).await), TaskStatus::Completed);
        cancel_at(&*store, &[id[5]], "ops", at(7)).await;
        assert_eq!(status(get(&*store, id[5]).await), TaskStatus::Cancelled);

        let retention = PruneOptions::new(at(7), Duration::ZERO);
        assert_eq!(prune(&*store, &retention).await, 2);
        assert!(store.get(id[4]).await.unwrap().is_none(), "pruned");
        assert!(store.get(id[5]).await.unwrap().is_none(), "pruned");
        assert_eq!(store.delete(&[id[3]]).await.unwrap(), [true]);
        assert!(store.get(id[3]).await.unwrap().is_none(), "deleted");
    }

    /// A completed task keeps its result, its last progress, its attempt and the times of
    /// its first and latest start and of its finish.
    pub async fn completed_task_keeps_result_progress_and_times(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let first = claim_at(&*store, &["t"], 1, at(5)).await.remove(0);
        apply_outcome_at(&*store, &first, OutcomeKind::retry(at(10), "e"), at(8)).await;
        let second = claim_at(&*store, &["t"], 1, at(20)).await.remove(0);
        let update = Progress {
            lease: LeaseRef::of(&second),
            value: json(serde_json::json!({"done": 3, "of": 4})),
        };
        assert_eq!(store.progress(&[update]).await.unwrap(), [Applied::Done]);
        let result = json(serde_json::json!({"sent": true, "n": [1, 2]}));
        let kind = OutcomeKind::complete_with(Some(result));
        assert_eq!(
            apply_outcome_at(&*store, &second, kind, at(30)).await,
            Applied::Done
        );
        let r = get(&*store, id).await;
        assert_eq!(r.queue, Queue::Completed);
        assert_eq!(
            value(&r.result),
            Some(serde_json::json!({"sent": true, "n": [1, 2]}))
        );
        assert_eq!(
            value(&r.progress),
            Some(serde_json::json!({"done": 3, "of": 4}))
        );
        assert_eq!(r.attempt, 2);
        assert_eq!(
            (r.first_started_at, r.started_at, r.finished_at),
            (Some(at(5)), Some(at(20)), Some(at(30)))
        );
        assert_eq!(
            r.last_error(),
            Some("e"),
            "the failed attempt's error is kept"
        );
        assert!(r.lease.is_none() && r.cancelled_by.is_none());
    }

    /// An outcome's progress is stored with it, whatever its kind.
    pub async fn outcome_progress_is_stored_with_the_outcome(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 3).await;
        let claimed = claim(&*store, &["t"], 3).await;
        let kinds = [
            OutcomeKind::complete(),
            OutcomeKind::retry(at(100), "e"),
            OutcomeKind::dead("e"),
        ];
        for (n, (record, kind)) in claimed.iter().zip(kinds).enumerate() {
            let outcome = Outcome::new(LeaseRef::of(record), kind)
                .progress(Some(json(serde_json::json!({ "step": n }))));
            assert_eq!(apply_one(&*store, outcome, T0).await, Applied::Done);
        }
        for (n, id) in id.iter().enumerate() {
            let r = get(&*store, *id).await;
            assert_eq!(
                value(&r.progress),
                Some(serde_json::json!({ "step": n })),
                "{:?}",
                r.queue
            );
        }
    }

    /// Each failed attempt adds its error (attempt, time, message) to the record, oldest
    /// first; beyond MAX_KEPT_ERRORS the oldest are dropped.
    pub async fn errors_keep_each_attempt_bounded_oldest_first(store: Arc<dyn Store>) {
        let id = enqueue(&*store, vec![task("t", 0).max_retries(100)]).await[0];
        let failures = MAX_KEPT_ERRORS as u64 + 3;
        for n in 1..=failures {
            let start = at(n * 1_000);
            let r = claim_at(&*store, &["t"], 1, start).await.remove(0);
            assert_eq!(r.attempt as u64, n);
            let kind = if n == failures {
                OutcomeKind::dead(format!("failure {n}"))
            } else {
                OutcomeKind::retry(start, format!("failure {n}"))
            };
            assert_eq!(
                apply_outcome_at(&*store, &r, kind, start + Duration::from_millis(7)).await,
                Applied::Done
            );
        }
        let r = get(&*store, id).await;
        assert_eq!(r.queue, Queue::Dead);
        assert_eq!(r.errors.len(), MAX_KEPT_ERRORS, "{:?}", r.errors);
        let oldest_kept = failures - MAX_KEPT_ERRORS as u64 + 1;
        for (error, n) in r.errors.iter().zip(oldest_kept..) {
            assert_eq!(error.attempt as u64, n);
            assert_eq!(error.at, at(n * 1_000 + 7));
            assert_eq!(&*error.message, format!("failure {n}"));
        }
        assert_eq!(r.last_error(), Some(&*format!("failure {failures}")));
    }

    /// An error message longer than MAX_ERROR_BYTES is cut by the outcome's constructor, at
    /// a character boundary, and stored as cut.
    pub async fn long_error_messages_are_stored_cut(store: Arc<dyn Store>) {
        let id = enqueue(&*store, vec![task("t", 0).max_retries(5)]).await[0];
        let long = "é".repeat(MAX_ERROR_BYTES);
        let retry = OutcomeKind::retry(T0, long.clone());
        let OutcomeKind::Retry { error: cut, .. } = &retry else {
            panic!("a retry outcome")
        };
        let cut = cut.clone();
        assert!(
            cut.len() <= MAX_ERROR_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert!(long.starts_with(cut.trim_end_matches('…')));
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &r, retry).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &r, OutcomeKind::dead(long)).await;
        let stored = get(&*store, id).await;
        let messages: Vec<&str> = stored.errors.iter().map(|e| &*e.message).collect();
        assert_eq!(messages, [&*cut, &*cut]);
    }

    /// An outcome that does not keep its task removes it once it is finished, counted as
    /// ever; a retry or a dead outcome leaves the task where it goes, kept or not.
    pub async fn outcome_not_kept_removes_a_finished_task(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 3).await;
        let claimed = claim(&*store, &["t"], 3).await;
        let done = apply_not_kept(&*store, &claimed[0], OutcomeKind::complete(), T0).await;
        assert_eq!(done, Applied::Done);
        assert!(store.get(id[0]).await.unwrap().is_none(), "kept");
        let retry = OutcomeKind::retry(at(100), "e");
        apply_not_kept(&*store, &claimed[1], retry, T0).await;
        apply_not_kept(&*store, &claimed[2], OutcomeKind::dead("e"), T0).await;
        assert_eq!(get(&*store, id[1]).await.queue, Queue::Input);
        assert_eq!(get(&*store, id[2]).await.queue, Queue::Dead);
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        assert_eq!(stats.sizes, sizes(1, 0, 1));
        let c = stats.counters;
        assert_eq!((c.completed, c.retried, c.failed), (1, 1, 1));
    }

    /// prune removes the finished tasks (COMPLETED and CANCELLED) of each topic that
    /// finished at or before its cutoff (now minus the topic's retention, else the default),
    /// and nothing else; it returns how many.
    pub async fn prune_follows_each_topics_retention(store: Arc<dyn Store>) {
        // a: the default retention (1 s); b: its own (5 s). Pruned at 10 s.
        let a = enqueue_n(&*store, "a", 5).await;
        let b = enqueue_n(&*store, "b", 3).await;
        let ca = claim(&*store, &["a"], 4).await;
        let cb = claim(&*store, &["b"], 2).await;
        let complete = OutcomeKind::complete;
        apply_outcome_at(&*store, &ca[0], complete(), at(9_000)).await; // at the cutoff: pruned
        apply_outcome_at(&*store, &ca[1], complete(), at(9_001)).await; // after it: kept
        apply_outcome_at(&*store, &ca[2], complete(), at(2_000)).await; // long before: pruned
        apply_outcome_at(&*store, &ca[3], OutcomeKind::dead("x"), at(1)).await; // not history
        apply_outcome_at(&*store, &cb[0], complete(), at(5_000)).await; // at b's cutoff: pruned
        cancel_at(&*store, &[a[4]], "ops", at(8_000)).await; // cancelled: pruned
        cancel_at(&*store, &[b[2]], "ops", at(9_000)).await; // kept by b's retention
        let opts = PruneOptions::new(at(10_000), Duration::from_secs(1))
            .topic("b", Duration::from_secs(5));
        assert_eq!(opts.cutoff_of("a"), at(9_000));
        assert_eq!(prune(&*store, &opts).await, 4);
        for gone in [a[0], a[2], a[4], b[0]] {
            assert!(store.get(gone).await.unwrap().is_none(), "{gone} kept");
        }
        assert_eq!(get(&*store, a[1]).await.queue, Queue::Completed);
        assert_eq!(
            get(&*store, a[3]).await.queue,
            Queue::Dead,
            "dead is not history"
        );
        assert_eq!(get(&*store, b[1]).await.queue, Queue::Work);
        assert_eq!(get(&*store, b[2]).await.queue, Queue::Cancelled);
        assert_eq!(prune(&*store, &opts).await, 0, "a second prune found more");
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let (sa, sb) = (stats.topic("a").sizes, stats.topic("b").sizes);
        assert_eq!((sa.completed, sa.cancelled, sa.dead), (1, 0, 1));
        assert_eq!((sb.completed, sb.cancelled, sb.work), (0, 1, 1));
        assert_eq!(
            stats.topic("a").counters.completed,
            3,
            "pruning counts nothing"
        );
    }

    /// prune removes at most its limit per call: fewer than the limit means nothing is left
    /// to prune, and repeated calls remove everything due.
    pub async fn prune_honours_its_limit(store: Arc<dyn Store>) {
        for topic in ["a", "b", "c"] {
            enqueue_n(&*store, topic, 9).await;
        }
        let claimed = claim(&*store, &["a", "b", "c"], 27).await;
        for (n, record) in claimed.iter().enumerate() {
            let kind = OutcomeKind::complete();
            apply_outcome_at(&*store, record, kind, at(n as u64)).await;
        }
        // Not due: finished after the cutoff. Not counted towards the limit.
        enqueue_n(&*store, "a", 1).await;
        let late = claim(&*store, &["a"], 1).await.remove(0);
        apply_outcome_at(&*store, &late, OutcomeKind::complete(), at(50_000)).await;
        let opts = PruneOptions::new(at(10_000), Duration::from_secs(1)).limit(10);
        let mut removed = Vec::new();
        for _ in 0..10 {
            let n = prune(&*store, &opts).await;
            removed.push(n);
            if n < 10 {
                break;
            }
        }
        assert_eq!(removed, [10, 10, 7]);
        assert_eq!(prune(&*store, &opts).await, 0);
        let sizes = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes;
        assert_eq!(sizes.completed, 1, "{sizes:?}");
        assert_eq!(get(&*store, late.id).await.queue, Queue::Completed);
    }

    /// A completed or cancelled task that did not ask to hold its unique key while kept
    /// frees it at once; the new holder keeps it when the old record is pruned or deleted.
    pub async fn finished_task_frees_its_unique_key(store: Arc<dyn Store>) {
        let opts = EnqueueOptions::new(T0);
        let keyed = |n| task("t", n).unique_key("k");
        let first = store.enqueue_one(keyed(1), &opts).await.unwrap().id();
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome_at(&*store, &r, OutcomeKind::complete(), at(1)).await;
        let second = store.enqueue_one(keyed(2), &opts).await.unwrap();
        assert!(second.is_new(), "a completed task held its key");
        let prune_all = PruneOptions::new(at(1), Duration::ZERO);
        assert_eq!(prune(&*store, &prune_all).await, 1);
        assert!(store.get(first).await.unwrap().is_none());
        assert_eq!(
            store.enqueue_one(keyed(3), &opts).await.unwrap(),
            Enqueued::Duplicate(second.id()),
            "pruning the old record freed the new holder's key"
        );
        assert_eq!(
            cancel_at(&*store, &[second.id()], "ops", at(2)).await,
            [Cancellation::Cancelled]
        );
        let third = store.enqueue_one(keyed(4), &opts).await.unwrap();
        assert!(third.is_new(), "a cancelled task held its key");
        assert_eq!(store.delete(&[second.id()]).await.unwrap(), [true]);
        assert_eq!(
            store.enqueue_one(keyed(5), &opts).await.unwrap(),
            Enqueued::Duplicate(third.id()),
            "deleting the old record freed the new holder's key"
        );
    }

    /// A task that asked for unique_while_kept holds its key while its finished record is
    /// kept, completed or cancelled, and frees it when pruned or deleted.
    pub async fn unique_while_kept_holds_the_key_until_pruned(store: Arc<dyn Store>) {
        let opts = EnqueueOptions::new(T0);
        let keyed = |key: &str| task("t", 0).unique_key(key).unique_while_kept();
        let done = store.enqueue_one(keyed("done"), &opts).await.unwrap().id();
        let gone = store.enqueue_one(keyed("gone"), &opts).await.unwrap().id();
        let r = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(r.id, done);
        apply_outcome_at(&*store, &r, OutcomeKind::complete(), at(1)).await;
        cancel_at(&*store, &[gone], "ops", at(1)).await;
        assert!(get(&*store, done).await.unique_while_kept);
        for (key, holder) in [("done", done), ("gone", gone)] {
            assert_eq!(
                store.enqueue_one(keyed(key), &opts).await.unwrap(),
                Enqueued::Duplicate(holder),
                "the kept task of key {key} let it go"
            );
        }
        // Not yet due for pruning: still held.
        let early = PruneOptions::new(at(1), Duration::from_secs(1));
        assert_eq!(prune(&*store, &early).await, 0);
        assert!(!store
            .enqueue_one(keyed("done"), &opts)
            .await
            .unwrap()
            .is_new());
        let due = PruneOptions::new(at(1_001), Duration::from_secs(1)).limit(1);
        assert_eq!(prune(&*store, &due).await, 1);
        assert_eq!(prune(&*store, &due).await, 1);
        for key in ["done", "gone"] {
            assert!(
                store.enqueue_one(keyed(key), &opts).await.unwrap().is_new(),
                "key {key} still held after the prune"
            );
        }
        // Deleting a kept holder frees its key too.
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &r, OutcomeKind::complete()).await;
        let key = r.unique_key.as_deref().unwrap().to_owned();
        assert_eq!(
            store.enqueue_one(keyed(&key), &opts).await.unwrap(),
            Enqueued::Duplicate(r.id)
        );
        assert_eq!(store.delete(&[r.id]).await.unwrap(), [true]);
        assert!(store
            .enqueue_one(keyed(&key), &opts)
            .await
            .unwrap()
            .is_new());
    }

    /// A task with no retry limit gets its topic's (from the claim) at its first claim, and
    /// keeps it through later claims that name another; a task's own limit wins.
    pub async fn retry_limit_is_written_at_the_first_claim(store: Arc<dyn Store>) {
        let id = enqueue(&*store, vec![task("t", 0), task("t", 1).max_retries(5)]).await;
        let claimed = claim_with_retries(&*store, "t", 2, 2, T0).await;
        assert_eq!(ids(&claimed), id);
        assert_eq!(
            (claimed[0].max_retries, claimed[1].max_retries),
            (Some(2), Some(5))
        );
        for r in &claimed {
            apply_outcome(&*store, r, OutcomeKind::retry(T0, "e")).await;
        }
        let again = claim_with_retries(&*store, "t", 9, 2, T0).await;
        assert_eq!(
            (again[0].max_retries, again[1].max_retries),
            (Some(2), Some(5)),
            "a later claim rewrote the retry limit"
        );
        assert_eq!(get(&*store, id[0]).await.max_retries, Some(2));
        assert_eq!(get(&*store, id[0]).await.retry_limit(), 2);
    }

    /// The reaper decides between INPUT and DEAD by the retry limit written at the claim.
    pub async fn recover_uses_the_retry_limit_written_at_the_claim(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "none", 1).await[0];
        let one = enqueue_n(&*store, "one", 1).await[0];
        claim_with_retries(&*store, "none", 0, 1, T0).await;
        claim_with_retries(&*store, "one", 1, 1, T0).await;
        let expired = T0 + LEASE + Duration::from_millis(1);
        let mut recovered = recover(&*store, expired, 10).await;
        recovered.sort_by_key(|r| r.id);
        let queues: Vec<(TaskId, Queue)> = recovered.iter().map(|r| (r.id, r.queue)).collect();
        assert_eq!(queues, [(id, Queue::Dead), (one, Queue::Input)]);
        // Its second claim names no retries, but the task keeps the one it got.
        let again = claim_with_retries(&*store, "one", 0, 1, expired).await;
        assert_eq!((again[0].attempt, again[0].max_retries), (2, Some(1)));
        let later = expired + LEASE + Duration::from_millis(1);
        let recovered = recover(&*store, later, 10).await;
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].queue, Queue::Dead);
    }

    /// Requeue keeps a dead task's errors, the history of its attempts, and clears its
    /// finish time; its next failure adds to them.
    pub async fn requeue_keeps_errors_and_clears_finished_at(store: Arc<dyn Store>) {
        let id = enqueue(&*store, vec![task("t", 0).max_retries(3)]).await[0];
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &r, OutcomeKind::retry(T0, "first")).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome_at(&*store, &r, OutcomeKind::dead("second"), at(5)).await;
        let moved = store
            .requeue(&[id], &RequeueOptions::new(at(10)))
            .await
            .unwrap();
        assert_eq!(moved, [true]);
        let stored = get(&*store, id).await;
        assert_eq!((stored.queue, stored.attempt), (Queue::Input, 0));
        assert_eq!(stored.finished_at, None);
        let messages: Vec<&str> = stored.errors.iter().map(|e| &*e.message).collect();
        assert_eq!(messages, ["first", "second"]);
        assert_eq!(stored.status(at(10)), TaskStatus::Pending);
        let r = claim_at(&*store, &["t"], 1, at(10)).await.remove(0);
        apply_outcome_at(&*store, &r, OutcomeKind::retry(at(99), "third"), at(11)).await;
        let stored = get(&*store, id).await;
        let last = stored.errors.last().unwrap();
        assert_eq!(
            (stored.errors.len(), last.attempt, last.at, &*last.message),
            (3, 1, at(11), "third")
        );
    }

    /// list pages through COMPLETED and CANCELLED in ascending id order (not the order the
    /// tasks finished in), each task once, for one topic or all.
    pub async fn list_pages_through_completed_and_cancelled(store: Arc<dyn Store>) {
        let a = enqueue_n(&*store, "a", 8).await;
        let b = enqueue_n(&*store, "b", 4).await;
        let claimed = claim(&*store, &["a", "b"], 9).await;
        assert_eq!(ids(&claimed[6..]), [a[6], a[7], b[0]]);
        // a0..a5 complete in reverse id order.
        for (n, record) in claimed[..6].iter().rev().enumerate() {
            let kind = OutcomeKind::complete();
            apply_outcome_at(&*store, record, kind, at(100 * n as u64)).await;
        }
        // a6 and a7 are cancelled while they run, b0 and b3 while they wait; b1 completes.
        let running = [a[6], a[7], b[0]];
        let requested = cancel_at(&*store, &running, "ops", at(900)).await;
        assert_eq!(requested, [Cancellation::Requested; 3]);
        for record in &claimed[6..] {
            let done = apply_outcome_at(&*store, record, OutcomeKind::complete(), at(950)).await;
            assert_eq!(done, Applied::Cancelled);
        }
        cancel_at(&*store, &[b[3]], "ops", at(10)).await;
        let r = claim(&*store, &["b"], 1).await.remove(0);
        assert_eq!(r.id, b[1]);
        apply_outcome_at(&*store, &r, OutcomeKind::complete(), at(1)).await;
        let store = &*store;
        assert_eq!(
            list_paged(store, Queue::Completed, Some("a"), 4).await,
            a[..6]
        );
        assert_eq!(
            list_paged(store, Queue::Completed, Some("b"), 4).await,
            [b[1]]
        );
        let mut all: Vec<TaskId> = a[..6].to_vec();
        all.push(b[1]);
        assert_eq!(list_paged(store, Queue::Completed, None, 2).await, all);
        assert_eq!(
            list_paged(store, Queue::Cancelled, Some("a"), 1).await,
            [a[6], a[7]]
        );
        assert_eq!(
            list_paged(store, Queue::Cancelled, None, 3).await,
            [a[6], a[7], b[0], b[3]]
        );
        assert_eq!(list_paged(store, Queue::Input, Some("b"), 3).await, [b[2]]);
        let listed = store.list_all(Queue::Cancelled, Some("b")).await.unwrap();
        assert!(
            listed
                .iter()
                .all(|r| r.cancelled_by.as_deref() == Some("ops")),
            "{listed:?}"
        );
    }

    /// Once nothing waits or runs, the counters satisfy the identity their docs state:
    /// started equals the sum of the transitions out of WORK, less those counted twice
    /// (recovered to DEAD or CANCELLED) and the cancels of tasks that never started.
    pub async fn counters_add_up_once_the_store_drains(store: Arc<dyn Store>) {
        let mut tasks = tasks("t", 0..12);
        tasks[6] = task("t", 6).max_retries(0);
        let id = enqueue(&*store, tasks).await;
        let mut never_started = 0;
        let cancelled = cancel_at(&*store, &id[10..], "ops", T0).await;
        never_started += cancelled
            .iter()
            .filter(|c| **c == Cancellation::Cancelled)
            .count() as u64;
        let c = claim(&*store, &["t"], 10).await;
        assert_eq!(ids(&c), id[..10]);
        apply_outcome(&*store, &c[0], OutcomeKind::complete()).await;
        apply_outcome(&*store, &c[1], OutcomeKind::retry(T0, "e")).await;
        apply_outcome(&*store, &c[2], OutcomeKind::dead("e")).await;
        apply_outcome(&*store, &c[3], OutcomeKind::release()).await;
        cancel_at(&*store, &[c[4].id, c[5].id], "ops", T0).await;
        apply_outcome(&*store, &c[4], OutcomeKind::complete()).await;
        apply_not_kept(&*store, &c[8], OutcomeKind::complete(), T0).await;
        apply_outcome(&*store, &c[9], OutcomeKind::dead("e")).await;
        // c5 (cancel requested), c6 (no retries) and c7 expire.
        let expired = T0 + LEASE + Duration::from_millis(1);
        let recovered: Vec<Recovered> = recover(&*store, expired, 10).await;
        let mut queues: Vec<(TaskId, Queue)> = recovered.iter().map(|r| (r.id, r.queue)).collect();
        queues.sort_by_key(|(id, _)| *id);
        assert_eq!(
            queues,
            [
                (c[5].id, Queue::Cancelled),
                (c[6].id, Queue::Dead),
                (c[7].id, Queue::Input)
            ]
        );
        let twice = |queue| recovered.iter().filter(|r| r.queue == queue).count() as u64;
        let (recovered_dead, recovered_cancelled) = (twice(Queue::Dead), twice(Queue::Cancelled));
        store
            .requeue(&[c[9].id], &RequeueOptions::new(expired))
            .await
            .unwrap();
        // c1, c3, c7 and c9 run again and complete.
        let again = claim_at(&*store, &["t"], 10, expired).await;
        assert_eq!(ids(&again), [c[1].id, c[3].id, c[7].id, c[9].id]);
        for r in &again {
            apply_outcome_at(&*store, r, OutcomeKind::complete(), expired).await;
        }
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        assert_eq!((stats.sizes.input, stats.sizes.work), (0, 0), "not drained");
        let n = stats.counters;
        let mut expected = Counters::default();
        expected.enqueued = 12;
        expected.started = 14;
        expected.completed = 6;
        expected.retried = 1;
        expected.failed = 3;
        expected.recovered = 3;
        expected.released = 1;
        expected.requeued = 1;
        expected.cancelled = 4;
        assert_eq!(n, expected);
        assert_eq!(
            n.started,
            n.completed + n.retried + n.failed + n.recovered + n.released + n.cancelled
                - recovered_dead
                - recovered_cancelled
                - never_started
        );
        let mut kept = sizes(0, 0, 2);
        kept.completed = 5;
        kept.cancelled = 4;
        assert_eq!(stats.sizes, kept, "c8 was not kept");
    }

    /// Every dead task of a topic can be requeued, then deleted, by paging through the
    /// topic's DEAD queue 100 at a time; other topics' dead tasks are left alone.
    pub async fn dead_tasks_of_a_topic_are_requeued_and_deleted_by_pages(store: Arc<dyn Store>) {
        const MANY: u64 = 260;
        let a = enqueue_n(&*store, "a", MANY).await;
        enqueue_n(&*store, "b", 30).await;
        let kill_all = |topic: &'static str, n: usize| {
            let store = store.clone();
            async move {
                let claimed = claim(&*store, &[topic], n).await;
                assert_eq!(claimed.len(), n);
                let outcomes: Vec<Outcome> = claimed
                    .iter()
                    .map(|r| Outcome::new(LeaseRef::of(r), OutcomeKind::dead("x")))
                    .collect();
                let applied = store
                    .apply(&outcomes, &taskmill_core::store::ApplyOptions::new(T0))
                    .await
                    .unwrap();
                assert!(applied.iter().all(|a| *a == Applied::Done));
            }
        };
        kill_all("a", MANY as usize).await;
        kill_all("b", 30).await;
        // Each page is acted on before the next is read, as a bulk admin call does.
        let each_page = |act: &'static str| {
            let store = store.clone();
            async move {
                let mut opts = ListOptions::new(Queue::Dead).topic("a").limit(100);
                let (mut pages, mut seen) = (Vec::new(), Vec::new());
                for _ in 0..10 {
                    let page = store.list(&opts).await.unwrap();
                    let ids: Vec<TaskId> = page.tasks.iter().map(|r| r.id).collect();
                    let done = match act {
                        "requeue" => store.requeue(&ids, &RequeueOptions::new(T0)).await.unwrap(),
                        _ => store.delete(&ids).await.unwrap(),
                    };
                    assert!(done.iter().all(|d| *d), "{act} of a listed dead task");
                    pages.push(ids.len());
                    seen.extend(ids);
                    match page.next {
                        Some(next) => opts.after = Some(next),
                        None => break,
                    }
                }
                (pages, seen)
            }
        };
        let (pages, seen) = each_page("requeue").await;
        assert_eq!(pages.iter().sum::<usize>(), MANY as usize, "{pages:?}");
        assert!(pages[..3] == [100, 100, 60], "{pages:?}");
        assert_eq!(seen, a);
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.topic("a").sizes, sizes(MANY, 0, 0));
        assert_eq!(stats.topic("a").counters.requeued, MANY);
        assert_eq!(stats.topic("b").sizes, sizes(0, 0, 30));

        kill_all("a", MANY as usize).await;
        let (_, seen) = each_page("delete").await;
        assert_eq!(seen, a);
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.topic("a").sizes, sizes(0, 0, 0));
        assert_eq!(stats.topic("b").sizes, sizes(0, 0, 30));
        let left: BTreeSet<TaskId> = list_paged(&*store, Queue::Dead, None, 100)
            .await
            .into_iter()
            .collect();
        assert_eq!(left.len(), 30);
    }

    /// A durable store keeps history across a reopen: completed and cancelled records with
    /// their result, progress, errors and times, a running task's cancel request, the
    /// unique keys kept records hold, and what pruning needs to find them.
    #[needs(durable)]
    pub async fn history_survives_a_reopen(harness: &mut dyn Harness) {
        let store = harness.store();
        let id = enqueue(
            &*store,
            vec![
                task("t", 0).unique_key("k").unique_while_kept(),
                task("t", 1).max_retries(0),
                task("t", 2),
                task("t", 3),
            ],
        )
        .await;
        let claimed = claim(&*store, &["t"], 3).await;
        let result = Some(json(serde_json::json!({"ok": 1})));
        let done = Outcome::new(
            LeaseRef::of(&claimed[0]),
            OutcomeKind::complete_with(result),
        )
        .progress(Some(json(serde_json::json!(100))));
        apply_one(&*store, done, at(1)).await;
        apply_outcome_at(&*store, &claimed[1], OutcomeKind::dead("bad"), at(2)).await;
        let cancels = cancel_at(&*store, &[id[2], id[3]], "ops", at(3)).await;
        assert_eq!(cancels, [Cancellation::Requested, Cancellation::Cancelled]);
        let mut before = Vec::new();
        for each in &id {
            before.push(get(&*store, *each).await);
        }
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        drop(store);

        let store = harness.reopen().await;
        for record in &before {
            assert_eq!(&get(&*store, record.id).await, record, "after the reopen");
        }
        assert_eq!(
            store.stats(&taskmill_testkit::all_due()).await.unwrap(),
            stats,
            "stats after the reopen"
        );
        assert_eq!(
            store
                .enqueue_one(task("t", 9).unique_key("k"), &EnqueueOptions::new(T0))
                .await
                .unwrap(),
            Enqueued::Duplicate(id[0]),
            "a kept record's key is still held"
        );
        // The cancel request survived: the run ends CANCELLED.
        assert_eq!(
            apply_outcome_at(&*store, &claimed[2], OutcomeKind::complete(), at(4)).await,
            Applied::Cancelled
        );
        let opts = PruneOptions::new(at(4), Duration::ZERO);
        assert_eq!(prune(&*store, &opts).await, 3, "pruning after the reopen");
        let sizes = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes;
        assert_eq!(sizes, taskmill_testkit::sizes(0, 0, 1));
    }
);
