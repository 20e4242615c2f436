//! Tasks: what a user enqueues ([`Task`]) and what a store keeps ([`TaskRecord`]).
//!
//! This module depends on no store type: the store module builds on it, not the reverse.

use crate::error::{Error, Result};
use crate::headers::Headers;
use crate::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A task's identifier, assigned by the store when the task is enqueued.
///
/// Ids grow with enqueue order within one store, which is what "FIFO" means among tasks
/// of equal priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(u64);

impl TaskId {
    /// The id with this number.
    pub const fn new(id: u64) -> Self {
        TaskId(id)
    }

    /// The id's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.parse()
            .map(TaskId)
            .map_err(|e| Error::misuse(format!("invalid task id {s:?}")).with_source(e))
    }
}

/// A task's JSON arguments, kept as JSON text.
///
/// Cloning is cheap (a reference count), so handing a claimed task to a worker does not
/// copy its payload. Stores read payloads back with
/// [`raw::PayloadExt::from_stored`](crate::raw::PayloadExt::from_stored), which does not
/// re-validate: a payload that was corrupted at rest is caught when it is decoded, and the
/// task fails with a clear error instead of taking the manager down.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(pub(crate) Arc<str>);

impl Payload {
    /// Serializes `value` into a payload.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        thread_local! {
            // Serializing into a reused buffer leaves one allocation per payload: its Arc.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                // Re-entered from inside a Serialize impl: take the plain path.
                return Ok(Payload(serde_json::to_string(value)?.into()));
            };
            buffer.clear();
            serde_json::to_writer(&mut *buffer, value)?;
            let json = std::str::from_utf8(&buffer)
                .map_err(|e| Error::misuse("serde_json wrote invalid UTF-8").with_source(e))?;
            let payload = Payload(Arc::from(json));
            // Do not keep a large buffer alive for the thread's lifetime.
            buffer.shrink_to(4096);
            Ok(payload)
        })
    }

    /// A payload from JSON text, validated.
    pub fn from_json(json: impl Into<Arc<str>>) -> Result<Self> {
        let json = json.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(Payload(json))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Deserializes the payload into `T`.
    ///
    /// Fails with [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) when the text is not
    /// JSON, or not the JSON `T` expects.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.0)
            .map_err(|e| Error::corrupt("cannot decode task arguments").with_source(e))
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        // Embed the JSON as JSON, not as a string of JSON, when it is valid.
        match serde_json::from_str::<&RawValue>(&self.0) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    /// Keeps the JSON text as it was (key order, number precision). Needs serde_json's
    /// own deserializer; see [`Payload::deserialize_buffered`] for content serde buffers.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Payload(Arc::from(raw.get())))
    }
}

impl Payload {
    /// Deserializes a payload from content serde has buffered (a field of an internally
    /// tagged enum, like [`Event`](crate::Event)), where the text itself is no longer
    /// available: the JSON is rebuilt from its value.
    pub fn deserialize_buffered<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Payload(value.to_string().into()))
    }
}

/// When a task first becomes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    At(Timestamp),
    After(Duration),
}

/// A task to enqueue: a topic, JSON arguments, and options.
///
/// ```
/// use std::time::Duration;
/// use taskmill_core::Task;
///
/// let task = Task::new("emails", &serde_json::json!({ "to": "ada@example.com" }))?
///     .priority(-1)
///     .max_retries(5)
///     .delay(Duration::from_secs(30))
///     .unique_key("welcome:ada");
/// assert_eq!(task.topic(), "emails");
/// # Ok::<_, taskmill_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Task {
    topic: Arc<str>,
    args: Payload,
    external_id: Option<String>,
    max_retries: Option<u32>,
    priority: i16,
    due: Due,
    unique_key: Option<String>,
    unique_while_kept: bool,
    headers: Headers,
}

impl Task {
    /// A task for `topic` with `args` serialized to JSON.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) when the topic is empty
    /// or `args` cannot be serialized.
    pub fn new<T: Serialize + ?Sized>(topic: impl Into<Arc<str>>, args: &T) -> Result<Self> {
        Self::with_payload(topic, Payload::new(args)?)
    }

