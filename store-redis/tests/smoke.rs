//! Quick checks of the Redis store against a private redis-server.

use futures_util::StreamExt;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, LeaseRef, Outcome, OutcomeKind, RecoverOptions,
    RequeueOptions, TopicClaim,
};
use taskmill_core::{Event, Queue, Store, Task, TaskId, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_testkit::{enqueue, enqueue_results, ready, T0};

#[tokio::test]
async fn lifecycle_round_trip() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let mut events = store.subscribe().await.unwrap();
    let mut wake = store.wakeups().await.unwrap();
    let results = enqueue_results(
        &store,
        vec![
            Task::new("t", &1).unwrap().unique_key("k"),
            Task::new("t", &2).unwrap().priority(-1),
            Task::new("t", &3).unwrap().unique_key("k"),
        ],
    )
    .await;
    assert!(results[0].is_new() && results[1].is_new());
    assert_eq!(results[2].id(), results[0].id());
    tokio::time::timeout(Duration::from_secs(5), wake.next())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, Event::TaskEnqueue { id, .. } if id == results[0].id()),
        "{first:?}"
    );
    let req = ClaimOptions::new([TopicClaim::new("t")], 10, "me", T0);
    let claimed = ready(store.claim(&req).await.unwrap());
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![results[1].id(), results[0].id()]
    );
    assert_eq!(claimed[0].attempt, 1);
    let outcomes: Vec<_> = claimed
        .iter()
        .map(|r| Outcome::new(LeaseRef::of(r), OutcomeKind::complete()))
        .collect();
    assert_eq!(
        store
            .apply(&outcomes, &ApplyOptions::new(T0))
            .await
            .unwrap(),
        vec![Applied::Done; 2]
    );
    assert_eq!(
        store
            .apply(&outcomes, &ApplyOptions::new(T0))
            .await
            .unwrap(),
        vec![Applied::Stale; 2]
    );
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(
        (
            stats.total.counters.enqueued,
            stats.total.counters.started,
            stats.total.counters.completed
        ),
        (2, 2, 2)
    );
    assert_eq!(
        (stats.total.sizes.active(), stats.total.sizes.completed),
        (0, 2)
    );
    let done = store.get(results[0].id()).await.unwrap().unwrap();
    assert_eq!((done.queue, done.finished_at), (Queue::Completed, Some(T0)));
    // The key is free once the task completed, although its record is kept.
    let again = enqueue_results(&store, vec![Task::new("t", &4).unwrap().unique_key("k")]).await;
    assert!(again[0].is_new());
    assert_eq!(
        store.get(again[0].id()).await.unwrap().unwrap().queue,
        Queue::Input
    );
}

/// Listing INPUT walks past long runs of tasks in other queues (more than one scan chunk).
#[tokio::test]
async fn list_input_skips_many_running_tasks() {
    use taskmill_core::StoreExt;
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let tasks = (0..1200u64).map(|i| Task::new("t", &i).unwrap()).collect();
    let ids: Vec<_> = enqueue(&store, tasks).await;
    let req = ClaimOptions::new([TopicClaim::new("t")], 700, "me", T0);
    assert_eq!(store.claim(&req).await.unwrap().len(), 700);
    let input: Vec<_> = store
        .list_all(Queue::Input, Some("t"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(input, ids[700..]);
    let work = store.list_all(Queue::Work, None).await.unwrap();
    assert_eq!(work.len(), 700);
    assert!(work
        .iter()
        .all(|r| r.queue == Queue::Work && r.lease.is_some() && r.attempt == 1));
}

/// Listing INPUT merges the ready set's priority bands and the scheduled tasks into one
/// id order, page by page, before and after claims.
#[tokio::test]
async fn list_input_pages_in_id_order_across_priorities_and_schedules() {
    use taskmill_core::store::ListOptions;
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let priorities = [5i16, -3, 0, 200, i16::MIN, i16::MAX];
    let tasks = (0..60u64)
        .map(|i| {
            let task = Task::new("t", &i)
                .unwrap()
                .priority(priorities[i as usize % priorities.len()]);
            if i % 4 == 0 {
                task.run_at(T0 + Duration::from_secs(3600))
            } else {
                task
            }
        })
        .collect();
    let ids: Vec<TaskId> = enqueue(&store, tasks).await;
    let page_through = |limit: usize| {
        let store = store.clone();
        async move {
            let mut query = ListOptions::new(Queue::Input).topic("t").limit(limit);
            let mut seen = Vec::new();
            for _ in 0..100 {
                let page = store.list(&query).await.unwrap();
                assert!(page.tasks.len() <= limit);
                assert!(page.tasks.iter().all(|t| t.queue == Queue::Input));
                seen.extend(page.tasks.iter().map(|t| t.id));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return seen,
                }
            }
            panic!("paging did not end");
        }
    };
    assert_eq!(page_through(7).await, ids);
    assert_eq!(page_through(1).await, ids);
    // Claims take the lowest priorities first: what is left is still listed in id order.
    let req = ClaimOptions::new([TopicClaim::new("t")], 20, "me", T0);
    let claimed: Vec<TaskId> = store
        .claim(&req)
        .await
        .unwrap()
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => r.id,
            Claimed::Corrupt { error, .. } => panic!("{error}"),
        })
        .collect();
    assert_eq!(claimed.len(), 20);
    let left: Vec<TaskId> = ids
        .iter()
        .copied()
        .filter(|id| !claimed.contains(id))
        .collect();
    assert_eq!(page_through(7).await, left);
}

