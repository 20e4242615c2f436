//! What [`Store`](super::Store) methods hand back: [`Enqueued`], [`Claimed`],
//! [`Recovered`] and [`Page`].

use super::outcome::LeaseRef;
use crate::error::Error;
use crate::task::{Queue, TaskId, TaskRecord};
use std::sync::Arc;

/// The error stored on a task whose lease expired with no retries left.
pub const LEASE_EXPIRED_ERROR: &str =
    "lease expired: the worker stopped renewing it (crashed or stalled) and no retries were left";

/// What became of one task given to [`Store::enqueue`](super::Store::enqueue).
///
/// Non-exhaustive: a match needs a `_` arm; [`id`](Self::id) and [`is_new`](Self::is_new)
/// cover what most callers want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Added to INPUT under this id.
    New(TaskId),
    /// Not added: a task with the same unique key exists, under this id.
    Duplicate(TaskId),
}

impl Enqueued {
    /// The id of the new task, or of the existing one it duplicates.
    pub fn id(self) -> TaskId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }

    /// Whether the task was added.
    pub fn is_new(self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

/// A task claimed by [`Store::claim`](super::Store::claim).
#[derive(Debug)]
pub enum Claimed {
    /// A task to run.
    Ready(TaskRecord),
    /// A task whose stored record cannot be decoded. It is in WORK under this lease like
    /// any other; the manager sends it to DEAD with the error.
    Corrupt {
        /// The claim.
        lease: LeaseRef,
        /// What could not be decoded.
        error: Error,
    },
}

/// A task the reaper moved out of WORK, from [`Store::recover`](super::Store::recover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The task.
    pub id: TaskId,
    /// Its topic.
    pub topic: Arc<str>,
    /// Where it went: INPUT, DEAD (no retries left, with [`LEASE_EXPIRED_ERROR`]), or
    /// CANCELLED (a cancel was requested while it ran).
    pub queue: Queue,
}

/// One page of [`Store::list`](super::Store::list).
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The tasks, in ascending id order.
    pub tasks: Vec<TaskRecord>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<TaskId>,
}
