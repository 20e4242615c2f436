//! A durable worker on SQLite: tasks live in a database file until they complete, so they
//! survive Ctrl-C, a crash, or a restart of this program.
//!
//! ```text
//! cargo run --example durable_worker --features sqlite [-- path/to/tasks.db]
//! ```
//!
//! Run it, press Ctrl-C while it works, and run it again: the second run finishes what the
//! first left. Running tasks get a few seconds to finish at Ctrl-C; the rest go back to the
//! queue without using up an attempt. It exits by itself once the queue is empty.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use taskmill::{Manager, Task, TaskContext, TaskError, TopicOptions};

#[derive(Serialize, Deserialize)]
struct Invoice {
    number: u32,
    amount_cents: u64,
}

#[tokio::main]
async fn main() -> taskmill::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tasks.db".to_owned());
    let store = taskmill::open(&format!("sqlite://{path}")).await?;
    let manager = Manager::builder_shared(store)
        .concurrency(8)
        .topic(
            "invoices",
            TopicOptions::new()
                .retries(5)
                .timeout(Duration::from_secs(10)),
        )
        .build();

    manager.register_typed(
        "invoices",
        |invoice: Invoice, ctx: TaskContext| async move {
            tokio::select! {
                // The work itself: slow enough to interrupt with Ctrl-C.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                // Asked to stop (shutdown): the task goes back to the queue, attempt not counted.
                _ = ctx.cancelled() => return Ok(()),
            }
            let sent = format!(
                "invoice {} for {} cents",
                invoice.number, invoice.amount_cents
            );
            ctx.set_result(&sent)?;
            Ok::<_, TaskError>(())
        },
    )?;

    // Only a new file gets the invoices; a restart resumes whatever the last run left.
    if manager.stats().await?.topic("invoices").counters.enqueued == 0 {
        let tasks = (0..300)
            .map(|number| {
                let invoice = Invoice {
                    number,
                    amount_cents: 1_000 + u64::from(number),
                };
                Task::new("invoices", &invoice)
            })
            .collect::<taskmill::Result<Vec<_>>>()?;
        manager.enqueue_batch(tasks).await?;
        println!("300 invoices queued in {path}");
    } else {
        println!("resuming the invoices left in {path}");
    }

    manager.start().await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let stats = manager.stats().await?.topic("invoices");
        println!(
            "waiting {:>3}  claimed {:>2}  dead {}  completed {}",
            stats.sizes.input, stats.sizes.work, stats.sizes.dead, stats.counters.completed
        );
        if stats.sizes.input == 0 && stats.sizes.work == 0 {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                println!("Ctrl-C: running tasks get 3 s to finish, the rest stay queued");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    manager.close_with_timeout(Duration::from_secs(3)).await?;
    let left = manager.stats().await?.topic("invoices").sizes;
    println!("stopped; {} invoices wait for the next run", left.input);
    Ok(())
}
