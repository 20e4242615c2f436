//! `stats`, `ls` and `show`: what a store holds, read through a client.

use super::format::{fit, human_duration, time_or_dash};
use super::{print, print_json, Failure, Outcome, StoreArg};
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use taskmill::store::{ListOptions, StatsOptions, Waiting};
use taskmill::{Queue, Stats, TaskId, TaskRecord, Timestamp, TopicStats};

/// `taskmill stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Print one JSON document: the store's figures (counters and sizes, in total and per
    /// topic, INPUT's `scheduled` and `retrying` among them) with `pending` and
    /// `latency_ms` added to each.
    #[arg(long)]
    json: bool,
}

impl StatsArgs {
    /// Prints the figures of every topic and their totals.
    pub async fn run(self) -> Outcome {
        let client = self.store.client().await?;
        // One `now` for the split of INPUT by time and for the latency.
        let now = Timestamp::now();
        let stats = client.store().stats(&StatsOptions::new(now)).await?;
        if self.json {
            print_json(&stats_json(&stats, now)?);
        } else {
            print(&stats_table(&stats, now));
        }
        Ok(())
    }
}

/// The store's own serialization of `stats` (read at `now`), with `pending` (INPUT's due
/// tasks) and `latency_ms` beside each topic's figures and the totals', and the time it
/// was judged at.
pub fn stats_json(stats: &Stats, now: Timestamp) -> Result<serde_json::Value, Failure> {
    let add = |object: &mut serde_json::Map<String, serde_json::Value>, t: &TopicStats| {
        object.insert("pending".into(), t.sizes.pending().into());
        object.insert(
            "latency_ms".into(),
            (t.latency(now).as_millis() as u64).into(),
        );
    };
    let mut value = serde_json::to_value(stats)
        .map_err(|e| Failure::failed(format!("cannot encode the statistics: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        add(object, &stats.total);
        object.insert("at".into(), now.as_millis().into());
        if let Some(topics) = object.get_mut("topics").and_then(|t| t.as_object_mut()) {
            for (name, figures) in topics.iter_mut() {
                if let (Some(object), Some(topic)) =
                    (figures.as_object_mut(), stats.topics.get(name))
                {
                    add(object, topic);
                }
            }
        }
    }
    Ok(value)
}

/// Width of the topic column; the other columns take 66, so a row is at most 79 (with up
/// to 7 digits pending or running, 5 dead, 8 retrying, 9 scheduled or completed; a larger
/// figure widens its row).
const TOPIC_WIDTH: usize = 13;

/// One row per topic, a totals row, and the transition counters, in 80 columns.
///
/// INPUT is split by time at `now`: `pending` is due, `scheduled` not yet due (never run),
/// `retrying` not yet due after a failed or interrupted run. `running` is WORK; `latency`
/// is how long the oldest due task has waited. Cancelled tasks kept are counted under the
/// table, with the counters.
pub fn stats_table(stats: &Stats, now: Timestamp) -> String {
    let mut out = String::new();
    let row = |out: &mut String, name: &str, t: &TopicStats, paused: &str| {
        let line = format!(
            "{:<tw$} {:>7} {:>9} {:>7} {:>8} {:>5} {:>9} {:>7} {:>6}",
            fit(name, TOPIC_WIDTH),
            t.sizes.pending(),
            t.sizes.scheduled,
            t.sizes.work,
            t.sizes.retrying,
            t.sizes.dead,
            t.sizes.completed,
            human_duration(t.latency(now)),
            paused,
            tw = TOPIC_WIDTH,
        );
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let _ = writeln!(
        out,
        "{:<tw$} {:>7} {:>9} {:>7} {:>8} {:>5} {:>9} {:>7} {:>6}",
        "TOPIC",
        "PENDING",
        "SCHEDULED",
        "RUNNING",
        "RETRYING",
        "DEAD",
        "COMPLETED",
        "LATENCY",
        "PAUSED",
        tw = TOPIC_WIDTH,
    );
    for (name, topic) in &stats.topics {
        row(
            &mut out,
            name,
            topic,
            if topic.paused { "yes" } else { "no" },
        );
    }
    if stats.topics.is_empty() {
        out.push_str("(no topics)\n");
    }
    row(&mut out, "TOTAL", &stats.total, "");
    let c = &stats.total.counters;
    let _ = writeln!(
        out,
        "\ncancelled tasks kept: {}\n\
         counters: enqueued {}, started {}, completed {}, retried {}, failed {},\n          \
         recovered {}, released {}, requeued {}, cancelled {}",
        stats.total.sizes.cancelled,
        c.enqueued,
        c.started,
        c.completed,
        c.retried,
        c.failed,
        c.recovered,
        c.released,
        c.requeued,
        c.cancelled
    );
    out
}

/// A state `ls` lists: a queue, under the names an operator may know it by, or a part of
/// INPUT split by time (as `stats` splits it).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INPUT: due, scheduled and retrying tasks.
    #[value(alias = "waiting")]
    Input,
    /// INPUT's tasks due now.
    Pending,
    /// INPUT's tasks not yet due that never ran.
    Scheduled,
    /// INPUT's tasks not yet due that ran before (a retry waiting for its backoff).
    Retrying,
    /// WORK: tasks running under a lease.
    #[value(alias = "work")]
    Running,
    /// DEAD: failed for good.
    Dead,
    /// COMPLETED: succeeded, kept for the retention.
    Completed,
    /// CANCELLED: cancelled, kept for the retention.
    Cancelled,
}

impl State {
    /// The queue it names.
    pub fn queue(self) -> Queue {
        match self {
            State::Input | State::Pending | State::Scheduled | State::Retrying => Queue::Input,
            State::Running => Queue::Work,
            State::Dead => Queue::Dead,
            State::Completed => Queue::Completed,
            State::Cancelled => Queue::Cancelled,
        }
    }

    /// The part of INPUT it names, if it is one.
    pub fn waiting(self) -> Option<Waiting> {
        match self {
            State::Pending => Some(Waiting::Pending),
            State::Scheduled => Some(Waiting::Scheduled),
            State::Retrying => Some(Waiting::Retrying),
            _ => None,
        }
    }

    /// The page of this state asked for, INPUT's parts split at `now`.
    pub fn list_options(self, now: Timestamp) -> ListOptions {
        match self.waiting() {
            Some(kind) => ListOptions::waiting(kind, now),
            None => ListOptions::new(self.queue()),
        }
    }
}

/// `taskmill ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The state: input (also waiting: all of INPUT), pending (due now), scheduled, retrying
    /// (not yet due), running (work), dead, completed, cancelled.
    #[arg(value_enum, hide_possible_values = true)]
    state: State,
    /// Only tasks of this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Tasks per page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
    /// Start after this id: the cursor the previous page printed.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
    /// Print one JSON document: `{"tasks": [records…], "next": ID or null}`.
    #[arg(long)]
    json: bool,
}

impl LsArgs {
    /// Prints one page of the state's tasks, in id order, and the next page's cursor.
    pub async fn run(self) -> Outcome {
        let client = self.store.client().await?;
        // One `now` for the split of INPUT and for the statuses printed.
        let now = Timestamp::now();
        let mut opts = self.state.list_options(now).limit(self.limit as usize);
        if let Some(topic) = &self.topic {
            opts = opts.topic(topic.as_str());
        }
        if let Some(after) = self.after {
            opts = opts.after(TaskId::new(after));
        }
        let page = client.list(opts).await?;
        if self.json {
            print_json(&serde_json::json!({
                "tasks": page.tasks,
                "next": page.next,
            }));
            return Ok(());
        }
        let mut out = format!(
            "{:>10} {:<14} {:<9} {:>5} {:<24} {}\n",
            "ID", "TOPIC", "STATUS", "TRY", "TIME", "NOTE"
        );
        for record in &page.tasks {
            out.push_str(&task_row(record, now));
        }
        if page.tasks.is_empty() {
            out.push_str("(no tasks)\n");
        }
        match page.next {
            Some(next) => {
                let _ = writeln!(out, "next page: --after {next}");
            }
            None => out.push_str("(last page)\n"),
        }
        print(&out);
        Ok(())
    }
}

/// One row of `ls`, at most 80 columns: the time is the one that matters in the task's
/// queue (when it is due, started, or finished), the note its last error or its arguments.
fn task_row(record: &TaskRecord, now: Timestamp) -> String {
    let time = match record.queue {
        Queue::Input => Some(record.run_at),
        Queue::Work => record.started_at,
        _ => record.finished_at,
    };
    let note = record
        .last_error()
        .map_or_else(|| record.args.as_str().to_owned(), str::to_owned);
    format!(
        "{:>10} {:<14} {:<9} {:>5} {:<24} {}\n",
        record.id,
        fit(&record.topic, 14),
        record.status(now).as_str(),
        record.attempt,
        time_or_dash(time),
        fit(&note, 12),
    )
}

/// `taskmill show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The task's id.
    id: u64,
    /// Print one JSON document: `{"status": {"state": …}, "record": {…}}`.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    /// Prints everything the store holds about one task.
    pub async fn run(self) -> Outcome {
        let client = self.store.client().await?;
        let id = TaskId::new(self.id);
        let Some(info) = client.status(id).await? else {
            return Err(Failure::failed(format!(
                "no task {id} in the store (never enqueued, deleted, or pruned after its retention)"
            )));
        };
        if self.json {
            let value = serde_json::to_value(&info)
                .map_err(|e| Failure::failed(format!("cannot encode task {id}: {e}")))?;
            print_json(&value);
        } else {
            print(&describe(&info.record, &info.status));
        }
        Ok(())
    }
}

