//! The Store conformance suite, and helpers for crash and multi-process tests.
//!
//! Each check in [`checks`] is a plain `async fn` taking a fresh store. A backend runs the
//! whole suite by implementing [`Harness`] and invoking [`conformance_suite!`] inside a
//! module named after it, so every check becomes a named test (`sqlite::stale_outcome_is_rejected`).

use std::sync::Arc;
use taskmill_core::Store;

/// Gives each test an isolated store (a temp dir, a fresh namespace, …).
#[async_trait::async_trait]
pub trait Harness: Sized + Send + Sync + 'static {
    /// Opens a fresh, empty store. Whatever keeps it alive (temp dir, server) lives in `Self`.
    async fn setup() -> Self;
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
}
