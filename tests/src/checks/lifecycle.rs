//! Every transition of the task lifecycle, one at a time.

use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{Applied, ApplyOptions, EnqueueOptions, LeaseRef, Outcome, OutcomeKind};
use taskmill_core::{Queue, Store, Task};
use taskmill_testkit::*;

checks!(
    mod lifecycle;

    /// Ids grow with enqueue order, across batches.
    pub async fn enqueue_assigns_increasing_ids(store: Arc<dyn Store>) {
        let first = enqueue_n(&*store, "t", 3).await;
        let second = enqueue_n(&*store, "t", 2).await;
        let all: Vec<_> = first.iter().chain(&second).copied().collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "ids not increasing: {all:?}"
        );
    }

    /// An enqueued task is in INPUT with every field as given, attempt 0, and nothing of a
    /// run yet: no lease, start or finish time, error, result, progress or cancel. A task
    /// that sets no retry limit has none until its first claim.
    pub async fn enqueued_task_is_in_input(store: Arc<dyn Store>) {
        let opts = EnqueueOptions::new(T0);
        let t = Task::new("emails", &serde_json::json!({"to": "ada"}))
            .unwrap()
            .external_id("ext-1")
            .priority(3)
            .max_retries(7)
            .unique_key("k1");
        let ids = store
            .enqueue(vec![t, task("emails", 2)], &opts)
            .await
            .unwrap();
        let r = get(&*store, ids[0].id()).await;
        assert_eq!(r.queue, Queue::Input);
        assert_eq!(&*r.topic, "emails");
        assert_eq!(r.external_id.as_deref(), Some("ext-1"));
        assert_eq!(r.args.decode::<serde_json::Value>().unwrap()["to"], "ada");
        assert_eq!((r.attempt, r.max_retries, r.priority), (0, Some(7), 3));
        assert_eq!((r.enqueued_at, r.run_at), (T0, T0));
        assert_eq!(r.unique_key.as_deref(), Some("k1"));
        assert!(!r.unique_while_kept);
        assert!(r.lease.is_none() && r.errors.is_empty() && r.finished_at.is_none());
        assert_eq!((r.first_started_at, r.started_at), (None, None));
        assert!(r.result.is_none() && r.progress.is_none() && r.cancelled_by.is_none());
        assert_eq!(
            get(&*store, ids[1].id()).await.max_retries,
            None,
            "a task without a retry limit got one before its first claim"
        );
    }

    /// A claim moves a task to WORK under a lease with owner, token and deadline, attempt 1,
    /// started now.
    pub async fn claim_moves_task_to_work_under_lease(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let claimed = claim_as(&*store, "worker-7", &["t"], 10, at(5)).await;
        assert_eq!(ids(&claimed), vec![id]);
        let lease = claimed[0]
            .lease
            .clone()
            .expect("a claimed task has a lease");
        assert_eq!(&*lease.owner, "worker-7");
        assert_eq!(lease.deadline, at(5) + LEASE);
        assert_eq!(claimed[0].attempt, 1);
        let stored = get(&*store, id).await;
        assert_eq!(stored.queue, Queue::Work);
        assert_eq!(stored.lease, Some(lease));
        assert_eq!(
            (stored.first_started_at, stored.started_at),
            (Some(at(5)), Some(at(5)))
        );
        assert_eq!(
            stored, claimed[0],
            "the claim returned the record it stored"
        );
        assert!(
            claim(&*store, &["t"], 10).await.is_empty(),
            "a claimed task is claimed again"
        );
    }

    /// Every claim gets a fencing token no other claim had.
    pub async fn fencing_tokens_are_unique(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 5).await;
        let first = claim(&*store, &["t"], 5).await;
        for r in &first {
            assert_eq!(
                apply_outcome(&*store, r, OutcomeKind::release()).await,
                Applied::Done
            );
        }
        let second = claim(&*store, &["t"], 5).await;
        let mut tokens: Vec<u64> = first
            .iter()
            .chain(&second)
            .map(|r| r.lease.as_ref().unwrap().token)
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), 10, "tokens repeat across claims");
    }

    /// Complete puts the task in COMPLETED, finished now, without its lease; it is never
    /// claimed again and counts as completed, not as active.
    pub async fn complete_moves_task_to_completed(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let r = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(
            apply_outcome_at(&*store, &r, OutcomeKind::complete(), at(9)).await,
            Applied::Done
        );
        let stored = get(&*store, id).await;
        assert_eq!(
            (stored.queue, stored.finished_at, stored.attempt),
            (Queue::Completed, Some(at(9)), 1)
        );
        assert!(stored.lease.is_none() && stored.errors.is_empty());
        let sizes = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes;
        assert_eq!((sizes.active(), sizes.completed), (0, 1), "{sizes:?}");
        assert!(
            claim_at(&*store, &["t"], 1, at(1_000_000)).await.is_empty(),
            "a completed task was claimed"
        );
    }

    /// Retry puts the task back in INPUT, due at the given time, with its error.
    pub async fn retry_returns_task_to_input_at_time(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let r = claim(&*store, &["t"], 1).await.remove(0);
        let kind = OutcomeKind::retry(at(5_000), "boom");
        assert_eq!(apply_outcome(&*store, &r, kind).await, Applied::Done);
        let stored = get(&*store, id).await;
        assert_eq!(
            (stored.queue, stored.run_at, stored.attempt),
            (Queue::Input, at(5_000), 1)
        );
        assert_eq!(stored.last_error(), Some("boom"));
        assert!(stored.lease.is_none() && stored.finished_at.is_none());
        assert!(
            claim_at(&*store, &["t"], 1, at(4_999)).await.is_empty(),
            "claimed before its retry time"
        );
        let again = claim_at(&*store, &["t"], 1, at(5_000)).await;
        assert_eq!((ids(&again), again[0].attempt), (vec![id], 2));
    }

    /// Dead puts the task in DEAD with its error and the failure time.
    pub async fn dead_outcome_moves_task_to_dead(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let r = claim(&*store, &["t"], 1).await.remove(0);
        let kind = OutcomeKind::dead("hopeless");
        assert_eq!(
            apply_outcome_at(&*store, &r, kind, at(10)).await,
            Applied::Done
        );
        let stored = get(&*store, id).await;
        assert_eq!(
            (stored.queue, stored.finished_at),
            (Queue::Dead, Some(at(10)))
        );
        assert_eq!(stored.last_error(), Some("hopeless"));
        assert!(
            claim_at(&*store, &["t"], 1, at(1_000_000)).await.is_empty(),
            "a dead task was claimed"
        );
    }

    /// Release puts the task back in INPUT, due now, without using up the attempt.
    pub async fn release_returns_task_without_using_an_attempt(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 1).await[0];
        let r = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(
            apply_outcome_at(&*store, &r, OutcomeKind::release(), at(7)).await,
            Applied::Done
        );
        let stored = get(&*store, id).await;
        assert_eq!(
            (stored.queue, stored.attempt, stored.run_at),
            (Queue::Input, 0, at(7))
        );
        let again = claim_at(&*store, &["t"], 1, at(7)).await;
        assert_eq!(
            again[0].attempt, 1,
            "the released run counted as an attempt"
        );
    }

    /// A batch of outcomes reports one result per outcome, in order.
    pub async fn apply_reports_each_outcome_in_order(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 3).await;
        let claimed = claim(&*store, &["t"], 3).await;
        assert_eq!(
            apply_outcome(&*store, &claimed[1], OutcomeKind::complete()).await,
            Applied::Done
        );
        let outcomes: Vec<_> = claimed
            .iter()
            .map(|r| Outcome::new(LeaseRef::of(r), OutcomeKind::complete()))
            .collect();
        let applied = store
            .apply(&outcomes, &ApplyOptions::new(T0))
            .await
            .unwrap();
        assert_eq!(applied, vec![Applied::Done, Applied::Stale, Applied::Done]);
    }

    /// get reports each queue; a task that never existed is None.
    pub async fn get_reports_each_state(store: Arc<dyn Store>) {
        let ids_ = enqueue_n(&*store, "t", 5).await;
        assert!(store
            .get(taskmill_core::TaskId::new(ids_[4].get() + 1000))
            .await
            .unwrap()
            .is_none());
        let claimed = claim(&*store, &["t"], 3).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::dead("x")).await;
        apply_outcome(&*store, &claimed[2], OutcomeKind::complete()).await;
        cancel_at(&*store, &[ids_[3]], "ops", T0).await;
        let mut queues = Vec::new();
        for id in &ids_ {
            queues.push(get(&*store, *id).await.queue);
        }
        assert_eq!(
            queues,
            [
                Queue::Dead,
                Queue::Work,
                Queue::Completed,
                Queue::Cancelled,
                Queue::Input
            ]
        );
    }

    /// Arguments and metadata survive the round trip through the store byte for byte.
    pub async fn payload_round_trips(store: Arc<dyn Store>) {
        let args = serde_json::json!({"s": "ünïcødé \"quoted\" \n", "n": [1.5, -2, null], "big": u64::MAX});
        let id = enqueue(
            &*store,
            vec![Task::new("t", &args).unwrap().delay(Duration::ZERO)],
        )
        .await[0];
        let claimed = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(claimed.id, id);
        assert_eq!(claimed.args.decode::<serde_json::Value>().unwrap(), args);
    }
);
