//! Administering a store with a [`Client`]: list the dead queue, requeue or delete dead
//! tasks one by one or all at once, cancel waiting tasks, pause and resume a topic. A
//! client needs no manager: it works the same on every backend and from any process that
//! opens the store.
//!
//! Run it with `cargo run --example admin`. It sends tasks to DEAD, lists them, requeues
//! one, deletes another, requeues and deletes the rest in bulk, cancels a scheduled task,
//! and pauses a topic, printing each step.

use std::time::Duration;
use taskmill::store::ListOptions;
use taskmill::{Client, Manager, Queue, Task, TaskContext, TaskError};

#[tokio::main]
async fn main() -> taskmill::Result<()> {
    let store = taskmill::open("memory://").await?;
    let client = Client::shared(store.clone()).by("admin-example");
    let manager = Manager::builder_shared(store).default_retries(0).build();
    manager.register("reports", |ctx: TaskContext| async move {
        let n: u32 = ctx.args()?;
        Err::<(), _>(TaskError::permanent(TaskError::msg(format!(
            "report {n}: no such account"
        ))))
    })?;
    manager.start().await?;
    for n in 1..=4 {
        client.enqueue(Task::new("reports", &n)?).await?;
    }
    // Wait (bounded) until all four have failed for good.
    for _ in 0..200 {
        if client.stats().await?.total.sizes.dead == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    manager.close().await?;

    // A page of the dead queue of one topic; `page.next` is the cursor of the next page.
    let page = client
        .list(ListOptions::new(Queue::Dead).topic("reports").limit(50))
        .await?;
    for task in &page.tasks {
        println!(
            "dead: #{} {} {} error={:?}",
            task.id,
            task.topic,
            task.args.as_str(),
            task.last_error()
        );
    }
    let [first, second] = [page.tasks[0].id, page.tasks[1].id];

    // Requeue one (back to INPUT, due now, with fresh attempts) and delete another.
    let moved = client.requeue(&[first]).await?;
    println!("requeued #{first}: {}", moved[0]);
    let deleted = client.delete(&[second]).await?;
    println!("deleted #{second}: {}", deleted[0]);

    // Every dead task of a topic at once: the client pages through the queue.
    let requeued = client.requeue_dead(Some("reports")).await?;
    println!("requeued the rest of the dead queue: {requeued}");
    let deleted = client.delete_dead(Some("reports")).await?;
    println!("dead tasks left to delete: {deleted}");

    // A waiting task (here scheduled for later) is cancelled at once and never runs.
    let later = Task::new("reports", &5)?.delay(Duration::from_secs(3600));
    let id = client.enqueue(later).await?.id();
    println!("cancel #{id}: {:?}", client.cancel(&[id]).await?[0]);
    let info = client.status(id).await?.expect("kept as history");
    println!(
        "#{id} is {} (by {:?})",
        info.status.as_str(),
        info.record.cancelled_by
    );
    // Or every waiting task of a topic.
    println!(
        "cancelled waiting: {}",
        client.cancel_waiting(Some("reports")).await?
    );

    // Pause a topic store-wide: no manager claims its tasks until it is resumed.
    client.pause("reports").await?;
    let reports = client.stats().await?.topic("reports");
    println!(
        "reports: paused={} input={} dead={} cancelled={}",
        reports.paused, reports.sizes.input, reports.sizes.dead, reports.sizes.cancelled
    );
    client.resume("reports").await?;
    Ok(())
}
