//! `taskmill-test-worker`: a child process for crash and multi-process tests.
//!
//! ```text
//! taskmill-test-worker enqueue --store URL --tasks N [--topics T]
//! taskmill-test-worker run --store URL --record FILE [--tasks N] [--topics T] [--concurrency C]
//!                          [--work-ms MS] [--lease-ms MS] [--until-empty]
//! ```
//!
//! `enqueue` adds tasks `0..N` (argument = the number) over topics `t0..tT` and exits.
//! `run` processes them with a Manager (after enqueueing `--tasks N` first, if given: the
//! only way to use it with `memory://`). Each run appends `start <id> <pid> <attempt> <us>`
//! when it begins, and `end <id> <pid> <attempt> <start_us> <end_us>` when its work is done;
//! the processor returns only after its `end` line is fsync'd, so every completion the store
//! knows of is on disk. Times are microseconds since the Unix epoch. With `--until-empty`
//! it exits 0 once INPUT and WORK are both empty.

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use taskmill::{Manager, Task, TaskContext, TaskError};

#[derive(Parser)]
#[command(name = "taskmill-test-worker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Adds tasks `0..N` over topics `t0..tT` and exits.
    Enqueue(Tasks),
    /// Processes the tasks with a Manager, recording every run.
    Run(Run),
}

/// Which store, and which tasks to enqueue in it.
#[derive(Args)]
struct Tasks {
    /// The store's URL.
    #[arg(long)]
    store: String,
    /// How many tasks to enqueue (`run` enqueues them before it starts).
    #[arg(long, default_value_t = 0)]
    tasks: u64,
    /// How many topics the tasks spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    topics: u64,
}

#[derive(Args)]
struct Run {
    #[command(flatten)]
    tasks: Tasks,
    /// The file each run appends its `start` and `end` lines to.
    #[arg(long)]
    record: PathBuf,
    /// The manager's workers.
    #[arg(long, default_value_t = 25)]
    concurrency: usize,
    /// How long each run works.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// The manager's lease.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Exit 0 once INPUT and WORK are both empty.
    #[arg(long)]
    until_empty: bool,
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

/// Appends lines to the record file from one thread, fsyncing in groups: a line sent with
/// an acknowledgement is acknowledged only once it is on disk.
fn recorder(path: &Path) -> mpsc::Sender<(String, Option<tokio::sync::oneshot::Sender<()>>)> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open record file {}: {e}", path.display()));
    let (tx, rx) = mpsc::channel::<(String, Option<tokio::sync::oneshot::Sender<()>>)>();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let text: String = batch.iter().map(|(line, _)| line.as_str()).collect();
            file.write_all(text.as_bytes()).expect("write record");
            if batch.iter().any(|(_, ack)| ack.is_some()) {
                file.sync_data().expect("fsync record");
            }
            for (_, ack) in batch {
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
        }
    });
    tx
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let (Command::Enqueue(tasks) | Command::Run(Run { tasks, .. })) = &cli.command;
    let store = taskmill::open(&tasks.store).await.unwrap_or_else(|e| {
        eprintln!("taskmill-test-worker: cannot open {}: {e}", tasks.store);
        std::process::exit(1)
    });
    let topic = |i: u64| format!("t{}", i % tasks.topics);
    let enqueue = |manager: Manager| async move {
        for chunk in (0..tasks.tasks).collect::<Vec<_>>().chunks(1000) {
            let batch = chunk
                .iter()
                .map(|i| Task::new(topic(*i), i).expect("task"))
                .collect();
            manager.enqueue_batch(batch).await.expect("enqueue");
        }
        eprintln!("enqueued {}", tasks.tasks);
    };
    let run = match &cli.command {
        Command::Enqueue(_) => return enqueue(Manager::builder_shared(store).build()).await,
        Command::Run(run) => run,
    };
    let record = recorder(&run.record);
    let manager = Manager::builder_shared(store.clone())
        .concurrency(run.concurrency)
        .lease(Duration::from_millis(run.lease_ms))
        .poll_interval(Duration::from_millis(100))
        .stats_interval(None)
        .build();
    let pid = std::process::id();
    let work = Duration::from_millis(run.work_ms);
    for t in 0..tasks.topics {
        let record = record.clone();
        manager
            .register(topic(t), move |ctx: TaskContext| {
                let record = record.clone();
                async move {
                    let n: u64 = ctx.args()?;
                    let start = micros();
                    let line = format!("start {n} {pid} {} {start}\n", ctx.attempt());
                    record.send((line, None)).map_err(TaskError::msg)?;
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    let (ack, done) = tokio::sync::oneshot::channel();
                    let line = format!("end {n} {pid} {} {start} {}\n", ctx.attempt(), micros());
                    record.send((line, Some(ack))).map_err(TaskError::msg)?;
                    done.await.map_err(TaskError::msg)?;
                    Ok::<_, TaskError>(())
                }
            })
            .expect("register");
    }
    if tasks.tasks > 0 {
        enqueue(manager.clone()).await;
    }
    manager.start().await.expect("start");
    eprintln!("worker {pid} started");
    if !run.until_empty {
        return std::future::pending().await;
    }
    // Bounded by the caller: tests kill a worker that outlives their deadline.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match store
            .stats(&taskmill::store::StatsOptions::new(
                taskmill::Timestamp::now(),
            ))
            .await
        {
            Ok(s) if s.total.sizes.input == 0 && s.total.sizes.work == 0 => break,
            Ok(_) => {}
            Err(e) => eprintln!("worker {pid}: stats: {e}"),
        }
    }
    manager.close().await.expect("close");
    eprintln!("worker {pid} done");
}
