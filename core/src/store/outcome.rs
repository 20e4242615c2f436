//! What the holder of a claim presents to the store and what it learns back: the
//! [`LeaseRef`] of [`Store::renew`](super::Store::renew), the [`Outcome`]s of
//! [`Store::apply`](super::Store::apply), and whether each took effect ([`Applied`]).

use crate::task::{TaskId, TaskRecord};
use crate::time::Timestamp;
use std::sync::Arc;

/// Names one claim of one task: what an outcome or a renewal must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The task.
    pub id: TaskId,
    /// Its topic (backends that shard by topic locate the task with it).
    pub topic: Arc<str>,
    /// The claim's fencing token.
    pub token: u64,
}

impl LeaseRef {
    /// The lease reference of a claimed record.
    ///
    /// # Panics
    /// If the record holds no lease (it was not returned by a claim).
    pub fn of(record: &TaskRecord) -> Self {
        let lease = record.lease.as_ref().expect("a claimed task holds a lease");
        LeaseRef {
            id: record.id,
            topic: record.topic.clone(),
            token: lease.token,
        }
    }
}

/// What to do with a claimed task.
///
/// Non-exhaustive, and so is each variant: build one with [`complete`](Self::complete),
/// [`retry`](Self::retry), [`dead`](Self::dead) or [`release`](Self::release), and match
/// with `..` (`OutcomeKind::Retry { at, .. }`, `OutcomeKind::Complete { .. }`). A backend
/// answers an outcome it does not know with [`ErrorKind::Unsupported`](crate::ErrorKind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// It succeeded: remove it (counts `completed`).
    #[non_exhaustive]
    Complete,
    /// It failed with retries left: back to INPUT, due at `at`, with `error` as its last
    /// error (counts `retried`).
    #[non_exhaustive]
    Retry {
        /// When it is due again.
        at: Timestamp,
        /// Why it failed.
        error: String,
    },
    /// It failed for good: to DEAD with `error` (counts `failed`).
    #[non_exhaustive]
    Dead {
        /// Why.
        error: String,
    },
    /// The run was abandoned (shutdown): back to INPUT, due now, and the attempt does not
    /// count (counts `released`).
    #[non_exhaustive]
    Release,
}

impl OutcomeKind {
    /// It succeeded.
    pub fn complete() -> Self {
        OutcomeKind::Complete
    }

    /// It failed with retries left: due again at `at`.
    pub fn retry(at: Timestamp, error: impl Into<String>) -> Self {
        OutcomeKind::Retry {
            at,
            error: error.into(),
        }
    }

    /// It failed for good.
    pub fn dead(error: impl Into<String>) -> Self {
        OutcomeKind::Dead {
            error: error.into(),
        }
    }

    /// The run was abandoned without using an attempt.
    pub fn release() -> Self {
        OutcomeKind::Release
    }
}

/// An outcome of one claim, for [`Store::apply`](super::Store::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The claim it applies to.
    pub lease: LeaseRef,
    /// What to do.
    pub kind: OutcomeKind,
}

/// Whether an outcome or a renewal took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The claim still owned the task and the change was made.
    Done,
    /// The claim no longer owns the task (lease expired and recovered, task deleted or
    /// claimed again): nothing was changed.
    Stale,
}
