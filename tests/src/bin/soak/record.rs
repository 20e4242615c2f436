//! The record files: what each worker process says it did, one line per event, and how the
//! audit reads them back.
//!
//! Lines (times are microseconds since the Unix epoch):
//!
//! ```text
//! ack <n> <id> <pid>                          enqueue of task n returned Ok, as id (fsync'd)
//! cancel <n> <result> <before> <after> <pid>  the cancel call's result (fsync'd)
//! start <n> <pid> <attempt> <us>              a run began
//! end <n> <pid> <attempt> <start> <end>       a run succeeded (fsync'd before it returns)
//! fail <n> <pid> <attempt> <start> <end>      a run returned its planned failure
//! stopped <n> <pid> <attempt> <start> <end>   a run saw its cancel and returned
//! ```
//!
//! `start` and `end` are the format of `taskmill_tests::process::Records`, which reads
//! them. A kill can tear the last line of a file; a line that does not parse is skipped.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Microseconds since the Unix epoch.
pub fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

/// Appends lines to one record file from a thread of its own, fsyncing in groups.
#[derive(Clone)]
pub struct Recorder(mpsc::Sender<(String, Option<oneshot::Sender<()>>)>);

impl Recorder {
    /// Opens (creating) the file at `path` for appending.
    pub fn open(path: &Path) -> Recorder {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open record file {}: {e}", path.display()));
        let (tx, rx) = mpsc::channel::<(String, Option<oneshot::Sender<()>>)>();
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
        Recorder(tx)
    }

    /// Appends `lines` (each ending in a newline) without waiting for the disk.
    pub fn note(&self, lines: String) {
        let _ = self.0.send((lines, None));
    }

    /// Appends `lines` and returns once they are on disk.
    pub async fn durable(&self, lines: String) {
        let (ack, done) = oneshot::channel();
        self.0
            .send((lines, Some(ack)))
            .expect("the recorder thread is alive");
        done.await.expect("the recorder thread is alive");
    }
}

/// A run that ended by returning (`end`, `fail` or `stopped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The process that ran it.
    pub pid: u32,
    /// The attempt number.
    pub attempt: u32,
    /// When it started.
    pub start_us: u128,
    /// When it ended.
    pub end_us: u128,
}

/// A recorded cancel call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelCall {
    /// `cancelled`, `requested`, `refused-<queue>`, `not-found` or `error`.
    pub result: String,
    /// Just before the call.
    pub before_us: u128,
    /// Just after it returned.
    pub after_us: u128,
}

/// Everything recorded about one task number.
#[derive(Debug, Clone, Default)]
pub struct TaskLog {
    /// The id its enqueue returned, once acknowledged.
    pub acked: Option<u64>,
    /// Its cancel call, if one returned and was recorded.
    pub cancel: Option<CancelCall>,
    /// (pid, attempt, start) of each run that began.
    pub starts: Vec<(u32, u32, u128)>,
    /// Successful runs.
    pub ends: Vec<Ended>,
    /// Runs that returned their planned failure.
    pub fails: Vec<Ended>,
    /// Runs that saw their cancel.
    pub stopped: Vec<Ended>,
}

/// Every record file of a run, by task number.
#[derive(Debug, Default)]
pub struct Log {
    /// Task number → what was recorded.
    pub tasks: HashMap<u64, TaskLog>,
}

fn ended(pid: &str, attempt: &str, start: &str, end: &str) -> Option<Ended> {
    Some(Ended {
        pid: pid.parse().ok()?,
        attempt: attempt.parse().ok()?,
        start_us: start.parse().ok()?,
        end_us: end.parse().ok()?,
    })
}

impl Log {
    /// Adds the lines of the record file at `path`.
    pub fn read(&mut self, path: &Path) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            // Only complete lines: a kill mid-write leaves a torn last line.
            let f: Vec<&str> = line.split(' ').collect();
            let Some(n) = f.get(1).and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            match f.as_slice() {
                ["ack", _, id, _pid] => {
                    if let Ok(id) = id.parse() {
                        self.entry(n).acked = Some(id);
                    }
                }
                ["cancel", _, result, before, after, _pid] => {
                    if let (Ok(before_us), Ok(after_us)) = (before.parse(), after.parse()) {
                        self.entry(n).cancel = Some(CancelCall {
                            result: result.to_string(),
                            before_us,
                            after_us,
                        });
                    }
                }
                ["start", _, pid, attempt, at] => {
                    if let (Ok(p), Ok(a), Ok(t)) = (pid.parse(), attempt.parse(), at.parse()) {
                        self.entry(n).starts.push((p, a, t));
                    }
                }
                ["end", _, pid, attempt, start, end] => {
                    if let Some(e) = ended(pid, attempt, start, end) {
                        self.entry(n).ends.push(e);
                    }
                }
                ["fail", _, pid, attempt, start, end] => {
                    if let Some(e) = ended(pid, attempt, start, end) {
                        self.entry(n).fails.push(e);
                    }
                }
                ["stopped", _, pid, attempt, start, end] => {
                    if let Some(e) = ended(pid, attempt, start, end) {
                        self.entry(n).stopped.push(e);
                    }
                }
                _ => {}
            }
        }
    }

    fn entry(&mut self, n: u64) -> &mut TaskLog {
        self.tasks.entry(n).or_default()
    }
}
