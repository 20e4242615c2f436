//! Task hashes to records, and script replies to Rust values.
//!
//! A task hash has one field per [`TaskRecord`] field (the id and topic are in its key):
//! `queue`, `args` (JSON text), `attempt`, `max_retries`, `priority`, `enqueued_at`,
//! `run_at` (ms since the epoch), optional `external_id`, `unique_key`, `last_error`,
//! `failed_at`. A claim leaves the hash alone: while the task is in WORK its lease is the
//! topic's `leases` entry (`token:attempt:unique:deadline:owner`, `attempt` counting the
//! current run).

use redis::Value;
use std::str::FromStr;
use std::sync::Arc;
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

/// A task's entry in its topic's `leases` hash.
#[derive(Debug, Clone)]
pub(crate) struct StoredLease {
    pub token: u64,
    pub attempt: u32,
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
        let mut parts = text.splitn(5, ':');
        let token = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let attempt = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
        let _unique = parts.next().ok_or_else(bad)?;
        let deadline: i64 = parts.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
        let owner: Arc<str> = Arc::from(parts.next().ok_or_else(bad)?);
        Ok(Some(StoredLease {
            token,
            attempt,
            owner,
            deadline: Timestamp::from_millis(deadline),
        }))
    }
}

/// The fields of a task hash in the order `RECORD_FIELDS` in `scripts/common.lua` lists
/// them.
pub(crate) const RECORD_FIELDS: [&str; 11] = [
    "queue",
    "args",
    "attempt",
    "max_retries",
    "priority",
    "enqueued_at",
    "run_at",
    "external_id",
    "unique_key",
    "last_error",
    "failed_at",
];

/// The raw fields of a task hash, as HGETALL returns them.
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, Vec<u8>)>);

