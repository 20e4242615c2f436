//! One run of a task, as the manager and the processor share it: the task, how the run
//! ended, the result it reports, and its latest progress.

use super::sync::{AtomicU8, AtomicWaker, Mutex, Ordering};
use crate::task::{Payload, TaskRecord};
use std::future::poll_fn;
use std::task::Poll;
use tokio::sync::Notify;

/// The run goes on: neither returned nor cancelled.
const RUNNING: u8 = 0;
/// Its processor returned first; a later cancel changes nothing.
const RETURNED: u8 = 1;
/// It was cancelled first; whatever its processor returns is moot.
const CANCELLED: u8 = 2;

/// One allocation per run holds all of it, and everything that passes a run around (the
/// claimer, the worker queue, the leased map, the processor's context) passes this
/// pointer: a task record is a couple of hundred bytes, and each hop then copies a pointer
/// instead.
///
/// A run ends exactly once, by whichever comes first: its processor returning
/// ([`mark_returned`](Self::mark_returned)) or a cancellation ([`cancel`](Self::cancel)).
/// A processor that returned before a shutdown keeps its outcome even if the manager sees
/// the cancel first; one that returns after it (typically because it saw the signal) is
/// released.
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
    progress: Mutex<ProgressSlot>,
}

/// A run's latest progress value, and how much of it the store has.
///
/// Versions count reports; `written` is the newest version the store acknowledged. The
/// maintenance loop writes the value when it is newer than `written`, and the outcome
/// carries it when it still is: a value whose write races the outcome is written twice
/// rather than lost.
#[derive(Debug, Default)]
struct ProgressSlot {
    value: Option<Payload>,
    version: u64,
    written: u64,
}

impl Run {
    pub fn new(record: TaskRecord) -> Self {
        Run {
            record,
            state: AtomicU8::new(RUNNING),
            worker: AtomicWaker::new(),
            notify: Notify::new(),
            result: Mutex::new(None),
            progress: Mutex::new(ProgressSlot::default()),
        }
    }

    /// Cancels the run unless it already ended, and wakes whoever waits for the cancel.
    pub fn cancel(&self) {
        // Only the cancel that ends the run wakes: waiters that register later see the
        // state, and a run that returned first was not cancelled.
        if self
            .state
            .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.worker.wake();
            self.notify.notify_waiters();
        }
    }

    /// Ends the run as returned by its processor; false if a cancel ended it first.
    pub fn mark_returned(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, RETURNED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == RETURNED,
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

    fn progress_slot(&self) -> super::sync::MutexGuard<'_, ProgressSlot> {
        // Each change is a field assignment that cannot panic midway.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `progress` as the run's latest, to be written.
    pub fn set_progress(&self, progress: Payload) {
        let mut slot = self.progress_slot();
        slot.value = Some(progress);
        slot.version += 1;
    }

    /// The latest progress value and its version, if the store does not have it yet.
    pub fn unwritten_progress(&self) -> Option<(Payload, u64)> {
        let slot = self.progress_slot();
        match &slot.value {
            Some(value) if slot.version > slot.written => Some((value.clone(), slot.version)),
            _ => None,
        }
    }

    /// Records that the store has the value of `version`.
    pub fn progress_written(&self, version: u64) {
        let mut slot = self.progress_slot();
        slot.written = slot.written.max(version);
    }
}

#[cfg(test)]
pub(crate) fn test_run() -> Run {
    use crate::raw::TaskExt;
    use crate::store::EnqueueOptions;
    use crate::task::{Task, TaskId};
    use crate::time::Timestamp;
    let options = EnqueueOptions::new(Timestamp::from_millis(0));
    let task = Task::new("topic", &()).unwrap();
    Run::new(task.into_record(TaskId::new(1), &options))
}

/// The cancel/return race, one interleaving per test.
#[cfg(all(test, not(taskmill_loom)))]
mod tests {
    use super::test_run as run;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<F: Future>(future: std::pin::Pin<&mut F>, wakes: &Arc<Wakes>) -> Poll<F::Output> {
        let waker = Waker::from(wakes.clone());
        future.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_run_ends_once_by_whichever_comes_first() {
        let returned_first = run();
        assert!(returned_first.mark_returned());
        returned_first.cancel();
        assert!(
            !returned_first.is_cancelled(),
            "a cancel after the return changed the outcome"
        );
        assert!(returned_first.mark_returned());

        let cancelled_first = run();
        cancelled_first.cancel();
        assert!(cancelled_first.is_cancelled());
        assert!(
            !cancelled_first.mark_returned(),
            "a run that returned after its cancel was kept"
        );
        assert!(cancelled_first.is_cancelled());
    }

    #[test]
    fn a_cancel_wakes_the_worker_waiting_for_it() {
        let run = run();
        let wakes = Arc::new(Wakes::default());
        let mut waiting = pin!(run.cancelled_for_worker());
        assert!(poll(waiting.as_mut(), &wakes).is_pending());
        run.cancel();
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the worker was not woken"
        );
        assert!(poll(waiting, &wakes).is_ready());
    }

