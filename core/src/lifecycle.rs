//! The task lifecycle as pure transitions on a [`TaskRecord`].
//!
//! Every store that keeps whole records (memory, sled, SQLite) moves tasks through these
//! functions, so the rules (what an attempt is, what a release undoes, when a recovered
//! task is dead) are written once. A store only decides where to keep the result.

use crate::stats::Counters;
use crate::store::OutcomeKind;
use crate::task::{Lease, Queue, TaskRecord};
use crate::time::Timestamp;

/// The error stored on a task whose lease expired with no retries left.
pub const LEASE_EXPIRED_ERROR: &str =
    "lease expired: the worker stopped renewing it (crashed or stalled) and no retries were left";

impl TaskRecord {
    /// Whether `token` is the fencing token of the claim that holds this task now.
    pub fn is_owned_by(&self, token: u64) -> bool {
        self.queue == Queue::Work && self.lease.as_ref().is_some_and(|l| l.token == token)
    }

    /// INPUT → WORK under `lease`; the attempt count goes up by one. Counts `started`.
    pub fn start(&mut self, lease: Lease, counters: &mut Counters) {
        self.queue = Queue::Work;
        self.attempt += 1;
        self.lease = Some(lease);
        counters.started += 1;
    }

    /// Applies an outcome to a task in WORK and counts it. Returns the queue it moves to,
    /// or `None` when it is done and leaves the store.
    ///
    /// The caller has checked [`is_owned_by`](Self::is_owned_by).
    pub fn finish(
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

    /// Whether the reaper should take this task: in WORK with a lease that ended before `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.queue == Queue::Work && self.lease.as_ref().is_some_and(|l| l.deadline < now)
    }

    /// The reaper's move for an expired lease: to INPUT due now, or to DEAD when no retry
    /// is left. Counts `recovered` (and `failed` for DEAD). Returns the new queue.
    pub fn expire(&mut self, now: Timestamp, counters: &mut Counters) -> Queue {
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

    /// DEAD → INPUT, due now, with a fresh set of attempts. Counts `requeued`.
    pub fn requeue(&mut self, now: Timestamp, counters: &mut Counters) {
        self.queue = Queue::Input;
        self.run_at = now;
        self.attempt = 0;
        self.failed_at = None;
        counters.requeued += 1;
    }
}
