//! `cron ls`, `cron pause` and `cron resume`: the store's schedules (periodic tasks),
//! read and steered through a client.

use super::format::{fit, human_duration};
use super::{print, print_json, Failure, Outcome, StoreArg};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use taskmill::{Client, ErrorKind, ScheduleInfo, Timestamp};

/// `taskmill cron`: a schedule command.
#[derive(Args, Debug)]
pub struct CronArgs {
    #[command(subcommand)]
    command: CronCommand,
}

/// What `taskmill cron` does.
#[derive(Subcommand, Debug)]
pub enum CronCommand {
    /// Every schedule the store keeps: cadence, zone, topic, paused or active, last and
    /// next tick, last task.
    Ls(CronLsArgs),
    /// Skip a schedule's ticks, store-wide, until it is resumed (they are not caught up).
    Pause(ScheduleNameArgs),
    /// Fire a paused schedule again, from its next tick.
    Resume(ScheduleNameArgs),
}

impl CronArgs {
    /// The command's name for its error messages: `cron ls`, `cron pause`, `cron resume`.
    pub fn name(&self) -> &'static str {
        match self.command {
            CronCommand::Ls(_) => "cron ls",
            CronCommand::Pause(_) => "cron pause",
            CronCommand::Resume(_) => "cron resume",
        }
    }

    /// Runs the subcommand.
    pub async fn run(self) -> Outcome {
        match self.command {
            CronCommand::Ls(args) => args.run().await,
            CronCommand::Pause(args) => args.run(true).await,
            CronCommand::Resume(args) => args.run(false).await,
        }
    }
}

/// `taskmill cron ls`.
#[derive(Args, Debug)]
pub struct CronLsArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Print one JSON document: `{"schedules": [{"state": {…}, "next_tick": …}…], "at": …}`,
    /// with every time exact.
    #[arg(long)]
    json: bool,
}

impl CronLsArgs {
    /// Prints every schedule the store keeps, by name.
    pub async fn run(self) -> Outcome {
        let client = self.store.client().await?;
        let schedules = client.schedules().await.map_err(listing_failure)?;
        let now = Timestamp::now();
        if self.json {
            print_json(&schedules_json(&schedules, now)?);
        } else {
            print(&schedules_table(&schedules, now));
        }
        Ok(())
    }
}

/// A store that cannot list schedules says why (a backend that does not store them yet
/// answers `Unsupported`), after what was being done.
fn listing_failure(e: taskmill::Error) -> Failure {
    let failure = Failure::from(e);
    Failure {
        message: format!("cannot list the schedules: {}", failure.message),
        ..failure
    }
}

/// The store's own serialization of each [`ScheduleInfo`], and the time their next ticks
/// were judged at.
pub fn schedules_json(
    schedules: &[ScheduleInfo],
    now: Timestamp,
) -> Result<serde_json::Value, Failure> {
    let list = serde_json::to_value(schedules)
        .map_err(|e| Failure::failed(format!("cannot encode the schedules: {e}")))?;
    Ok(serde_json::json!({ "schedules": list, "at": now.as_millis() }))
}

// The widest each text column of the table gets; longer values are cut with `…`
// (`--json` has them whole).
const NAME_WIDTH: usize = 24;
const CADENCE_WIDTH: usize = 24;
const ZONE_WIDTH: usize = 20;
const TOPIC_WIDTH: usize = 16;

/// One row per schedule, each column as wide as its widest value (up to a limit): name,
/// cadence, zone, topic, state, last and next tick (relative to `now`), and the id of the
/// task the last fired tick enqueued (`TASK`).
pub fn schedules_table(schedules: &[ScheduleInfo], now: Timestamp) -> String {
    let header = [
        "NAME",
        "CADENCE",
        "ZONE",
        "TOPIC",
        "STATE",
        "LAST TICK",
        "NEXT TICK",
        "TASK",
    ];
    let rows: Vec<[String; 8]> = schedules
        .iter()
        .map(|info| {
            let s = &info.state;
            let dash = |text: &str| match text {
                "" => "-".to_owned(),
                text => text.to_owned(),
            };
            [
                fit(&s.name, NAME_WIDTH),
                // A schedule fired but never registered has no cadence to show.
                fit(&dash(&s.spec), CADENCE_WIDTH),
                fit(&dash(&s.zone), ZONE_WIDTH),
                fit(&s.topic, TOPIC_WIDTH),
                if s.paused { "paused" } else { "active" }.to_owned(),
                relative(s.last_tick, now),
                relative(info.next_tick, now),
                s.last_task
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push(' ');
            }
            // `{:<w$}` pads by characters, which is what a terminal shows for these
            // names (no control characters: `fit` replaced them).
            let _ = write!(text, "{cell:<width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header);
    for row in &rows {
        line(&mut out, &row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(no schedules)\n");
    }
    out
}

/// `12s ago`, `in 3m20s`, `now`, or `-` for none.
fn relative(at: Option<Timestamp>, now: Timestamp) -> String {
    let Some(at) = at else {
        return "-".to_owned();
    };
    if at < now {
        format!("{} ago", human_duration(now.saturating_since(at)))
    } else if at > now {
        format!("in {}", human_duration(at.saturating_since(now)))
    } else {
        "now".to_owned()
    }
}

/// The schedule `cron pause` and `cron resume` act on.
#[derive(Args, Debug)]
pub struct ScheduleNameArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The schedule's name, as `taskmill cron ls` lists it.
    name: String,
}

impl ScheduleNameArgs {
    /// Pauses (`pause`) or resumes the schedule and says so; an unknown name fails (exit 1).
    pub async fn run(self, pause: bool) -> Outcome {
        if self.name.is_empty() {
            return Err(Failure::usage("a schedule name must not be empty"));
        }
        let client = self.store.client().await?;
        print(&set_paused(&client, &self.name, pause).await?);
        Ok(())
    }
}

/// Pauses (or resumes) schedule `name` through `client`, and returns the line that says
/// so. A name the store does not know fails, pointing at `taskmill cron ls`.
pub async fn set_paused(client: &Client, name: &str, pause: bool) -> Result<String, Failure> {
    let done = match pause {
        true => client.pause_schedule(name).await,
        false => client.resume_schedule(name).await,
    };
    match done {
        Ok(()) if pause => Ok(format!(
            "paused schedule {name}: its ticks are skipped until `taskmill cron resume`\n"
        )),
        Ok(()) => Ok(format!(
            "resumed schedule {name}: it fires from its next tick\n"
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Failure::failed(format!(
            "no schedule named {name:?} in the store (`taskmill cron ls` lists them)"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_relative_to_now() {
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(relative(None, now), "-");
        assert_eq!(relative(Some(now), now), "now");
        assert_eq!(
            relative(Some(Timestamp::from_millis(988_000)), now),
            "12s ago"
        );
        assert_eq!(
            relative(Some(Timestamp::from_millis(1_200_000)), now),
            "in 3m20s"
        );
    }

    #[test]
    fn a_store_without_schedules_says_why_and_fails() {
        let failure = listing_failure(taskmill::Error::unsupported(
            "schedules are not stored by SQLite yet",
        ));
        assert_eq!(failure.code, super::super::EXIT_FAILED);
        assert_eq!(
            failure.message,
            "cannot list the schedules: unsupported: schedules are not stored by SQLite yet"
        );
    }

    #[test]
    fn an_empty_store_says_so() {
        let table = schedules_table(&[], Timestamp::from_millis(0));
        assert!(table.starts_with("NAME "), "{table}");
        assert!(table.ends_with("(no schedules)\n"), "{table}");
    }
}
