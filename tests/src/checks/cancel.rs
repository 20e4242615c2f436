//! Cancelling tasks at the store: at once while they wait, by request while they run (and
//! what renewals, progress, outcomes and the reaper then do), refusals, the cancellations
//! stream, and cancels racing completions.

use crate::Harness;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    Applied, CancelStream, Cancellation, LeaseRef, Outcome, OutcomeKind, Progress, RenewOptions,
};
use taskmill_core::{Event, Payload, Queue, Store, TaskId, TaskRecord, TaskStatus};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(10);

/// The next id on a cancellations stream.
async fn next_cancel(stream: &mut CancelStream) -> TaskId {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("no cancel request within 10 s")
        .expect("the cancellations stream ended")
}

/// Reads `stream` until `wanted` arrives; every id before it must be in `allowed` (a
/// request may be delivered more than once).
async fn expect_cancel(stream: &mut CancelStream, wanted: TaskId, allowed: &[TaskId]) {
    // Bounded: each read waits at most PATIENCE, and a stream repeating itself forever
    // fails the test after 100 reads.
    for _ in 0..100 {
        let id = next_cancel(stream).await;
        if id == wanted {
            return;
        }
        assert!(allowed.contains(&id), "cancellations sent {id}");
    }
    panic!("{wanted} never came on the cancellations stream");
}

fn json(value: serde_json::Value) -> Payload {
    Payload::new(&value).expect("a JSON value serializes")
}

/// Claims `n` tasks of a fresh topic `topic` and cancels them all at `T0` by "ops".
async fn running_and_cancelled(store: &dyn Store, topic: &str, n: u64) -> Vec<TaskRecord> {
    enqueue_n(store, topic, n).await;
    let claimed = claim(store, &[topic], n as usize).await;
    let requested = cancel_at(store, &ids(&claimed), "ops", T0).await;
    assert_eq!(requested, vec![Cancellation::Requested; n as usize]);
    claimed
}

