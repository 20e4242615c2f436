//! Events and wake-ups within one process, for stores that have nothing better.

use crate::event::{Event, EventStream};
use crate::store::{CancelStream, WakeStream};
use crate::task::TaskId;
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

/// How many events a subscriber may fall behind by before it gets [`Event::Lagged`].
pub const DEFAULT_EVENT_BUFFER: usize = 4096;

/// In-process event fan-out and work wake-ups.
///
/// The memory, sled and SQLite stores share this: events go to subscribers in this
/// process through a bounded broadcast (a slow one lags, the publisher never waits), and
/// [`wake`](LocalBus::wake) signals managers that work may be available, and
/// [`request_cancel`](LocalBus::request_cancel) tells them of cancelled runs.
#[derive(Debug)]
pub struct LocalBus {
    events: broadcast::Sender<Event>,
    wake: watch::Sender<u64>,
    cancels: broadcast::Sender<TaskId>,
}

impl LocalBus {
    /// A bus whose subscribers may each fall `buffer` events behind.
    pub fn new(buffer: usize) -> Self {
        LocalBus {
            events: broadcast::channel(buffer.max(1)).0,
            wake: watch::channel(0).0,
            cancels: broadcast::channel(1024).0,
        }
    }

    /// Whether anyone is subscribed; publishers skip building events when not.
    pub fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Sends events to every subscriber.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        if !self.has_subscribers() {
            return;
        }
        for event in events {
            // An error means the last subscriber left meanwhile: nothing to do.
            let _ = self.events.send(event);
        }
    }

    /// A stream of events published from now on.
    pub fn subscribe(&self) -> EventStream {
        futures_util::stream::unfold(self.events.subscribe(), |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Event::Lagged { missed }, rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }

    /// Signals that work may be available.
    pub fn wake(&self) {
        self.wake
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A stream that yields after each [`wake`](LocalBus::wake) made from now on (several
    /// wakes may yield once).
    pub fn wakeups(&self) -> WakeStream {
        futures_util::stream::unfold(self.wake.subscribe(), |mut rx| async move {
            rx.changed().await.ok().map(|()| ((), rx))
        })
        .boxed()
    }
}

impl LocalBus {
    /// Tells every [`cancellations`](LocalBus::cancellations) stream that these running
    /// tasks are to be cancelled.
    pub fn request_cancel(&self, ids: impl IntoIterator<Item = TaskId>) {
        if self.cancels.receiver_count() == 0 {
            return;
        }
        for id in ids {
            let _ = self.cancels.send(id);
        }
    }

    /// A stream of the ids passed to [`request_cancel`](LocalBus::request_cancel) from now
    /// on. One that falls more than 1024 ids behind skips the ones it missed: the manager
    /// learns of those at its next renewal, which the store refuses.
    pub fn cancellations(&self) -> CancelStream {
        futures_util::stream::unfold(self.cancels.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(id) => return Some((id, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_BUFFER)
    }
}
