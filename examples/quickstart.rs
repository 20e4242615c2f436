//! Quickstart: two topics, a few hundred tasks, some failing and retried, one dead.
//!
//! Run it with `cargo run --example quickstart` (add `RUST_LOG=taskmill=debug` to see the
//! manager's tracing). It prints a live summary of the event stream and the final stats,
//! and exits by itself in a few seconds.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use taskmill::{Backoff, Event, Manager, Task, TaskContext, TaskError};

#[derive(Serialize, Deserialize)]
struct Email {
    to: String,
}

#[tokio::main]
async fn main() -> taskmill::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    // Any URL works here: "sqlite://tasks.db", "redis://127.0.0.1:6379/0?namespace=demo", …
    // with the matching cargo feature enabled.
    let store = taskmill::open("memory://").await?;
    let manager = Manager::builder_shared(store)
        .concurrency(16)
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            2.0,
            Duration::from_secs(1),
            0.2,
        ))
        .default_retries(3)
        .build();

    // A typed processor: the arguments arrive as an `Email`.
    manager.register_typed("emails", |email: Email, ctx: TaskContext| async move {
        // user7 and user70–79 bounce on their first attempt and succeed when retried.
        if email.to.starts_with("user7") && ctx.attempt() == 1 {
            return Err(TaskError::msg(format!("mailbox {} is busy", email.to)));
        }
        Ok(())
    })?;
    // A raw processor: it reads the JSON itself.
    manager.register("thumbnails", |ctx: TaskContext| async move {
        let size: u32 = ctx.args()?;
        if size == 0 {
            // Fails every attempt: ends up in the dead queue.
            return Err(TaskError::msg("cannot make a 0-pixel thumbnail"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    })?;

    let mut events = manager.watch().await?;
    manager.start().await?;

    let mut tasks = Vec::new();
    for i in 0..200 {
        tasks.push(Task::new(
            "emails",
            &Email {
                to: format!("user{i}@example.com"),
            },
        )?);
    }
    for size in 0..100u32 {
        tasks.push(Task::new("thumbnails", &size)?.priority(if size < 10 { -1 } else { 0 }));
    }
    manager.enqueue_batch(tasks).await?;

    // Follow the event stream until every task is completed or dead.
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut completed, mut dead) = (0, 0);
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while completed + dead < 300 {
        let event = tokio::select! {
            Some(event) = events.next() => event,
            _ = &mut deadline => break,
        };
        *seen.entry(event.name()).or_default() += 1;
        match &event {
            Event::TaskCompletion { .. } => completed += 1,
            Event::TaskFailure { id, error, .. } => {
                dead += 1;
                println!("task {id} is dead: {error}");
            }
            Event::TaskRetry {
                id,
                error,
                retry_at,
                ..
            } => {
                println!("task {id} will retry at {retry_at}: {error}");
            }
            _ => {}
        }
        if (completed + dead) % 100 == 0 && matches!(event, Event::TaskCompletion { .. }) {
            println!("… {completed} completed, {dead} dead so far");
        }
    }

    manager.close_with_timeout(Duration::from_secs(5)).await?;
    println!("\nevents seen: {seen:?}");
    let stats = manager.stats().await?;
    let c = stats.total.counters;
    println!(
        "final stats: enqueued {} started {} retried {} failed {} completed {} | input {} work {} dead {}",
        c.enqueued, c.started, c.retried, c.failed, c.completed,
        stats.total.sizes.input, stats.total.sizes.work, stats.total.sizes.dead
    );
    Ok(())
}
