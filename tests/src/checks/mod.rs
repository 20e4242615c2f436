//! The checks of the conformance suite. Each takes a fresh, empty store.
//!
//! Store-level checks pass explicit times (stores never read a clock); manager checks run
//! in real time with short intervals and wait on conditions with deadlines.

mod admin;
mod events;
mod leases;
mod lifecycle;
mod manager;
mod ordering;

pub use admin::*;
pub use events::*;
pub use leases::*;
pub use lifecycle::*;
pub use manager::*;
pub use ordering::*;
