//! Task records to and from their stored form, and script replies to Rust values.
//!
//! A task is one string in its topic's `tasks` hash (the id is the field, the topic is in
//! the key):
//!
//! ```text
//! v2:attempt:max_retries:priority:enqueued_at:run_at:finished_at:first_started_at:started_at:flags:xlen:ulen:elen:rlen:plen:clen:[hlen:]<external_id><unique_key><errors><result><progress><cancelled_by>[<headers>]<args>
//! ```
//!
//! Times are ms since the epoch; `max_retries` and the times are empty when unset;
//! `flags` holds `u` when the unique key is held while the finished task is kept, and `h`
//! when the task has headers: only then follow `hlen` and the headers (a JSON object of
//! strings), so a task without headers costs no byte, and a record written before headers
//! existed reads with none; `xlen` …
//! `clen` are the byte lengths of the optional strings that follow, empty when the field
//! is absent; `errors` is the JSON array of [`AttemptError`]s; the args (JSON text) are
//! the rest. The queue is not in the record: it is the index holding the id (`fresh`,
//! `ready` or `scheduled`: INPUT, `leases`: WORK, `dead`, `completed`, `cancelled`). A
//! claim leaves the record alone: `attempt` counts the runs before the current one, and
//! the lease entry `token:deadline;started_at;max_retries:owner` holds what the claim set;
//! a run's cancel request and progress live in the `cancels` and `progress` hashes until
//! the run ends. `scripts/common.lua` reads and writes the same format.
//!
//! A completion kept as history does not touch the record: it writes how the run ended,
//! `finished_at:started_at;max_retries:rlen:plen:<result><progress>` (the start and retry
//! limit from the lease, empty for a lease written before history), to the topic's `ends`
//! hash. Decoding reads the record followed by the byte RS (`\x1e`) and that end
//! ([`with_end`]; a completion of the version before `ends` appended it to the record so),
//! and folds the end in as the end of one more run. RS cannot occur in the args, which
//! are JSON text (a control character there is escaped), so the first RS after the
//! length-prefixed strings ends them.
//!
//! A record of the layout before history has no `v2:` mark and fewer fields
//! (`attempt:max_retries:priority:enqueued_at:run_at:failed_at:xlen:ulen:elen:` then
//! external_id, unique_key, last_error and the args); it is read as the README's "Old
//! namespaces" says, and rewritten in the new form by the next script that changes it.

use redis::Value;
use std::str::FromStr;
use std::sync::Arc;
use taskmill_core::raw::PayloadExt;
use taskmill_core::store::{ScheduleEntry, ScheduleState};
use taskmill_core::{
    AttemptError, Error, Headers, Lease, Payload, Queue, Result, TaskId, TaskRecord, Timestamp,
};

/// An error for a reply that does not have the shape a script returns.
pub(crate) fn unexpected(what: &str, value: &Value) -> Error {
    Error::storage(format!("unexpected redis reply for {what}: {value:?}"))
}

/// The elements of an array reply (nil counts as empty).
pub(crate) fn array(value: Value, what: &str) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

/// An integer reply (or a bulk string holding one).
pub(crate) fn int(value: &Value, what: &str) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(what, value)),
        Value::SimpleString(s) => s.parse().map_err(|_| unexpected(what, value)),
        other => Err(unexpected(what, other)),
    }
}

/// A string reply.
pub(crate) fn string(value: Value, what: &str) -> Result<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|e| Error::corrupt(format!("{what} is not UTF-8")).with_source(e)),
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(unexpected(what, &other)),
    }
}

/// An optional string reply: `None` for nil.
pub(crate) fn optional_string(value: Value, what: &str) -> Result<Option<String>> {
    match value {
        Value::Nil => Ok(None),
        other => string(other, what).map(Some),
    }
}

/// A task's entry in its topic's `leases` hash: `token:deadline;started_at;max_retries:owner`
/// (or `token:deadline:owner`, as written before history).
#[derive(Debug, Clone)]
pub(crate) struct StoredLease {
    pub token: u64,
    pub owner: Arc<str>,
    pub deadline: Timestamp,
    /// When the run started; `None` in a lease written before history.
    pub started_at: Option<Timestamp>,
    /// The retry limit the claim resolved for a task that sets none; `None` in a lease
    /// written before history.
    pub max_retries: Option<u32>,
}

impl StoredLease {
    /// Reads a lease entry reply (`None` when the task holds no lease).
    pub fn from_value(lease: Value) -> Result<Option<Self>> {
        let text = match lease {
            Value::Nil => return Ok(None),
            Value::BulkString(bytes) => String::from_utf8(bytes)
                .map_err(|e| Error::corrupt("a lease is not UTF-8").with_source(e))?,
            Value::SimpleString(s) => s,
            other => return Err(unexpected("lease", &other)),
        };
        Self::parse(&text)
            .map(Some)
            .ok_or_else(|| Error::corrupt(format!("invalid lease {text:?}")))
    }

    fn parse(text: &str) -> Option<Self> {
        let (token, rest) = text.split_once(':')?;
        let end = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map(|(i, _)| i)?;
        let deadline: i64 = rest[..end].parse().ok()?;
        let (started_at, max_retries, owner) = match rest.as_bytes().get(end) {
            Some(b':') => (None, None, &rest[end + 1..]),
            Some(b';') => {
                let (run, owner) = rest[end + 1..].split_once(':')?;
                let (started, retries) = run.split_once(';')?;
                let started = Timestamp::from_millis(started.parse().ok()?);
                (Some(started), Some(retries.parse().ok()?), owner)
            }
            _ => return None,
        };
        Some(StoredLease {
            token: token.parse().ok()?,
            owner: Arc::from(owner),
            deadline: Timestamp::from_millis(deadline),
            started_at,
            max_retries,
        })
    }

    fn lease(&self) -> Lease {
        Lease {
            owner: self.owner.clone(),
            token: self.token,
            deadline: self.deadline,
        }
    }
}

/// What a run in WORK keeps beside its record: the lease, and the `cancels` and
/// `progress` entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub lease: Option<StoredLease>,
    pub cancelled_by: Option<String>,
    pub progress: Option<String>,
}

