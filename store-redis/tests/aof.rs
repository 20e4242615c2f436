//! What a kill of the Redis process loses under each `appendfsync` policy: nothing that was
//! acknowledged.
//!
//! Redis appends every write to the append-only file before it replies, and a killed process
//! leaves what it wrote in the kernel's page cache. So for a SIGKILL (or an OOM kill) of the
//! server, `everysec` and `always` keep the same: every enqueue that returned `Ok` and every
//! outcome that was applied. They differ only when the machine itself goes down, which a
//! test cannot do; `store-redis/README.md` states that part.
//!
//! Each test enqueues while a manager works, kills the server mid-load, keeps it down for a
//! second, starts it again on the same file, and checks that every acknowledged task ran and
//! the store's counters agree: enqueued = completed, nothing failed, nothing left.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Client, Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer, ServerConfig};
use taskmill_testkit::wait_until;

/// Tasks per enqueue call.
const BATCH: u64 = 100;
/// The enqueuer stops after this many batches, acknowledged or not.
const MAX_BATCHES: u64 = 400;
/// Batches acknowledged after the restart before the enqueuer stops.
const AFTER_RESTART: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_nothing_acknowledged_with_appendfsync_everysec() {
    kill_under_load("everysec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_nothing_acknowledged_with_appendfsync_always() {
    kill_under_load("always").await;
}

async fn kill_under_load(fsync: &str) {
    let server = RedisServer::start_with(
        ServerConfig::default()
            .appendonly(true)
            .args(["--appendfsync", fsync]),
    );
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::open(&server.url(&fresh_namespace()))
            .await
            .unwrap(),
    );
    let client = Client::new(store.clone());

    let ran: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let seen = ran.clone();
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
                tokio::time::sleep(Duration::from_micros(200)).await;
                seen.lock().unwrap().insert(n);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();

    // The enqueuer: numbered batches; a batch counts as acknowledged only when `enqueue`
    // returned Ok. A failed batch may or may not have been stored, so it is not counted.
    let acknowledged: Arc<Mutex<Vec<u64>>> = Arc::default();
    let restarted = Arc::new(AtomicBool::new(false));
    let enqueuer = tokio::spawn({
        let (store, acknowledged, restarted) =
            (store.clone(), acknowledged.clone(), restarted.clone());
        async move {
            let mut after_restart = 0;
            for batch in 0..MAX_BATCHES {
                let numbers: Vec<u64> = (batch * BATCH..(batch + 1) * BATCH).collect();
                let tasks = numbers.iter().map(|n| Task::new("t", n).unwrap()).collect();
                match store
                    .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
                    .await
                {
                    Ok(_) => {
                        acknowledged.lock().unwrap().extend(numbers);
                        if restarted.load(Ordering::SeqCst) {
                            after_restart += 1;
                            if after_restart == AFTER_RESTART {
                                return;
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    // A backlog first, so the kill finds tasks waiting as well as running.
    wait_until("a backlog", Duration::from_secs(60), || async {
        acknowledged.lock().unwrap().len() >= 4_000
    })
    .await;
    manager.start().await.unwrap();
    wait_until("the load to get going", Duration::from_secs(60), || async {
        ran.lock().unwrap().len() >= 1_000
    })
    .await;
    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill();
        server
    })
    .await
    .unwrap();
    let at_kill = acknowledged.lock().unwrap().len();
    assert!(
        !enqueuer.is_finished(),
        "the enqueuer stopped before the kill: nothing was tested"
    );
    // The outage the scenario calls for: Redis stays down for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    restarted.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(120), enqueuer)
        .await
        .expect("the enqueuer finishes within 120 s of the restart")
        .unwrap();

    let stats = wait_for_drain(&client).await;
    manager.close().await.unwrap();

    let ran = ran.lock().unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() > at_kill,
        "no enqueue was acknowledged after the restart"
    );
    let lost: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|n| !ran.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "appendfsync {fsync}: {} acknowledged tasks never ran, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let c = stats.total.counters;
    assert!(
        c.enqueued >= acknowledged.len() as u64,
        "appendfsync {fsync}: the store counts {} enqueued, {} were acknowledged",
        c.enqueued,
        acknowledged.len()
    );
    assert_eq!(
        (c.completed, c.failed),
        (c.enqueued, 0),
        "appendfsync {fsync}: {c:?}"
    );
    eprintln!(
        "appendfsync {fsync}: {} acknowledged ({at_kill} before the kill), {} stored, all ran; {c:?}",
        acknowledged.len(),
        c.enqueued
    );
    drop(server);
}

/// Waits until no task is waiting, running or dead, and returns the stats that showed it.
async fn wait_for_drain(client: &Client) -> taskmill_core::Stats {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(stats) = client.stats().await {
            if stats.total.sizes.active() == 0 {
                return stats;
            }
        }
        assert!(
            Instant::now() < deadline,
            "tasks left 120 s after the restart: {:?}",
            client.stats().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
