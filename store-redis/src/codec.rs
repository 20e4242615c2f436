//! Task records to and from their stored form, and script replies to Rust values.
//!
//! A task is one string in its topic's `tasks` hash (the id is the field, the topic is in
//! the key):
//!
//! ```text
//! attempt:max_retries:priority:enqueued_at:run_at:failed_at:xlen:ulen:elen:<external_id><unique_key><last_error><args>
//! ```
//!
//! Times are ms since the epoch; `failed_at` is empty when unset; `xlen`, `ulen`, `elen`
//! are the byte lengths of the optional strings that follow, empty when the field is
//! absent; the args (JSON text) are the rest. The queue is not in the record: it is the
//! index holding the id (`ready` or `scheduled`: INPUT, `leases`: WORK, `dead`: DEAD). A
//! claim leaves the record alone: `attempt` counts the runs before the current one, and
//! the lease is the `leases` entry `token:deadline:owner`. `scripts/common.lua` reads and
//! writes the same format.

use redis::Value;
use std::str::FromStr;
use std::sync::Arc;
use taskmill_core::raw::PayloadExt;
use taskmill_core::{Error, Lease, Payload, Queue, Result, TaskId, TaskRecord, Timestamp};

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

/// A task's entry in its topic's `leases` hash: `token:deadline:owner`.
#[derive(Debug, Clone)]
pub(crate) struct StoredLease {
    pub token: u64,
    pub owner: Arc<str>,
    pub deadline: Timestamp,
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
        let bad = || Error::corrupt(format!("invalid lease {text:?}"));
        let mut parts = text.splitn(3, ':');
        let token = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let deadline: i64 = parts.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
        let owner: Arc<str> = Arc::from(parts.next().ok_or_else(bad)?);
        Ok(Some(StoredLease {
            token,
            owner,
            deadline: Timestamp::from_millis(deadline),
        }))
    }

    fn lease(&self) -> Lease {
        Lease {
            owner: self.owner.clone(),
            token: self.token,
            deadline: self.deadline,
        }
    }
}

/// Appends the stored form of a new task's record to `out`.
pub(crate) fn encode_record(r: &TaskRecord, out: &mut Vec<u8>) {
    use std::io::Write;
    let len = |s: &Option<Box<str>>| s.as_ref().map(|s| s.len().to_string()).unwrap_or_default();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{}:{}:{}:{}:{}:{}:{}:{}:{}:",
        r.attempt,
        r.max_retries,
        r.priority,
        r.enqueued_at.as_millis(),
        r.run_at.as_millis(),
        r.failed_at
            .map(|t| t.as_millis().to_string())
            .unwrap_or_default(),
        len(&r.external_id),
        len(&r.unique_key),
        len(&r.last_error),
    );
    for s in [&r.external_id, &r.unique_key, &r.last_error]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(r.args.as_str().as_bytes());
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

