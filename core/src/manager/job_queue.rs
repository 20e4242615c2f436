//! The queue between the claimer and the workers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// A multi-consumer queue that takes whole batches under one lock.
///
/// Unbounded by itself: the claimer bounds it by how many tasks it holds under lease.
#[derive(Debug)]
pub(crate) struct JobQueue<T> {
    items: Mutex<VecDeque<T>>,
    ready: Notify,
    closed: AtomicBool,
}

impl<T> JobQueue<T> {
    pub fn new() -> Self {
        JobQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub fn push_batch(&self, batch: impl IntoIterator<Item = T>) {
        let added = {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            let before = items.len();
            items.extend(batch);
            items.len() - before
        };
        // Each notify wakes one idle worker; busy ones take the rest when they come back.
        for _ in 0..added {
            self.ready.notify_one();
        }
    }

    /// No more pushes: workers end once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_waiters();
    }

    /// The next item, waiting for one, or `None` once closed and empty.
    ///
    /// Waiting registers with a `Notify`, which takes its lock twice (register, then
    /// unregister on drop): on a busy queue, [`try_pop`](Self::try_pop) first.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            // Registered before looking, so a push in between is not missed.
            ready.as_mut().enable();
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            ready.await;
        }
    }

    /// The next item if one is queued; never waits.
    pub fn try_pop(&self) -> Option<T> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}
