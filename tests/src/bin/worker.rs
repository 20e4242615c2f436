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

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use taskmill::{Manager, Task, TaskContext, TaskError};

struct Args {
    command: String,
    store: String,
    record: Option<String>,
    tasks: u64,
    topics: u64,
    concurrency: usize,
    work_ms: u64,
    lease_ms: u64,
    until_empty: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it
        .next()
        .ok_or("usage: taskmill-test-worker enqueue|run --store URL …")?;
    let mut args = Args {
        command,
        store: String::new(),
        record: None,
        tasks: 0,
        topics: 1,
        concurrency: 25,
        work_ms: 0,
        lease_ms: 30_000,
        until_empty: false,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--store" => args.store = value()?,
            "--record" => args.record = Some(value()?),
            "--tasks" => args.tasks = number(value()?)?,
            "--topics" => args.topics = number(value()?)?.max(1),
            "--concurrency" => args.concurrency = number(value()?)? as usize,
            "--work-ms" => args.work_ms = number(value()?)?,
            "--lease-ms" => args.lease_ms = number(value()?)?,
            "--until-empty" => args.until_empty = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.store.is_empty() {
        return Err("--store URL is required".into());
    }
    Ok(args)
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

/// Appends lines to the record file from one thread, fsyncing in groups: a line sent with
/// an acknowledgement is acknowledged only once it is on disk.
fn recorder(path: &str) -> mpsc::Sender<(String, Option<tokio::sync::oneshot::Sender<()>>)> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open record file {path}: {e}"));
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
    let args = parse().unwrap_or_else(|e| {
        eprintln!("taskmill-test-worker: {e}");
        std::process::exit(2)
    });
    let store = taskmill::open(&args.store).await.unwrap_or_else(|e| {
        eprintln!("taskmill-test-worker: cannot open {}: {e}", args.store);
        std::process::exit(1)
    });
    let topic = |i: u64| format!("t{}", i % args.topics);
    let enqueue = |manager: Manager| async move {
        for chunk in (0..args.tasks).collect::<Vec<_>>().chunks(1000) {
            let tasks = chunk
                .iter()
                .map(|i| Task::new(topic(*i), i).expect("task"))
                .collect();
            manager.enqueue_batch(tasks).await.expect("enqueue");
        }
        eprintln!("enqueued {}", args.tasks);
    };
    match args.command.as_str() {
        "enqueue" => enqueue(Manager::builder_shared(store).build()).await,
        "run" => {
            let record = recorder(args.record.as_deref().expect("run needs --record FILE"));
            let lease = Duration::from_millis(args.lease_ms);
            let manager = Manager::builder_shared(store.clone())
                .concurrency(args.concurrency)
                .lease(lease)
                .poll_interval(Duration::from_millis(100))
                .stats_interval(None)
                .build();
            let pid = std::process::id();
            let work = Duration::from_millis(args.work_ms);
            for t in 0..args.topics {
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
                            let line =
                                format!("end {n} {pid} {} {start} {}\n", ctx.attempt(), micros());
                            record.send((line, Some(ack))).map_err(TaskError::msg)?;
                            done.await.map_err(TaskError::msg)?;
                            Ok::<_, TaskError>(())
                        }
                    })
                    .expect("register");
            }
            if args.tasks > 0 {
                enqueue(manager.clone()).await;
            }
            manager.start().await.expect("start");
            eprintln!("worker {pid} started");
            if args.until_empty {
                // Bounded by the caller: tests kill a worker that outlives their deadline.
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match store.stats().await {
                        Ok(s) if s.total.sizes.input == 0 && s.total.sizes.work == 0 => break,
                        Ok(_) => {}
                        Err(e) => eprintln!("worker {pid}: stats: {e}"),
                    }
                }
                manager.close().await.expect("close");
                eprintln!("worker {pid} done");
            } else {
                std::future::pending::<()>().await;
            }
        }
        other => {
            eprintln!("taskmill-test-worker: unknown command {other:?}");
            std::process::exit(2)
        }
    }
}
