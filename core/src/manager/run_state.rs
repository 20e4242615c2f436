//! What one run shares with the manager: how it ended, and the result it reports.

use crate::task::Payload;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const CANCELLED: u8 = 2;

/// One allocation per run holds both, since every run needs both.
///
/// A run ends exactly once, by whichever comes first: its processor returning
/// ([`finish`](Self::finish)) or a cancellation ([`cancel`](Self::cancel)). A processor
/// that returned before a shutdown keeps its outcome even if the manager sees the cancel
/// first; one that returns after it (typically because it saw the signal) is released.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    state: AtomicU8,
    notify: Notify,
    result: Mutex<Option<Payload>>,
}

impl RunState {
    /// Cancels the run unless it already finished.
    pub fn cancel(&self) {
        let _ =
            self.state
                .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
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

    #[test]
    fn a_run_ends_once_by_whichever_comes_first() {
        let finished_first = RunState::default();
        assert!(finished_first.finish());
        finished_first.cancel();
        assert!(
            !finished_first.is_cancelled(),
            "a cancel after finishing changed the outcome"
        );
        assert!(finished_first.finish());

        let cancelled_first = RunState::default();
        cancelled_first.cancel();
        assert!(cancelled_first.is_cancelled());
        assert!(
            !cancelled_first.finish(),
            "a run that returned after its cancel was kept"
        );
    }
}