impl Fields {
    /// Reads `field, value, field, value, …` replies.
    pub fn from_values(values: impl IntoIterator<Item = Value>) -> Self {
        let mut fields = Vec::new();
        let mut it = values.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = match k {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::SimpleString(s) => s,
                _ => continue,
            };
            let value = match v {
                Value::BulkString(b) => b,
                Value::SimpleString(s) => s.into_bytes(),
                Value::Int(n) => n.to_string().into_bytes(),
                _ => continue,
            };
            fields.push((key, value));
        }
        Fields(fields)
    }

    /// Reads the values of [`RECORD_FIELDS`] in order, as the claim script returns them
    /// (nil for a field the hash lacks).
    pub fn from_record_values(values: impl IntoIterator<Item = Value>) -> Self {
        let fields = RECORD_FIELDS
            .iter()
            .zip(values)
            .filter_map(|(name, value)| {
                let bytes = match value {
                    Value::BulkString(b) => b,
                    Value::SimpleString(s) => s.into_bytes(),
                    Value::Int(n) => n.to_string().into_bytes(),
                    _ => return None,
                };
                Some(((*name).to_owned(), bytes))
            })
            .collect();
        Fields(fields)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &str) -> Result<Option<&str>> {
        self.raw(name)
            .map(|v| {
                std::str::from_utf8(v).map_err(|e| {
                    Error::corrupt(format!("field {name:?} is not UTF-8")).with_source(e)
                })
            })
            .transpose()
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.text(name)?
            .ok_or_else(|| Error::corrupt(format!("field {name:?} is missing")))
    }

    fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.text(name)?
            .map(|s| {
                s.parse::<T>().map_err(|e| {
                    Error::corrupt(format!("field {name:?} has an invalid value {s:?}"))
                        .with_source(e)
                })
            })
            .transpose()
    }

    fn number<T: FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.parse(name)?
            .ok_or_else(|| Error::corrupt(format!("field {name:?} is missing")))
    }

    /// Decodes the record of task `id` of `topic`; `Corrupt` when a field is missing or
    /// invalid.
    pub fn decode(&self, id: TaskId, topic: &Arc<str>) -> Result<TaskRecord> {
        let decoded = self.decode_inner(id, topic);
        decoded.map_err(|e| {
            Error::corrupt(format!(
                "task {id} of topic {topic:?} cannot be decoded: {}",
                e.message()
            ))
            .with_source(e)
        })
    }

    fn decode_inner(&self, id: TaskId, topic: &Arc<str>) -> Result<TaskRecord> {
        let queue: Queue = self.required("queue")?.parse()?;
        Ok(TaskRecord {
            id,
            queue,
            topic: topic.clone(),
            external_id: self.text("external_id")?.map(Box::from),
            args: Payload::from_stored(self.required("args")?),
            attempt: self.number("attempt")?,
            max_retries: self.number("max_retries")?,
            priority: self.number("priority")?,
            enqueued_at: Timestamp::from_millis(self.number("enqueued_at")?),
            run_at: Timestamp::from_millis(self.number("run_at")?),
            unique_key: self.text("unique_key")?.map(Box::from),
            last_error: self.text("last_error")?.map(Box::from),
            failed_at: self.parse::<i64>("failed_at")?.map(Timestamp::from_millis),
            lease: None,
        })
    }

    /// Decodes a stored task with its lease entry and deadline, if it is in WORK.
    pub fn decode_stored(
        &self,
        id: TaskId,
        topic: &Arc<str>,
        lease: Option<&StoredLease>,
    ) -> Result<TaskRecord> {
        let mut record = self.decode(id, topic)?;
        if let Some(lease) = lease {
            record.queue = Queue::Work;
            record.attempt = lease.attempt;
            record.lease = Some(Lease {
                owner: lease.owner.clone(),
                token: lease.token,
                deadline: lease.deadline,
            });
        }
        Ok(record)
    }

    /// Decodes a task as it was before a claim (what the claim script returns) and applies
    /// the claim: WORK, one more attempt, and `lease`.
    pub fn decode_claimed(&self, id: TaskId, topic: &Arc<str>, lease: Lease) -> Result<TaskRecord> {
        let mut record = self.decode(id, topic)?;
        record.queue = Queue::Work;
        record.attempt = record.attempt.saturating_add(1);
        record.lease = Some(lease);
        Ok(record)
    }

    /// A record for listing that never fails: what cannot be decoded is left at a default
    /// and the problem is described in `last_error`, so an operator can see the task and
    /// delete or requeue it.
    pub fn decode_lenient(
        &self,
        id: TaskId,
        topic: &Arc<str>,
        queue: Queue,
        lease: Option<&StoredLease>,
    ) -> TaskRecord {
        match self.decode_stored(id, topic, lease) {
            Ok(record) => record,
            Err(error) => {
                let lossy = |name: &str| {
                    self.raw(name)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                let number = |name: &str| lossy(name).and_then(|s| s.parse::<i64>().ok());
                TaskRecord {
                    id,
                    queue,
                    topic: topic.clone(),
                    external_id: lossy("external_id").map(String::into_boxed_str),
                    args: Payload::from_stored(lossy("args").unwrap_or_default()),
                    attempt: number("attempt")
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    max_retries: number("max_retries")
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    priority: number("priority")
                        .and_then(|n| i16::try_from(n).ok())
                        .unwrap_or(0),
                    enqueued_at: Timestamp::from_millis(number("enqueued_at").unwrap_or(0)),
                    run_at: Timestamp::from_millis(number("run_at").unwrap_or(0)),
                    unique_key: lossy("unique_key").map(String::into_boxed_str),
                    last_error: Some(match lossy("last_error") {
                        Some(last) => format!("{last} ({error})").into(),
                        None => error.to_string().into(),
                    }),
                    failed_at: number("failed_at").map(Timestamp::from_millis),
                    lease: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    const GOOD: &[(&str, &str)] = &[
        ("queue", "input"),
        ("args", "{\"a\":1}"),
        ("attempt", "2"),
        ("max_retries", "5"),
        ("priority", "-3"),
        ("enqueued_at", "1000"),
        ("run_at", "2000"),
        ("unique_key", "k"),
    ];

    #[test]
    fn the_claim_script_reads_the_fields_in_the_same_order() {
        let lua = include_str!("scripts/common.lua");
        let start = lua
            .find("local RECORD_FIELDS = {")
            .expect("RECORD_FIELDS in common.lua");
        let list = &lua[start..];
        let list = &list[list.find('{').unwrap() + 1..list.find('}').unwrap()];
        let names: Vec<&str> = list
            .split(',')
            .map(|n| n.trim().trim_matches('\''))
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(names, RECORD_FIELDS);
    }

    #[test]
    fn decodes_every_field() {
        let topic: Arc<str> = "t".into();
        let r = fields(GOOD).decode(TaskId::new(4), &topic).unwrap();
        assert_eq!(
            (r.queue, r.attempt, r.max_retries, r.priority),
            (Queue::Input, 2, 5, -3)
        );
        let lease = StoredLease::from_value(Value::BulkString(b"9:3:1:3000:m:1".to_vec())).unwrap();
        let r = fields(GOOD)
            .decode_stored(TaskId::new(4), &topic, lease.as_ref())
            .unwrap();
        assert_eq!((r.queue, r.attempt), (Queue::Work, 3));
        let lease = r.lease.unwrap();
        assert_eq!(
            (lease.token, &*lease.owner, lease.deadline.as_millis()),
            (9, "m:1", 3000)
        );
        assert_eq!(r.unique_key.as_deref(), Some("k"));
        assert_eq!(r.args.as_str(), "{\"a\":1}");
    }

    #[test]
    fn garbage_is_corrupt_never_a_panic() {
        let topic: Arc<str> = "t".into();
        for broken in [
            &[("queue", "sideways")][..],
            &[("queue", "input"), ("args", "x")][..],
            &GOOD[..2],
        ] {
            let err = fields(broken).decode(TaskId::new(1), &topic).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt, "{err}");
            let lenient = fields(broken).decode_lenient(TaskId::new(1), &topic, Queue::Dead, None);
            assert!(lenient.last_error.unwrap().contains("cannot be decoded"));
        }
        let mut bad = GOOD.to_vec();
        bad[4] = ("priority", "high");
        let err = fields(&bad).decode(TaskId::new(1), &topic).unwrap_err();
        assert_eq!(err.kind(), taskmill_core::ErrorKind::Corrupt);
    }
}
