//! What the holder of a claim presents to the store and what it learns back: the
//! [`LeaseRef`] of [`Store::renew`](super::Store::renew), the [`Outcome`]s of
//! [`Store::apply`](super::Store::apply), the [`Progress`] of
//! [`Store::progress`](super::Store::progress), and whether each took effect
//! ([`Applied`]); and what a [`Store::cancel`](super::Store::cancel) did ([`Cancellation`]).

use crate::task::{bounded_message, Payload, Queue, TaskId, TaskRecord};
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
///
/// Whatever the kind, a task with a cancel request ends CANCELLED (see
/// [`Store::cancel`](super::Store::cancel)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// It succeeded: to COMPLETED with `result` (or removed, see [`Outcome::keep`]);
    /// counts `completed`.
    #[non_exhaustive]
    Complete {
        /// What the run set with [`TaskContext::set_result`](crate::TaskContext::set_result).
        result: Option<Payload>,
    },
    /// It failed with retries left: back to INPUT, due at `at`, with `error` added to its
    /// errors (counts `retried`).
    #[non_exhaustive]
    Retry {
        /// When it is due again.
        at: Timestamp,
        /// Why it failed, at most [`MAX_ERROR_BYTES`](crate::MAX_ERROR_BYTES).
        error: String,
    },
    /// It failed for good: to DEAD with `error` added to its errors (counts `failed`).
    #[non_exhaustive]
    Dead {
        /// Why, at most [`MAX_ERROR_BYTES`](crate::MAX_ERROR_BYTES).
        error: String,
    },
    /// The run was abandoned (shutdown): back to INPUT, due now, and the attempt does not
    /// count (counts `released`).
    #[non_exhaustive]
    Release,
}

impl OutcomeKind {
    /// It succeeded, with no result.
    pub fn complete() -> Self {
        OutcomeKind::Complete { result: None }
    }

    /// It succeeded with `result`.
    pub fn complete_with(result: Option<Payload>) -> Self {
        OutcomeKind::Complete { result }
    }

    /// It failed with retries left: due again at `at`. A message longer than
    /// [`MAX_ERROR_BYTES`](crate::MAX_ERROR_BYTES) is cut.
    pub fn retry(at: Timestamp, error: impl Into<String>) -> Self {
        OutcomeKind::Retry {
            at,
            error: bounded_message(error.into()),
        }
    }

    /// It failed for good. A message longer than
    /// [`MAX_ERROR_BYTES`](crate::MAX_ERROR_BYTES) is cut.
    pub fn dead(error: impl Into<String>) -> Self {
        OutcomeKind::Dead {
            error: bounded_message(error.into()),
        }
    }

    /// The run was abandoned without using an attempt.
    pub fn release() -> Self {
        OutcomeKind::Release
    }
}

/// An outcome of one claim, for [`Store::apply`](super::Store::apply).
///
/// Non-exhaustive: build one with [`Outcome::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The claim it applies to.
    pub lease: LeaseRef,
    /// What to do.
    pub kind: OutcomeKind,
    /// Whether a task that finishes (completes, or ends cancelled) keeps its record in
    /// COMPLETED or CANCELLED until pruned (`true`, the default), or is removed at once
    /// (`false`: its topic's retention is zero).
    pub keep: bool,
    /// The run's last progress value not yet stored, written with the outcome.
    pub progress: Option<Payload>,
}

impl Outcome {
    /// `kind` for the claim `lease`; a finished task is kept.
    pub fn new(lease: LeaseRef, kind: OutcomeKind) -> Self {
        Outcome {
            lease,
            kind,
            keep: true,
            progress: None,
        }
    }

    /// Whether a finished task's record is kept (see [`Outcome::keep`](Self::keep)).
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Stores `progress` with the outcome.
    pub fn progress(mut self, progress: Option<Payload>) -> Self {
        self.progress = progress;
        self
    }
}

/// The latest progress of a run, for [`Store::progress`](super::Store::progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The claim of the run that reported it.
    pub lease: LeaseRef,
    /// The value.
    pub value: Payload,
}

/// Whether an outcome, a renewal or a progress write took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The claim still owned the task and the change was made.
    Done,
    /// The claim no longer owns the task (lease expired and recovered, task deleted or
    /// claimed again): nothing was changed.
    Stale,
    /// The claim owns the task, and a cancel was requested for it. An outcome ended the task
    /// CANCELLED, whatever it asked; a renewal did not extend the lease (so a run that
    /// ignores the cancel loses its lease when the current one ends); a progress value was
    /// stored.
    Cancelled,
}

/// What [`Store::cancel`](super::Store::cancel) did to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancellation {
    /// It was waiting (INPUT) and is now CANCELLED: it never runs.
    Cancelled,
    /// It is running (WORK): the cancel is stored on it and its manager is told; it ends
    /// CANCELLED when its run ends or its lease expires.
    Requested,
    /// It is in this queue (DEAD, COMPLETED or CANCELLED) and was left alone: a dead task
    /// is deleted or requeued, not cancelled; a finished one has nothing left to cancel.
    Refused(Queue),
    /// The store does not hold it.
    NotFound,
}
