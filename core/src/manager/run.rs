//! One run of a task, as the manager and the processor share it: the task, how the run
//! ended, and the result it reports.

use crate::task::{Payload, TaskRecord};
use futures_util::task::AtomicWaker;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use tokio::sync::Notify;

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const CANCELLED: u8 = 2;

/// One allocation per run holds all of it, and everything that passes a run around (the
/// claimer, the worker queue, the held map, the processor's context) passes this pointer:
/// a task record is a couple of hundred bytes, and moving it through each of those hops
/// cost more than the rest of a no-op run.
///
/// A run ends exactly once, by whichever comes first: its processor returning
/// ([`finish`](Self::finish)) or a cancellation ([`cancel`](Self::cancel)). A processor
/// that returned before a shutdown keeps its outcome even if the manager sees the cancel
/// first; one that returns after it (typically because it saw the signal) is released.
#[derive(Debug)]
pub(crate) struct Run {
    /// The task as claimed; its lease is the one this run holds.
    pub record: TaskRecord,
    state: AtomicU8,
    /// The worker that drives the run waits for a cancel here: registering an
    /// `AtomicWaker` is two atomic operations, registering with a `Notify` takes a lock.
    worker: AtomicWaker,
    /// Processors waiting in [`TaskContext::cancelled`](super::TaskContext::cancelled).
    notify: Notify,
    result: Mutex<Option<Payload>>,
}

impl Run {
    pub fn new(record: TaskRecord) -> Self {
        Run {
            record,
            state: AtomicU8::new(RUNNING),
            worker: AtomicWaker::new(),
            notify: Notify::new(),
            result: Mutex::new(None),
        }
    }

    /// Cancels the run unless it already finished.
    pub fn cancel(&self) {
        let _ =
            self.state
                .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        self.worker.wake();
        self.notify.notify_waiters();
    }

    /// Marks the processor as returned; false if the run was cancelled first.
    pub fn finish(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == FINISHED,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    /// Resolves once the run is cancelled; for the one worker that drives the run.
    pub async fn cancelled_for_worker(&self) {
        poll_fn(|cx| {
            // Registered before the state is checked, so a cancel in between is not missed.
            self.worker.register(cx.waker());
            match self.is_cancelled() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Resolves once the run is cancelled; any number of processors' futures may wait.
    pub async fn cancelled(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the state is checked, so a cancel in between is not missed.
        notified.as_mut().enable();
        if !self.is_cancelled() {
            notified.await;
        }
    }

    pub fn set_result(&self, result: Payload) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }

    pub fn take_result(&self) -> Option<Payload> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::TaskExt;
    use crate::store::EnqueueOptions;
    use crate::task::{Task, TaskId};
    use crate::time::Timestamp;

    fn run() -> Run {
        let options = EnqueueOptions::new(Timestamp::from_millis(0));
        let task = Task::new("topic", &()).unwrap();
        Run::new(task.into_record(TaskId::new(1), &options))
    }

    #[test]
    fn a_run_ends_once_by_whichever_comes_first() {
        let finished_first = run();
        assert!(finished_first.finish());
        finished_first.cancel();
        assert!(
            !finished_first.is_cancelled(),
            "a cancel after finishing changed the outcome"
        );
        assert!(finished_first.finish());

        let cancelled_first = run();
        cancelled_first.cancel();
        assert!(cancelled_first.is_cancelled());
        assert!(
            !cancelled_first.finish(),
            "a run that returned after its cancel was kept"
        );
    }
}
