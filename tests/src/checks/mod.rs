//! The checks of the conformance suite. Each takes a fresh, empty store.
//!
//! Store-level checks pass explicit times (stores never read a clock); manager checks run
//! in real time with short intervals and wait on conditions with deadlines. Each module
//! defines its checks inside one `checks!` call, which also registers them with
//! [`conformance_suite!`](crate::conformance_suite).

pub mod admin;
pub mod cancel;
pub mod control;
pub mod durability;
pub mod events;
pub mod faults;
pub mod history;
pub mod leases;
pub mod lifecycle;
pub mod manager;
pub mod model;
pub mod observe;
pub mod ordering;
pub mod schedule;

use futures_util::StreamExt;
use taskmill_core::{Event, EventStream};
use taskmill_testkit::{log, Log};

/// Collects the events of `stream` (a manager's or a client's `watch()`) in the
/// background, for manager checks to look at.
pub(crate) fn record_events(mut stream: EventStream) -> Log<Event> {
    let events = log();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            sink.lock().unwrap().push(e);
        }
    });
    events
}