impl Run {
    /// A run from the replies of the lease, cancel request and progress lookups;
    /// `Corrupt` when one cannot be read.
    pub fn from_values(lease: Value, request: Value, progress: Value) -> Result<Self> {
        Ok(Run {
            lease: StoredLease::from_value(lease)?,
            cancelled_by: optional_string(request, "cancel request")?,
            progress: optional_string(progress, "progress")?,
        })
    }

    /// A run for listing, which never fails: a part that cannot be read is left out (a
    /// lease that cannot be read shows the task without it; the reaper treats it as
    /// expired).
    pub fn lenient(lease: Value, request: Value, progress: Value) -> Self {
        Run {
            lease: StoredLease::from_value(lease).unwrap_or(None),
            cancelled_by: optional_string(request, "cancel request").unwrap_or(None),
            progress: optional_string(progress, "progress").unwrap_or(None),
        }
    }

    /// Applies the run to a record decoded as stored: WORK, the run under the lease one
    /// attempt past the record's, the claim's start and retry limit, the request, the
    /// progress.
    fn apply_to(&self, record: &mut TaskRecord) {
        let Some(lease) = &self.lease else { return };
        record.queue = Queue::Work;
        record.attempt = record.attempt.saturating_add(1);
        record.lease = Some(lease.lease());
        if let Some(started) = lease.started_at {
            record.started_at = Some(started);
            record.first_started_at.get_or_insert(started);
        }
        if record.max_retries.is_none() {
            record.max_retries = lease.max_retries;
        }
        if let Some(by) = &self.cancelled_by {
            record.cancelled_by = Some(by.as_str().into());
        }
        if let Some(progress) = &self.progress {
            record.progress = Some(Payload::from_stored(progress.as_str()));
        }
    }
}

/// Appends the stored form of a record to `out`.
pub(crate) fn encode_record(r: &TaskRecord, out: &mut Vec<u8>) {
    use std::io::Write;
    let errors = if r.errors.is_empty() {
        None
    } else {
        serde_json::to_string(&r.errors).ok()
    };
    let strings: [Option<&str>; 6] = [
        r.external_id.as_deref(),
        r.unique_key.as_deref(),
        errors.as_deref(),
        r.result.as_ref().map(Payload::as_str),
        r.progress.as_ref().map(Payload::as_str),
        r.cancelled_by.as_deref(),
    ];
    // Headers are JSON, written only when there are some: a task without headers stores
    // no byte more than before they existed.
    let headers = if r.headers.is_empty() {
        None
    } else {
        serde_json::to_string(&r.headers).ok()
    };
    let time = |t: Option<Timestamp>| t.map(|t| t.as_millis().to_string()).unwrap_or_default();
    let flags = match (r.unique_while_kept, headers.is_some()) {
        (false, false) => "",
        (true, false) => "u",
        (false, true) => "h",
        (true, true) => "uh",
    };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "v2:{}:{}:{}:{}:{}:{}:{}:{}:{}:",
        r.attempt,
        r.max_retries.map(|m| m.to_string()).unwrap_or_default(),
        r.priority,
        r.enqueued_at.as_millis(),
        r.run_at.as_millis(),
        time(r.finished_at),
        time(r.first_started_at),
        time(r.started_at),
        flags,
    );
    for s in strings {
        if let Some(s) = s {
            let _ = write!(out, "{}", s.len());
        }
        out.push(b':');
    }
    if let Some(h) = &headers {
        let _ = write!(out, "{}:", h.len());
    }
    for s in strings.into_iter().flatten() {
        out.extend_from_slice(s.as_bytes());
    }
    if let Some(h) = &headers {
        out.extend_from_slice(h.as_bytes());
    }
    out.extend_from_slice(r.args.as_str().as_bytes());
}

/// A record with how its completed run ended (its `finish` entry, nil for none) after RS:
/// the form decoding reads, which a completion of an earlier version wrote into the record
/// itself.
pub(crate) fn with_end(record: Option<Vec<u8>>, end: Value) -> Result<Option<Vec<u8>>> {
    let Some(mut record) = record else {
        return Ok(None);
    };
    if let Some(end) = record_bytes(end)? {
        record.push(RS);
        record.extend_from_slice(&end);
    }
    Ok(Some(record))
}

/// The bytes of a record reply: `None` for nil (no record).
pub(crate) fn record_bytes(value: Value) -> Result<Option<Vec<u8>>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(unexpected("task record", &other)),
    }
}

/// Splits `bytes` at the next `:`.
fn field<'a>(rest: &mut &'a [u8], name: &str) -> Result<&'a str> {
    let at = rest
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| Error::corrupt(format!("field {name:?} is missing")))?;
    let (value, tail) = rest.split_at(at);
    *rest = &tail[1..];
    std::str::from_utf8(value)
        .map_err(|e| Error::corrupt(format!("field {name:?} is not UTF-8")).with_source(e))
}

fn number<T: FromStr>(rest: &mut &[u8], name: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text = field(rest, name)?;
    text.parse().map_err(|e| {
        Error::corrupt(format!("field {name:?} has an invalid value {text:?}")).with_source(e)
    })
}

fn optional<T: FromStr>(rest: &mut &[u8], name: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text = field(rest, name)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        Error::corrupt(format!("field {name:?} has an invalid value {text:?}")).with_source(e)
    })
}

fn time(rest: &mut &[u8], name: &str) -> Result<Option<Timestamp>> {
    Ok(optional::<i64>(rest, name)?.map(Timestamp::from_millis))
}

fn take(rest: &mut &[u8], len: Option<usize>, name: &str) -> Result<Option<Box<str>>> {
    let Some(len) = len else { return Ok(None) };
    if len > rest.len() {
        return Err(Error::corrupt(format!("field {name:?} is cut short")));
    }
    let (value, tail) = rest.split_at(len);
    *rest = tail;
    std::str::from_utf8(value)
        .map(Box::from)
        .map(Some)
        .map_err(|e| Error::corrupt(format!("field {name:?} is not UTF-8")).with_source(e))
}

fn payload(text: Option<Box<str>>) -> Option<Payload> {
    text.map(|t| Payload::from_stored(&*t))
}

