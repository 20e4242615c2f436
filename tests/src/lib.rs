//! The Store conformance suite, and helpers for crash and multi-process tests.
//!
//! Each check in [`checks`] is a plain `async fn` taking a fresh store (or the [`Harness`]
//! that made it). A backend runs the whole suite by implementing [`Harness`] and invoking
//! [`conformance_suite!`] inside a module named after it, so every check becomes a named
//! test (`sqlite::stale_outcome_is_rejected`):
//!
//! ```text
//! mod memory {
//!     use taskmill_tests::Capabilities;
//!     taskmill_tests::conformance_suite!(crate::MemoryHarness, Capabilities::IN_PROCESS);
//! }
//! ```
//!
//! Each backend's test targets (`--test sqlite`, `--test sled_crash`, …) need the crate
//! feature of that backend; all are on by default, and `--no-default-features` builds the
//! memory suite alone, for a tree where another store crate does not compile yet.
//!
//! # Adding a check
//!
//! Write it as a `pub async fn` inside the `checks!( … )` call of one of the
//! [`checks`] modules: that is its registration, there is no list to update. A check that
//! only holds for stores with a capability (a field of [`Capabilities`]) says so with
//! `#[needs(field)]` after its doc comment; its test then returns early, printing
//! `skipped: needs field`, on a store that lacks it, and runs everywhere else.
//!
//! A check takes either `store: Arc<dyn Store>` (most do) or
//! `harness: &mut dyn Harness`, for a check that opens the store again
//! ([`Harness::reopen`], [`Harness::open_another`]).

#![warn(missing_docs)]

// Defined before the modules that use it (textual scope).
/// Defines a module's checks and registers them: `checks!(mod NAME; CHECKS…)`, in the file
/// of module `checks::NAME`.
///
/// Each check is `$(/// doc)* $(#[needs(capability, …)])? pub async fn name(arg: Type) { … }`.
/// Besides the functions it defines `taskmill_tests::NAME!(Harness)`, an exported macro
/// (called by [`conformance_suite!`]) that expands to one test per check. The call uses
/// parentheses so that rustfmt formats the checks inside it.
macro_rules! checks {
    (
        mod $module:ident;
        $(
            $(#[doc = $doc:literal])*
            $(#[needs($($capability:ident),+ $(,)?)])?
            pub async fn $name:ident($($params:tt)*) $body:block
        )*
    ) => {
        $(
            $(#[doc = $doc])*
            $(#[doc = concat!("\n\nRuns only where the store has: ", $("`", stringify!($capability), "` "),+)])?
            pub async fn $name($($params)*) $body
        )*
        checks!(@tests ($) $module; $($name [$($($capability)+)?])*);
    };
    // `$d` is a `$` for the generated macro's own metavariables.
    (@tests ($d:tt) $module:ident; $($name:ident [$($capability:ident)*])*) => {
        #[doc(hidden)]
        #[macro_export]
        macro_rules! $module {
            ($d harness:ty) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let mut harness = <$d harness as $crate::Harness>::setup().await;
                        let _capabilities = $crate::capabilities_of(&harness);
                        $(
                            if !_capabilities.$capability {
                                println!(concat!("skipped: needs ", stringify!($capability)));
                                return;
                            }
                        )*
                        $crate::checks::$module::$name($crate::CheckArg::from_harness(
                            &mut harness,
                        ))
                        .await;
                    }
                )*
            };
        }
    };
}

pub mod checks;
pub mod process;

use std::sync::Arc;
pub use taskmill_core::store::Capabilities;
use taskmill_core::Store;

/// Gives each test an isolated store (a temp dir, a fresh namespace, …).
#[async_trait::async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Opens a fresh, empty store. Whatever keeps it alive (temp dir, server) lives in `Self`.
    async fn setup() -> Self
    where
        Self: Sized;

    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;

    /// A second handle on the same store, opened on its own as another process would open
    /// it (its own connections, its own subscriptions).
    ///
    /// Checks that need [`Capabilities::cross_process_events`] call it; a harness whose
    /// store has that capability must implement it.
    async fn open_another(&self) -> Arc<dyn Store> {
        panic!(
            "the store has cross_process_events, so its harness must implement \
             Harness::open_another"
        )
    }

    /// Closes the store and opens it again from what it persisted, as a restarted process
    /// would; later calls to [`store`](Self::store) give the reopened store.
    ///
    /// The caller drops every handle it got from the harness first. Checks that need
    /// [`Capabilities::durable`] call it; a harness whose store has that capability must
    /// implement it.
    async fn reopen(&mut self) -> Arc<dyn Store> {
        panic!("the store is durable, so its harness must implement Harness::reopen")
    }
}

/// What a check takes: the store, or the harness itself. Lets a generated test hand each
/// check the argument its signature asks for.
pub trait CheckArg<'a> {
    /// The argument, from the harness of the test.
    fn from_harness(harness: &'a mut dyn Harness) -> Self;
}

impl<'a> CheckArg<'a> for Arc<dyn Store> {
    fn from_harness(harness: &'a mut dyn Harness) -> Self {
        harness.store()
    }
}

impl<'a> CheckArg<'a> for &'a mut dyn Harness {
    fn from_harness(harness: &'a mut dyn Harness) -> Self {
        harness
    }
}

/// The capabilities of the harness's store.
#[doc(hidden)]
pub fn capabilities_of(harness: &dyn Harness) -> Capabilities {
    harness.store().capabilities()
}

/// Expands to one `#[tokio::test]` per check, each on a fresh store from the harness, and
/// one that the store reports `capabilities`: the checks gated on a capability the store
/// lacks are skipped, so the call site states which those are.
///
/// The tests of each [`checks`] module come from the macro its `checks!` call defines, so
/// this lists modules, never checks.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty, $capabilities:expr) => {
        #[tokio::test]
        async fn store_reports_its_capabilities() {
            let harness = <$harness as $crate::Harness>::setup().await;
            assert_eq!(
                $crate::capabilities_of(&harness),
                $capabilities,
                "the checks gated on these capabilities run or skip by them"
            );
        }
        $crate::lifecycle!($harness);
        $crate::ordering!($harness);
        $crate::leases!($harness);
        $crate::admin!($harness);
        $crate::events!($harness);
        $crate::durability!($harness);
        $crate::history!($harness);
        $crate::cancel!($harness);
        $crate::manager!($harness);
        $crate::control!($harness);
        $crate::observe!($harness);
        $crate::model!($harness);
        $crate::schedule!($harness);
        $crate::faults!($harness);
    };
}