    /// A task for `topic` with an already-built payload.
    pub fn with_payload(topic: impl Into<Arc<str>>, args: Payload) -> Result<Self> {
        let topic = topic.into();
        validate_topic(&topic)?;
        Ok(Task {
            topic,
            args,
            external_id: None,
            max_retries: None,
            priority: 0,
            due: Due::Now,
            unique_key: None,
            unique_while_kept: false,
            headers: Headers::new(),
        })
    }

    /// An application-specific identifier, kept with the task and shown in events.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// How many times the task is retried after a failure before it goes to DEAD
    /// (0: it runs once). Without it, the limit is that of the manager that first runs the
    /// task (its topic's, else its default): a producer that does not run the topic never
    /// has to know it.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// The priority: among due tasks of a topic, a lower value runs first; equal
    /// priorities run in enqueue order. The default is 0.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Do not run the task before `at`.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.due = Due::At(at);
        self
    }

    /// Do not run the task until `delay` has passed since it was enqueued.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.due = Due::After(delay);
        self
    }

    /// A key that makes the task unique within its topic: while a task of the same topic
    /// with this key is waiting, running or dead, enqueueing another is reported as a
    /// duplicate and adds nothing. The key is free again once the task completes, is
    /// cancelled or is deleted (see [`unique_while_kept`](Self::unique_while_kept) to hold
    /// it longer). Keys are per topic so that a backend sharded by topic (Redis Cluster) can
    /// check them in one place.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Holds the unique key while the finished (completed or cancelled) task's record is
    /// kept, until retention prunes it: "at most once per retention window" instead of "at
    /// most one at a time".
    pub fn unique_while_kept(mut self) -> Self {
        self.unique_while_kept = true;
        self
    }

    /// Sets a header, carried with the task to every run
    /// ([`TaskContext::headers`](crate::TaskContext::headers)) and kept on its record.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) when the key or value
    /// breaks the rules of [`Headers`] or a limit would be exceeded.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        self.headers.insert(key, value)?;
        Ok(self)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change them (a [`Middleware`](crate::Middleware) stamping tasks
    /// on enqueue does this).
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The arguments.
    pub fn args(&self) -> &Payload {
        &self.args
    }

    /// The unique key, if any.
    pub fn unique_key_ref(&self) -> Option<&str> {
        self.unique_key.as_deref()
    }

    /// The record of this task enqueued as `id` at `now`. Backends reach it through
    /// [`raw::TaskExt::into_record`](crate::raw::TaskExt::into_record).
    pub(crate) fn resolve(self, id: TaskId, now: Timestamp) -> TaskRecord {
        let mut record = TaskRecord::new(id, self.topic, self.args);
        record.external_id = self.external_id.map(String::into_boxed_str);
        record.max_retries = self.max_retries;
        record.priority = self.priority;
        record.enqueued_at = now;
        record.run_at = match self.due {
            Due::Now => now,
            Due::At(at) => at,
            Due::After(d) => now + d,
        };
        record.unique_key = self.unique_key.map(String::into_boxed_str);
        record.unique_while_kept = self.unique_while_kept;
        record.headers = self.headers;
        record
    }
}

/// Checks a topic name: non-empty, at most 200 bytes, no control characters.
///
/// Backends use topic names inside keys and file names, so the same rule holds everywhere.
pub fn validate_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > 200 || topic.chars().any(char::is_control) {
        return Err(Error::misuse(format!(
            "invalid topic {topic:?}: it must be 1 to 200 bytes with no control characters"
        )));
    }
    Ok(())
}

/// The queue a task is in.
///
/// A task waits in INPUT, runs in WORK, and ends in DEAD (failed for good, until a human
/// requeues or deletes it), COMPLETED or CANCELLED. The last two hold history: a finished
/// task's record is kept there for its topic's retention, then pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Queue {
    /// Waiting to run: due now or scheduled for later.
    Input,
    /// Claimed by a worker under a lease.
    Work,
    /// Failed for good; waits for a human to requeue or delete it.
    Dead,
    /// Succeeded; kept for the retention period.
    Completed,
    /// Cancelled before or while it ran; kept for the retention period.
    Cancelled,
}

impl Queue {
    /// All queues, in lifecycle order.
    pub const ALL: [Queue; 5] = [
        Queue::Input,
        Queue::Work,
        Queue::Dead,
        Queue::Completed,
        Queue::Cancelled,
    ];

