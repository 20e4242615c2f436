//! The in-memory taskmill store.
//!
//! The reference implementation of the [`Store`](taskmill_core::Store) contract: the
//! conformance suite's behaviour is defined by it first. Tasks live in this process only
//! and are gone when it exits; use it for tests, development, and work that may be lost.
//!
//! ```
//! use taskmill_memory::MemoryStore;
//!
//! let store = MemoryStore::new();
//! let same = MemoryStore::from_url("memory://")?;
//! # Ok::<_, taskmill_core::Error>(())
//! ```
#![warn(missing_docs)]

mod ready;
mod records;
mod state;
mod store;

use state::State;
use std::sync::{Arc, Mutex, MutexGuard};
use taskmill_core::raw::{LocalBus, StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};

/// A store that keeps tasks in this process's memory.
///
/// Clones share the same tasks: hand one to several managers to have them share a queue.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// One lock for all state, never held across an await: each call does its whole
    /// batch under it, which is what makes every move atomic.
    state: Mutex<State>,
    bus: LocalBus,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_event_buffer(DEFAULT_EVENT_BUFFER)
    }

    /// An empty store whose event subscribers may each fall `buffer` events behind.
    pub fn with_event_buffer(buffer: usize) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                bus: LocalBus::new(buffer),
            }),
        }
    }

    /// A store from a URL: `memory://` (nothing may follow).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = StoreUrl::parse(url, &["memory"], "memory://")?;
        if parsed.location("").is_ok() || parsed.options().next().is_some() {
            return Err(Error::misuse(format!(
                "memory:// takes no location or options, got {parsed}"
            )));
        }
        Ok(Self::new())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation is completed before the guard drops and none can panic midway,
        // so a poisoned lock still guards consistent state.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
