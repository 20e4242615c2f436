//! Events: what managers and stores report as tasks move.

use crate::schedule::ScheduleTick;
use crate::stats::Stats;
use crate::task::{Payload, TaskId, TaskRecord};
use crate::time::Timestamp;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A stream of events from [`Store::subscribe`](crate::Store::subscribe) or
/// [`Manager::watch`](crate::Manager::watch).
pub type EventStream = BoxStream<'static, Event>;

/// Something that happened to a manager or a task.
///
/// The names are taskqueue's (`TASK_START`, …) in the serialized `type` field, so events
/// read the same in a Redis channel, a log, or the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Event {
    /// A manager started.
    ManagerStart {
        /// The manager's id (also the owner of its leases).
        manager: Arc<str>,
        /// When.
        at: Timestamp,
    },
    /// A manager stopped; its unfinished tasks are back in INPUT.
    ManagerStop {
        /// The manager's id.
        manager: Arc<str>,
        /// When.
        at: Timestamp,
    },
    /// A periodic snapshot of the store's statistics.
    ManagerStats {
        /// The manager's id.
        manager: Arc<str>,
        /// The snapshot.
        stats: Box<Stats>,
        /// When.
        at: Timestamp,
    },
    /// A task was added to INPUT.
    TaskEnqueue {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// When it is due.
        run_at: Timestamp,
        /// The schedule and tick that fired it, if a schedule did
        /// ([`Store::fire`](crate::Store::fire)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tick: Option<ScheduleTick>,
    },
    /// A worker started a run.
    TaskStart {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// The attempt number, from 1.
        attempt: u32,
        /// The manager running it.
        manager: Arc<str>,
    },
    /// A run reported progress.
    TaskProgress {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// Whatever the processor reported.
        #[serde(deserialize_with = "Payload::deserialize_buffered")]
        progress: Payload,
    },
    /// A run failed and the task will run again at `retry_at`.
    TaskRetry {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// When it runs next.
        retry_at: Timestamp,
    },
    /// A run succeeded; the task is done.
    TaskCompletion {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// The attempt that succeeded.
        attempt: u32,
        /// How long the run took, in milliseconds.
        duration_ms: u64,
        /// The result the processor reported, if any.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "optional_buffered_payload"
        )]
        result: Option<Payload>,
    },
    /// A task failed for good and moved to DEAD.
    TaskFailure {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// A run was given back (the manager shut down before it ended) and the task went
    /// back to INPUT without using an attempt.
    TaskReleased {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
    },
    /// A task was cancelled and moved to CANCELLED: at once when it was waiting, or when
    /// its run ended (or its lease expired) after the cancel was requested.
    TaskCancelled {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// Who cancelled it, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Arc<str>>,
        /// Whether it was running when the cancel was requested.
        was_running: bool,
    },
    /// The reaper found the task's lease expired (its worker died or stalled) and put it
    /// back in INPUT, or in DEAD when it had no retries left.
    TaskRecovered {
        /// The task.
        id: TaskId,
        /// Its topic.
        topic: Arc<str>,
        /// Whether it went to DEAD rather than INPUT.
        dead: bool,
    },
    /// Not a published event: this watcher fell behind and `missed` events were dropped
    /// for it. The manager itself never waits for a slow watcher.
    Lagged {
        /// How many events this watcher missed.
        missed: u64,
    },
}

fn optional_buffered_payload<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Payload>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(value.map(|v| Payload(v.to_string().into())))
}

impl Event {
    /// The [`TaskEnqueue`](Event::TaskEnqueue) of a record just added to INPUT, with the
    /// tick its headers name if a schedule fired it.
    pub fn enqueued(record: &TaskRecord) -> Event {
        Event::TaskEnqueue {
            id: record.id,
            topic: record.topic.clone(),
            run_at: record.run_at,
            tick: record.schedule_tick(),
        }
    }
    /// The task this event is about, if any.
    pub fn task_id(&self) -> Option<TaskId> {
        match self {
            Event::TaskEnqueue { id, .. }
            | Event::TaskStart { id, .. }
            | Event::TaskProgress { id, .. }
            | Event::TaskRetry { id, .. }
            | Event::TaskCompletion { id, .. }
            | Event::TaskFailure { id, .. }
            | Event::TaskReleased { id, .. }
            | Event::TaskCancelled { id, .. }
            | Event::TaskRecovered { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The taskqueue-style name, as in the serialized `type` field.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ManagerStart { .. } => "MANAGER_START",
            Event::ManagerStop { .. } => "MANAGER_STOP",
            Event::ManagerStats { .. } => "MANAGER_STATS",
            Event::TaskEnqueue { .. } => "TASK_ENQUEUE",
            Event::TaskStart { .. } => "TASK_START",
            Event::TaskProgress { .. } => "TASK_PROGRESS",
            Event::TaskRetry { .. } => "TASK_RETRY",
            Event::TaskCompletion { .. } => "TASK_COMPLETION",
            Event::TaskFailure { .. } => "TASK_FAILURE",
            Event::TaskReleased { .. } => "TASK_RELEASED",
            Event::TaskCancelled { .. } => "TASK_CANCELLED",
            Event::TaskRecovered { .. } => "TASK_RECOVERED",
            Event::Lagged { .. } => "LAGGED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_taskqueue_names() {
        let e = Event::TaskStart {
            id: TaskId::new(3),
            topic: "clicks".into(),
            attempt: 1,
            manager: "m1".into(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], e.name());
        assert_eq!(json["id"], 3);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.task_id(), Some(TaskId::new(3)));
    }

    #[test]
    fn events_carrying_payloads_round_trip() {
        let payload = Payload::new(&serde_json::json!({"done": [1, 2], "of": "three"})).unwrap();
        for e in [
            Event::TaskProgress {
                id: TaskId::new(1),
                topic: "t".into(),
                progress: payload.clone(),
            },
            Event::TaskCompletion {
                id: TaskId::new(1),
                topic: "t".into(),
                attempt: 2,
                duration_ms: 5,
                result: Some(payload.clone()),
            },
        ] {
            let json = serde_json::to_string(&e).unwrap();
            let back: Event =
                serde_json::from_str(&json).unwrap_or_else(|err| panic!("{json}: {err}"));
            assert_eq!(back, e);
        }
    }
}