/// The task as `field: value` lines, JSON pretty-printed.
fn describe(r: &TaskRecord, status: &taskmill::TaskStatus) -> String {
    let mut out = String::new();
    let line = |out: &mut String, name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{name:<13} {value}");
    };
    line(&mut out, "id", &r.id);
    line(&mut out, "topic", &r.topic);
    line(&mut out, "state", &state_line(status));
    line(&mut out, "queue", &r.queue);
    if let Some(external) = &r.external_id {
        line(&mut out, "external id", external);
    }
    let limit = r
        .max_retries
        .map_or_else(|| "the manager's".to_owned(), |n| n.to_string());
    line(
        &mut out,
        "attempts",
        &format!("{} (retry limit: {limit})", r.attempt),
    );
    line(&mut out, "priority", &r.priority);
    if let Some(key) = &r.unique_key {
        line(&mut out, "unique key", key);
    }
    line(&mut out, "enqueued", &r.enqueued_at);
    line(&mut out, "due", &r.run_at);
    line(&mut out, "first started", &time_or_dash(r.first_started_at));
    line(&mut out, "started", &time_or_dash(r.started_at));
    line(&mut out, "finished", &time_or_dash(r.finished_at));
    match &r.lease {
        Some(lease) => line(
            &mut out,
            "lease",
            &format!("held by {} until {}", lease.owner, lease.deadline),
        ),
        None => line(&mut out, "lease", &"-"),
    }
    if let Some(by) = &r.cancelled_by {
        line(&mut out, "cancelled by", by);
    }
    if r.headers.is_empty() {
        line(&mut out, "headers", &"-");
    } else {
        out.push_str("headers\n");
        for (key, value) in r.headers.iter() {
            let _ = writeln!(out, "  {key}: {value}");
        }
    }
    block(&mut out, "args", Some(r.args.as_str()));
    block(&mut out, "result", r.result.as_ref().map(|p| p.as_str()));
    block(
        &mut out,
        "progress",
        r.progress.as_ref().map(|p| p.as_str()),
    );
    if r.errors.is_empty() {
        line(&mut out, "errors", &"-");
    } else {
        out.push_str("errors\n");
        for e in &r.errors {
            let _ = writeln!(out, "  attempt {} at {}: {}", e.attempt, e.at, e.message);
        }
    }
    out
}