fn decode_inner(bytes: &[u8], id: TaskId, topic: &Arc<str>, queue: Queue) -> Result<TaskRecord> {
    let rest = &mut &bytes[..];
    let attempt = number(rest, "attempt")?;
    let max_retries = number(rest, "max_retries")?;
    let priority = number(rest, "priority")?;
    let enqueued_at = Timestamp::from_millis(number(rest, "enqueued_at")?);
    let run_at = Timestamp::from_millis(number(rest, "run_at")?);
    let failed_at = optional::<i64>(rest, "failed_at")?.map(Timestamp::from_millis);
    let external_len = optional(rest, "external_id length")?;
    let unique_len = optional(rest, "unique_key length")?;
    let error_len = optional(rest, "last_error length")?;
    let external_id = take(rest, external_len, "external_id")?;
    let unique_key = take(rest, unique_len, "unique_key")?;
    let last_error = take(rest, error_len, "last_error")?;
    let args = std::str::from_utf8(rest)
        .map_err(|e| Error::corrupt("field \"args\" is not UTF-8").with_source(e))?;
    let mut record = TaskRecord::new(id, topic.clone(), Payload::from_stored(args));
    record.queue = queue;
    record.external_id = external_id;
    record.attempt = attempt;
    record.max_retries = max_retries;
    record.priority = priority;
    record.enqueued_at = enqueued_at;
    record.run_at = run_at;
    record.unique_key = unique_key;
    record.last_error = last_error;
    record.failed_at = failed_at;
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

/// Decodes a stored task with its lease, if it is in WORK (the run under the lease is the
/// record's attempt plus one).
pub(crate) fn decode_stored(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    queue: Queue,
    lease: Option<&StoredLease>,
) -> Result<TaskRecord> {
    let mut record = decode(bytes, id, topic, queue)?;
    if let Some(lease) = lease {
        record.queue = Queue::Work;
        record.attempt = record.attempt.saturating_add(1);
        record.lease = Some(lease.lease());
    }
    Ok(record)
}

/// Decodes a task as it was before a claim (what the claim script returns) and applies
/// the claim: WORK, one more attempt, and `lease`.
pub(crate) fn decode_claimed(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    lease: Lease,
) -> Result<TaskRecord> {
    let mut record = decode(bytes, id, topic, Queue::Work)?;
    record.attempt = record.attempt.saturating_add(1);
    record.lease = Some(lease);
    Ok(record)
}

/// A record for listing that never fails: a record that cannot be read is shown with
/// defaults, its stored text as a JSON string in `args`, and the problem in `last_error`,
/// so an operator can see the task and delete or requeue it.
pub(crate) fn decode_lenient(
    bytes: Option<&[u8]>,
    id: TaskId,
    topic: &Arc<str>,
    queue: Queue,
    lease: Option<&StoredLease>,
) -> TaskRecord {
    match decode_stored(bytes, id, topic, queue, lease) {
        Ok(record) => record,
        Err(error) => {
            let text = String::from_utf8_lossy(bytes.unwrap_or_default());
            let args = Payload::from_stored(
                serde_json::to_string(&text).unwrap_or_else(|_| "null".to_owned()),
            );
            let mut record = TaskRecord::new(id, topic.clone(), args);
            record.queue = queue;
            record.last_error = Some(error.to_string().into());
            record.lease = lease.map(StoredLease::lease);
            record
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TaskRecord {
        let args = Payload::from_stored("{\"a\":\"é:1\"}");
        let mut r = TaskRecord::new(TaskId::new(4), "t", args);
        r.external_id = Some("ext:1".into());
        r.attempt = 2;
        r.max_retries = 5;
        r.priority = -3;
        r.enqueued_at = Timestamp::from_millis(1000);
        r.run_at = Timestamp::from_millis(-2000);
        r.unique_key = Some("".into());
        r.last_error = Some("boom: 1".into());
        r.failed_at = Some(Timestamp::from_millis(3000));
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

    #[test]
    fn records_round_trip() {
        let topic: Arc<str> = "t".into();
        let r = record();
        let bytes = encoded(&r);
        same(
            &decode(Some(&bytes), r.id, &topic, Queue::Input).unwrap(),
            &r,
        );
        let mut bare = record();
        (
            bare.external_id,
            bare.unique_key,
            bare.last_error,
            bare.failed_at,
        ) = (None, None, None, None);
        let bytes = encoded(&bare);
        assert!(bytes.starts_with(b"2:5:-3:1000:-2000:::::"));
        same(
            &decode(Some(&bytes), r.id, &topic, Queue::Input).unwrap(),
            &bare,
        );
    }

    #[test]
    fn a_leased_record_is_in_work_one_attempt_on() {
        let topic: Arc<str> = "t".into();
        let bytes = encoded(&record());
        let lease = StoredLease::from_value(Value::BulkString(b"9:3000:m:1".to_vec())).unwrap();
        let r = decode_stored(
            Some(&bytes),
            TaskId::new(4),
            &topic,
            Queue::Input,
            lease.as_ref(),
        )
        .unwrap();
        assert_eq!((r.queue, r.attempt), (Queue::Work, 3));
        let lease = r.lease.unwrap();
        assert_eq!(
            (lease.token, &*lease.owner, lease.deadline.as_millis()),
            (9, "m:1", 3000)
        );
    }

    #[test]
    fn the_lua_codec_reads_and_writes_the_same_format() {
        // The Lua pattern must accept exactly what encode_record writes: spot-check its
        // field list against the Rust order.
        let lua = include_str!("scripts/common.lua");
        assert!(lua
            .contains("attempt:max_retries:priority:enqueued_at:run_at:failed_at:xlen:ulen:elen:"));
        assert!(
            lua.contains("'^(%d+):(%d+):(%-?%d+):(%-?%d+):(%-?%d+):(%-?%d*):(%d*):(%d*):(%d*):()'")
        );
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
            &cut[..],
        ] {
            let err = decode(Some(broken), TaskId::new(1), &topic, Queue::Input).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains("corrupt record"), "{err}");
            let lenient = decode_lenient(Some(broken), TaskId::new(1), &topic, Queue::Dead, None);
            assert!(lenient.last_error.unwrap().contains("corrupt record"));
            assert!(serde_json::from_str::<String>(lenient.args.as_str()).is_ok());
        }
        let missing = decode(None, TaskId::new(1), &topic, Queue::Dead).unwrap_err();
        assert_eq!(missing.kind(), taskmill_core::ErrorKind::Corrupt);
    }
}
