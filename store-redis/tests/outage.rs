//! Redis dies mid-run: SIGKILL the server while a manager works through 20,000 tasks,
//! start it again on the same port (append-only file on) a second later, and the manager
//! reconnects by itself and finishes every task.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer, ServerConfig};
use taskmill_testkit::wait_until;

const TASKS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_reconnects_after_redis_is_killed_and_restarted() {
    let server = RedisServer::start_with(ServerConfig::default().appendonly(true));
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(1000) {
        let tasks = chunk.iter().map(|i| Task::new("t", i).unwrap()).collect();
        store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }

    let done: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let seen = done.clone();
    let manager = Manager::builder(store.clone())
        .concurrency(32)
        .lease(Duration::from_secs(2))
        .reap_interval(Duration::from_millis(250))
        .poll_interval(Duration::from_millis(100))
        .stats_interval(None)
        .build();
    manager
        .register("t", move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                let n: u64 = ctx.args()?;
                tokio::time::sleep(Duration::from_micros(500)).await;
                seen.lock().unwrap().insert(n);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager.start().await.unwrap();

    wait_until(
        "the manager to get going",
        Duration::from_secs(60),
        || async { done.lock().unwrap().len() >= 3_000 },
    )
    .await;
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill();
        server
    })
    .await
    .unwrap();
    let at_kill = done.lock().unwrap().len();
    assert!(
        at_kill < TASKS as usize,
        "every task ran before the kill: nothing was tested"
    );
    // The outage the scenario calls for: Redis stays down for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let err = store.stats(&taskmill_testkit::all_due()).await.unwrap_err();
    assert_eq!(err.kind(), taskmill_core::ErrorKind::Unavailable, "{err}");
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart();
        server
    })
    .await
    .unwrap();

    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        match store.stats(&taskmill_testkit::all_due()).await {
            Ok(stats) if stats.total.sizes.active() == 0 => break stats,
            Ok(s) => eprintln!(
                "{:?} {:?} done {}",
                restarted.elapsed(),
                s.total.sizes,
                done.lock().unwrap().len()
            ),
            Err(e) => eprintln!("{:?} {e}", restarted.elapsed()),
        }
        assert!(
            Instant::now() < deadline,
            "tasks left after 120 s: {:?}",
            store.stats(&taskmill_testkit::all_due()).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    manager.close().await.unwrap();
    let done = done.lock().unwrap();
    let missing: Vec<u64> = (0..TASKS).filter(|n| !done.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} tasks never ran, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let c = stats.total.counters;
    assert_eq!(
        (c.enqueued, c.completed, c.failed),
        (TASKS, TASKS, 0),
        "{c:?}"
    );
    eprintln!(
        "killed at {at_kill} done; all done {:?} after the restart; counters after: {c:?}",
        restarted.elapsed()
    );
    drop(server);
}

/// The subscription connection comes back by itself too: wake-ups and events that other
/// handles send after a restart reach streams opened before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resume_after_a_restart() {
    use futures_util::StreamExt;
    use taskmill_core::{Event, TaskId};

    let mut server = RedisServer::start_with(ServerConfig::default().appendonly(true));
    let url = server.url(&fresh_namespace());
    let listener = RedisStore::open(&url).await.unwrap();
    let mut wakeups = listener.wakeups().await.unwrap();
    let mut events = listener.subscribe().await.unwrap();
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    // A fresh handle, as another process would have after the restart.
    let other = RedisStore::open(&url).await.unwrap();
    let marker = Event::TaskReleased {
        id: TaskId::new(7),
        topic: "marker".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut heard = false;
    while !heard {
        assert!(
            Instant::now() < deadline,
            "no event reached the old stream after the restart"
        );
        other.publish(std::slice::from_ref(&marker)).await.unwrap();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), events.next()).await
        {
            heard |= event == marker;
        }
    }
    // The reconnect itself signals a wake-up (some may have been missed): drain it, then
    // an enqueue elsewhere must wake the old stream.
    for _ in 0..100 {
        if tokio::time::timeout(Duration::from_millis(50), wakeups.next())
            .await
            .is_err()
        {
            break;
        }
    }
    other
        .enqueue(
            vec![Task::new("t", &1).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("no wake-up after the restart")
        .expect("the wake-up stream ended");
    drop(server);
}

/// The cancellations stream comes back with the subscription: a cancel requested through
/// another handle after a restart reaches a stream opened before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_resume_after_a_restart() {
    use futures_util::StreamExt;
    use taskmill_core::store::{CancelOptions, Cancellation};

    let mut server = RedisServer::start_with(ServerConfig::default().appendonly(true));
    let url = server.url(&fresh_namespace());
    let runner = RedisStore::open(&url).await.unwrap();
    let mut cancels = runner.cancellations().await.unwrap();
    let id = taskmill_testkit::enqueue(&runner, vec![Task::new("t", &1).unwrap()]).await[0];
    taskmill_testkit::claim_at(&runner, &["t"], 1, taskmill_testkit::T0).await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let admin = RedisStore::open(&url).await.unwrap();
    let by = CancelOptions::new(Timestamp::now(), "admin");
    // Until the stream's connection is back, a request is lost (the renewal would tell the
    // manager): ask again until one arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "no cancel request reached the old stream after the restart"
        );
        assert_eq!(
            admin.cancel(&[id], &by).await.unwrap(),
            [Cancellation::Requested],
            "the running task survived the restart (append-only file)"
        );
        match tokio::time::timeout(Duration::from_millis(200), cancels.next()).await {
            Ok(Some(got)) => {
                assert_eq!(got, id);
                break;
            }
            Ok(None) => panic!("the cancellations stream ended"),
            Err(_) => {}
        }
    }
    drop(server);
}

/// A store built before Redis is up fails fast as unavailable, then works once it is.
#[tokio::test]
async fn store_built_before_redis_starts_connects_when_it_is_up() {
    use taskmill_testkit::redis::free_port;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0?namespace={}", fresh_namespace());
    let lazily = taskmill_redis::RedisOptions::default().connect_lazily(true);
    let store = RedisStore::open_with(&url, lazily).await.unwrap();
    let asked = Instant::now();
    let err = store.stats(&taskmill_testkit::all_due()).await.unwrap_err();
    assert_eq!(err.kind(), taskmill_core::ErrorKind::Unavailable, "{err}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "failing took {:?}",
        asked.elapsed()
    );
    let server = tokio::task::spawn_blocking(move || {
        RedisServer::start_with(ServerConfig::default().port(port))
    })
    .await
    .unwrap();
    wait_until("the store to connect", Duration::from_secs(10), || async {
        store.stats(&taskmill_testkit::all_due()).await.is_ok()
    })
    .await;
    store
        .enqueue(
            vec![Task::new("t", &1).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        1
    );
    drop(server);
}