/// The byte before a completion's trailer.
const RS: u8 = 0x1e;

/// The args of a record and, after RS, the trailer of the completion that finished it.
fn split_finish(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    match rest.iter().position(|b| *b == RS) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    }
}

/// Folds a completion's trailer into the record: one more run, its start (and the first
/// start, the first time) and retry limit from the lease, finished at `finished_at` with
/// its result and, if it reported one, its progress.
fn apply_finish(record: &mut TaskRecord, mut finish: &[u8]) -> Result<()> {
    let rest = &mut finish;
    let finished_at = Timestamp::from_millis(number(rest, "finished_at of the completion")?);
    let run = field(rest, "run of the completion")?;
    let (started, retries) = run
        .split_once(';')
        .ok_or_else(|| Error::corrupt(format!("the completion's run {run:?} is invalid")))?;
    let bad = |e: std::num::ParseIntError| {
        Error::corrupt(format!("the completion's run {run:?} is invalid")).with_source(e)
    };
    let started = match started {
        "" => None,
        s => Some(Timestamp::from_millis(s.parse().map_err(bad)?)),
    };
    let retries: Option<u32> = match retries {
        "" => None,
        r => Some(r.parse().map_err(bad)?),
    };
    let result_len = optional(rest, "result length")?;
    let progress_len = optional(rest, "progress length")?;
    let result = take(rest, result_len, "result")?;
    let progress = take(rest, progress_len, "progress")?;
    if !rest.is_empty() {
        return Err(Error::corrupt("the completion is followed by extra bytes"));
    }
    record.attempt = record.attempt.saturating_add(1);
    if let Some(started) = started {
        record.started_at = Some(started);
        record.first_started_at.get_or_insert(started);
    }
    if record.max_retries.is_none() {
        record.max_retries = retries;
    }
    record.finished_at = Some(finished_at);
    record.result = payload(result);
    if let Some(progress) = payload(progress) {
        record.progress = Some(progress);
    }
    Ok(())
}

fn args(rest: &[u8]) -> Result<Payload> {
    std::str::from_utf8(rest)
        .map(Payload::from_stored)
        .map_err(|e| Error::corrupt("field \"args\" is not UTF-8").with_source(e))
}

/// A record in the current form (after its `v2:` mark).
fn decode_current(rest: &mut &[u8], id: TaskId, topic: &Arc<str>) -> Result<TaskRecord> {
    let attempt = number(rest, "attempt")?;
    let max_retries = optional(rest, "max_retries")?;
    let priority = number(rest, "priority")?;
    let enqueued_at = Timestamp::from_millis(number(rest, "enqueued_at")?);
    let run_at = Timestamp::from_millis(number(rest, "run_at")?);
    let finished_at = time(rest, "finished_at")?;
    let first_started_at = time(rest, "first_started_at")?;
    let started_at = time(rest, "started_at")?;
    let flags = field(rest, "flags")?;
    let mut lengths = [None; 6];
    for (len, name) in lengths.iter_mut().zip(FIELDS) {
        *len = optional(rest, name)?;
    }
    // Flag `h`: the headers' length follows the others, and the headers the other strings.
    let headers_len: Option<usize> = if flags.contains('h') {
        Some(number(rest, "headers length")?)
    } else {
        None
    };
    let mut strings: [Option<Box<str>>; 6] = Default::default();
    for ((value, len), name) in strings.iter_mut().zip(lengths).zip(FIELDS) {
        *value = take(rest, len, name)?;
    }
    let [external_id, unique_key, errors, result, progress, cancelled_by] = strings;
    let headers = match headers_len {
        Some(len) => stored_headers(&take(rest, Some(len), "headers")?.unwrap_or_default())?,
        None => Headers::new(),
    };
    let errors = match errors {
        Some(json) => serde_json::from_str::<Vec<AttemptError>>(&json).map_err(|e| {
            Error::corrupt("field \"errors\" is not a JSON array of errors").with_source(e)
        })?,
        None => Vec::new(),
    };
    let (args_bytes, finish) = split_finish(rest);
    let mut record = TaskRecord::new(id, topic.clone(), args(args_bytes)?);
    record.external_id = external_id;
    record.attempt = attempt;
    record.max_retries = max_retries;
    record.priority = priority;
    record.enqueued_at = enqueued_at;
    record.run_at = run_at;
    record.unique_key = unique_key;
    record.unique_while_kept = flags.contains('u');
    record.first_started_at = first_started_at;
    record.started_at = started_at;
    record.finished_at = finished_at;
    record.errors = errors;
    record.result = payload(result);
    record.progress = payload(progress);
    record.cancelled_by = cancelled_by;
    record.headers = headers;
    if let Some(finish) = finish {
        apply_finish(&mut record, finish)?;
    }
    Ok(record)
}

/// Headers from their stored JSON object. `Headers`' own deserializer reads them as
/// stored ([`HeadersExt::from_stored`](taskmill_core::raw::HeadersExt)): in key order, the
/// last of a repeated key kept, not validated against the rules a new task's headers
/// follow, so that what one version wrote another reads.
fn stored_headers(json: &str) -> Result<Headers> {
    serde_json::from_str(json).map_err(|e| {
        Error::corrupt("field \"headers\" is not a JSON object of strings").with_source(e)
    })
}

/// The names of the optional strings of a current record, in their order.
const FIELDS: [&str; 6] = [
    "external_id",
    "unique_key",
    "errors",
    "result",
    "progress",
    "cancelled_by",
];

