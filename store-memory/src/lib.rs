#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod finished;
mod layout;
mod ops;
mod options;
mod ready;
mod records;
mod store;

pub use options::MemoryOptions;

use layout::State;
use std::sync::{Arc, Mutex, MutexGuard};
use taskmill_core::raw::LocalBus;
use taskmill_core::Result;

/// A store that keeps tasks in this process's memory.
///
/// Clones share the same tasks: hand one to several managers to have them share a queue.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// One lock for all state, never held across an await: each call does its whole
    /// batch under it, which is what makes every move atomic.
    state: Mutex<State>,
    bus: LocalBus,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::from_options(MemoryOptions::default())
    }
}

impl MemoryStore {
    /// An empty store with default options: [`open`](Self::open) without the `await`,
    /// since nothing can fail.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with default options.
    ///
    /// Async and fallible only to have the constructors of every store; it cannot fail.
    pub async fn open() -> Result<Self> {
        Self::open_with(MemoryOptions::default()).await
    }

    /// An empty store with `options`.
    pub async fn open_with(options: MemoryOptions) -> Result<Self> {
        Ok(Self::from_options(options))
    }

    /// Opens the store a URL names: `memory://`, with nothing after it.
    ///
    /// Fails with `Misuse` for any other URL.
    pub async fn from_url(url: &str) -> Result<Self> {
        let options = options::parse_url(url)?;
        Self::open_with(options).await
    }

    fn from_options(options: MemoryOptions) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                bus: LocalBus::new(options.event_buffer),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation is completed before the guard drops and none can panic midway,
        // so a poisoned lock still guards consistent state.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