/// The status, with the time or worker its variant carries.
fn state_line(status: &taskmill::TaskStatus) -> String {
    use taskmill::TaskStatus as S;
    match status {
        S::Scheduled { at } => format!("scheduled (due {at})"),
        S::Retrying { at } => format!("retrying (due {at})"),
        S::Running {
            owner,
            since,
            cancel_requested,
        } => {
            let cancel = if *cancel_requested {
                ", cancel requested"
            } else {
                ""
            };
            format!("running on {owner} since {since}{cancel}")
        }
        other => other.as_str().to_owned(),
    }
}

/// A JSON payload under its name, indented; `-` when there is none.
fn block(out: &mut String, name: &str, json: Option<&str>) {
    let Some(json) = json else {
        let _ = writeln!(out, "{name:<13} -");
        return;
    };
    let pretty = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned());
    if pretty.contains('\n') {
        let _ = writeln!(out, "{name}");
        for l in pretty.lines() {
            let _ = writeln!(out, "  {l}");
        }
    } else {
        let _ = writeln!(out, "{name:<13} {pretty}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_stats_table_fits_80_columns() {
        // The most each column holds within its width.
        let mut topic = TopicStats::default();
        topic.sizes.input = 9_999_999 + 999_999_999 + 99_999_999;
        topic.sizes.scheduled = 999_999_999;
        topic.sizes.retrying = 99_999_999;
        topic.sizes.work = 9_999_999;
        topic.sizes.dead = 99_999;
        topic.sizes.completed = 999_999_999;
        topic.sizes.cancelled = 999_999_999;
        topic.paused = true;
        topic.earliest_run_at = Some(Timestamp::from_millis(0));
        let stats = Stats::from_topics(BTreeMap::from([(
            "a-topic-name-far-too-long-for-its-column".to_owned(),
            topic,
        )]));
        let table = stats_table(&stats, Timestamp::from_millis(90_000_000));
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "{line:?} is wider than 80");
        }
        assert!(table.contains("1d01h"), "{table}");
        assert!(table.contains("yes"), "{table}");
        let header = table.lines().next().unwrap();
        let columns: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                "TOPIC",
                "PENDING",
                "SCHEDULED",
                "RUNNING",
                "RETRYING",
                "DEAD",
                "COMPLETED",
                "LATENCY",
                "PAUSED"
            ]
        );
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row[1..7],
            [
                "9999999",
                "999999999",
                "9999999",
                "99999999",
                "99999",
                "999999999"
            ],
            "{table}"
        );
        assert!(table.contains("cancelled tasks kept: 999999999"), "{table}");
    }
}
