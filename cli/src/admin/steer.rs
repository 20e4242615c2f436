//! `enqueue`, `retry`, `delete`, `cancel`, `pause` and `resume`: changes to a store, made
//! through a client.

use super::format::{parse_duration, parse_time};
use super::{print, print_json, Failure, Outcome, StoreArg};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;
use taskmill::store::{Cancellation, ListOptions};
use taskmill::{Client, Payload, Queue, Task, TaskId, Timestamp, BULK_PAGE};

/// `taskmill enqueue`.
#[derive(Args, Debug)]
pub struct EnqueueArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The topic.
    topic: String,
    /// The task's arguments, as JSON (`'{"to": "ada@example.com"}'`, `42`, `'"text"'`).
    args: String,
    /// Due after this long (`90s`, `10m`, `2h`, `1d`; plain numbers are seconds).
    #[arg(long, value_parser = parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Due at this time: RFC 3339 in UTC, e.g. 2026-11-22T06:40:01Z.
    #[arg(long, value_parser = parse_time)]
    at: Option<Timestamp>,
    /// Priority: higher runs first among due tasks (-32768 to 32767).
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i16>,
    /// At most one task holds this key while it waits or runs; another enqueue with it
    /// returns the holder's id.
    #[arg(long, value_name = "KEY")]
    unique_key: Option<String>,
    /// Retry limit (unset: the limit of the manager that first claims it).
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// A header carried to every run, as KEY=VALUE; repeat for more.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Print one JSON document: `{"id": N, "duplicate": bool}`.
    #[arg(long)]
    json: bool,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl EnqueueArgs {
    /// Builds the task from the arguments (every check before the store is touched), then
    /// enqueues it and prints its id, or the id of the task it duplicates.
    pub async fn run(self) -> Outcome {
        let task = self.task()?;
        let client = self.store.client().await?;
        let enqueued = client.enqueue(task).await?;
        let (id, duplicate) = (enqueued.id(), !enqueued.is_new());
        if self.json {
            print_json(&serde_json::json!({ "id": id, "duplicate": duplicate }));
        } else if duplicate {
            print(&format!(
                "not enqueued: a duplicate of task {id}, which holds the same unique key\n"
            ));
        } else {
            print(&format!("{id}\n"));
        }
        Ok(())
    }

    fn task(&self) -> Result<Task, Failure> {
        let args = Payload::from_json(self.args.as_str()).map_err(|e| {
            Failure::usage(format!(
                "the arguments are not valid JSON ({e}); quote them for the shell, \
                 e.g. '{{\"to\": \"ada@example.com\"}}'"
            ))
        })?;
        let usage = |e: taskmill::Error| Failure::usage(e.to_string());
        let mut task = Task::with_payload(self.topic.as_str(), args).map_err(usage)?;
        if let Some(delay) = self.delay {
            task = task.delay(delay);
        }
        if let Some(at) = self.at {
            task = task.run_at(at);
        }
        if let Some(priority) = self.priority {
            task = task.priority(priority);
        }
        if let Some(key) = &self.unique_key {
            task = task.unique_key(key.as_str());
        }
        if let Some(retries) = self.retries {
            task = task.max_retries(retries);
        }
        for (key, value) in &self.headers {
            task = task.header(key.as_str(), value.as_str()).map_err(usage)?;
        }
        Ok(task)
    }
}

/// The ids, or every dead task, that `retry` and `delete` act on.
#[derive(Args, Debug)]
#[group(id = "targets", required = true, multiple = false)]
pub struct DeadTargets {
    /// The tasks' ids.
    #[arg(group = "targets", value_name = "ID")]
    ids: Vec<u64>,
    /// Every dead task (of --topic, if given), a page at a time.
    #[arg(long, group = "targets")]
    all_dead: bool,
}

/// `taskmill retry` and `taskmill delete`.
#[derive(Args, Debug)]
pub struct DeadArgs {
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    targets: DeadTargets,
    /// With --all-dead: only this topic's dead tasks.
    #[arg(long, requires = "all_dead")]
    topic: Option<String>,
    /// Print JSON: per id `{"id": N, "ok": bool, "result": …}` in `results`, or `{"count": N}` with
    /// --all-dead.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// What `retry` or `delete` does to each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadAction {
    /// Dead tasks back to INPUT, due now, with fresh attempts.
    Retry,
    /// Tasks removed from whichever queue holds them.
    Delete,
}

impl DeadAction {
    fn past(self) -> &'static str {
        match self {
            DeadAction::Retry => "requeued",
            DeadAction::Delete => "deleted",
        }
    }

    async fn apply(self, client: &Client, ids: &[TaskId]) -> taskmill::Result<Vec<bool>> {
        match self {
            DeadAction::Retry => client.requeue(ids).await,
            DeadAction::Delete => client.delete(ids).await,
        }
    }
}

