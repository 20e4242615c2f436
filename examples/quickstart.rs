//! Quickstart: two topics, a few hundred tasks, some failing and retried, one dead; a
//! schedule firing every second; then a status lookup with its result, a cancel of a
//! running task from a client, and the schedule's state.
//!
//! Run it with `cargo run --example quickstart` (add `RUST_LOG=taskmill=debug` to see the
//! manager's tracing). It prints a live summary of the event stream, a task's status and
//! result, a cancel, the schedule's ticks, and the final stats, and exits by itself in a
//! few seconds.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use taskmill::store::Cancellation;
use taskmill::{
    Backoff, Client, Event, Manager, Schedule, Task, TaskContext, TaskError, TaskId, TaskStatus,
};

#[derive(Serialize, Deserialize)]
struct Email {
    to: String,
}

/// What the emails processor stores as its result.
#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    message_id: String,
}

#[tokio::main]
async fn main() -> taskmill::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    // Any URL works here: "sqlite://tasks.db", "redis://127.0.0.1:6379/0?namespace=demo", …
    // with the matching cargo feature enabled.
    let store = taskmill::open("memory://").await?;
    let manager = Manager::builder_shared(store.clone())
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
        // Kept on the task's record (for a day, by default) and shown by its status.
        ctx.set_result(&Receipt {
            message_id: format!("<{}.{}@mail.example>", ctx.id(), ctx.attempt()),
        })?;
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
    // A long task that reports its progress and stops when it is cancelled.
    manager.register("exports", |ctx: TaskContext| async move {
        for rows in (0u64..).step_by(1000) {
            ctx.progress(&rows).await?;
            tokio::select! {
                _ = ctx.cancelled() => return Err(TaskError::msg("export stopped")),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        Ok(())
    })?;

    // A periodic task: every second, one `heartbeats` task, however many managers run
    // this schedule (each tick is decided once, in the store). Cron expressions work too:
    // `Schedule::new("nightly", "0 30 2 * * *", task)?.zone("Europe/Berlin")?`.
    manager.register("heartbeats", |ctx: TaskContext| async move {
        let tick = ctx.headers().get(taskmill::TICK_HEADER).unwrap_or("?");
        println!("heartbeat for tick {tick}");
        Ok::<_, TaskError>(())
    })?;
    manager.schedule(Schedule::every(
        "heartbeat",
        Duration::from_secs(1),
        Task::new("heartbeats", &())?,
    )?)?;

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
    let ids = manager.enqueue_batch(tasks).await?;
    let user71 = ids[71].id();

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
            Event::TaskCompletion { topic, .. } if &**topic != "heartbeats" => completed += 1,
            Event::TaskEnqueue {
                tick: Some(tick), ..
            } => println!("schedule {:?} fired its tick {}", tick.schedule, tick.tick),
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
        let batch_done =
            matches!(&event, Event::TaskCompletion { topic, .. } if &**topic != "heartbeats");
        if batch_done && (completed + dead) % 100 == 0 {
            println!("… {completed} completed, {dead} dead so far");
        }
    }

    // A client on the same store: what a web server or an operator's script uses, with no
    // processors of its own. Look a task up by id: its status, attempts, and result.
    let client = Client::shared(store).by("quickstart");
    let info = client.status(user71).await?.expect("kept for a day");
    println!(
        "\ntask {user71}: {} after {} attempts (first failed: {:?}), result {:?}",
        info.status.as_str(),
        info.record.attempt,
        info.record.errors.first().map(|e| &e.message),
        info.result::<Receipt>()?,
    );

    // Cancel a running task: its processor sees `ctx.cancelled()` and the task ends
    // cancelled, not retried. A task that is only waiting is cancelled at once.
    let export = client.enqueue(Task::new("exports", "orders")?).await?.id();
    wait_for(&client, export, "a running export with progress", |info| {
        matches!(info.status, TaskStatus::Running { .. }) && info.record.progress.is_some()
    })
    .await?;
    let cancelled = client.cancel(&[export]).await?;
    assert_eq!(cancelled, [Cancellation::Requested], "it was running");
    let info = wait_for(&client, export, "the export cancelled", |info| {
        info.status == TaskStatus::Cancelled
    })
    .await?;
    println!(
        "task {export}: {} by {:?} at {} rows",
        info.status.as_str(),
        info.record.cancelled_by,
        info.progress::<u64>()?.unwrap_or(0),
    );

    // The schedule as the store keeps it: shared by every manager that runs it.
    for schedule in client.schedules().await? {
        let state = &schedule.state;
        println!(
            "schedule {:?} ({} {}): last tick {}, next tick {}, last task {}",
            state.name,
            state.spec,
            state.zone,
            state.last_tick.map_or("none".into(), |t| t.to_string()),
            schedule.next_tick.map_or("none".into(), |t| t.to_string()),
            state.last_task.map_or("none".into(), |t| t.to_string()),
        );
    }

    manager.close_with_timeout(Duration::from_secs(5)).await?;
    println!("\nevents seen: {seen:?}");
    let stats = client.stats().await?;
    let (c, sizes) = (stats.total.counters, stats.total.sizes);
    println!(
        "final stats: enqueued {} started {} retried {} failed {} completed {} cancelled {} \
         | input {} work {} dead {} | kept: completed {} cancelled {}",
        c.enqueued,
        c.started,
        c.retried,
        c.failed,
        c.completed,
        c.cancelled,
        sizes.input,
        sizes.work,
        sizes.dead,
        sizes.completed,
        sizes.cancelled
    );
    Ok(())
}

/// Polls the status of `id` until `done` holds (for at most 5 s).
async fn wait_for(
    client: &Client,
    id: TaskId,
    what: &str,
    done: impl Fn(&taskmill::TaskInfo) -> bool,
) -> taskmill::Result<taskmill::TaskInfo> {
    for _ in 0..500 {
        if let Some(info) = client.status(id).await? {
            if done(&info) {
                return Ok(info);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(taskmill::Error::storage(format!("no {what} within 5 s")))
}
