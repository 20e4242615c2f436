//! Unique keys, inspection, admin operations, and stats.

use std::collections::BTreeSet;
use std::sync::Arc;
use taskmill_core::store::{
    Applied, EnqueueOptions, Enqueued, ListOptions, OutcomeKind, RequeueOptions,
};
use taskmill_core::{Counters, Queue, Store, StoreExt, TaskId};
use taskmill_testkit::*;

async fn enqueue_keyed(store: &dyn Store, key: &str) -> Enqueued {
    store
        .enqueue_one(task("t", 0).unique_key(key), &EnqueueOptions::new(T0))
        .await
        .unwrap()
}

checks!(
    mod admin;

    /// A unique key rejects a duplicate while the first task waits in INPUT.
    pub async fn unique_key_rejects_duplicate_while_pending(store: Arc<dyn Store>) {
        let first = enqueue_keyed(&*store, "k").await;
        assert!(first.is_new());
        assert_eq!(
            enqueue_keyed(&*store, "k").await,
            Enqueued::Duplicate(first.id())
        );
        assert!(enqueue_keyed(&*store, "other").await.is_new());
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(
            (stats.total.counters.enqueued, stats.total.sizes.input),
            (2, 2)
        );
    }

    /// A unique key rejects a duplicate while the first task runs, and after it failed for good.
    pub async fn unique_key_rejects_duplicate_while_running_or_dead(store: Arc<dyn Store>) {
        let first = enqueue_keyed(&*store, "k").await.id();
        let r = claim(&*store, &["t"], 1).await.remove(0);
        assert_eq!(
            enqueue_keyed(&*store, "k").await,
            Enqueued::Duplicate(first)
        );
        apply_outcome(&*store, &r, OutcomeKind::dead("x")).await;
        assert_eq!(
            enqueue_keyed(&*store, "k").await,
            Enqueued::Duplicate(first)
        );
    }

    /// A unique key is free again once its task completes (its record kept in COMPLETED), or
    /// is deleted.
    pub async fn unique_key_is_free_after_completion_or_delete(store: Arc<dyn Store>) {
        enqueue_keyed(&*store, "k").await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &r, OutcomeKind::complete()).await;
        let second = enqueue_keyed(&*store, "k").await;
        assert!(second.is_new(), "key still held after completion");
        assert_eq!(get(&*store, r.id).await.queue, Queue::Completed);
        assert_eq!(store.delete(&[second.id()]).await.unwrap(), vec![true]);
        assert!(
            enqueue_keyed(&*store, "k").await.is_new(),
            "key still held after delete"
        );
    }

    /// Within one batch, a repeated key is a duplicate of the earlier task, however large the
    /// batch.
    pub async fn unique_key_applies_within_a_batch(store: Arc<dyn Store>) {
        let batch = vec![
            task("t", 1).unique_key("k"),
            task("t", 2),
            task("t", 3).unique_key("k"),
        ];
        let results = store
            .enqueue(batch, &EnqueueOptions::new(T0))
            .await
            .unwrap();
        assert!(results[0].is_new() && results[1].is_new());
        assert_eq!(results[2], Enqueued::Duplicate(results[0].id()));
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .counters
                .enqueued,
            2
        );

        // Also in a batch large enough for a store to split it into several steps.
        const BIG: usize = 2_500;
        let mut batch: Vec<_> = (0..BIG as u64).map(|n| task("big", n)).collect();
        batch[0] = task("big", 0).unique_key("k");
        batch[BIG - 1] = task("big", BIG as u64).unique_key("k");
        let results = store
            .enqueue(batch, &EnqueueOptions::new(T0))
            .await
            .unwrap();
        assert!(results[..BIG - 1].iter().all(|r| r.is_new()));
        assert_eq!(results[BIG - 1], Enqueued::Duplicate(results[0].id()));
    }

    /// Requeue sends dead tasks back to INPUT with a fresh set of attempts; others are untouched.
    pub async fn requeue_moves_dead_tasks_to_input(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 2).await;
        let claimed = claim(&*store, &["t"], 1).await.remove(0);
        apply_outcome(&*store, &claimed, OutcomeKind::dead("x")).await;
        let moved = store
            .requeue(
                &[id[0], id[1], TaskId::new(id[1].get() + 99)],
                &RequeueOptions::new(at(5)),
            )
            .await
            .unwrap();
        assert_eq!(moved, vec![true, false, false]);
        let stored = get(&*store, id[0]).await;
        assert_eq!(
            (
                stored.queue,
                stored.attempt,
                stored.run_at,
                stored.finished_at
            ),
            (Queue::Input, 0, at(5), None)
        );
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .counters
                .requeued,
            1
        );
        assert_eq!(
            ids(&claim_at(&*store, &["t"], 5, at(5)).await),
            vec![id[0], id[1]]
        );
    }

    /// Delete removes tasks from any queue; the outcome of a deleted running task is stale.
    pub async fn delete_removes_tasks_from_every_queue(store: Arc<dyn Store>) {
        let id = enqueue_n(&*store, "t", 4).await;
        let claimed = claim(&*store, &["t"], 2).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::dead("x")).await;
        // id[0] dead, id[1] in work, id[2] and id[3] in input.
        let deleted = store
            .delete(&[id[0], id[1], id[2], TaskId::new(id[3].get() + 50)])
            .await
            .unwrap();
        assert_eq!(deleted, vec![true, true, true, false]);
        for gone in &id[..3] {
            assert!(store.get(*gone).await.unwrap().is_none());
        }
        assert_eq!(
            apply_outcome(&*store, &claimed[1], OutcomeKind::complete()).await,
            Applied::Stale
        );
        let total = store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes;
        assert_eq!(total, sizes(1, 0, 0));
        assert_eq!(ids(&claim(&*store, &["t"], 5).await), vec![id[3]]);
    }

    /// Paging through a queue with `next` visits each task once, in id order.
    pub async fn list_pages_through_a_queue(store: Arc<dyn Store>) {
        let all = enqueue_n(&*store, "t", 25).await;
        let mut query = ListOptions::new(Queue::Input).limit(7);
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = store.list(&query).await.unwrap();
            assert!(page.tasks.len() <= 7);
            seen.extend(page.tasks.iter().map(|t| t.id));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, all);
        assert_eq!(store.list_all(Queue::Input, None).await.unwrap().len(), 25);
    }

    /// list shows each queue, optionally one topic, and the records' states.
    pub async fn list_filters_by_queue_and_topic(store: Arc<dyn Store>) {
        let a = enqueue_n(&*store, "a", 3).await;
        let b = enqueue_n(&*store, "b", 3).await;
        let work = claim(&*store, &["a", "b"], 4).await; // a0 a1 a2 b0
        apply_outcome(&*store, &work[1], OutcomeKind::dead("x")).await;
        let listed = |queue, topic: Option<&'static str>| {
            let store = store.clone();
            async move {
                let records = store.list_all(queue, topic).await.unwrap();
                assert!(
                    records.iter().all(|r| r.queue == queue),
                    "list of {queue} has other states"
                );
                records.iter().map(|r| r.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed(Queue::Work, None).await, vec![a[0], a[2], b[0]]);
        assert_eq!(listed(Queue::Work, Some("b")).await, vec![b[0]]);
        assert_eq!(listed(Queue::Dead, None).await, vec![a[1]]);
        assert_eq!(listed(Queue::Input, Some("b")).await, vec![b[1], b[2]]);
        assert!(listed(Queue::Input, Some("a")).await.is_empty());
    }

    /// The counters equal the transitions performed, exactly, in total and per topic.
    pub async fn stats_count_every_transition_exactly(store: Arc<dyn Store>) {
        enqueue_n(&*store, "a", 6).await;
        enqueue_n(&*store, "b", 2).await;
        let claimed = claim(&*store, &["a"], 6).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::complete()).await;
        apply_outcome(&*store, &claimed[1], OutcomeKind::complete()).await;
        apply_outcome(&*store, &claimed[2], OutcomeKind::retry(T0, "e")).await;
        apply_outcome(&*store, &claimed[3], OutcomeKind::dead("e")).await;
        apply_outcome(&*store, &claimed[4], OutcomeKind::release()).await;
        // claimed[5] expires.
        let late = T0 + LEASE + std::time::Duration::from_secs(1);
        recover(&*store, late, 10).await;
        store
            .requeue(&[claimed[3].id], &RequeueOptions::new(late))
            .await
            .unwrap();
        // A stale outcome and a duplicate enqueue count nothing.
        apply_outcome(&*store, &claimed[0], OutcomeKind::complete()).await;
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let a = stats.topic("a");
        let mut counted = Counters::default();
        counted.enqueued = 6;
        counted.started = 6;
        counted.retried = 1;
        counted.failed = 1;
        counted.completed = 2;
        counted.recovered = 1;
        counted.released = 1;
        counted.requeued = 1;
        assert_eq!(a.counters, counted);
        let mut a_sizes = sizes(4, 0, 0);
        a_sizes.completed = 2;
        assert_eq!(a.sizes, a_sizes);
        let b = stats.topic("b");
        let mut counted = Counters::default();
        counted.enqueued = 2;
        assert_eq!(b.counters, counted);
        assert_eq!(b.sizes, sizes(2, 0, 0));
        let mut sum = a.counters;
        sum += b.counters;
        assert_eq!(stats.total.counters, sum);
        let mut total = sizes(6, 0, 0);
        total.completed = 2;
        assert_eq!(stats.total.sizes, total);
        let names: BTreeSet<_> = stats.topics.keys().cloned().collect();
        assert_eq!(names, ["a", "b"].map(String::from).into_iter().collect());
    }

    /// Queue sizes per topic follow tasks through INPUT, WORK and DEAD.
    pub async fn sizes_per_topic_follow_the_queues(store: Arc<dyn Store>) {
        enqueue_n(&*store, "a", 3).await;
        enqueue(&*store, vec![task("b", 1).run_at(at(100_000))]).await;
        let claimed = claim(&*store, &["a"], 2).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::dead("x")).await;
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.topic("a").sizes, sizes(1, 1, 1));
        assert_eq!(stats.topic("b").sizes, sizes(1, 0, 0));
        assert_eq!(stats.total.sizes.total(), 4);
    }

    /// Unique keys are per topic: the same key in another topic is another key.
    pub async fn unique_keys_are_per_topic(store: Arc<dyn Store>) {
        let opts = EnqueueOptions::new(T0);
        let batch = vec![
            task("a", 1).unique_key("k"),
            task("b", 2).unique_key("k"),
            task("a", 3).unique_key("k"),
        ];
        let results = store.enqueue(batch, &opts).await.unwrap();
        assert!(results[0].is_new() && results[1].is_new(), "{results:?}");
        assert_eq!(results[2], Enqueued::Duplicate(results[0].id()));
        let r = claim(&*store, &["b"], 1).await.remove(0);
        apply_outcome(&*store, &r, OutcomeKind::complete()).await;
        let again = store
            .enqueue_one(task("a", 4).unique_key("k"), &opts)
            .await
            .unwrap();
        assert_eq!(
            again,
            Enqueued::Duplicate(results[0].id()),
            "completing b's task freed a's key"
        );
        assert!(store
            .enqueue_one(task("b", 5).unique_key("k"), &opts)
            .await
            .unwrap()
            .is_new());
    }

    /// `requeue_all_dead` sends back every dead task of one topic, or of all, and counts them.
    pub async fn requeue_all_dead_moves_every_dead_task(store: Arc<dyn Store>) {
        enqueue_n(&*store, "a", 3).await;
        enqueue_n(&*store, "b", 2).await;
        for r in claim(&*store, &["a", "b"], 5).await {
            apply_outcome(&*store, &r, OutcomeKind::dead("x")).await;
        }
        assert_eq!(store.requeue_all_dead(Some("a"), T0).await.unwrap(), 3);
        let sizes = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(
            (sizes.topic("a").sizes.input, sizes.topic("b").sizes.dead),
            (3, 2)
        );
        assert_eq!(store.requeue_all_dead(None, T0).await.unwrap(), 2);
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .sizes
                .dead,
            0
        );
        assert_eq!(store.requeue_all_dead(None, T0).await.unwrap(), 0);
    }
);
