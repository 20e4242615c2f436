//! Two store handles on one namespace, each with its own connections, as two processes
//! would have: wake-ups and events cross between them.

use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Event, Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_testkit::wait_until;

const PATIENCE: Duration = Duration::from_secs(10);

/// A private server and two handles on one fresh namespace, as two processes would have.
async fn two_handles() -> (RedisServer, RedisStore, RedisStore) {
    let server = RedisServer::start();
    let url = server.url(&fresh_namespace());
    let a = RedisStore::open(&url).await.unwrap();
    let b = RedisStore::open(&url).await.unwrap();
    (server, a, b)
}

/// An idle manager claims a task enqueued through another handle long before its poll
/// interval would have it look: the wake-up crossed over pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_manager_wakes_on_an_enqueue_elsewhere() {
    let (_server, here, there) = two_handles().await;
    let ran_at = Arc::new(AtomicU64::new(0));
    let seen = ran_at.clone();
    let epoch = Instant::now();
    let manager = Manager::builder(here.clone())
        .poll_interval(Duration::from_secs(30))
        .stats_interval(None)
        .build();
    manager
        .register("t", move |_ctx: TaskContext| {
            seen.store(epoch.elapsed().as_micros() as u64, Ordering::SeqCst);
            async { Ok::<_, TaskError>(()) }
        })
        .unwrap();
    manager.start().await.unwrap();
    // Let the manager's first claim find nothing and go idle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for n in 0..5u64 {
        ran_at.store(0, Ordering::SeqCst);
        let sent = epoch.elapsed().as_micros() as u64;
        there
            .enqueue(
                vec![Task::new("t", &n).unwrap()],
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while ran_at.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the idle manager never woke up");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(Duration::from_micros(ran_at.load(Ordering::SeqCst) - sent));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    manager.close().await.unwrap();
    eprintln!("enqueue elsewhere → run here: {latencies:?}");
    // Far below the 30 s poll interval: only a wake-up explains it.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );
}

/// A watcher on one handle sees what a manager on another does, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_a_manager_elsewhere() {
    let (_server, watcher, worker) = two_handles().await;
    let mut events = watcher.subscribe().await.unwrap();
    let manager = Manager::builder(worker.clone())
        .poll_interval(Duration::from_millis(50))
        .stats_interval(None)
        .build();
    manager
        .register("t", |ctx: TaskContext| async move {
            ctx.progress(&serde_json::json!({"half": true})).await?;
            ctx.set_result(&"done")?;
            Ok::<_, TaskError>(())
        })
        .unwrap();
    manager.start().await.unwrap();
    let id = manager
        .enqueue(Task::new("t", &1).unwrap())
        .await
        .unwrap()
        .id();
    let mut names = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !names.contains(&"TASK_COMPLETION") {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {names:?}"))
            .expect("the event stream ended");
        if event.task_id() == Some(id) {
            if let Event::TaskCompletion { result, .. } = &event {
                assert_eq!(result.as_ref().unwrap().as_str(), "\"done\"");
            }
            names.push(event.name());
        }
    }
    manager.close().await.unwrap();
    assert_eq!(
        names,
        [
            "TASK_ENQUEUE",
            "TASK_START",
            "TASK_PROGRESS",
            "TASK_COMPLETION"
        ]
    );
}

/// Nobody listening: publishing costs no PUBLISH (the listener check is cached), and an
/// enqueue builds no events.
#[tokio::test]
async fn publishing_to_nobody_sends_nothing() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    let mut raw = server.connect().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    let event = Event::TaskReleased {
        id: taskmill_core::TaskId::new(1),
        topic: "t".into(),
    };
    for _ in 0..100 {
        store.publish(std::slice::from_ref(&event)).await.unwrap();
    }
    store
        .enqueue(
            vec![Task::new("t", &1).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .unwrap();
    let publishes = info
        .lines()
        .find(|l| l.starts_with("cmdstat_publish:"))
        .and_then(|l| l.split(['=', ',']).nth(1))
        .map_or(0, |n| n.parse::<u64>().unwrap());
    // The enqueue's wake-up is the only message.
    assert_eq!(publishes, 1, "{info}");
}

/// A handle tells without a round trip whether anyone may be watching: yes while that is
/// unknown, no once a publish found nobody, yes with a watcher of its own, and yes again
/// within about a second of a watcher appearing in another process.
#[tokio::test]
async fn has_subscribers_follows_watchers_here_and_elsewhere() {
    let (_server, here, there) = two_handles().await;
    assert!(here.has_subscribers(), "unknown counts as yes");
    let event = Event::TaskReleased {
        id: taskmill_core::TaskId::new(1),
        topic: "t".into(),
    };
    here.publish(std::slice::from_ref(&event)).await.unwrap();
    assert!(!here.has_subscribers(), "the publish found nobody");
    let local = here.subscribe().await.unwrap();
    assert!(here.has_subscribers(), "a watcher here");
    drop(local);
    let _elsewhere = there.subscribe().await.unwrap();
    wait_until("a watcher elsewhere to be noticed", PATIENCE, || async {
        here.has_subscribers()
    })
    .await;
}

/// A cancel of a running task issued through one handle reaches the cancellations stream
/// of another (its own connections, as another process has), and only the requests for
/// running tasks do: one cancelled while waiting is not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_cancelled_elsewhere_reaches_the_cancellations_here() {
    use taskmill_core::store::{CancelOptions, Cancellation};
    let (_server, runner, admin) = two_handles().await;
    let mut cancels = runner.cancellations().await.unwrap();
    let ids = taskmill_testkit::enqueue(
        &runner,
        vec![Task::new("t", &1).unwrap(), Task::new("t", &2).unwrap()],
    )
    .await;
    let claimed = taskmill_testkit::claim_at(&runner, &["t"], 1, taskmill_testkit::T0).await;
    assert_eq!(claimed[0].id, ids[0]);
    let by = CancelOptions::new(Timestamp::now(), "admin");
    assert_eq!(
        admin.cancel(&[ids[1], ids[0]], &by).await.unwrap(),
        [Cancellation::Cancelled, Cancellation::Requested]
    );
    let got = tokio::time::timeout(PATIENCE, cancels.next())
        .await
        .expect("no cancel request arrived")
        .expect("the cancellations stream ended");
    assert_eq!(got, ids[0]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), cancels.next())
            .await
            .is_err(),
        "more than the one request arrived"
    );
}
