//! A run's outcome on its way from a worker to the flusher, and the event it becomes.

use crate::event::Event;
use crate::manager::run::Run;
use crate::store::{LeaseRef, Outcome, OutcomeKind};
use crate::task::{Payload, TaskId};
use std::sync::Arc;

/// An outcome not yet applied, with what its event needs once it is. The event itself is
/// built only if someone is subscribed.
pub(super) struct PendingOutcome {
    pub of: OutcomeOf,
    pub kind: OutcomeKind,
    /// Whether the task's record is kept once it finishes: its topic's retention is not
    /// zero.
    pub keep: bool,
    pub report: Report,
}

/// Whose outcome it is. A run travels as the pointer the worker already held: the lease
/// reference (which clones the topic's `Arc`, a count every run of the topic shares) is
/// built by the flusher, so workers on other cores leave that count alone.
pub(super) enum OutcomeOf {
    Run(Arc<Run>),
    /// A record the store could not decode, claimed under this lease.
    Corrupt(LeaseRef),
}

impl PendingOutcome {
    pub fn id(&self) -> TaskId {
        match &self.of {
            OutcomeOf::Run(run) => run.record.id,
            OutcomeOf::Corrupt(lease) => lease.id,
        }
    }

    /// The outcome for the store (with the run's progress not yet written), the report
    /// for the event, and the run, if any.
    pub fn into_parts(self) -> (Outcome, Report, Option<Arc<Run>>) {
        let (lease, progress, run) = match self.of {
            OutcomeOf::Run(run) => {
                let progress = run.unwritten_progress().map(|(value, _)| value);
                (LeaseRef::of(&run.record), progress, Some(run))
            }
            OutcomeOf::Corrupt(lease) => (lease, None, None),
        };
        let outcome = Outcome::new(lease, self.kind)
            .keep(self.keep)
            .progress(progress);
        (outcome, self.report, run)
    }
}

/// What a run's event says beyond its outcome.
pub(super) struct Report {
    pub attempt: u32,
    pub duration_ms: u64,
    pub result: Option<Payload>,
}

impl Report {
    /// The event of an applied `outcome`.
    pub fn event(self, outcome: Outcome) -> Event {
        let LeaseRef { id, topic, .. } = outcome.lease;
        let attempt = self.attempt;
        match outcome.kind {
            OutcomeKind::Complete { .. } => Event::TaskCompletion {
                id,
                topic,
                attempt,
                duration_ms: self.duration_ms,
                result: self.result,
            },
            OutcomeKind::Retry { at, error } => Event::TaskRetry {
                id,
                topic,
                attempt,
                error,
                retry_at: at,
            },
            OutcomeKind::Dead { error } => Event::TaskFailure {
                id,
                topic,
                attempt,
                error,
            },
            OutcomeKind::Release => Event::TaskReleased { id, topic },
        }
    }
}