    /// The queue's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Input => "input",
            Queue::Work => "work",
            Queue::Dead => "dead",
            Queue::Completed => "completed",
            Queue::Cancelled => "cancelled",
        }
    }

    /// Whether tasks here are done for good (COMPLETED or CANCELLED): kept as history,
    /// pruned after their retention, never run again.
    pub fn is_finished(self) -> bool {
        matches!(self, Queue::Completed | Queue::Cancelled)
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Queue {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Queue::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| {
                Error::misuse(format!(
                    "unknown queue {s:?} (expected input, work, dead, completed or cancelled)"
                ))
            })
    }
}

/// The claim under which a worker holds a task in WORK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The manager that holds it.
    pub owner: Arc<str>,
    /// The fencing token: unique to this claim. An outcome carrying another token is stale.
    pub token: u64,
    /// When the lease expires unless renewed.
    pub deadline: Timestamp,
}

/// The retry limit of a task that sets none, when the manager that claims it sets none
/// either.
pub const DEFAULT_MAX_RETRIES: u32 = 25;

/// How many failed attempts a record remembers; older ones are dropped first.
pub const MAX_KEPT_ERRORS: usize = 10;

/// The longest error message a record keeps, in bytes; longer ones are cut at a character
/// boundary and end in `…`.
pub const MAX_ERROR_BYTES: usize = 2048;

/// The error of one failed attempt, as a record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt that failed, from 1.
    pub attempt: u32,
    /// When it failed.
    pub at: Timestamp,
    /// Why: the processor's error, a panic message, a timeout, or
    /// [`LEASE_EXPIRED_ERROR`](crate::LEASE_EXPIRED_ERROR).
    pub message: Box<str>,
}

/// `message` cut to at most [`MAX_ERROR_BYTES`] at a character boundary.
pub(crate) fn bounded_message(message: String) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message;
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_ERROR_BYTES - ELLIPSIS.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = message;
    cut.truncate(end);
    cut.push_str(ELLIPSIS);
    cut
}

/// A task as a store keeps it.
///
/// Non-exhaustive: a backend builds one with [`TaskRecord::new`] and sets the fields it
/// stores, so a new field is added here alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// The id.
    pub id: TaskId,
    /// The queue it is in.
    pub queue: Queue,
    /// The topic.
    pub topic: Arc<str>,
    /// The application's own identifier, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Box<str>>,
    /// The JSON arguments.
    pub args: Payload,
    /// The headers set at enqueue ([`Task::header`]).
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// How many times the task has been claimed to run (the current run included, while
    /// in WORK). A run given back at shutdown does not count.
    pub attempt: u32,
    /// How many retries follow a failure before the task goes to DEAD. `None` until the
    /// first claim when the task set none: the claiming manager's limit for the topic is
    /// written then (see [`TopicClaim`](crate::store::TopicClaim)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Lower runs first among due tasks of the topic.
    pub priority: i16,
    /// When it was enqueued.
    pub enqueued_at: Timestamp,
    /// When it is (or was) due.
    pub run_at: Timestamp,
    /// The unique key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<Box<str>>,
    /// Whether the unique key stays held while the finished record is kept
    /// ([`Task::unique_while_kept`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique_while_kept: bool,
    /// When its first run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<Timestamp>,
    /// When its latest run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it moved to DEAD, COMPLETED or CANCELLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The errors of its failed attempts, oldest first; at most [`MAX_KEPT_ERRORS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttemptError>,
    /// What the successful run set with
    /// [`TaskContext::set_result`](crate::TaskContext::set_result).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_payload"
    )]
    pub result: Option<Payload>,
    /// The last value a run reported with
    /// [`TaskContext::progress`](crate::TaskContext::progress) (stored at most once per
    /// the manager's progress interval).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_payload"
    )]
    pub progress: Option<Payload>,
    /// Who asked for the cancel: set on a running task when the cancel is requested, kept
    /// once it is CANCELLED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<Box<str>>,
    /// The lease, while the task is in WORK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

fn optional_payload<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Payload>, D::Error> {
    Ok(Some(Payload::deserialize(deserializer)?))
}