/// Each transition that rewrites a stored record keeps every other field as it was.
#[tokio::test]
async fn records_keep_their_fields_through_every_rewrite() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let task = Task::new("t", &serde_json::json!({"k": "a:b:1"}))
        .unwrap()
        .external_id("ext:9")
        .unique_key("u:1")
        .priority(7)
        .max_retries(3);
    let id = enqueue_results(&store, vec![task]).await[0].id();
    let check = |r: &taskmill_core::TaskRecord| {
        assert_eq!(r.args.as_str(), "{\"k\":\"a:b:1\"}");
        assert_eq!(r.external_id.as_deref(), Some("ext:9"));
        assert_eq!(r.unique_key.as_deref(), Some("u:1"));
        assert_eq!((r.priority, r.max_retries, r.enqueued_at), (7, Some(3), T0));
    };
    let claim = |at: Timestamp, lease: Duration| {
        let store = store.clone();
        async move {
            let req = ClaimOptions::new([TopicClaim::new("t")], 10, "me", at).lease(lease);
            let mut claimed = store.claim(&req).await.unwrap();
            assert_eq!(claimed.len(), 1, "one task due at {at:?}");
            match claimed.pop().unwrap() {
                Claimed::Ready(r) => r,
                Claimed::Corrupt { error, .. } => panic!("{error}"),
            }
        }
    };
    let apply = |r: &taskmill_core::TaskRecord, kind: OutcomeKind, at: Timestamp| {
        let store = store.clone();
        let lease = LeaseRef::of(r);
        async move {
            assert_eq!(
                store
                    .apply(&[Outcome::new(lease, kind)], &ApplyOptions::new(at))
                    .await
                    .unwrap(),
                vec![Applied::Done]
            );
        }
    };
    let get = || {
        let store = store.clone();
        async move { store.get(id).await.unwrap().unwrap() }
    };

    // Retry: due later, with the error; promoted and claimed once due, one attempt on.
    let r = claim(T0, Duration::from_secs(30)).await;
    check(&r);
    assert_eq!(r.attempt, 1);
    let later = T0 + Duration::from_secs(1);
    let retry = OutcomeKind::retry(later, "e:1");
    apply(&r, retry, T0).await;
    let g = get().await;
    check(&g);
    assert_eq!(
        (g.queue, g.attempt, g.run_at, g.last_error()),
        (Queue::Input, 1, later, Some("e:1"))
    );
    assert_eq!((g.errors[0].attempt, g.errors[0].at), (1, T0));
    assert_eq!((g.first_started_at, g.started_at), (Some(T0), Some(T0)));
    // Expired lease: the reaper puts it back due now, the attempt counted.
    let r = claim(later, Duration::from_millis(10)).await;
    assert_eq!(r.attempt, 2);
    assert_eq!(get().await.queue, Queue::Work);
    let reaped = later + Duration::from_secs(1);
    assert_eq!(
        store
            .recover(&RecoverOptions::new(reaped).limit(10))
            .await
            .unwrap()
            .len(),
        1
    );
    let g = get().await;
    check(&g);
    assert_eq!((g.queue, g.attempt, g.run_at), (Queue::Input, 2, reaped));
    assert_eq!((g.first_started_at, g.started_at), (Some(T0), Some(later)));
    // Dead, then requeued with a fresh set of attempts.
    let r = claim(reaped, Duration::from_secs(30)).await;
    apply(&r, OutcomeKind::dead("gone"), reaped).await;
    let g = get().await;
    check(&g);
    assert_eq!(
        (g.queue, g.attempt, g.finished_at, g.last_error()),
        (Queue::Dead, 3, Some(reaped), Some("gone"))
    );
    let attempts: Vec<u32> = g.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(
        attempts,
        [1, 3],
        "the reaped attempt had retries left: no error"
    );
    let requeued = reaped + Duration::from_secs(1);
    assert_eq!(
        store
            .requeue(&[id], &RequeueOptions::new(requeued))
            .await
            .unwrap(),
        vec![true]
    );
    let g = get().await;
    check(&g);
    assert_eq!(
        (g.queue, g.attempt, g.finished_at, g.run_at),
        (Queue::Input, 0, None, requeued)
    );
    assert_eq!(g.errors.len(), 2, "a requeue keeps the errors");
    // Released: due now, the attempt given back.
    let r = claim(requeued, Duration::from_secs(30)).await;
    let released = requeued + Duration::from_secs(1);
    apply(&r, OutcomeKind::release(), released).await;
    let g = get().await;
    check(&g);
    assert_eq!((g.queue, g.attempt, g.run_at), (Queue::Input, 0, released));
    // Completed: kept with its result, and its unique key free again.
    let r = claim(released, Duration::from_secs(30)).await;
    let result = taskmill_core::Payload::from_json("{\"ok\":[1]}").unwrap();
    let finished = released + Duration::from_secs(1);
    apply(&r, OutcomeKind::complete_with(Some(result)), finished).await;
    let g = get().await;
    check(&g);
    assert_eq!(
        (g.queue, g.attempt, g.finished_at, g.started_at),
        (Queue::Completed, 1, Some(finished), Some(released))
    );
    assert_eq!(g.result.unwrap().as_str(), "{\"ok\":[1]}");
    assert_eq!((g.first_started_at, g.errors.len()), (Some(T0), 2));
    let again = enqueue_results(&store, vec![Task::new("t", &1).unwrap().unique_key("u:1")]).await;
    assert!(again[0].is_new());
}

