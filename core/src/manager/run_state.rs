//! What one run shares with the manager: its cancellation and the result it reports.

use crate::task::Payload;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// One allocation per run holds both, since every run needs both.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    cancelled: AtomicBool,
    notify: Notify,
    result: Mutex<Option<Payload>>,
}

impl RunState {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub async fn cancelled(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is checked, so a cancel in between is not missed.
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
