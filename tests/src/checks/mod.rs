//! The checks of the conformance suite. Each takes a fresh, empty store.
//!
//! Store-level checks pass explicit times (stores never read a clock); manager checks run
//! in real time with short intervals and wait on conditions with deadlines. Each module
//! defines its checks inside one `checks!` call, which also registers them with
//! [`conformance_suite!`](crate::conformance_suite).

pub mod admin;
pub mod cancel;
pub mod durability;
pub mod events;
pub mod history;
pub mod leases;
pub mod lifecycle;
pub mod manager;
pub mod ordering;