checks!(
    mod cancel;

    /// A waiting task (pending, scheduled or retrying) is cancelled at once: in CANCELLED
    /// by whom and when, counted, never claimed; a retrying one keeps its attempt and errors.
    pub async fn cancel_of_a_waiting_task_is_immediate(store: Arc<dyn Store>) {
        let id = enqueue(
            &*store,
            vec![task("t", 0), task("t", 1).run_at(at(60_000)), task("t", 2)],
        )
        .await;
        // id[2] first runs and fails: it is retrying.
        let r = claim(&*store, &["t"], 2).await;
        assert_eq!(ids(&r), [id[0], id[2]]);
        apply_outcome(&*store, &r[1], OutcomeKind::retry(at(50_000), "e")).await;
        apply_outcome(&*store, &r[0], OutcomeKind::release()).await;
        assert_eq!(get(&*store, id[0]).await.status(T0), TaskStatus::Pending);
        let before = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        let cancelled = cancel_at(&*store, &id, "ops", at(7)).await;
        assert_eq!(cancelled, [Cancellation::Cancelled; 3]);
        for each in &id {
            let record = get(&*store, *each).await;
            assert_eq!(record.queue, Queue::Cancelled);
            assert_eq!(record.status(at(7)), TaskStatus::Cancelled);
            assert_eq!(record.cancelled_by.as_deref(), Some("ops"));
            assert_eq!(record.finished_at, Some(at(7)));
            assert!(record.lease.is_none());
        }
        let retried = get(&*store, id[2]).await;
        assert_eq!((retried.attempt, retried.last_error()), (1, Some("e")));
        assert!(
            claim_at(&*store, &["t"], 10, at(100_000)).await.is_empty(),
            "a cancelled task was claimed"
        );
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        assert_eq!(stats.counters.cancelled, before.cancelled + 3);
        assert_eq!(
            stats.counters.started, before.started,
            "a cancel started a task"
        );
        let mut kept = sizes(0, 0, 0);
        kept.cancelled = 3;
        assert_eq!(stats.sizes, kept);
    }

    /// A waiting task cancelled frees its unique key, unless it holds it while kept.
    pub async fn cancel_of_a_waiting_task_frees_its_unique_key(store: Arc<dyn Store>) {
        let id = enqueue(
            &*store,
            vec![
                task("t", 0).unique_key("free"),
                task("t", 1).unique_key("held").unique_while_kept(),
            ],
        )
        .await;
        cancel_at(&*store, &id, "ops", T0).await;
        let again = enqueue_results(
            &*store,
            vec![
                task("t", 2).unique_key("free"),
                task("t", 3).unique_key("held"),
            ],
        )
        .await;
        assert!(again[0].is_new(), "the cancelled task held its key");
        assert_eq!(again[1], taskmill_core::store::Enqueued::Duplicate(id[1]));
    }

    /// Cancelling waiting tasks publishes a TASK_CANCELLED for each, by whom, not running;
    /// cancelling a running task publishes nothing at the store (its manager reports the end).
    pub async fn cancel_of_a_waiting_task_publishes_task_cancelled(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 2).await;
        let running = claim(&*store, &["t"], 1).await.remove(0);
        let mut events = store.subscribe().await.unwrap();
        let results = cancel_at(&*store, &[running.id, id[1]], "alice", T0).await;
        assert_eq!(results, [Cancellation::Requested, Cancellation::Cancelled]);
        let marker = Event::TaskReleased {
            id: TaskId::new(0),
            topic: "marker".into(),
        };
        store.publish(std::slice::from_ref(&marker)).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let event = tokio::time::timeout(PATIENCE, events.next())
                .await
                .expect("no event within 10 s")
                .expect("the event stream ended");
            seen.push(event);
        }
        assert_eq!(
            seen,
            [
                Event::TaskCancelled {
                    id: id[1],
                    topic: "t".into(),
                    by: Some("alice".into()),
                    was_running: false
                },
                marker
            ]
        );
    }

    /// A running task's cancel is a request: the task stays in WORK under its lease with
    /// who asked (a second request keeps the first asker), its status says so, and nothing
    /// is counted yet.
    pub async fn cancel_of_a_running_task_is_requested(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let r = claim_as(&*store, "worker-3", &["t"], 1, at(2))
            .await
            .remove(0);
        assert_eq!(
            cancel_at(&*store, &[id], "ops", at(5)).await,
            [Cancellation::Requested]
        );
        assert_eq!(
            cancel_at(&*store, &[id], "someone-else", at(6)).await,
            [Cancellation::Requested]
        );
        let stored = get(&*store, id).await;
        assert_eq!(stored.queue, Queue::Work);
        assert_eq!(stored.lease, r.lease, "the request touched the lease");
        assert_eq!(stored.cancelled_by.as_deref(), Some("ops"));
        assert_eq!(stored.finished_at, None);
        assert_eq!(
            stored.status(at(6)),
            TaskStatus::Running {
                owner: "worker-3".into(),
                since: at(2),
                cancel_requested: true
            }
        );
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        assert_eq!((stats.counters.cancelled, stats.sizes.work), (0, 1));
    }

    /// Renewing the lease of a run whose cancel was requested answers Cancelled and leaves
    /// the deadline as it was; other leases in the batch renew.
    pub async fn renew_of_a_cancelled_run_is_refused(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 2).await;
        let claimed = claim(&*store, &["t"], 2).await;
        cancel_at(&*store, &[claimed[0].id], "ops", T0).await;
        let leases: Vec<LeaseRef> = claimed.iter().map(LeaseRef::of).collect();
        let renewed = store
            .renew(&leases, &RenewOptions::new(at(90_000)))
            .await
            .unwrap();
        assert_eq!(renewed, [Applied::Cancelled, Applied::Done]);
        let deadline = |r: TaskRecord| r.lease.expect("in WORK").deadline;
        assert_eq!(deadline(get(&*store, claimed[0].id).await), T0 + LEASE);
        assert_eq!(deadline(get(&*store, claimed[1].id).await), at(90_000));
    }

    /// Whatever outcome a run with a cancel request ends with, the task ends CANCELLED
    /// (attempt kept, finished now, a completion's result stored), the outcome answers
    /// Cancelled, and only `cancelled` counts; an outcome that does not keep it removes it.
    pub async fn any_outcome_of_a_cancelled_run_ends_it_cancelled(store: Arc<dyn Store>) {
        let claimed = running_and_cancelled(&*store, "t", 5).await;
        let result = Some(json(serde_json::json!("partial")));
        let kinds = [
            OutcomeKind::complete_with(result),
            OutcomeKind::retry(at(100), "e"),
            OutcomeKind::dead("e"),
            OutcomeKind::release(),
        ];
        for (record, kind) in claimed.iter().zip(kinds) {
            let applied = apply_outcome_at(&*store, record, kind.clone(), at(9)).await;
            assert_eq!(applied, Applied::Cancelled, "{kind:?}");
            let stored = get(&*store, record.id).await;
            assert_eq!(
                (stored.queue, stored.attempt, stored.finished_at),
                (Queue::Cancelled, 1, Some(at(9))),
                "{kind:?}"
            );
            assert_eq!(stored.cancelled_by.as_deref(), Some("ops"));
            assert!(stored.lease.is_none());
            assert_eq!(
                apply_outcome_at(&*store, record, OutcomeKind::complete(), at(9)).await,
                Applied::Stale,
                "a second outcome applied"
            );
        }
        let partial = get(&*store, claimed[0].id).await.result;
        assert_eq!(
            partial.map(|p| p.decode::<String>().unwrap()).as_deref(),
            Some("partial")
        );
        let not_kept = Outcome::new(LeaseRef::of(&claimed[4]), OutcomeKind::complete()).keep(false);
        assert_eq!(
            apply_one(&*store, not_kept, at(9)).await,
            Applied::Cancelled
        );
        assert!(store.get(claimed[4].id).await.unwrap().is_none(), "kept");
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        let c = stats.counters;
        assert_eq!(
            (c.cancelled, c.completed, c.retried, c.failed, c.released),
            (5, 0, 0, 0, 0)
        );
        let mut kept = sizes(0, 0, 0);
        kept.cancelled = 4;
        assert_eq!(stats.sizes, kept);
    }

    /// progress() stores a run's latest value: Done while it owns the task, Cancelled
    /// (stored too) once a cancel was requested, Stale (nothing stored) once it does not.
    pub async fn progress_is_stored_while_the_run_owns_the_task(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 2).await;
        let claimed = claim(&*store, &["t"], 2).await;
        let update = |r: &TaskRecord, n: u64| Progress {
            lease: LeaseRef::of(r),
            value: json(serde_json::json!({ "n": n })),
        };
        let stored = |id| {
            let store = store.clone();
            async move {
                let p = get(&*store, id).await.progress.expect("progress stored");
                p.decode::<serde_json::Value>().unwrap()["n"].as_u64()
            }
        };
        let batch = [update(&claimed[0], 1), update(&claimed[1], 1)];
        assert_eq!(
            store.progress(&batch).await.unwrap(),
            [Applied::Done, Applied::Done]
        );
        assert_eq!(stored(claimed[0].id).await, Some(1));
        cancel_at(&*store, &[claimed[1].id], "ops", T0).await;
        let batch = [update(&claimed[0], 2), update(&claimed[1], 2)];
        assert_eq!(
            store.progress(&batch).await.unwrap(),
            [Applied::Done, Applied::Cancelled]
        );
        assert_eq!(stored(claimed[1].id).await, Some(2));
        apply_outcome(&*store, &claimed[0], OutcomeKind::retry(at(1), "e")).await;
        assert_eq!(
            store.progress(&[update(&claimed[0], 3)]).await.unwrap(),
            [Applied::Stale]
        );
        assert_eq!(
            stored(claimed[0].id).await,
            Some(2),
            "a stale progress was stored"
        );
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .counters
                .cancelled,
            0,
            "progress counted"
        );
    }

    /// The reaper ends a run with a cancel request whose lease expired CANCELLED, retries
    /// left or not, counting `recovered` and `cancelled`; the old lease's outcome is stale.
    pub async fn reaper_ends_an_expired_cancelled_run_cancelled(store: Arc<dyn Store>) {
        let r = running_and_cancelled(&*store, "t", 1).await.remove(0);
        let expired = T0 + LEASE + Duration::from_millis(1);
        let recovered = recover(&*store, expired, 10).await;
        assert_eq!(recovered.len(), 1);
        assert_eq!(
            (recovered[0].id, recovered[0].queue),
            (r.id, Queue::Cancelled)
        );
        let stored = get(&*store, r.id).await;
        assert_eq!(
            (stored.queue, stored.finished_at, stored.attempt),
            (Queue::Cancelled, Some(expired), 1)
        );
        assert!(
            stored.errors.is_empty(),
            "a cancelled run got a lease error"
        );
        let c = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .counters;
        assert_eq!((c.recovered, c.cancelled, c.failed), (1, 1, 0));
        assert_eq!(
            apply_outcome_at(&*store, &r, OutcomeKind::complete(), expired).await,
            Applied::Stale
        );
        assert!(claim_at(&*store, &["t"], 1, expired).await.is_empty());
    }

    /// A dead, completed or cancelled task is refused and left as it was; an id the store
    /// does not hold is not found; each id gets its answer, in order.
    pub async fn cancel_of_a_finished_or_unknown_task_is_refused(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 3).await;
        let claimed = claim(&*store, &["t"], 2).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::dead("x")).await;
        apply_outcome(&*store, &claimed[1], OutcomeKind::complete()).await;
        cancel_at(&*store, &[id[2]], "first", T0).await;
        let mut before = Vec::new();
        for each in &id {
            before.push(get(&*store, *each).await);
        }
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let unknown = TaskId::new(id[2].get() + 1_000);
        let results = cancel_at(&*store, &[id[2], unknown, id[0], id[1]], "ops", at(5)).await;
        assert_eq!(
            results,
            [
                Cancellation::Refused(Queue::Cancelled),
                Cancellation::NotFound,
                Cancellation::Refused(Queue::Dead),
                Cancellation::Refused(Queue::Completed),
            ]
        );
        for record in &before {
            assert_eq!(
                &get(&*store, record.id).await,
                record,
                "a refused cancel changed it"
            );
        }
        assert_eq!(
            store.stats(&taskmill_testkit::all_due()).await.unwrap(),
            stats
        );
        assert!(cancel_at(&*store, &[], "ops", T0).await.is_empty());
    }

    /// The cancellations stream of a store handle gets the id of each running task whose
    /// cancel is requested through it, and never that of a waiting task cancelled at once.
    pub async fn cancellations_receive_running_tasks(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 3).await;
        let claimed = claim(&*store, &["t"], 2).await;
        let mut stream = store.cancellations().await.unwrap();
        let results = cancel_at(&*store, &[id[2], id[0]], "ops", T0).await;
        assert_eq!(results, [Cancellation::Cancelled, Cancellation::Requested]);
        expect_cancel(&mut stream, claimed[0].id, &[]).await;
        cancel_at(&*store, &[id[1]], "ops", T0).await;
        expect_cancel(&mut stream, claimed[1].id, &[claimed[0].id]).await;
    }

    /// A cancel requested through one handle reaches the cancellations stream of another,
    /// opened as another process would open it.
    #[needs(cross_process_events)]
    pub async fn cancellations_reach_another_handle(harness: &mut dyn Harness) {
        let here = harness.store();
        let there = harness.open_another().await;
        let mut stream = there.cancellations().await.unwrap();
        enqueue_n(&*here, "t", 1).await;
        let r = claim(&*here, &["t"], 1).await.remove(0);
        assert_eq!(
            cancel_at(&*here, &[r.id], "ops", T0).await,
            [Cancellation::Requested]
        );
        expect_cancel(&mut stream, r.id, &[]).await;
    }

    /// A cancel and a completion of the same running task, in either order or at once:
    /// exactly one wins (Done and Refused, or Requested and Cancelled), and the counters and
    /// sizes add up to the tasks.
    pub async fn cancel_racing_completion_has_one_winner(store: Arc<dyn Store>) {
        const N: usize = 40;
        enqueue_n(&*store, "t", 2 * N as u64).await;
        let claimed = claim(&*store, &["t"], 2 * N).await;
        assert_eq!(claimed.len(), 2 * N);
        let (mut completed, mut cancelled) = (0u64, 0u64);
        // In turn: even ones complete first, odd ones are cancelled first.
        for (n, r) in claimed[..N].iter().enumerate() {
            if n % 2 == 0 {
                assert_eq!(
                    apply_outcome(&*store, r, OutcomeKind::complete()).await,
                    Applied::Done
                );
                assert_eq!(
                    cancel_at(&*store, &[r.id], "ops", T0).await,
                    [Cancellation::Refused(Queue::Completed)]
                );
                completed += 1;
            } else {
                assert_eq!(
                    cancel_at(&*store, &[r.id], "ops", T0).await,
                    [Cancellation::Requested]
                );
                assert_eq!(
                    apply_outcome(&*store, r, OutcomeKind::complete()).await,
                    Applied::Cancelled
                );
                cancelled += 1;
            }
        }
        // At once: both calls race, one task at a time per call, in opposite orders.
        let racing: Vec<TaskRecord> = claimed[N..].to_vec();
        let completer = {
            let (store, racing) = (store.clone(), racing.clone());
            tokio::spawn(async move {
                let mut applied = Vec::new();
                for r in &racing {
                    applied.push(apply_outcome(&*store, r, OutcomeKind::complete()).await);
                }
                applied
            })
        };
        let canceller = {
            let (store, racing) = (store.clone(), racing.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                for r in racing.iter().rev() {
                    results.push(cancel_at(&*store, &[r.id], "ops", T0).await[0]);
                }
                results.reverse();
                results
            })
        };
        let applied = completer.await.unwrap();
        let cancels = canceller.await.unwrap();
        for ((r, applied), cancel) in racing.iter().zip(applied).zip(cancels) {
            let queue = get(&*store, r.id).await.queue;
            match (applied, cancel) {
                (Applied::Done, Cancellation::Refused(Queue::Completed)) => {
                    assert_eq!(queue, Queue::Completed);
                    completed += 1;
                }
                (Applied::Cancelled, Cancellation::Requested) => {
                    assert_eq!(queue, Queue::Cancelled);
                    cancelled += 1;
                }
                other => panic!("task {}: {other:?}, now in {queue}", r.id),
            }
        }
        let stats = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total;
        assert_eq!(completed + cancelled, 2 * N as u64);
        assert_eq!(
            (stats.counters.completed, stats.counters.cancelled),
            (completed, cancelled)
        );
        let mut expected = sizes(0, 0, 0);
        expected.completed = completed;
        expected.cancelled = cancelled;
        assert_eq!(stats.sizes, expected);
        let finished: HashSet<TaskId> = store
            .list(&taskmill_core::store::ListOptions::new(Queue::Cancelled).limit(1_000))
            .await
            .unwrap()
            .tasks
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(finished.len() as u64, cancelled);
    }
);
