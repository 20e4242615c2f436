//! `watch`: the store's events as they happen, until interrupted.

use super::{Failure, Outcome, StoreArg};
use clap::Args;
use futures_util::StreamExt;
use std::io::Write;
use taskmill::{Event, Timestamp};

/// Every event name `--type` accepts, as in an event's `type` field.
pub const EVENT_NAMES: [&str; 13] = [
    "MANAGER_START",
    "MANAGER_STOP",
    "MANAGER_STATS",
    "TASK_ENQUEUE",
    "TASK_START",
    "TASK_PROGRESS",
    "TASK_RETRY",
    "TASK_COMPLETION",
    "TASK_FAILURE",
    "TASK_RELEASED",
    "TASK_CANCELLED",
    "TASK_RECOVERED",
    "LAGGED",
];

/// `taskmill watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Only events of this topic (events of no topic, such as a manager's, are left out).
    #[arg(long)]
    topic: Option<String>,
    /// Only events of this type (TASK_FAILURE, task_failure, or failure for a TASK_ one; repeat for more).
    #[arg(long = "type", value_name = "EVENT", value_parser = parse_event_name)]
    types: Vec<&'static str>,
    /// Print each event as one JSON object per line, as the store carries it.
    #[arg(long)]
    json: bool,
}

/// `task_failure`, `TASK_FAILURE` or `failure` as the event name `TASK_FAILURE`.
pub fn parse_event_name(text: &str) -> Result<&'static str, String> {
    let upper = text.trim().to_ascii_uppercase().replace('-', "_");
    EVENT_NAMES
        .into_iter()
        .find(|name| *name == upper || name.strip_prefix("TASK_") == Some(upper.as_str()))
        .ok_or_else(|| format!("unknown event {text:?} (one of {})", EVENT_NAMES.join(", ")))
}

/// The topic an event is about, if it is about a task.
fn topic_of(event: &Event) -> Option<&str> {
    match event {
        Event::TaskEnqueue { topic, .. }
        | Event::TaskStart { topic, .. }
        | Event::TaskProgress { topic, .. }
        | Event::TaskRetry { topic, .. }
        | Event::TaskCompletion { topic, .. }
        | Event::TaskFailure { topic, .. }
        | Event::TaskReleased { topic, .. }
        | Event::TaskCancelled { topic, .. }
        | Event::TaskRecovered { topic, .. } => Some(topic),
        _ => None,
    }
}

impl WatchArgs {
    /// Prints each event that passes the filters, one a line, until Ctrl-C (or SIGTERM),
    /// the end of the store's stream, or a closed stdout.
    pub async fn run(self) -> Outcome {
        // First: Ctrl-C while the store is being opened ends the command the same way.
        let mut interrupted = std::pin::pin!(super::interrupted());
        let client = self.store.client().await?;
        let mut events = client.watch().await?;
        loop {
            let event = tokio::select! {
                _ = &mut interrupted => return Ok(()),
                event = events.next() => event,
            };
            let Some(event) = event else {
                return Err(Failure::failed("the store's event stream ended"));
            };
            if !self.wants(&event) {
                continue;
            }
            let line = if self.json {
                serde_json::to_string(&event)
                    .map_err(|e| Failure::failed(format!("cannot encode an event: {e}")))?
            } else {
                human_line(&event)
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // Whoever read the lines has gone (`| head`): nothing left to do.
                return Ok(());
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        let topic_ok = match &self.topic {
            Some(want) => topic_of(event) == Some(want.as_str()),
            None => true,
        };
        topic_ok && (self.types.is_empty() || self.types.contains(&event.name()))
    }
}

/// The time it was seen, its name, and its fields as `key=value` (strings and JSON as
/// JSON, so a value with spaces stays one field). The enqueue of a task a schedule fired
/// ends in `schedule=NAME tick=TIME`, the tick in RFC 3339 as the task's header has it.
fn human_line(event: &Event) -> String {
    let mut line = format!("{} {:<15}", Timestamp::now(), event.name());
    let field = |line: &mut String, key: &str, value: serde_json::Value| {
        let value = match value {
            serde_json::Value::String(s) if !s.contains(char::is_whitespace) => s,
            other => other.to_string(),
        };
        line.push_str(&format!(" {key}={value}"));
    };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) {
        for (key, value) in fields {
            if matches!(key.as_str(), "type" | "stats" | "tick") {
                continue;
            }
            field(&mut line, &key, value);
        }
    }
    if let Event::TaskEnqueue {
        tick: Some(tick), ..
    } = event
    {
        field(&mut line, "schedule", tick.schedule.as_ref().into());
        field(&mut line, "tick", tick.tick.to_string().into());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_read_loosely_and_checked() {
        assert_eq!(parse_event_name("task_failure"), Ok("TASK_FAILURE"));
        assert_eq!(parse_event_name("TASK_START"), Ok("TASK_START"));
        assert_eq!(parse_event_name("completion"), Ok("TASK_COMPLETION"));
        assert_eq!(parse_event_name("manager-stop"), Ok("MANAGER_STOP"));
        assert!(parse_event_name("explosion")
            .unwrap_err()
            .contains("TASK_START"));
    }

    #[test]
    fn a_human_line_names_the_event_and_its_fields() {
        let event = Event::TaskFailure {
            id: taskmill::TaskId::new(7),
            topic: "emails".into(),
            attempt: 3,
            error: "mailbox full".into(),
        };
        let line = human_line(&event);
        assert!(line.contains("TASK_FAILURE"), "{line}");
        assert!(line.contains("id=7"), "{line}");
        assert!(line.contains("topic=emails"), "{line}");
        assert!(line.contains(r#"error="mailbox full""#), "{line}");
        assert_eq!(topic_of(&event), Some("emails"));
    }

    #[test]
    fn an_enqueue_a_schedule_fired_names_the_schedule_and_tick() {
        let tick = |schedule: Option<&str>| Event::TaskEnqueue {
            id: taskmill::TaskId::new(9),
            topic: "reports".into(),
            run_at: Timestamp::from_millis(1_764_642_600_000),
            tick: schedule.map(|name| taskmill::ScheduleTick {
                schedule: name.into(),
                tick: Timestamp::from_millis(1_764_642_600_000),
            }),
        };
        let line = human_line(&tick(Some("nightly report")));
        assert!(
            line.ends_with(r#" schedule="nightly report" tick=2025-12-02T02:30:00.000Z"#),
            "{line}"
        );
        assert!(line.contains(" id=9 "), "{line}");
        let plain = human_line(&tick(None));
        assert!(!plain.contains("tick"), "{plain}");
        assert!(!plain.contains("schedule"), "{plain}");
    }
}