impl TaskRecord {
    /// A record of task `id` of `topic` with `args`, in INPUT, with every other field zero,
    /// empty or `None` (times at [`Timestamp::EPOCH`]). A decoder sets the fields it reads;
    /// a new task's record comes from
    /// [`raw::TaskExt::into_record`](crate::raw::TaskExt::into_record).
    pub fn new(id: TaskId, topic: impl Into<Arc<str>>, args: Payload) -> Self {
        TaskRecord {
            id,
            queue: Queue::Input,
            topic: topic.into(),
            external_id: None,
            args,
            headers: Headers::new(),
            attempt: 0,
            max_retries: None,
            priority: 0,
            enqueued_at: Timestamp::EPOCH,
            run_at: Timestamp::EPOCH,
            unique_key: None,
            unique_while_kept: false,
            first_started_at: None,
            started_at: None,
            finished_at: None,
            errors: Vec::new(),
            result: None,
            progress: None,
            cancelled_by: None,
            lease: None,
        }
    }

    /// The retry limit in force: the task's own or the one written at its first claim,
    /// else [`DEFAULT_MAX_RETRIES`].
    pub fn retry_limit(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    /// Whether a failure of the current attempt still leaves a retry.
    pub fn has_retries_left(&self) -> bool {
        self.attempt <= self.retry_limit()
    }

    /// The error of the last failed attempt, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(|e| &*e.message)
    }

    /// Whether `token` is the fencing token of the claim that holds this task now.
    pub fn is_owned_by(&self, token: u64) -> bool {
        self.queue == Queue::Work && self.lease.as_ref().is_some_and(|l| l.token == token)
    }

    /// Whether the reaper should take this task: in WORK with a lease that ended before `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.queue == Queue::Work && self.lease.as_ref().is_some_and(|l| l.deadline < now)
    }

    /// Whether a cancel was requested while it ran (or it was cancelled).
    pub fn is_cancel_requested(&self) -> bool {
        self.cancelled_by.is_some()
    }

    /// The schedule and tick that fired this task, read from its
    /// [`SCHEDULE_HEADER`](crate::SCHEDULE_HEADER) and [`TICK_HEADER`](crate::TICK_HEADER);
    /// `None` for a task enqueued otherwise (or with headers that do not parse).
    pub fn schedule_tick(&self) -> Option<crate::ScheduleTick> {
        let schedule = self.headers.get(crate::SCHEDULE_HEADER)?;
        let tick = self.headers.get(crate::TICK_HEADER)?;
        let tick = humantime::parse_rfc3339(tick).ok()?;
        Some(crate::ScheduleTick {
            schedule: schedule.into(),
            tick: tick.into(),
        })
    }

    /// Whether the task holds its unique key: while it is not finished, or while it is
    /// kept when it asked for [`unique_while_kept`](Task::unique_while_kept).
    pub fn holds_unique_key(&self) -> bool {
        self.unique_key.is_some() && (!self.queue.is_finished() || self.unique_while_kept)
    }

    /// Whether retention lets pruning remove this record at `now`: finished, and finished
    /// at least `retention` before `now`.
    pub fn is_prunable(&self, now: Timestamp, retention: Duration) -> bool {
        self.queue.is_finished() && self.finished_at.is_some_and(|at| at + retention <= now)
    }

    /// Where the task stands at `now`, as a status query reports it.
    pub fn status(&self, now: Timestamp) -> TaskStatus {
        match self.queue {
            Queue::Input if self.run_at > now && self.attempt > 0 => {
                TaskStatus::Retrying { at: self.run_at }
            }
            Queue::Input if self.run_at > now => TaskStatus::Scheduled { at: self.run_at },
            Queue::Input => TaskStatus::Pending,
            Queue::Work => TaskStatus::Running {
                owner: self
                    .lease
                    .as_ref()
                    .map_or_else(|| Arc::from(""), |l| l.owner.clone()),
                since: self.started_at.unwrap_or(self.run_at),
                cancel_requested: self.is_cancel_requested(),
            },
            Queue::Dead => TaskStatus::Dead,
            Queue::Completed => TaskStatus::Completed,
            Queue::Cancelled => TaskStatus::Cancelled,
        }
    }
}

