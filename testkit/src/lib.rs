//! Helpers shared by taskmill's tests: the conformance suite (`taskmill-tests`), each store
//! crate's own tests, and the benchmark's smoke test.
//!
//! - [`T0`], [`at`], [`LEASE`]: fixed times, since stores never read a clock;
//! - [`enqueue`], [`claim`], [`ready`], [`apply_outcome`], [`cancel_at`], [`prune`],
//!   [`get`] and their kin: one call for what a test does to a store over and over,
//!   failing the test on an error;
//! - [`wait_until`]: wait for a condition with a deadline instead of sleeping and hoping;
//! - [`temp_dir`]: a directory removed when the test ends, passed or not;
//! - [`EnteredSpans`]: which thread entered which `tracing` span;
//! - [`FaultyStore`]: any store with seeded, counted faults injected into its calls;
//! - [`forward_store!`]: `Store` for a wrapper, forwarding every method it does not write;
//! - `redis::RedisServer` (feature `redis`): a private `redis-server` on a free loopback
//!   port;
//! - `redis_cluster::RedisCluster` (feature `redis`): a private Redis Cluster of such
//!   servers, with slot migrations, failovers and per-node key counts.
//!
//! It depends on `taskmill-core` alone, so every store crate can take it as a
//! dev-dependency without a cycle.

#![warn(missing_docs)]

mod dir;
pub mod faults;
mod forward;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;
mod spans;
mod store;
mod wait;

pub use dir::{temp_dir, TempDir};
pub use faults::{fault_seed, FaultCounts, FaultKind, FaultRates, FaultyStore, FAULT_SEED_VAR};
pub use spans::EnteredSpans;
pub use store::*;
pub use wait::{log, wait_until, Log};

/// For [`forward_store!`]: the paths it writes, whatever the caller's dependencies.
#[doc(hidden)]
pub use taskmill_core as __core;