    #[test]
    fn a_cancel_wakes_every_processor_waiting_for_it() {
        let run = run();
        let wakes = Arc::new(Wakes::default());
        let mut first = pin!(run.cancelled());
        let mut second = pin!(run.cancelled());
        assert!(poll(first.as_mut(), &wakes).is_pending());
        assert!(poll(second.as_mut(), &wakes).is_pending());
        run.cancel();
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            2,
            "a processor was not woken"
        );
        assert!(poll(first, &wakes).is_ready());
        assert!(poll(second, &wakes).is_ready());
    }

    #[test]
    fn a_cancel_before_the_wait_is_seen_at_once() {
        let run = run();
        run.cancel();
        let wakes = Arc::new(Wakes::default());
        assert!(poll(pin!(run.cancelled_for_worker()), &wakes).is_ready());
        assert!(poll(pin!(run.cancelled()), &wakes).is_ready());
    }

    #[test]
    fn progress_stays_unwritten_until_its_version_is_acknowledged() {
        let run = run();
        assert!(run.unwritten_progress().is_none());
        run.set_progress(crate::task::Payload::new(&1).unwrap());
        let (first, v1) = run.unwritten_progress().unwrap();
        assert_eq!(first.as_str(), "1");
        // A newer report while the first is being written: the newer stays unwritten.
        run.set_progress(crate::task::Payload::new(&2).unwrap());
        run.progress_written(v1);
        let (second, v2) = run.unwritten_progress().unwrap();
        assert_eq!(second.as_str(), "2");
        run.progress_written(v2);
        assert!(run.unwritten_progress().is_none());
        // An older acknowledgement arriving late changes nothing.
        run.progress_written(v1);
        assert!(run.unwritten_progress().is_none());
    }

    #[test]
    fn a_cancel_after_the_return_leaves_the_waiters_waiting() {
        let run = run();
        assert!(run.mark_returned());
        let wakes = Arc::new(Wakes::default());
        let mut worker = pin!(run.cancelled_for_worker());
        let mut processor = pin!(run.cancelled());
        assert!(poll(worker.as_mut(), &wakes).is_pending());
        assert!(poll(processor.as_mut(), &wakes).is_pending());
        run.cancel();
        assert!(poll(worker, &wakes).is_pending());
        assert!(poll(processor, &wakes).is_pending());
    }
}

/// The cancel/return race under loom: every interleaving of the run's atomic steps (see
/// [`super::sync`]).
#[cfg(all(test, taskmill_loom))]
mod loom_model {
    use super::{test_run, Run};
    use loom::future::block_on;
    use loom::thread;
    use std::sync::Arc;

    /// In every interleaving with a cancel on another thread, runs `side` on this one and
    /// then `check` on what it returned.
    fn against_a_cancel<R>(
        side: impl Fn(&Run) -> R + Sync + Send + 'static,
        check: impl Fn(&Run, R) + Sync + Send + 'static,
    ) {
        loom::model(move || {
            let run = Arc::new(test_run());
            let canceller = thread::spawn({
                let run = run.clone();
                move || run.cancel()
            });
            let seen = side(&run);
            canceller.join().unwrap();
            check(&run, seen);
        });
    }

    #[test]
    fn a_cancel_racing_the_return_ends_the_run_once() {
        against_a_cancel(Run::mark_returned, |run, returned| {
            assert_eq!(
                returned,
                !run.is_cancelled(),
                "both or neither ended the run"
            );
            assert_eq!(run.mark_returned(), returned, "the end changed afterwards");
        });
    }

    /// A missed wake-up leaves the waiter blocked for good, which loom reports.
    #[test]
    fn the_worker_never_misses_a_cancel() {
        against_a_cancel(|run| block_on(run.cancelled_for_worker()), |_, ()| {});
    }

    #[test]
    fn a_processor_never_misses_a_cancel() {
        against_a_cancel(|run| block_on(run.cancelled()), |_, ()| {});
    }

    /// The worker's order: look for a cancel, then end the run as returned.
    #[test]
    fn a_worker_that_saw_no_cancel_keeps_the_return() {
        against_a_cancel(
            |run| !run.is_cancelled() && run.mark_returned(),
            |run, kept| assert_eq!(kept, !run.is_cancelled()),
        );
    }
}
