//! Quick checks of the Redis store against a private redis-server.

use futures_util::StreamExt;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ClaimRequest, Claimed, EnqueueOptions, LeaseRef, Outcome, OutcomeKind, TopicClaim,
};
use taskmill_core::{Event, Queue, Store, Task, Timestamp};
use taskmill_redis::test_support::{fresh_namespace, RedisServer};
use taskmill_redis::RedisStore;

const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

#[tokio::test]
async fn lifecycle_round_trip() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let mut events = store.subscribe().await.unwrap();
    let mut wake = store.wakeups().await.unwrap();
    let results = store
        .enqueue(
            vec![
                Task::new("t", &1).unwrap().unique_key("k"),
                Task::new("t", &2).unwrap().priority(-1),
                Task::new("t", &3).unwrap().unique_key("k"),
            ],
            &EnqueueOptions::new(T0),
        )
        .await
        .unwrap();
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
    let req = ClaimRequest::new([TopicClaim::new("t")], 10, "me", T0);
    let claimed: Vec<_> = store
        .claim(&req)
        .await
        .unwrap()
        .into_iter()
        .map(|c| match c {
            Claimed::Ready(r) => r,
            Claimed::Corrupt { error, .. } => panic!("{error}"),
        })
        .collect();
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![results[1].id(), results[0].id()]
    );
    assert_eq!(claimed[0].attempt, 1);
    let outcomes: Vec<_> = claimed
        .iter()
        .map(|r| Outcome {
            lease: LeaseRef::of(r),
            kind: OutcomeKind::Complete,
        })
        .collect();
    assert_eq!(
        store.apply(&outcomes, T0).await.unwrap(),
        vec![Applied::Done; 2]
    );
    assert_eq!(
        store.apply(&outcomes, T0).await.unwrap(),
        vec![Applied::Stale; 2]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.total.counters.enqueued,
            stats.total.counters.started,
            stats.total.counters.completed
        ),
        (2, 2, 2)
    );
    assert_eq!(stats.total.sizes.total(), 0);
    assert!(store.get(results[0].id()).await.unwrap().is_none());
    let again = store
        .enqueue(
            vec![Task::new("t", &4).unwrap().unique_key("k")],
            &EnqueueOptions::new(T0),
        )
        .await
        .unwrap();
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
    let ids: Vec<_> = store
        .enqueue(tasks, &EnqueueOptions::new(T0))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    let req = ClaimRequest::new([TopicClaim::new("t")], 700, "me", T0);
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
