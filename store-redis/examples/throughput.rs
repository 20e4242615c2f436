//! The gocraft/work workload on the Redis store: 100k no-op tasks over 5 topics, each
//! incrementing a counter; enqueue and processing rates measured separately.
//!
//! ```text
//! cargo run --release -p taskmill-redis --example throughput --features test-support [-- TASKS CONCURRENCY]
//! ```
//!
//! It starts its own redis-server on a free loopback port (like the tests). With
//! `SHOW_REDIS_STATS=1` it prints Redis' `INFO commandstats` after each phase: how long
//! the scripts and the commands inside them took on the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_redis::test_support::{fresh_namespace, RedisServer};
use taskmill_redis::RedisStore;

const TOPICS: u64 = 5;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(&fresh_namespace()))
        .await
        .unwrap();

    let started = Instant::now();
    for chunk in (0..tasks).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|i| Task::new(format!("topic{}", i % TOPICS), i).unwrap())
            .collect();
        store
            .enqueue(batch, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }
    let enqueue = started.elapsed();
    println!(
        "enqueue: {tasks} tasks in {enqueue:.2?} = {:.0} tasks/s (batches of 1000)",
        tasks as f64 / enqueue.as_secs_f64()
    );

    let show = std::env::var_os("SHOW_REDIS_STATS").is_some();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port())).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    if show {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut raw)
            .await
            .unwrap();
        println!("{info}");
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let count = Arc::new(AtomicU64::new(0));
    let manager = Manager::builder(store.clone())
        .concurrency(concurrency)
        .stats_interval(None)
        .build();
    for t in 0..TOPICS {
        let count = count.clone();
        manager
            .register(format!("topic{t}"), move |_ctx: TaskContext| {
                count.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, TaskError>(()) }
            })
            .unwrap();
    }
    let cpu_before = cpu_time();
    let started = Instant::now();
    manager.start().await.unwrap();
    loop {
        let stats = store.stats().await.unwrap();
        if stats.total.counters.completed >= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let process = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    manager.close().await.unwrap();
    println!(
        "process: {tasks} tasks in {process:.2?} = {:.0} tasks/s (concurrency {concurrency}, ran {}, this process used {cpu:.2?} of CPU)",
        tasks as f64 / process.as_secs_f64(),
        count.load(Ordering::Relaxed)
    );
    if show {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut raw)
            .await
            .unwrap();
        println!("{info}");
    }
}

/// User + system CPU time of this process so far (Linux; zero elsewhere).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; 100 ticks/s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
