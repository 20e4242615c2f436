//! Rows to records and back, counter deltas, and SQLite errors to taskmill errors.

use rusqlite::types::ValueRef;
use rusqlite::{ErrorCode, Row};
use std::borrow::Cow;
use std::sync::Arc;
use taskmill_core::raw::PayloadExt;
use taskmill_core::{Counters, Error, Lease, Payload, Queue, TaskId, TaskRecord, Timestamp};

/// `tasks.state`: INPUT, due when last looked at (claimable by priority).
pub const READY: i64 = 0;
/// `tasks.state`: INPUT, waiting for its `run_at`.
pub const SCHEDULED: i64 = 1;
/// `tasks.state`: WORK.
pub const WORK: i64 = 2;
/// `tasks.state`: DEAD.
pub const DEAD: i64 = 3;

/// The state a record in `queue` is stored with at `now`.
pub fn state_of(queue: Queue, run_at: Timestamp, now: Timestamp) -> i64 {
    match queue {
        Queue::Input if run_at <= now => READY,
        Queue::Input => SCHEDULED,
        Queue::Work => WORK,
        Queue::Dead => DEAD,
    }
}

/// The columns every query that reads whole records selects, in [`decode`]'s order.
pub const COLUMNS: &str = "id, state, topic, priority, run_at, args, external_id, attempt, \
     max_retries, enqueued_at, unique_key, last_error, failed_at, lease_owner, lease_token, \
     lease_deadline";

/// A row read back as a record.
///
/// Decoding is lenient: a column that cannot be read gets a neutral value in `record` and
/// the first such problem is kept in `problem`, so the store can still move a corrupt task
/// (to WORK for the manager, then to DEAD) and an admin can still list it, while `get`
/// and `claim` report it.
pub struct Decoded {
    /// The record, with neutral values in place of columns that could not be read.
    pub record: TaskRecord,
    /// The first column that could not be decoded, as a `Corrupt` error.
    pub problem: Option<Error>,
}

impl Decoded {
    /// The record, or the `Corrupt` error of its first undecodable column.
    pub fn strict(self) -> taskmill_core::Result<TaskRecord> {
        match self.problem {
            None => Ok(self.record),
            Some(e) => Err(e),
        }
    }
}

struct Reader<'a, 'r> {
    row: &'a Row<'r>,
    id: i64,
    problem: Option<Error>,
}

impl Reader<'_, '_> {
    fn fail(&mut self, column: &str, what: impl Into<Cow<'static, str>>) {
        if self.problem.is_none() {
            self.problem = Some(Error::corrupt(format!(
                "task {}: column {column} {}",
                self.id,
                what.into()
            )));
        }
    }

    fn value(&mut self, idx: usize, column: &str) -> Option<ValueRef<'_>> {
        match self.row.get_ref(idx) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(column, format!("cannot be read: {e}"));
                None
            }
        }
    }

    fn int(&mut self, idx: usize, column: &str) -> Option<i64> {
        match self.value(idx, column)? {
            ValueRef::Integer(i) => Some(i),
            other => {
                let ty = other.data_type();
                self.fail(column, format!("holds {ty}, not an integer"));
                None
            }
        }
    }

    fn opt_int(&mut self, idx: usize, column: &str) -> Option<i64> {
        match self.value(idx, column)? {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i),
            other => {
                let ty = other.data_type();
                self.fail(column, format!("holds {ty}, not an integer"));
                None
            }
        }
    }

    fn ranged<T: TryFrom<i64>>(&mut self, idx: usize, column: &str, default: T) -> T {
        match self.int(idx, column).map(T::try_from) {
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                self.fail(column, "is out of range");
                default
            }
            None => default,
        }
    }

    /// Text; invalid UTF-8 is reported and replaced.
    fn opt_text(&mut self, idx: usize, column: &str) -> Option<String> {
        match self.value(idx, column)? {
            ValueRef::Null => None,
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => Some(s.to_owned()),
                Err(e) => {
                    let lossy = String::from_utf8_lossy(bytes).into_owned();
                    self.fail(column, format!("is not valid UTF-8: {e}"));
                    Some(lossy)
                }
            },
            ValueRef::Blob(bytes) => {
                let lossy = String::from_utf8_lossy(bytes).into_owned();
                self.fail(column, "holds a blob, not text");
                Some(lossy)
            }
            other => {
                let ty = other.data_type();
                self.fail(column, format!("holds {ty}, not text"));
                None
            }
        }
    }

    fn text(&mut self, idx: usize, column: &str) -> String {
        match self.opt_text(idx, column) {
            Some(s) => s,
            None => {
                self.fail(column, "is NULL");
                String::new()
            }
        }
    }
}

