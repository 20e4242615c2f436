//! Hand-written garbage in the namespace: the claim hands it over as corrupt, the manager
//! sends it to DEAD with a corrupt-data error, and keeps running everything else; an
//! enqueue that one topic's garbage fails returns its error only once the other topics
//! are written.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{
    ErrorKind, Manager, Queue, Store, StoreExt, Task, TaskContext, TaskError, TaskId, Timestamp,
};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_testkit::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_task_record_goes_to_dead_and_the_manager_keeps_going() {
    let server = RedisServer::start();
    let namespace = fresh_namespace();
    let store = RedisStore::open(&server.url(&namespace)).await.unwrap();
    let tasks = |range: std::ops::Range<u64>| {
        range
            .map(|i| Task::new("t", &i).unwrap())
            .collect::<Vec<_>>()
    };
    store
        .enqueue(tasks(0..5), &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap();

    // A task record nobody could have written through the store, first in claim order,
    // and a ready entry whose record is missing altogether.
    let mut raw = server.connect().await;
    let tag = format!("{{{namespace}:t}}");
    let (garbage, missing) = (900_001u64, 900_002u64);
    redis::pipe()
        .cmd("HSET")
        .arg(format!("{tag}:tasks"))
        .arg(garbage)
        .arg("many:high:{not json")
        .cmd("ZADD")
        .arg(format!("{tag}:ready"))
        .arg(0)
        .arg(garbage)
        .cmd("ZADD")
        .arg(format!("{tag}:ready"))
        .arg(1)
        .arg(missing)
        .exec_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        store.get(TaskId::new(garbage)).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );

    let ran: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let seen = ran.clone();
    let manager = Manager::builder(store.clone())
        .poll_interval(Duration::from_millis(50))
        .stats_interval(None)
        .build();
    manager
        .register("t", move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                let n: u64 = ctx.args()?;
                seen.lock().unwrap().insert(n);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager.start().await.unwrap();
    manager.enqueue_batch(tasks(5..10)).await.unwrap();
    wait_until("ten good tasks", Duration::from_secs(20), || async {
        ran.lock().unwrap().len() == 10
    })
    .await;

    wait_until("two dead tasks", Duration::from_secs(20), || async {
        store.list_all(Queue::Dead, None).await.unwrap().len() == 2
    })
    .await;
    let dead = store.list_all(Queue::Dead, None).await.unwrap();
    let ids: Vec<u64> = dead.iter().map(|r| r.id.get()).collect();
    assert_eq!(ids, vec![garbage, missing]);
    for record in &dead {
        let error = record.last_error().unwrap_or_default();
        assert!(
            error.contains("corrupt"),
            "task {} has error {error:?}",
            record.id
        );
    }
    assert_eq!(
        store.get(TaskId::new(garbage)).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );

    // Still going: new work runs, and the garbage can be deleted like any task.
    manager.enqueue_batch(tasks(10..15)).await.unwrap();
    wait_until("five more tasks", Duration::from_secs(20), || async {
        ran.lock().unwrap().len() == 15
    })
    .await;
    assert_eq!(
        store
            .delete(&[TaskId::new(garbage), TaskId::new(missing)])
            .await
            .unwrap(),
        vec![true, true]
    );
    manager.close().await.unwrap();
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    // The completed tasks are kept as history; nothing else is left.
    assert_eq!(stats.total.sizes.active(), 0, "{stats:?}");
    assert_eq!(stats.total.sizes.completed, 15, "{stats:?}");
    assert_eq!(
        (stats.total.counters.completed, stats.total.counters.failed),
        (15, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_that_fails_on_one_topic_returns_after_every_topic_answered() {
    let server = RedisServer::start();
    let namespace = fresh_namespace();
    let store = RedisStore::open(&server.url(&namespace)).await.unwrap();
    // Topic "a"'s task hash is a string, so its script fails at once with WRONGTYPE;
    // topic "b" sends 30,000 tasks, 30 script calls that take redis-server tens of
    // milliseconds. Each topic's calls are a pipeline of their own, sent concurrently.
    let mut raw = server.connect().await;
    let () = redis::cmd("SET")
        .arg(format!("{{{namespace}:a}}:tasks"))
        .arg("not a hash")
        .query_async(&mut raw)
        .await
        .unwrap();
    let big = 30_000u64;
    let batch: Vec<Task> = std::iter::once(Task::new("a", &0u64).unwrap())
        .chain((0..big).map(|i| Task::new("b", &i).unwrap()))
        .collect();

    let error = store
        .enqueue(batch, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");

    // Read at once: a caller that retries on this error must not race its own first
    // attempt, so "b" is wholly written by the time the error is seen.
    let written: u64 = redis::cmd("HLEN")
        .arg(format!("{{{namespace}:b}}:tasks"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        written, big,
        "topic b was still being written after the error"
    );
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.topics["b"].sizes.input, big, "{stats:?}");
}

/// A lease that cannot be read: `get` reports the task as corrupt, a WORK page shows it
/// without the lease, and the reaper takes it as expired.
#[tokio::test]
async fn a_garbage_lease_is_corrupt_to_get_listed_and_reaped() {
    use taskmill_core::store::RecoverOptions;
    let server = RedisServer::start();
    let namespace = fresh_namespace();
    let store = RedisStore::open(&server.url(&namespace)).await.unwrap();
    let id = taskmill_testkit::enqueue(&store, vec![Task::new("t", &1).unwrap()]).await[0];
    taskmill_testkit::claim_at(&store, &["t"], 1, taskmill_testkit::T0).await;
    let mut raw = server.connect().await;
    let () = redis::cmd("HSET")
        .arg(format!("{{{namespace}:t}}:leases"))
        .arg(id.get())
        .arg("not a lease")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(store.get(id).await.unwrap_err().kind(), ErrorKind::Corrupt);
    let work = store.list_all(Queue::Work, None).await.unwrap();
    assert_eq!(
        work.iter()
            .map(|r| (r.id, r.lease.is_none()))
            .collect::<Vec<_>>(),
        [(id, true)]
    );
    let reaped = store
        .recover(&RecoverOptions::new(taskmill_testkit::T0))
        .await
        .unwrap();
    assert_eq!(
        reaped.iter().map(|r| (r.id, r.queue)).collect::<Vec<_>>(),
        [(id, Queue::Input)]
    );
    assert_eq!(store.get(id).await.unwrap().unwrap().attempt, 1);
}