impl DeadArgs {
    /// Acts on each id and prints what became of it (failing when any was left alone),
    /// or on every dead task, a page at a time, and prints how many.
    pub async fn run(self, action: DeadAction) -> Outcome {
        let client = self.store.client().await?;
        if self.targets.all_dead {
            return self.run_all(&client, action).await;
        }
        let ids: Vec<TaskId> = self.targets.ids.iter().copied().map(TaskId::new).collect();
        let done = action.apply(&client, &ids).await?;
        let mut results = Vec::with_capacity(ids.len());
        for (id, ok) in ids.iter().zip(done) {
            let result = match (ok, action) {
                (true, _) => action.past().to_owned(),
                // A delete leaves a task alone only when the store does not hold it.
                (false, DeadAction::Delete) => "not found".to_owned(),
                (false, DeadAction::Retry) => match client.get(*id).await? {
                    None => "not found".to_owned(),
                    Some(r) => format!("left alone: it is {}, not dead", r.queue),
                },
            };
            results.push((*id, ok, result));
        }
        report(self.json, &results, action.past())
    }

    async fn run_all(&self, client: &Client, action: DeadAction) -> Outcome {
        let topic = self.topic.as_deref();
        let stats = client.stats().await?;
        let expected = match topic {
            Some(t) => stats.topic(t).sizes.dead,
            None => stats.total.sizes.dead,
        };
        let bar = progress_bar(expected, !self.quiet && !self.json, action.past());
        let mut opts = ListOptions::new(Queue::Dead).limit(BULK_PAGE);
        if let Some(t) = topic {
            opts = opts.topic(t);
        }
        let mut count = 0u64;
        // Page by cursor past each page's last id, as Client::requeue_dead does: a task
        // requeued here that fails again is not visited twice, and at most BULK_PAGE ids
        // are held at once.
        loop {
            let page = client.list(opts.clone()).await?;
            let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
            if !ids.is_empty() {
                let done = action.apply(client, &ids).await?;
                let moved = done.into_iter().filter(|d| *d).count() as u64;
                count += moved;
                bar.inc(ids.len() as u64);
            }
            match page.next {
                Some(next) => opts.after = Some(next),
                None => break,
            }
        }
        bar.finish_and_clear();
        if self.json {
            print_json(&serde_json::json!({ "count": count }));
        } else {
            let scope = topic.map_or_else(String::new, |t| format!(" of topic {t}"));
            print(&format!("{} {count} dead tasks{scope}\n", action.past()));
        }
        Ok(())
    }
}

/// A bar for `total` tasks on stderr when it is a terminal and `wanted`; hidden otherwise.
fn progress_bar(total: u64, wanted: bool, what: &str) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    bar
}

/// `taskmill cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The tasks' ids.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<u64>,
    /// Print one JSON document: per id `{"id": N, "ok": bool, "result": …}` in `results`.
    #[arg(long)]
    json: bool,
}

impl CancelArgs {
    /// Cancels each task and prints what became of it; fails when any was refused or
    /// unknown.
    pub async fn run(self) -> Outcome {
        let client = self.store.client().await?;
        let ids: Vec<TaskId> = self.ids.iter().copied().map(TaskId::new).collect();
        let done = client.cancel(&ids).await?;
        let results: Vec<(TaskId, bool, String)> = ids
            .iter()
            .zip(done)
            .map(|(id, c)| {
                let (ok, text) = match c {
                    Cancellation::Cancelled => (true, "cancelled".to_owned()),
                    Cancellation::Requested => (
                        true,
                        "cancel requested: it is running, and stops when its manager learns it"
                            .to_owned(),
                    ),
                    Cancellation::Refused(queue) => (
                        false,
                        format!("refused: it is {queue}, not waiting or running"),
                    ),
                    Cancellation::NotFound => (false, "not found".to_owned()),
                    _ => (false, format!("{c:?}")),
                };
                (*id, ok, text)
            })
            .collect();
        report(self.json, &results, "cancelled")
    }
}

/// Prints one line (or JSON row) per id with what became of it; fails naming how many
/// were not `past` (`"requeued"`, `"cancelled"`, …).
fn report(json: bool, results: &[(TaskId, bool, String)], past: &str) -> Outcome {
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(id, ok, result)| serde_json::json!({"id": id, "ok": ok, "result": result}))
            .collect();
        print_json(&serde_json::json!({ "results": rows }));
    } else {
        let mut out = String::new();
        for (id, _, result) in results {
            let _ = writeln!(out, "{id}: {result}");
        }
        print(&out);
    }
    match results.iter().filter(|(_, ok, _)| !ok).count() {
        0 => Ok(()),
        n => Err(Failure::failed(format!(
            "{n} of {} tasks were not {past}",
            results.len()
        ))),
    }
}

/// `taskmill pause` and `taskmill resume`.
#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The topic.
    topic: String,
}

impl TopicArgs {
    /// Pauses (or resumes) claiming from the topic, store-wide.
    pub async fn run(self, pause: bool) -> Outcome {
        taskmill::raw::validate_topic(&self.topic).map_err(|e| Failure::usage(e.to_string()))?;
        let client = self.store.client().await?;
        if pause {
            client.pause(&self.topic).await?;
            print(&format!(
                "paused topic {}: no manager claims its tasks until `taskmill resume {}`\n",
                self.topic, self.topic
            ));
        } else {
            client.resume(&self.topic).await?;
            print(&format!("resumed topic {}\n", self.topic));
        }
        Ok(())
    }
}
