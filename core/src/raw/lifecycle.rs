//! The task lifecycle as pure transitions on a [`TaskRecord`].
//!
//! Every store that keeps whole records (memory, sled, SQLite) moves tasks through these
//! methods, so the rules (what an attempt is, what a release undoes, when a recovered
//! task is dead) are written once. A store only decides where to keep the result. Each
//! method is named after the [`Store`](crate::Store) operation it carries out for one task.

use super::sealed::Sealed;
use crate::stats::Counters;
use crate::store::{Cancellation, Outcome, OutcomeKind, LEASE_EXPIRED_ERROR};
use crate::task::{AttemptError, Lease, Queue, TaskRecord, MAX_KEPT_ERRORS};
use crate::time::Timestamp;

/// The transitions of a [`TaskRecord`] between the queues, each counting itself in the
/// topic's [`Counters`].
///
/// After a transition the caller keeps the record where its `queue` says (or removes it
/// when told to), and frees its unique key when it no longer
/// [holds](TaskRecord::holds_unique_key) it.
///
/// ```
/// use taskmill_core::raw::{RecordExt, TaskExt};
/// use taskmill_core::store::{EnqueueOptions, LeaseRef, Outcome, OutcomeKind};
/// use taskmill_core::{Counters, Lease, Queue, Task, TaskId, Timestamp};
///
/// let now = Timestamp::from_millis(1_000);
/// let mut record = Task::new("t", &1)?.into_record(TaskId::new(1), &EnqueueOptions::new(now));
/// let mut counters = Counters::default();
/// let lease = Lease { owner: "m1".into(), token: 7, deadline: now };
/// record.claim(lease, now, 3, &mut counters);
/// assert_eq!((record.queue, record.attempt, record.max_retries), (Queue::Work, 1, Some(3)));
/// let outcome = Outcome::new(LeaseRef::of(&record), OutcomeKind::complete());
/// assert_eq!(record.apply_outcome(&outcome, now, &mut counters), Some(Queue::Completed));
/// assert_eq!((counters.started, counters.completed), (1, 1));
/// # Ok::<_, taskmill_core::Error>(())
/// ```
pub trait RecordExt: Sealed {
    /// INPUT → WORK under `lease` at `now`: the attempt count goes up by one, the start
    /// times are set, and a task without a retry limit gets `max_retries`. Counts `started`.
    fn claim(&mut self, lease: Lease, now: Timestamp, max_retries: u32, counters: &mut Counters);

    /// Applies an outcome to a task in WORK and counts it (see
    /// [`Store::apply`](crate::Store::apply)). Returns the queue it moves to, or `None`
    /// when it finished and is not kept (`outcome.keep == false`). A task with a cancel
    /// request ends CANCELLED whatever the outcome: the caller reports
    /// [`Applied::Cancelled`](crate::store::Applied::Cancelled) when
    /// [`is_cancel_requested`](TaskRecord::is_cancel_requested) holds.
    ///
    /// The caller has checked [`TaskRecord::is_owned_by`].
    fn apply_outcome(
        &mut self,
        outcome: &Outcome,
        now: Timestamp,
        counters: &mut Counters,
    ) -> Option<Queue>;

    /// The reaper's move for an expired lease (see [`TaskRecord::is_expired`]): to
    /// CANCELLED when a cancel was requested, else to INPUT due now, or to DEAD with
    /// [`LEASE_EXPIRED_ERROR`] when no retry is left. Counts `recovered` (and `cancelled`
    /// or `failed`). Returns the new queue.
    fn recover(&mut self, now: Timestamp, counters: &mut Counters) -> Queue;

    /// DEAD → INPUT, due now, with a fresh set of attempts. Counts `requeued`.
    fn requeue(&mut self, now: Timestamp, counters: &mut Counters);

    /// A cancel on behalf of `by` (see [`Store::cancel`](crate::Store::cancel)): INPUT →
    /// CANCELLED (counts `cancelled`), or the request stored on a task in WORK. Anything
    /// else is refused and left as it is.
    fn cancel(&mut self, now: Timestamp, by: &str, counters: &mut Counters) -> Cancellation;

    /// Adds the error of the current attempt, dropping the oldest beyond
    /// [`MAX_KEPT_ERRORS`].
    fn push_error(&mut self, at: Timestamp, message: &str);
}

impl Sealed for TaskRecord {}

impl RecordExt for TaskRecord {
    fn claim(&mut self, lease: Lease, now: Timestamp, max_retries: u32, counters: &mut Counters) {
        self.queue = Queue::Work;
        self.attempt += 1;
        self.lease = Some(lease);
        self.max_retries.get_or_insert(max_retries);
        self.first_started_at.get_or_insert(now);
        self.started_at = Some(now);
        counters.started += 1;
    }