/// Reads a row selected with [`COLUMNS`]. `topic`, when given, is the topic the query
/// filtered on, which saves an allocation per row. `check_args` parses the payload to
/// report one that is not JSON: claims and `get` do; moves that never hand the payload to
/// anyone skip the cost.
pub fn decode(
    row: &Row<'_>,
    topic: Option<&Arc<str>>,
    check_args: bool,
) -> rusqlite::Result<Decoded> {
    // The id is the rowid: always an integer, so this cannot fail on stored data.
    let id: i64 = row.get(0)?;
    let mut r = Reader {
        row,
        id,
        problem: None,
    };
    let state = r.int(1, "state");
    let queue = match state {
        Some(READY | SCHEDULED) => Queue::Input,
        Some(WORK) => Queue::Work,
        Some(DEAD) => Queue::Dead,
        Some(other) => {
            r.fail("state", format!("holds unknown state {other}"));
            Queue::Input
        }
        None => Queue::Input,
    };
    let topic = match topic {
        Some(t) => t.clone(),
        None => Arc::from(r.text(2, "topic")),
    };
    let priority: i16 = r.ranged(3, "priority", 0);
    let run_at = Timestamp::from_millis(r.int(4, "run_at").unwrap_or(0));
    let args = r.text(5, "args");
    if check_args && r.problem.is_none() {
        if let Err(e) = Payload::from_json(args.as_str()) {
            r.fail("args", "is not valid JSON");
            r.problem = r.problem.map(|p| p.with_source(e));
        }
    }
    let args = Payload::from_stored(args);
    let external_id = r.opt_text(6, "external_id");
    let mut attempt: u32 = r.ranged(7, "attempt", 0);
    if attempt == u32::MAX {
        // A claim adds one to it.
        r.fail("attempt", "is out of range");
        attempt = 0;
    }
    let max_retries: u32 = r.ranged(8, "max_retries", 0);
    let enqueued_at = Timestamp::from_millis(r.int(9, "enqueued_at").unwrap_or(0));
    let unique_key = r.opt_text(10, "unique_key");
    let last_error = r.opt_text(11, "last_error");
    let failed_at = r.opt_int(12, "failed_at").map(Timestamp::from_millis);
    let owner = r.opt_text(13, "lease_owner");
    let token = r.opt_int(14, "lease_token");
    let deadline = r.opt_int(15, "lease_deadline");
    let lease = match (owner, token, deadline) {
        (Some(owner), Some(token), Some(deadline)) => Some(Lease {
            owner: owner.into(),
            token: token as u64,
            deadline: Timestamp::from_millis(deadline),
        }),
        (None, None, None) => None,
        _ => {
            r.fail("lease_owner", "and the other lease columns are half set");
            None
        }
    };
    if queue == Queue::Work && lease.is_none() {
        r.fail("lease_token", "is missing on a task in WORK");
    }
    Ok(Decoded {
        record: {
            let mut record = TaskRecord::new(TaskId::new(id as u64), topic, args);
            record.queue = queue;
            record.external_id = external_id.map(String::into_boxed_str);
            record.attempt = attempt;
            record.max_retries = max_retries;
            record.priority = priority;
            record.enqueued_at = enqueued_at;
            record.run_at = run_at;
            record.unique_key = unique_key.map(String::into_boxed_str);
            record.last_error = last_error.map(String::into_boxed_str);
            record.failed_at = failed_at;
            record.lease = lease;
            record
        },
        problem: r.problem,
    })
}

/// Counter and queue-size changes of one topic, written to `topics` at the end of the
/// transaction that made them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delta {
    /// Transition counters.
    pub counters: Counters,
    /// INPUT size change.
    pub input: i64,
    /// WORK size change.
    pub work: i64,
    /// DEAD size change.
    pub dead: i64,
}

impl Delta {
    /// Records a task leaving `from` (if it was somewhere) and entering `to` (if it stays).
    pub fn moved(&mut self, from: Option<Queue>, to: Option<Queue>) {
        if let Some(q) = from {
            *self.size(q) -= 1;
        }
        if let Some(q) = to {
            *self.size(q) += 1;
        }
    }

    fn size(&mut self, queue: Queue) -> &mut i64 {
        match queue {
            Queue::Input => &mut self.input,
            Queue::Work => &mut self.work,
            Queue::Dead => &mut self.dead,
        }
    }
}

/// Maps a rusqlite error to a taskmill error of the kind a caller can act on, with
/// `context` saying what was being done and the SQLite error as the source.
pub fn map_err(err: rusqlite::Error, context: impl Into<Cow<'static, str>>) -> Error {
    use rusqlite::Error as E;
    let kind = match &err {
        E::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                taskmill_core::ErrorKind::Unavailable
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                taskmill_core::ErrorKind::Corrupt
            }
            ErrorCode::ApiMisuse => taskmill_core::ErrorKind::Misuse,
            // Full disk, read-only file, I/O error, cannot open, permission denied,
            // constraint violations and the rest: SQLite refused the operation.
            _ => taskmill_core::ErrorKind::Storage,
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..) => taskmill_core::ErrorKind::Corrupt,
        _ => taskmill_core::ErrorKind::Storage,
    };
    Error::new(kind, context).with_source(err)
}

/// A `u64` as SQLite's signed integer (ids and tokens stay far below `i64::MAX`).
pub fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