/// A record of the layout before history: `failed_at` becomes `finished_at`, and
/// `last_error` the one error of attempt `attempt` at `failed_at` (the epoch when unset).
fn decode_old(rest: &mut &[u8], id: TaskId, topic: &Arc<str>) -> Result<TaskRecord> {
    let attempt = number(rest, "attempt")?;
    let max_retries = number(rest, "max_retries")?;
    let priority = number(rest, "priority")?;
    let enqueued_at = Timestamp::from_millis(number(rest, "enqueued_at")?);
    let run_at = Timestamp::from_millis(number(rest, "run_at")?);
    let failed_at = time(rest, "failed_at")?;
    let external_len = optional(rest, "external_id length")?;
    let unique_len = optional(rest, "unique_key length")?;
    let error_len = optional(rest, "last_error length")?;
    let external_id = take(rest, external_len, "external_id")?;
    let unique_key = take(rest, unique_len, "unique_key")?;
    let last_error = take(rest, error_len, "last_error")?;
    let (args_bytes, finish) = split_finish(rest);
    let mut record = TaskRecord::new(id, topic.clone(), args(args_bytes)?);
    record.external_id = external_id;
    record.attempt = attempt;
    record.max_retries = Some(max_retries);
    record.priority = priority;
    record.enqueued_at = enqueued_at;
    record.run_at = run_at;
    record.unique_key = unique_key;
    record.finished_at = failed_at;
    record.errors = last_error
        .map(|message| AttemptError {
            attempt,
            at: failed_at.unwrap_or(Timestamp::EPOCH),
            message,
        })
        .into_iter()
        .collect();
    if let Some(finish) = finish {
        apply_finish(&mut record, finish)?;
    }
    Ok(record)
}

fn decode_inner(bytes: &[u8], id: TaskId, topic: &Arc<str>, queue: Queue) -> Result<TaskRecord> {
    let mut record = match bytes.strip_prefix(b"v2:") {
        Some(mut rest) => decode_current(&mut rest, id, topic)?,
        None => decode_old(&mut &bytes[..], id, topic)?,
    };
    record.queue = queue;
    Ok(record)
}

/// Decodes the record of task `id` of `topic` in `queue`; `Corrupt` when it is missing or
/// cannot be read.
pub(crate) fn decode(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    queue: Queue,
) -> Result<TaskRecord> {
    let decoded = match bytes {
        Some(bytes) => decode_inner(bytes, id, topic, queue),
        None => Err(Error::corrupt("the record is missing")),
    };
    decoded.map_err(|e| {
        Error::corrupt(format!(
            "task {id} of topic {topic:?} has a corrupt record: {}",
            e.message()
        ))
        .with_source(e)
    })
}

/// Decodes a stored task with its run, if it is in WORK (see [`Run::apply_to`]).
pub(crate) fn decode_stored(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    queue: Queue,
    run: &Run,
) -> Result<TaskRecord> {
    let mut record = decode(bytes, id, topic, queue)?;
    run.apply_to(&mut record);
    Ok(record)
}

/// Decodes a task as it was before a claim (what the claim script returns) and applies
/// the claim at `now`: WORK, one more attempt, `lease`, the start times, and
/// `max_retries` when the task sets none.
pub(crate) fn decode_claimed(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    lease: Lease,
    now: Timestamp,
    max_retries: u32,
) -> Result<TaskRecord> {
    let mut record = decode(bytes, id, topic, Queue::Work)?;
    record.attempt = record.attempt.saturating_add(1);
    record.lease = Some(lease);
    record.max_retries.get_or_insert(max_retries);
    record.first_started_at.get_or_insert(now);
    record.started_at = Some(now);
    Ok(record)
}

/// A record for listing that never fails: a record that cannot be read is shown with
/// defaults, its stored text as a JSON string in `args`, and the problem as its one error,
/// so an operator can see the task and delete or requeue it.
pub(crate) fn decode_lenient(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    queue: Queue,
    run: &Run,
) -> TaskRecord {
    match decode_stored(bytes, id, topic, queue, run) {
        Ok(record) => record,
        Err(error) => {
            let text = String::from_utf8_lossy(bytes.unwrap_or_default());
            let args = Payload::from_stored(
                serde_json::to_string(&text).unwrap_or_else(|_| "null".to_owned()),
            );
            let mut record = TaskRecord::new(id, topic.clone(), args);
            record.queue = queue;
            record.errors = vec![AttemptError {
                attempt: 0,
                at: Timestamp::EPOCH,
                message: error.to_string().into(),
            }];
            record.lease = run.lease.as_ref().map(StoredLease::lease);
            record
        }
    }
}

