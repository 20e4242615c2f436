//! The record codec: rows of `tasks` to [`TaskRecord`]s and back, rows of `schedules` to
//! [`ScheduleState`]s, and the counter deltas written to `topics`.

use crate::layout::{CANCELLED, COMPLETED, DEAD, READY, SCHEDULED, WORK};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use std::borrow::Cow;
use std::sync::Arc;
use taskmill_core::raw::{HeadersExt, PayloadExt};
use taskmill_core::store::{ScheduleEntry, ScheduleState};
use taskmill_core::{
    AttemptError, Counters, Error, Headers, Lease, Payload, Queue, TaskId, TaskRecord, Timestamp,
};

/// The state a record in `queue` is stored with at `now`.
pub fn state_of(queue: Queue, run_at: Timestamp, now: Timestamp) -> i64 {
    match queue {
        Queue::Input if run_at <= now => READY,
        Queue::Input => SCHEDULED,
        Queue::Work => WORK,
        Queue::Dead => DEAD,
        Queue::Completed => COMPLETED,
        Queue::Cancelled => CANCELLED,
        // `Queue` is non-exhaustive: a queue added to the core needs a state here (and a
        // layout version) before this store can hold it. The call fails, nothing is written.
        other => panic!("the SQLite layout has no state for queue {other}"),
    }
}

/// The queue of a stored state; `None` for a state no layout writes.
pub fn queue_of(state: i64) -> Option<Queue> {
    match state {
        READY | SCHEDULED => Some(Queue::Input),
        WORK => Some(Queue::Work),
        DEAD => Some(Queue::Dead),
        COMPLETED => Some(Queue::Completed),
        CANCELLED => Some(Queue::Cancelled),
        _ => None,
    }
}

/// The columns every query that reads whole records selects, in [`decode`]'s order.
pub const COLUMNS: &str = "id, state, topic, priority, run_at, args, external_id, attempt, \
     max_retries, enqueued_at, unique_key, unique_while_kept, first_started_at, started_at, \
     finished_at, errors, result, progress, cancelled_by, lease_owner, lease_token, \
     lease_deadline, headers";

/// `errors` as stored: a JSON array, or NULL when there is none.
pub fn encode_errors(errors: &[AttemptError]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    // A Vec of plain structs of strings and integers always serializes.
    serde_json::to_string(errors).ok()
}

/// `headers` as stored: a JSON object of strings, or NULL when there is none.
pub fn encode_headers(headers: &Headers) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    // A map of strings always serializes.
    serde_json::to_string(headers).ok()
}