    fn apply_outcome(
        &mut self,
        outcome: &Outcome,
        now: Timestamp,
        counters: &mut Counters,
    ) -> Option<Queue> {
        self.lease = None;
        if let Some(progress) = &outcome.progress {
            self.progress = Some(progress.clone());
        }
        if self.is_cancel_requested() {
            if let OutcomeKind::Complete {
                result: Some(result),
            } = &outcome.kind
            {
                self.result = Some(result.clone());
            }
            self.queue = Queue::Cancelled;
            self.finished_at = Some(now);
            counters.cancelled += 1;
            return outcome.keep.then_some(Queue::Cancelled);
        }
        match &outcome.kind {
            OutcomeKind::Complete { result } => {
                self.queue = Queue::Completed;
                self.result = result.clone();
                self.finished_at = Some(now);
                counters.completed += 1;
                return outcome.keep.then_some(Queue::Completed);
            }
            OutcomeKind::Retry { at, error } => {
                self.queue = Queue::Input;
                self.run_at = *at;
                self.push_error(now, error);
                counters.retried += 1;
            }
            OutcomeKind::Dead { error } => {
                self.queue = Queue::Dead;
                self.push_error(now, error);
                self.finished_at = Some(now);
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
        if self.is_cancel_requested() {
            self.queue = Queue::Cancelled;
            self.finished_at = Some(now);
            counters.cancelled += 1;
        } else if self.has_retries_left() {
            self.queue = Queue::Input;
            self.run_at = now;
        } else {
            self.queue = Queue::Dead;
            self.push_error(now, LEASE_EXPIRED_ERROR);
            self.finished_at = Some(now);
            counters.failed += 1;
        }
        self.queue
    }

    fn requeue(&mut self, now: Timestamp, counters: &mut Counters) {
        self.queue = Queue::Input;
        self.run_at = now;
        self.attempt = 0;
        self.finished_at = None;
        counters.requeued += 1;
    }

    fn cancel(&mut self, now: Timestamp, by: &str, counters: &mut Counters) -> Cancellation {
        match self.queue {
            Queue::Input => {
                self.queue = Queue::Cancelled;
                self.cancelled_by = Some(by.into());
                self.finished_at = Some(now);
                counters.cancelled += 1;
                Cancellation::Cancelled
            }
            Queue::Work => {
                self.cancelled_by.get_or_insert_with(|| by.into());
                Cancellation::Requested
            }
            queue => Cancellation::Refused(queue),
        }
    }

    fn push_error(&mut self, at: Timestamp, message: &str) {
        if self.errors.len() >= MAX_KEPT_ERRORS {
            self.errors.drain(..=self.errors.len() - MAX_KEPT_ERRORS);
        }
        self.errors.push(AttemptError {
            attempt: self.attempt,
            at,
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::TaskExt;
    use crate::store::{EnqueueOptions, LeaseRef};
    use crate::task::{Task, TaskId};

    fn claimed(now: Timestamp) -> (TaskRecord, Counters) {
        let mut counters = Counters::default();
        let mut record = Task::new("t", &1)
            .unwrap()
            .into_record(TaskId::new(1), &EnqueueOptions::new(now));
        let lease = Lease {
            owner: "m".into(),
            token: 1,
            deadline: now,
        };
        record.claim(lease, now, 2, &mut counters);
        (record, counters)
    }

    #[test]
    fn a_cancel_request_turns_any_outcome_into_cancelled() {
        let now = Timestamp::from_millis(5);
        for kind in [
            OutcomeKind::complete(),
            OutcomeKind::retry(now, "x"),
            OutcomeKind::dead("x"),
            OutcomeKind::release(),
        ] {
            let (mut record, mut counters) = claimed(now);
            assert_eq!(
                record.cancel(now, "ops", &mut counters),
                Cancellation::Requested
            );
            assert_eq!(record.queue, Queue::Work, "a running task moved on request");
            let outcome = Outcome::new(LeaseRef::of(&record), kind.clone());
            assert_eq!(
                record.apply_outcome(&outcome, now, &mut counters),
                Some(Queue::Cancelled),
                "{kind:?}"
            );
            assert_eq!((record.attempt, counters.cancelled), (1, 1), "{kind:?}");
            assert_eq!(record.cancelled_by.as_deref(), Some("ops"));
        }
    }

    #[test]
    fn errors_are_bounded_oldest_first() {
        let now = Timestamp::from_millis(5);
        let (mut record, _) = claimed(now);
        for attempt in 1..=(MAX_KEPT_ERRORS as u32 + 3) {
            record.attempt = attempt;
            record.push_error(now, &format!("e{attempt}"));
        }
        assert_eq!(record.errors.len(), MAX_KEPT_ERRORS);
        assert_eq!(record.errors[0].attempt, 4);
        assert_eq!(
            record.last_error(),
            Some(&*format!("e{}", MAX_KEPT_ERRORS + 3))
        );
    }

    #[test]
    fn an_outcome_not_kept_removes_a_finished_task() {
        let now = Timestamp::from_millis(5);
        let (mut record, mut counters) = claimed(now);
        let outcome = Outcome::new(LeaseRef::of(&record), OutcomeKind::complete()).keep(false);
        assert_eq!(record.apply_outcome(&outcome, now, &mut counters), None);
        assert_eq!(counters.completed, 1);
    }
}