/// A schedule's state from its entry in the namespace's `schedules` hash (the name is the
/// field):
///
/// ```text
/// s1:paused:last_tick:last_task:fired_at:seen_at:slen:zlen:tlen:llen:<spec><zone><topic><last_topic>
/// ```
///
/// `paused` is `1` or `0`; `last_tick`, `last_task` and `fired_at` are empty while the
/// schedule never fired; `last_topic` (absent, `llen` empty, with `last_task`) is the topic
/// the last task went to, which `fire` reads the task's queue in and the state does not
/// show. Only the scripts write it (`scripts/schedule.lua`).
pub(crate) fn decode_schedule(name: &str, stored: &[u8]) -> Result<ScheduleState> {
    let corrupt = |e: Error| {
        Error::corrupt(format!(
            "schedule {name:?} has a corrupt state: {}",
            e.message()
        ))
    };
    let mut rest = stored;
    let mark = field(&mut rest, "mark").map_err(corrupt)?;
    if mark != "s1" {
        return Err(corrupt(Error::corrupt(format!("unknown mark {mark:?}"))));
    }
    let decode = |rest: &mut &[u8]| -> Result<ScheduleState> {
        let paused = match field(rest, "paused")? {
            "1" => true,
            "0" => false,
            other => return Err(Error::corrupt(format!("paused is {other:?}"))),
        };
        let last_tick = time(rest, "last_tick")?;
        let last_task = optional::<u64>(rest, "last_task")?.map(TaskId::new);
        let fired_at = time(rest, "fired_at")?;
        let seen_at = Timestamp::from_millis(number(rest, "seen_at")?);
        let spec_len = number::<usize>(rest, "slen")?;
        let zone_len = number::<usize>(rest, "zlen")?;
        let topic_len = number::<usize>(rest, "tlen")?;
        let last_topic_len = optional::<usize>(rest, "llen")?;
        let spec = take(rest, Some(spec_len), "spec")?.unwrap_or_default();
        let zone = take(rest, Some(zone_len), "zone")?.unwrap_or_default();
        let topic = take(rest, Some(topic_len), "topic")?.unwrap_or_default();
        take(rest, last_topic_len, "last_topic")?;
        if !rest.is_empty() {
            return Err(Error::corrupt("bytes follow the last field"));
        }
        let entry = ScheduleEntry::new(name, &*spec, &*zone, &*topic);
        let mut state = ScheduleState::new(&entry, seen_at);
        state.paused = paused;
        state.last_tick = last_tick;
        state.last_task = last_task;
        state.fired_at = fired_at;
        Ok(state)
    };
    decode(&mut rest).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TaskRecord {
        let args = Payload::from_stored("{\"a\":\"é:1\"}");
        let mut r = TaskRecord::new(TaskId::new(4), "t", args);
        r.external_id = Some("ext:1".into());
        r.attempt = 2;
        r.max_retries = Some(5);
        r.priority = -3;
        r.enqueued_at = Timestamp::from_millis(1000);
        r.run_at = Timestamp::from_millis(-2000);
        r.unique_key = Some("".into());
        r.unique_while_kept = true;
        r.first_started_at = Some(Timestamp::from_millis(1100));
        r.started_at = Some(Timestamp::from_millis(1200));
        r.finished_at = Some(Timestamp::from_millis(3000));
        r.errors = vec![
            AttemptError {
                attempt: 1,
                at: Timestamp::from_millis(1150),
                message: "boom: 1 {\"attempt\":".into(),
            },
            AttemptError {
                attempt: 2,
                at: Timestamp::from_millis(1250),
                message: "two".into(),
            },
        ];
        r.result = Some(Payload::from_stored("[1,\"r:2\"]"));
        r.progress = Some(Payload::from_stored("{\"half\":true}"));
        r.cancelled_by = Some("ops:1".into());
        r
    }

    fn encoded(r: &TaskRecord) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(r, &mut out);
        out
    }

    fn same(a: &TaskRecord, b: &TaskRecord) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn lease(text: &str) -> StoredLease {
        StoredLease::from_value(Value::BulkString(text.as_bytes().to_vec()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn records_round_trip() {
        let topic: Arc<str> = "t".into();
        let r = record();
        let bytes = encoded(&r);
        same(
            &decode(Some(&bytes), r.id, &topic, Queue::Input).unwrap(),
            &r,
        );
        let bare = TaskRecord::new(r.id, "t", r.args.clone());
        let bytes = encoded(&bare);
        assert!(
            bytes.starts_with(b"v2:0::0:0:0:::::::::::{"),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        same(
            &decode(Some(&bytes), r.id, &topic, Queue::Input).unwrap(),
            &bare,
        );
    }

    #[test]
    fn headers_round_trip_and_cost_nothing_when_absent() {
        let topic: Arc<str> = "t".into();
        let mut r = record();
        let without = encoded(&r);
        let mut headers = Headers::new();
        headers.insert("traceparent", "00-ab-cd-01").unwrap();
        headers.insert("x-note", "a:b \"c\" é").unwrap();
        r.headers = headers.clone();
        let with = String::from_utf8(encoded(&r)).unwrap();
        let json = serde_json::to_string(&headers).unwrap();
        // Flag `h`, the headers' length after the others and the headers after the other
        // strings; the rest is the record without headers.
        let plain = String::from_utf8(without).unwrap();
        let strings_at = plain.match_indices(':').nth(15).unwrap().0 + 1;
        let args_at = plain.len() - r.args.as_str().len();
        let expected = format!(
            "{}{}:{}{json}{}",
            plain[..strings_at].replacen(":u:", ":uh:", 1),
            json.len(),
            &plain[strings_at..args_at],
            r.args.as_str()
        );
        assert_eq!(with, expected);
        let with = with.into_bytes();
        let decoded = decode(Some(&with), r.id, &topic, Queue::Input).unwrap();
        assert_eq!(decoded.headers, headers);
        same(&decoded, &r);
        // After a completion's trailer too.
        let mut kept = with.clone();
        kept.extend_from_slice(b"\x1e5000:4000;9:::");
        let decoded = decode(Some(&kept), r.id, &topic, Queue::Completed).unwrap();
        assert_eq!(decoded.headers, headers);
        // Stored headers are read as stored: not validated, the last of a repeated key kept.
        let mut odd = TaskRecord::new(r.id, "t", Payload::from_stored("{}"));
        odd.headers = headers;
        let mut bytes = encoded(&odd);
        let stored = String::from_utf8(bytes.clone()).unwrap();
        let replaced = r#"{"bad key":"1","bad key":"2"}"#;
        let stored = stored.replace(
            &format!("{}:{json}", json.len()),
            &format!("{}:{replaced}", replaced.len()),
        );
        bytes = stored.into_bytes();
        let decoded = decode(Some(&bytes), r.id, &topic, Queue::Input).unwrap();
        assert_eq!(
            decoded.headers.iter().collect::<Vec<_>>(),
            [("bad key", "2")]
        );
    }

    #[test]
    fn records_of_the_layout_before_history_are_read() {
        let topic: Arc<str> = "t".into();
        let dead = b"3:5:-3:1000:2000:3000:5:1:7:ext:1ugone: 1{\"a\":1}";
        let r = decode(Some(dead), TaskId::new(4), &topic, Queue::Dead).unwrap();
        assert_eq!((r.attempt, r.max_retries, r.priority), (3, Some(5), -3));
        assert_eq!(r.finished_at, Some(Timestamp::from_millis(3000)));
        assert_eq!(
            (r.external_id.as_deref(), r.unique_key.as_deref()),
            (Some("ext:1"), Some("u"))
        );
        assert_eq!(
            r.errors,
            vec![AttemptError {
                attempt: 3,
                at: Timestamp::from_millis(3000),
                message: "gone: 1".into()
            }]
        );
        assert_eq!(r.args.as_str(), "{\"a\":1}");
        assert!(!r.unique_while_kept && r.result.is_none() && r.started_at.is_none());
        // A retried task: no failed_at, so its error's time is unknown (the epoch).
        let retried = decode(
            Some(b"1:2:0:5:9::::1:x{}"),
            TaskId::new(5),
            &topic,
            Queue::Input,
        )
        .unwrap();
        assert_eq!((retried.finished_at, retried.errors.len()), (None, 1));
        assert_eq!(retried.errors[0].at, Timestamp::EPOCH);
        assert_eq!(retried.last_error(), Some("x"));
    }

    #[test]
    fn a_completion_trailer_is_folded_in() {
        let topic: Arc<str> = "t".into();
        let mut stored = record();
        (stored.max_retries, stored.first_started_at, stored.result) = (None, None, None);
        let mut bytes = encoded(&stored);
        bytes.extend_from_slice(b"\x1e5000:4000;9:3:1:[1]7");
        let r = decode(Some(&bytes), stored.id, &topic, Queue::Completed).unwrap();
        assert_eq!(r.args, stored.args);
        assert_eq!((r.attempt, r.max_retries), (3, Some(9)));
        let (started, finished) = (Timestamp::from_millis(4000), Timestamp::from_millis(5000));
        assert_eq!(
            (r.started_at, r.first_started_at, r.finished_at),
            (Some(started), Some(started), Some(finished))
        );
        assert_eq!(
            (r.result.unwrap().as_str(), r.progress.unwrap().as_str()),
            ("[1]", "7")
        );
        // No result, no progress, a lease from before history: the record's own stay.
        let mut bytes = encoded(&record());
        bytes.extend_from_slice(b"\x1e5000:;:::");
        let r = decode(Some(&bytes), stored.id, &topic, Queue::Completed).unwrap();
        assert_eq!((r.attempt, r.max_retries, r.result), (3, Some(5), None));
        assert_eq!(r.progress.unwrap().as_str(), "{\"half\":true}");
        assert_eq!(r.started_at, Some(Timestamp::from_millis(1200)));
        // After an old record too.
        let old = b"0:5:0:1000:1000:::::{}\x1e5000:4000;9:::";
        let r = decode(Some(old), stored.id, &topic, Queue::Completed).unwrap();
        assert_eq!(
            (r.attempt, r.max_retries, r.args.as_str()),
            (1, Some(5), "{}")
        );
        for broken in [
            "x:;:::",
            "5000:4000:::",
            "5000:;:9::",
            "5000:;:::tail",
            "5000:a;:::",
        ] {
            let mut bytes = encoded(&record());
            bytes.push(RS);
            bytes.extend_from_slice(broken.as_bytes());
            let err = decode(Some(&bytes), stored.id, &topic, Queue::Completed).unwrap_err();
            assert_eq!(
                err.kind(),
                taskmill_core::ErrorKind::Corrupt,
                "{broken}: {err}"
            );
        }
    }

    #[test]
    fn a_leased_record_is_in_work_one_attempt_on() {
        let topic: Arc<str> = "t".into();
        let mut stored = record();
        stored.max_retries = None;
        stored.first_started_at = None;
        let bytes = encoded(&stored);
        let run = Run {
            lease: Some(lease("9:3000;2500;7:m:1")),
            cancelled_by: Some("me".into()),
            progress: Some("50".into()),
        };
        let r = decode_stored(Some(&bytes), TaskId::new(4), &topic, Queue::Input, &run).unwrap();
        assert_eq!(
            (r.queue, r.attempt, r.max_retries),
            (Queue::Work, 3, Some(7))
        );
        let started = Some(Timestamp::from_millis(2500));
        assert_eq!((r.started_at, r.first_started_at), (started, started));
        assert_eq!(r.cancelled_by.as_deref(), Some("me"));
        assert_eq!(r.progress.unwrap().as_str(), "50");
        let lease = r.lease.unwrap();
        assert_eq!(
            (lease.token, &*lease.owner, lease.deadline.as_millis()),
            (9, "m:1", 3000)
        );
    }

    #[test]
    fn leases_of_both_layouts_are_read() {
        let new = lease("12:-5;4;0:host:1;2");
        assert_eq!((new.token, new.deadline.as_millis()), (12, -5));
        assert_eq!(
            (new.started_at, new.max_retries, &*new.owner),
            (Some(Timestamp::from_millis(4)), Some(0), "host:1;2")
        );
        // Before history: the owner follows the deadline, whatever it holds.
        let old = lease("12:30:7;8;9:x");
        assert_eq!((old.deadline.as_millis(), &*old.owner), (30, "7;8;9:x"));
        assert_eq!((old.started_at, old.max_retries), (None, None));
        for bad in ["", "x:1:o", "1:", "1:2", "1:2;3:o", "1:2;a;1:o", "1:2x:o"] {
            let parsed = StoredLease::from_value(Value::BulkString(bad.as_bytes().to_vec()));
            assert!(parsed.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_lua_codec_reads_and_writes_the_same_format() {
        // The Lua patterns must accept exactly what encode_record writes, and the Lua
        // constants must be the core's: spot-check them against the Rust side.
        let lua = include_str!("scripts/common.lua");
        assert!(lua.contains(
            "v2:attempt:max_retries:priority:enqueued_at:run_at:finished_at:first_started_at:\n--   started_at:flags:xlen:ulen:elen:rlen:plen:clen:"
        ));
        assert!(lua.contains(
            "'^v2:(%d+):(%d*):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%-?%d*):(%-?%d*):(%a*):' ..\n  '(%d*):(%d*):(%d*):(%d*):(%d*):(%d*):()'"
        ));
        assert!(
            lua.contains("'^(%d+):(%d+):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%d*):(%d*):(%d*):()'")
        );
        assert!(lua.contains("local FINISH = '^(%-?%d+):(%-?%d*);(%d*):(%d*):(%d*):()'"));
        assert!(lua.contains(&format!("local RS = '\\{}'", RS)));
        assert!(lua.contains(&format!(
            "local MAX_KEPT_ERRORS = {}\n",
            taskmill_core::MAX_KEPT_ERRORS
        )));
        assert!(lua.contains(&format!(
            "local DEFAULT_MAX_RETRIES = {}\n",
            taskmill_core::store::DEFAULT_MAX_RETRIES
        )));
    }

    #[test]
    fn garbage_is_corrupt_never_a_panic() {
        let topic: Arc<str> = "t".into();
        let good = encoded(&record());
        let mut cut = good.clone();
        cut.truncate(good.len() - 16);
        for broken in [
            &b""[..],
            b"sideways",
            b"1:2:3",
            b"x:5:0:0:0::::::{}",
            b"0:5:0:0:0:::99::{}",
            b"0:5:high:0:0::::::{}",
            b"0:5:0:0:0::::1:\xff{}",
            b"v2:0::0:0:0",
            b"v2:0::0:0:0:::::99:::::::{}",
            b"v2:0:x:0:0:0::::::::::::{}",
            b"v2:0::0:0:0::::h:::::::{}",
            b"v2:0::0:0:0::::h:::::::x:{}",
            b"v2:0::0:0:0::::h:::::::99:{}",
            b"v2:0::0:0:0::::h:::::::5:[1,2]{}",
            b"v2:0::0:0:0::::h:::::::7:{\"a\":1}{}",
            BAD_ERRORS,
            &cut[..],
        ] {
            let err = decode(Some(broken), TaskId::new(1), &topic, Queue::Input).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains("corrupt record"), "{err}");
            let lenient = decode_lenient(
                Some(broken),
                TaskId::new(1),
                &topic,
                Queue::Dead,
                &Run::default(),
            );
            assert!(lenient.last_error().unwrap().contains("corrupt record"));
            assert!(serde_json::from_str::<String>(lenient.args.as_str()).is_ok());
        }
        let missing = decode(None, TaskId::new(1), &topic, Queue::Dead).unwrap_err();
        assert_eq!(missing.kind(), taskmill_core::ErrorKind::Corrupt);
        let err = decode(Some(BAD_ERRORS), TaskId::new(1), &topic, Queue::Dead).unwrap_err();
        assert!(err.to_string().contains("errors"), "{err}");
    }

    #[test]
    fn schedule_states_read_as_the_scripts_write_them() {
        // As schedule.lua's pack_schedule writes a state: fired, last task in another
        // topic, a name and strings with every character a key or JSON would trip over.
        let name = "n\"\\{}:*ü";
        let state = decode_schedule(
            name,
            "s1:1:120:7:-5:99:9:3:5:1:every 60sUTCa:b{cz".as_bytes(),
        )
        .unwrap();
        assert_eq!(&*state.name, name);
        assert_eq!(
            (&*state.spec, &*state.zone, &*state.topic),
            ("every 60s", "UTC", "a:b{c")
        );
        assert!(state.paused);
        assert_eq!(state.last_tick, Some(Timestamp::from_millis(120)));
        assert_eq!(state.last_task, Some(TaskId::new(7)));
        assert_eq!(state.fired_at, Some(Timestamp::from_millis(-5)));
        assert_eq!(state.seen_at, Timestamp::from_millis(99));
        // Never fired, unregistered (empty spec and zone), a unicode topic.
        let fresh = decode_schedule("x", "s1:0::::5:0:0:3::ü!".as_bytes()).unwrap();
        assert_eq!((&*fresh.spec, &*fresh.zone, &*fresh.topic), ("", "", "ü!"));
        assert_eq!(
            (
                fresh.paused,
                fresh.last_tick,
                fresh.last_task,
                fresh.fired_at
            ),
            (false, None, None, None)
        );
        let lua = include_str!("scripts/schedule.lua");
        assert!(lua
            .contains("'^s1:([01]):(%-?%d*):(%d*):(%-?%d*):(%-?%d+):(%d+):(%d+):(%d+):(%d*):()'"));
        for broken in [
            &b""[..],
            b"s2:0::::5:0:0:1::t",
            b"s1:2::::5:0:0:1::t",
            b"s1:0::x::5:0:0:1::t",
            b"s1:0:::::0:0:1::t",
            b"s1:0::::5:0:0:9::t",
            b"s1:0::::5:0:0:1::tt",
            b"s1:0::::5:0:0:1:4:t",
            b"s1:0::::5:0:0:1::\xff",
        ] {
            let err = decode_schedule("x", broken).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt, "{broken:?}");
            assert!(err.to_string().contains("schedule \"x\""), "{err}");
        }
    }

    /// A record whose errors field is not a JSON array of errors.
    const BAD_ERRORS: &[u8] = b"v2:0::0:0:0:::::::3::::[1]{}";
}

/// Property tests of the record, lease, completion and schedule codecs (issue #17), with
/// no Redis server: what is encoded decodes equal, and no bytes (arbitrary, or a valid
/// encoding cut or changed) make a decoder panic; what it cannot read is `Corrupt`.
/// Cases: proptest's default (256), or `PROPTEST_CASES`, which the default config reads.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use taskmill_core::ErrorKind;

    fn time() -> impl Strategy<Value = Timestamp> {
        any::<i64>().prop_map(Timestamp::from_millis)
    }

    /// Any text: control characters (RS among them), `:` and non-ASCII included.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,12}", "[:\u{1e}a-c0-9é]{0,8}"]
    }

    /// A JSON value as serde_json writes it (so never with a raw RS): the arguments or a
    /// result.
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
        .prop_map(|v| v.to_string())
    }

    fn error() -> impl Strategy<Value = AttemptError> {
        (any::<u32>(), time(), text()).prop_map(|(attempt, at, message)| AttemptError {
            attempt,
            at,
            message: message.into(),
        })
    }

    prop_compose! {
        /// A record built through the public API with every stored field arbitrary (the
        /// queue and the lease are not in the record); headers are those
        /// `Headers::insert` accepts.
        fn record()(
            (id, topic, args) in (any::<u64>(), text(), json()),
            (external_id, attempt, max_retries, priority) in
                (proptest::option::of(text()), any::<u32>(), proptest::option::of(any::<u32>()), any::<i16>()),
            (enqueued_at, run_at, unique_key, unique_while_kept) in
                (time(), time(), proptest::option::of(text()), any::<bool>()),
            (first_started_at, started_at, finished_at) in
                (proptest::option::of(time()), proptest::option::of(time()), proptest::option::of(time())),
            errors in prop::collection::vec(error(), 0..4),
            (result, progress, cancelled_by) in
                (proptest::option::of(json()), proptest::option::of(json()), proptest::option::of(text())),
            headers in prop::collection::vec(("[a-z][a-z0-9-]{0,6}", text()), 0..4),
        ) -> TaskRecord {
            let mut r = TaskRecord::new(TaskId::new(id), topic, Payload::from_stored(args));
            r.external_id = external_id.map(Into::into);
            r.attempt = attempt;
            r.max_retries = max_retries;
            r.priority = priority;
            r.enqueued_at = enqueued_at;
            r.run_at = run_at;
            r.unique_key = unique_key.map(Into::into);
            r.unique_while_kept = unique_while_kept;
            r.first_started_at = first_started_at;
            r.started_at = started_at;
            r.finished_at = finished_at;
            r.errors = errors;
            r.result = result.map(Payload::from_stored);
            r.progress = progress.map(Payload::from_stored);
            r.cancelled_by = cancelled_by.map(Into::into);
            for (key, value) in headers {
                // A value the rules refuse is left out: the codec stores what they allow.
                let _ = r.headers.insert(key, value);
            }
            r
        }
    }

    prop_compose! {
        /// A schedule state and the last task's topic, which the stored form may carry.
        fn schedule()(
            (name, spec, zone, topic) in (text(), text(), text(), text()),
            (seen_at, paused) in (time(), any::<bool>()),
            (last_tick, last_task, fired_at) in (
                proptest::option::of(time()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(time()),
            ),
            last_topic in proptest::option::of(text()),
        ) -> (ScheduleState, Option<String>) {
            let entry = ScheduleEntry::new(name, spec, zone, topic);
            let mut state = ScheduleState::new(&entry, seen_at);
            state.paused = paused;
            state.last_tick = last_tick;
            state.last_task = last_task.map(TaskId::new);
            state.fired_at = fired_at;
            (state, last_topic)
        }
    }

    /// The stored form of a schedule state as `scripts/schedule.lua` writes it (the
    /// format in [`decode_schedule`]'s doc): Rust never writes one.
    fn pack_schedule(state: &ScheduleState, last_topic: Option<&str>) -> Vec<u8> {
        let time = |t: Option<Timestamp>| t.map(|t| t.as_millis().to_string()).unwrap_or_default();
        let mut out = format!(
            "s1:{}:{}:{}:{}:{}:{}:{}:{}:{}:",
            u8::from(state.paused),
            time(state.last_tick),
            state
                .last_task
                .map(|t| t.get().to_string())
                .unwrap_or_default(),
            time(state.fired_at),
            state.seen_at.as_millis(),
            state.spec.len(),
            state.zone.len(),
            state.topic.len(),
            last_topic.map(|t| t.len().to_string()).unwrap_or_default(),
        );
        for s in [
            &*state.spec,
            &*state.zone,
            &*state.topic,
            last_topic.unwrap_or_default(),
        ] {
            out.push_str(s);
        }
        out.into_bytes()
    }

    /// Runs every decoder of stored bytes on `bytes`: the record (alone, and with `bytes`
    /// as a completion's trailer after a valid record), the lenient record, the lease and
    /// the schedule state. Each may fail, always with `Corrupt`; none panics.
    fn decode_any(bytes: &[u8]) -> Result<(), TestCaseError> {
        let topic: Arc<str> = "t".into();
        let id = TaskId::new(1);
        let corrupt = |r: Result<()>| match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Corrupt => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!("not Corrupt: {e}"))),
        };
        corrupt(decode(Some(bytes), id, &topic, Queue::Input).map(drop))?;
        let valid = TaskRecord::new(id, "t", Payload::from_stored("1"));
        let mut record = Vec::new();
        encode_record(&valid, &mut record);
        let trailed = with_end(Some(record), Value::BulkString(bytes.to_vec()))?;
        corrupt(decode(trailed.as_deref(), id, &topic, Queue::Completed).map(drop))?;
        let lenient = decode_lenient(Some(bytes), id, &topic, Queue::Dead, &Run::default());
        prop_assert_eq!(lenient.id, id);
        corrupt(StoredLease::from_value(Value::BulkString(bytes.to_vec())).map(drop))?;
        corrupt(decode_schedule("s", bytes).map(drop))?;
        Ok(())
    }

    proptest! {
        #[test]
        fn records_round_trip(r in record(), queue in 0..Queue::ALL.len()) {
            let mut r = r;
            r.queue = Queue::ALL[queue];
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            prop_assert_eq!(decode(Some(&bytes), r.id, &r.topic, r.queue).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_corrupt(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            prefix in prop_oneof![Just(&b""[..]), Just(&b"v2:"[..]), Just(&b"s1:"[..])],
        ) {
            decode_any(&bytes)?;
            decode_any(&[prefix, &bytes].concat())?;
        }

        #[test]
        fn arbitrary_fields_decode_or_are_corrupt(
            fields in prop::collection::vec(
                prop_oneof!["-?[0-9]{0,3}", Just(String::new()), "[uh]{0,2}", ".{0,4}"],
                0..24,
            ),
            tail in ".{0,16}",
            prefix in prop_oneof![Just(""), Just("v2:"), Just("s1:")],
        ) {
            // Colon-separated small numbers reach the length checks, which random bytes
            // rarely do.
            decode_any(format!("{prefix}{}:{tail}", fields.join(":")).as_bytes())?;
        }

        #[test]
        fn cut_or_changed_records_never_panic(
            r in record(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = Vec::new();
            encode_record(&r, &mut bytes);
            for len in 0..bytes.len() {
                decode_any(&bytes[..len])?;
            }
            let mut changed = bytes.clone();
            for (at, value) in &flips {
                changed[at.index(bytes.len())] = *value;
            }
            decode_any(&changed)?;
        }

        #[test]
        fn schedules_round_trip((state, last_topic) in schedule()) {
            let bytes = pack_schedule(&state, last_topic.as_deref());
            prop_assert_eq!(decode_schedule(&state.name, &bytes).unwrap(), state);
        }

        #[test]
        fn cut_or_changed_schedules_never_panic(
            (state, last_topic) in schedule(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let bytes = pack_schedule(&state, last_topic.as_deref());
            // Every cut is short of a field or a string: corrupt, never a panic.
            for len in 0..bytes.len() {
                let e = decode_schedule(&state.name, &bytes[..len]).unwrap_err();
                prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
            }
            let mut changed = bytes.clone();
            for (at, value) in &flips {
                changed[at.index(bytes.len())] = *value;
            }
            decode_any(&changed)?;
        }
    }
}
