//! Measures the sled store on gocraft/work's workload: no-op tasks across 5 topics, each
//! incrementing a counter; enqueue rate (batches of 1,000) and processing rate apart.
//!
//! ```text
//! cargo run --release -p taskmill-sled --example throughput -- [TASKS] [always|enqueues|periodic]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Store, Task, TaskContext, TaskError, Timestamp};
use taskmill_sled::{FlushPolicy, SledOptions, SledStore};

const TOPICS: u64 = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let flush: FlushPolicy = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let store = SledStore::open_with(dir.path().join("db"), SledOptions::default().flush(flush))?;

    let started = Instant::now();
    let ids: Vec<u64> = (0..tasks).collect();
    for chunk in ids.chunks(1000) {
        let batch = chunk
            .iter()
            .map(|i| Task::new(format!("t{}", i % TOPICS), i))
            .collect::<Result<Vec<_>, _>>()?;
        store
            .enqueue(batch, &EnqueueOptions::new(Timestamp::now()))
            .await?;
    }
    let enqueue = started.elapsed();

    let counter = Arc::new(AtomicU64::new(0));
    let manager = Manager::builder(store.clone())
        .concurrency(100)
        .stats_interval(None)
        .build();
    for t in 0..TOPICS {
        let counter = counter.clone();
        manager.register(format!("t{t}"), move |_ctx: TaskContext| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, TaskError>(()) }
        })?;
    }
    let started = Instant::now();
    manager.start().await?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let stats = store.stats().await?;
        if stats.total.counters.completed >= tasks {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("not done after 10 minutes: {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let process = started.elapsed();
    manager.close().await?;
    println!(
        "sled ({flush:?}): {tasks} tasks; enqueue {:.0}/s ({enqueue:.2?}); process {:.0}/s ({process:.2?}); counter {}",
        tasks as f64 / enqueue.as_secs_f64(),
        tasks as f64 / process.as_secs_f64(),
        counter.load(Ordering::Relaxed)
    );
    Ok(())
}
