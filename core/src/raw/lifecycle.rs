//! The task lifecycle as pure transitions on a [`TaskRecord`].
//!
//! Every store that keeps whole records (memory, sled, SQLite) moves tasks through these
//! methods, so the rules (what an attempt is, what a release undoes, when a recovered
//! task is dead) are written once. A store only decides where to keep the result. Each
//! method is named after the [`Store`](crate::Store) operation it carries out for one task.

use super::sealed::Sealed;
use crate::stats::Counters;
use crate::store::{OutcomeKind, LEASE_EXPIRED_ERROR};
use crate::task::{Lease, Queue, TaskRecord};
use crate::time::Timestamp;

/// The transitions of a [`TaskRecord`] between the queues, each counting itself in the
/// topic's [`Counters`].
///
/// ```
/// use taskmill_core::raw::{RecordExt, TaskExt};
/// use taskmill_core::store::{EnqueueOptions, OutcomeKind};
/// use taskmill_core::{Counters, Lease, Queue, Task, TaskId, Timestamp};
///
/// let now = Timestamp::from_millis(1_000);
/// let mut record = Task::new("t", &1)?.into_record(TaskId::new(1), &EnqueueOptions::new(now));
/// let mut counters = Counters::default();
/// let lease = Lease { owner: "m1".into(), token: 7, deadline: now };
/// record.claim(lease, &mut counters);
/// assert_eq!((record.queue, record.attempt), (Queue::Work, 1));
/// assert_eq!(record.apply_outcome(&OutcomeKind::complete(), now, &mut counters), None);
/// assert_eq!((counters.started, counters.completed), (1, 1));
/// # Ok::<_, taskmill_core::Error>(())
/// ```
pub trait RecordExt: Sealed {
    /// INPUT → WORK under `lease`; the attempt count goes up by one. Counts `started`.
    fn claim(&mut self, lease: Lease, counters: &mut Counters);

    /// Applies an outcome to a task in WORK and counts it. Returns the queue it moves to,
    /// or `None` when it is done and leaves the store.
    ///
    /// The caller has checked [`TaskRecord::is_owned_by`].
    fn apply_outcome(
        &mut self,
        kind: &OutcomeKind,
        now: Timestamp,
        counters: &mut Counters,
    ) -> Option<Queue>;

    /// The reaper's move for an expired lease (see [`TaskRecord::is_expired`]): to INPUT
    /// due now, or to DEAD with [`LEASE_EXPIRED_ERROR`] when no retry is left. Counts
    /// `recovered` (and `failed` for DEAD). Returns the new queue.
    fn recover(&mut self, now: Timestamp, counters: &mut Counters) -> Queue;

    /// DEAD → INPUT, due now, with a fresh set of attempts. Counts `requeued`.
    fn requeue(&mut self, now: Timestamp, counters: &mut Counters);
}

impl Sealed for TaskRecord {}

impl RecordExt for TaskRecord {
    fn claim(&mut self, lease: Lease, counters: &mut Counters) {
        self.queue = Queue::Work;
        self.attempt += 1;
        self.lease = Some(lease);
        counters.started += 1;
    }

    fn apply_outcome(
        &mut self,
        kind: &OutcomeKind,
        now: Timestamp,
        counters: &mut Counters,
    ) -> Option<Queue> {
        self.lease = None;
        match kind {
            OutcomeKind::Complete => {
                counters.completed += 1;
                return None;
            }
            OutcomeKind::Retry { at, error } => {
                self.queue = Queue::Input;
                self.run_at = *at;
                self.last_error = Some(error.as_str().into());
                counters.retried += 1;
            }
            OutcomeKind::Dead { error } => {
                self.queue = Queue::Dead;
                self.last_error = Some(error.as_str().into());
                self.failed_at = Some(now);
                counters.failed += 1;
            }
            OutcomeKind::Release => {
                self.queue = Queue::Input;
                self.run_at = now;
                self.attempt = self.attempt.saturating_sub(1);
                counters.released += 1;
            }
        }
        Some(self.queue)
    }

    fn recover(&mut self, now: Timestamp, counters: &mut Counters) -> Queue {
        self.lease = None;
        counters.recovered += 1;
        if self.has_retries_left() {
            self.queue = Queue::Input;
            self.run_at = now;
        } else {
            self.queue = Queue::Dead;
            self.last_error = Some(LEASE_EXPIRED_ERROR.into());
            self.failed_at = Some(now);
            counters.failed += 1;
        }
        self.queue
    }

    fn requeue(&mut self, now: Timestamp, counters: &mut Counters) {
        self.queue = Queue::Input;
        self.run_at = now;
        self.attempt = 0;
        self.failed_at = None;
        counters.requeued += 1;
    }
}