/// Reads `headers` back. A repeated key keeps its last value, as
/// [`HeadersExt::from_stored`] would (serde_json's map keeps the last); a value that is not
/// a string fails the whole column.
fn decode_headers(json: &str) -> Result<Headers, String> {
    let map = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .map_err(|e| format!("is not a JSON object of headers: {e}"))?;
    let entries = map
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(value) => Ok((key.into_boxed_str(), value.into_boxed_str())),
            other => Err(format!(
                "holds header {key:?} with a non-string value {other}"
            )),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(<Headers as HeadersExt>::from_stored(entries))
}

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

    fn opt_ranged<T: TryFrom<i64>>(&mut self, idx: usize, column: &str) -> Option<T> {
        match self.opt_int(idx, column).map(T::try_from)? {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail(column, "is out of range");
                None
            }
        }
    }

    fn opt_time(&mut self, idx: usize, column: &str) -> Option<Timestamp> {
        self.opt_int(idx, column).map(Timestamp::from_millis)
    }

    /// JSON text kept as a payload; with `check`, text that is not JSON is reported.
    fn opt_payload(&mut self, idx: usize, column: &str, check: bool) -> Option<Payload> {
        let text = self.opt_text(idx, column)?;
        if check && self.problem.is_none() {
            if let Err(e) = Payload::from_json(text.as_str()) {
                self.fail(column, "is not valid JSON");
                self.problem = self.problem.take().map(|p| p.with_source(e));
            }
        }
        Some(Payload::from_stored(text))
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
/// filtered on, which saves an allocation per row. `check_payloads` parses the payloads
/// (`args`, `result`, `progress`) to report one that is not JSON: claims and `get` do;
/// moves that never hand them to anyone skip the cost.
pub fn decode(
    row: &Row<'_>,
    topic: Option<&Arc<str>>,
    check_payloads: bool,
) -> rusqlite::Result<Decoded> {
    // The id is the rowid: always an integer, so this cannot fail on stored data.
    let id: i64 = row.get(0)?;
    let mut r = Reader {
        row,
        id,
        problem: None,
    };
    // Ids are written through `sql_u64`, never negative: a negative one would read as
    // another id than the row's (found by the `sqlite_row` fuzz target).
    if id < 0 {
        r.fail("id", "is out of range");
    }
    let queue = match r.int(1, "state") {
        Some(state) => queue_of(state).unwrap_or_else(|| {
            r.fail("state", format!("holds unknown state {state}"));
            Queue::Input
        }),
        None => Queue::Input,
    };
    let topic = match topic {
        Some(t) => t.clone(),
        None => Arc::from(r.text(2, "topic")),
    };
    let priority: i16 = r.ranged(3, "priority", 0);
    let run_at = Timestamp::from_millis(r.int(4, "run_at").unwrap_or(0));
    let args = r.text(5, "args");
    if check_payloads && r.problem.is_none() {
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
    let max_retries: Option<u32> = r.opt_ranged(8, "max_retries");
    let enqueued_at = Timestamp::from_millis(r.int(9, "enqueued_at").unwrap_or(0));
    let unique_key = r.opt_text(10, "unique_key");
    let unique_while_kept = r.int(11, "unique_while_kept").unwrap_or(0) != 0;
    let first_started_at = r.opt_time(12, "first_started_at");
    let started_at = r.opt_time(13, "started_at");
    let finished_at = r.opt_time(14, "finished_at");
    let errors = match r.opt_text(15, "errors") {
        None => Vec::new(),
        Some(json) => serde_json::from_str::<Vec<AttemptError>>(&json).unwrap_or_else(|e| {
            r.fail("errors", format!("is not a JSON array of errors: {e}"));
            Vec::new()
        }),
    };
    let result = r.opt_payload(16, "result", check_payloads);
    let progress = r.opt_payload(17, "progress", check_payloads);
    let cancelled_by = r.opt_text(18, "cancelled_by");
    let owner = r.opt_text(19, "lease_owner");
    // Tokens are written through `sql_u64` too: a negative one is corrupt, not a token
    // no renewal or outcome of the claim could match.
    let token: Option<u64> = r.opt_ranged(20, "lease_token");
    let deadline = r.opt_int(21, "lease_deadline");
    let lease = match (owner, token, deadline) {
        (Some(owner), Some(token), Some(deadline)) => Some(Lease {
            owner: owner.into(),
            token,
            deadline: Timestamp::from_millis(deadline),
        }),
        (None, None, None) => None,
        _ => {
            r.fail("lease_owner", "and the other lease columns are half set");
            None
        }
    };
    let headers = match r.opt_text(22, "headers") {
        None => Headers::new(),
        Some(json) => decode_headers(&json).unwrap_or_else(|what| {
            r.fail("headers", what);
            Headers::new()
        }),
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
            record.unique_while_kept = unique_while_kept;
            record.first_started_at = first_started_at;
            record.started_at = started_at;
            record.finished_at = finished_at;
            record.errors = errors;
            record.result = result;
            record.progress = progress;
            record.cancelled_by = cancelled_by.map(String::into_boxed_str);
            record.lease = lease;
            record.headers = headers;
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
    /// Queue size changes, in [`Queue::ALL`] order.
    pub sizes: [i64; Queue::ALL.len()],
}

impl Delta {
    /// Records a task leaving `from` (if it was somewhere) and entering `to` (if it stays).
    pub fn moved(&mut self, from: Option<Queue>, to: Option<Queue>) {
        if let Some(q) = from {
            self.sizes[index(q)] -= 1;
        }
        if let Some(q) = to {
            self.sizes[index(q)] += 1;
        }
    }

    /// The size change of `queue`.
    pub fn size(&self, queue: Queue) -> i64 {
        self.sizes[index(queue)]
    }
}

fn index(queue: Queue) -> usize {
    // Every queue is in `ALL`.
    Queue::ALL.iter().position(|q| *q == queue).unwrap_or(0)
}

/// The columns every query that reads whole schedule states selects, in
/// [`decode_schedule`]'s order.
pub const SCHEDULE_COLUMNS: &str =
    "name, spec, zone, topic, paused, last_tick, last_task, fired_at, seen_at";

/// A row of `schedules` (selected as [`SCHEDULE_COLUMNS`]) as its state.
///
/// Strict, unlike [`decode`]: a column of the wrong type fails the read (`Corrupt`), as
/// a half-read state could only mislead the decision to fire.
pub fn decode_schedule(row: &Row<'_>) -> rusqlite::Result<ScheduleState> {
    let time = |i: usize| {
        row.get::<_, Option<i64>>(i)
            .map(|t| t.map(Timestamp::from_millis))
    };
    let entry = ScheduleEntry::new(
        row.get::<_, String>(0)?,
        row.get::<_, String>(1)?,
        row.get::<_, String>(2)?,
        row.get::<_, String>(3)?,
    );
    let mut state = ScheduleState::new(&entry, Timestamp::from_millis(row.get(8)?));
    state.paused = row.get(4)?;
    state.last_tick = time(5)?;
    state.last_task = row
        .get::<_, Option<i64>>(6)?
        .map(|id| TaskId::new(id.max(0) as u64));
    state.fired_at = time(7)?;
    Ok(state)
}

/// A `u64` as SQLite's signed integer (ids and tokens stay far below `i64::MAX`).
pub fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