/// One apply call with every kind of outcome, a stale one among them: each outcome gets
/// its own retry time and error, whatever the ones before it were.
#[tokio::test]
async fn mixed_outcomes_in_one_call_each_get_their_own_details() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let tasks = (0..5u64).map(|i| Task::new("t", &i).unwrap()).collect();
    enqueue_results(&store, tasks).await;
    let req = ClaimOptions::new([TopicClaim::new("t")], 5, "me", T0);
    let claimed = ready(store.claim(&req).await.unwrap());
    let outcome = |i: usize, kind: OutcomeKind| Outcome::new(LeaseRef::of(&claimed[i]), kind);
    // Two outcomes for one lease in one call: the second is stale, and task 0's lease is
    // stale before the batch below.
    let twice = [
        outcome(0, OutcomeKind::complete()),
        outcome(0, OutcomeKind::dead("x")),
    ];
    assert_eq!(
        store.apply(&twice, &ApplyOptions::new(T0)).await.unwrap(),
        vec![Applied::Done, Applied::Stale]
    );
    let later = T0 + Duration::from_secs(60);
    let now = T0 + Duration::from_secs(1);
    let batch = [
        outcome(0, OutcomeKind::retry(later, "stale")),
        outcome(1, OutcomeKind::complete()),
        outcome(2, OutcomeKind::dead("b")),
        outcome(3, OutcomeKind::retry(later, "c")),
        outcome(4, OutcomeKind::release()),
    ];
    assert_eq!(
        store.apply(&batch, &ApplyOptions::new(now)).await.unwrap(),
        vec![
            Applied::Stale,
            Applied::Done,
            Applied::Done,
            Applied::Done,
            Applied::Done
        ]
    );
    let get = |i: usize| {
        let store = store.clone();
        let id = claimed[i].id;
        async move { store.get(id).await.unwrap() }
    };
    let completed = |i: usize| {
        let get = get(i);
        async move { get.await.map(|r| (r.queue, r.finished_at)) }
    };
    assert_eq!(completed(0).await, Some((Queue::Completed, Some(T0))));
    assert_eq!(completed(1).await, Some((Queue::Completed, Some(now))));
    let dead = get(2).await.unwrap();
    assert_eq!(
        (dead.queue, dead.last_error(), dead.finished_at),
        (Queue::Dead, Some("b"), Some(now))
    );
    let retried = get(3).await.unwrap();
    assert_eq!(
        (retried.queue, retried.last_error(), retried.run_at),
        (Queue::Input, Some("c"), later)
    );
    let released = get(4).await.unwrap();
    assert_eq!(
        (
            released.queue,
            released.attempt,
            released.run_at,
            released.errors.len()
        ),
        (Queue::Input, 0, now, 0)
    );
    let counters = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .counters;
    assert_eq!(
        (
            counters.completed,
            counters.failed,
            counters.retried,
            counters.released
        ),
        (2, 1, 1, 1)
    );
}
