//! Administering a store today: list the dead queue, requeue or delete dead tasks, pause
//! and resume a topic. Every call here is a `Store` (or `StoreExt`) method, so it works the
//! same on every backend and from any process that opens the store, manager or not.
//!
//! Run it with `cargo run --example admin`. It sends two tasks to DEAD, lists them,
//! requeues one, deletes the other, and pauses a topic, printing each step.

use std::time::Duration;
use taskmill::store::{ListOptions, RequeueOptions};
use taskmill::{Manager, Queue, StoreExt, Task, TaskContext, TaskError, Timestamp};

#[tokio::main]
async fn main() -> taskmill::Result<()> {
    let store = taskmill::open("memory://").await?;
    let manager = Manager::builder_shared(store.clone())
        .default_retries(0)
        .build();
    manager.register("reports", |ctx: TaskContext| async move {
        let n: u32 = ctx.args()?;
        Err::<(), _>(TaskError::permanent(TaskError::msg(format!(
            "report {n}: no such account"
        ))))
    })?;
    manager.start().await?;
    for n in [1, 2] {
        manager.enqueue(Task::new("reports", &n)?).await?;
    }
    // Wait (bounded) until both have failed for good.
    for _ in 0..200 {
        if store.stats().await?.total.sizes.dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    manager.close().await?;

    // A page of the dead queue of one topic; `page.next` is the cursor of the next page.
    let page = store
        .list(&ListOptions::new(Queue::Dead).topic("reports").limit(50))
        .await?;
    for task in &page.tasks {
        println!(
            "dead: #{} {} {} error={:?}",
            task.id,
            task.topic,
            task.args.as_str(),
            task.last_error
        );
    }
    let [first, second] = [page.tasks[0].id, page.tasks[1].id];

    // Requeue one (back to INPUT, due now, with fresh attempts) and delete the other.
    let moved = store
        .requeue(&[first], &RequeueOptions::new(Timestamp::now()))
        .await?;
    println!("requeued #{first}: {}", moved[0]);
    let deleted = store.delete(&[second]).await?;
    println!("deleted #{second}: {}", deleted[0]);

    // Every dead task of a topic at once (pages through the queue).
    let all = store
        .requeue_all_dead(Some("reports"), Timestamp::now())
        .await?;
    println!("requeued the rest of the dead queue: {all}");

    // Pause a topic store-wide: no manager claims its tasks until it is resumed.
    store.set_paused("reports", true).await?;
    let reports = store.stats().await?.topic("reports");
    println!(
        "reports: paused={} input={} dead={}",
        reports.paused, reports.sizes.input, reports.sizes.dead
    );
    store.set_paused("reports", false).await?;
    Ok(())
}
