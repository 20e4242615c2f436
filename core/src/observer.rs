//! Run observers: synchronous hooks the worker calls as every run starts and ends.

use crate::task::TaskRecord;
use std::time::Duration;

/// How a run ended, as a [`RunObserver`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEnd {
    /// The processor (and the middleware around it) returned `Ok`.
    Completed,
    /// It returned an error, panicked or timed out: the task retries or goes to DEAD.
    Failed,
    /// The run was stopped before it returned (a cancel, or the manager's shutdown) and
    /// the task was given back.
    Released,
}

/// Code the worker calls, without awaiting, as every run of a manager starts and ends:
/// for metrics that must cost next to nothing per run.
///
/// A [`Middleware`](crate::Middleware) sees a run as a future it wraps, which costs a
/// boxed future per run and a clock reading of its own to time it. An observer is told
/// plainly: `started` before the middleware chain runs, `ended` after it, with the
/// duration the worker measured anyway (from the same two clock readings that time the
/// run for its completion event). `ended` follows every `started`, also for a run that
/// panicked, timed out or was cancelled. Both run on the worker's task: keep them short
/// and never block.
///
/// Registered with [`ManagerBuilder::observer`](crate::ManagerBuilder::observer). Both
/// methods do nothing by default: implement the one you need.
pub trait RunObserver: Send + Sync + 'static {
    /// A run of `record` (its attempt number already counted) starts.
    fn started(&self, record: &TaskRecord) {
        let _ = record;
    }

    /// The run of `record` ended as `end`, `elapsed` after it started.
    fn ended(&self, record: &TaskRecord, end: RunEnd, elapsed: Duration) {
        let _ = (record, end, elapsed);
    }
}

impl<O: RunObserver + ?Sized> RunObserver for std::sync::Arc<O> {
    fn started(&self, record: &TaskRecord) {
        (**self).started(record)
    }

    fn ended(&self, record: &TaskRecord, end: RunEnd, elapsed: Duration) {
        (**self).ended(record, end, elapsed)
    }
}

impl std::fmt::Debug for dyn RunObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunObserver")
    }
}
