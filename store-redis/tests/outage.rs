//! Redis dies mid-run: SIGKILL the server while a manager works through 20,000 tasks,
//! start it again on the same port (append-only file on) a second later, and the manager
//! reconnects by itself and finishes every task.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_redis::test_support::{fresh_namespace, RedisServer, ServerConfig};
use taskmill_redis::RedisStore;

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

    let deadline = Instant::now() + Duration::from_secs(60);
    while done.lock().unwrap().len() < 3_000 {
        assert!(Instant::now() < deadline, "the manager did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
    let err = store.stats().await.unwrap_err();
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
        match store.stats().await {
            Ok(stats) if stats.total.sizes.total() == 0 => break stats,
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
            store.stats().await
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