/// Where a task stands, from [`TaskRecord::status`]: its queue, refined by time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting for its first run, not due before `at`.
    Scheduled {
        /// When it becomes due.
        at: Timestamp,
    },
    /// Due, waiting for a worker.
    Pending,
    /// Running under a lease.
    Running {
        /// The manager running it.
        owner: Arc<str>,
        /// When this run started.
        since: Timestamp,
        /// Whether a cancel was requested and the run is being stopped.
        cancel_requested: bool,
    },
    /// Failed, and runs again at `at`.
    Retrying {
        /// When it is due again.
        at: Timestamp,
    },
    /// Failed for good.
    Dead,
    /// Succeeded.
    Completed,
    /// Cancelled.
    Cancelled,
}

impl TaskStatus {
    /// The status's lowercase name: `scheduled`, `pending`, `running`, `retrying`, `dead`,
    /// `completed` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Scheduled { .. } => "scheduled",
            TaskStatus::Pending => "pending",
            TaskStatus::Running { .. } => "running",
            TaskStatus::Retrying { .. } => "retrying",
            TaskStatus::Dead => "dead",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_as_embedded_json() {
        let p = Payload::new(&serde_json::json!({"a": [1, 2]})).unwrap();
        let record = Task::with_payload("t", p.clone())
            .unwrap()
            .resolve(TaskId::new(7), Timestamp::from_millis(5));
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""args":{"a":[1,2]}"#), "{json}");
        let back: TaskRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.args.decode::<serde_json::Value>().unwrap()["a"][1], 2);
    }

    #[test]
    fn payload_new_works_when_reentered_from_serialize() {
        struct Nested;
        impl Serialize for Nested {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let inner = Payload::new(&[1, 2]).map_err(serde::ser::Error::custom)?;
                s.serialize_str(inner.as_str())
            }
        }
        assert_eq!(Payload::new(&Nested).unwrap().as_str(), r#""[1,2]""#);
    }

    #[test]
    fn corrupt_payload_decodes_to_a_corrupt_error() {
        let p = Payload(Arc::from("{not json"));
        let err = p.decode::<serde_json::Value>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
        assert!(Payload::from_json("{not json").is_err());
    }

    #[test]
    fn schedule_and_defaults_resolve_against_enqueue_time() {
        let now = Timestamp::from_millis(1_000);
        let r = Task::new("t", &1)
            .unwrap()
            .delay(Duration::from_secs(2))
            .resolve(TaskId::new(1), now);
        assert_eq!(r.run_at, Timestamp::from_millis(3_000));
        assert_eq!((r.enqueued_at, r.max_retries), (now, None));
        let r = Task::new("t", &1)
            .unwrap()
            .max_retries(0)
            .resolve(TaskId::new(1), now);
        assert_eq!((r.run_at, r.max_retries), (now, Some(0)));
    }

    #[test]
    fn long_error_messages_are_cut_at_a_character_boundary() {
        let short = "x".repeat(MAX_ERROR_BYTES);
        assert_eq!(bounded_message(short.clone()), short);
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = bounded_message(long);
        assert!(cut.len() <= MAX_ERROR_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
    }

    #[test]
    fn status_refines_the_queue_by_time() {
        let now = Timestamp::from_millis(10_000);
        let later = Timestamp::from_millis(20_000);
        let mut r = Task::new("t", &1)
            .unwrap()
            .run_at(later)
            .resolve(TaskId::new(1), now);
        assert_eq!(r.status(now), TaskStatus::Scheduled { at: later });
        assert_eq!(r.status(later), TaskStatus::Pending);
        r.attempt = 1;
        assert_eq!(r.status(now), TaskStatus::Retrying { at: later });
        r.queue = Queue::Completed;
        assert_eq!(r.status(now).as_str(), "completed");
        let json = serde_json::to_value(TaskStatus::Retrying { at: later }).unwrap();
        assert_eq!(json["state"], "retrying");
    }

    #[test]
    fn queue_names_round_trip() {
        for queue in Queue::ALL {
            assert_eq!(queue.as_str().parse::<Queue>().unwrap(), queue);
        }
        assert!("done".parse::<Queue>().is_err());
    }

    #[test]
    fn bad_topics_are_rejected() {
        for topic in ["", "a\nb", &"x".repeat(201)] {
            let err = Task::new(topic, &()).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Misuse);
        }
    }
}
