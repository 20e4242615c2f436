//! The primitives the run and the exchange synchronize with: std's and futures', or
//! loom's when the crate's unit tests are model-checked.
//!
//! ```text
//! RUSTFLAGS="--cfg taskmill_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p taskmill-core --lib --release loom
//! ```
//!
//! Under loom every operation on these is a point where the model checker may switch
//! threads, and a run of a model explores every interleaving of them (up to its
//! preemption bound). The tokio `Notify`s beside them are not loom's: each of their calls
//! runs as one step.

#[cfg(not(all(test, taskmill_loom)))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(not(all(test, taskmill_loom)))]
pub(crate) use std::sync::{
    atomic::{AtomicU8, Ordering},
    Mutex, MutexGuard,
};

#[cfg(all(test, taskmill_loom))]
pub(crate) use loom::sync::{
    atomic::{AtomicU8, Ordering},
    Mutex, MutexGuard,
};

/// Loom's `AtomicWaker` with the futures signature of `register`.
#[cfg(all(test, taskmill_loom))]
#[derive(Debug)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(all(test, taskmill_loom))]
impl AtomicWaker {
    pub fn new() -> Self {
        AtomicWaker(loom::future::AtomicWaker::new())
    }

    pub fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub fn wake(&self) {
        self.0.wake();
    }
}
