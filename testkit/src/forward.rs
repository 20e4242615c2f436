//! [`forward_store!`](crate::forward_store): `Store` for a test's wrapper, forwarding every
//! method it does not write itself to an inner store.

/// Implements `Store` for a wrapper: the methods written inside are its own, every other
/// method is forwarded to the store the `forward` closure names.
///
/// ```
/// use std::sync::Arc;
/// use taskmill_core::{Result, Stats, Store};
///
/// /// A store whose stats always fail.
/// struct NoStats(Arc<dyn Store>);
///
/// taskmill_testkit::forward_store! {
///     impl Store for NoStats {
///         forward |s| &s.0;
///         async fn stats(&self, _: &taskmill_core::store::StatsOptions) -> Result<Stats> {
///             Err(taskmill_core::Error::unavailable("no stats today"))
///         }
///     }
/// }
///
/// /// Any store, claiming for nobody but reporting every claim.
/// struct Loud<S>(S);
///
/// taskmill_testkit::forward_store! {
///     impl<S: Store> Store for Loud<S> {
///         forward |s| &s.0;
///         /// Says so, then claims.
///         async fn claim(
///             &self,
///             opts: &taskmill_core::store::ClaimOptions,
///         ) -> Result<Vec<taskmill_core::store::Claimed>> {
///             println!("claiming for {}", opts.owner);
///             self.0.claim(opts).await
///         }
///         fn has_subscribers(&self) -> bool {
///             true
///         }
///     }
/// }
/// ```
///
/// - `forward |s| EXPR;` names the inner store: `EXPR`, with `s` the wrapper (`&Self`),
///   is anything whose methods are `Store`'s (`&s.0`, `&*s.inner`, …).
/// - The methods after it are written as in an `#[async_trait]` impl: `async fn` or `fn`,
///   with a return type, doc comments and attributes allowed. Each replaces the forwarded
///   method of its name; a misspelled name fails to compile as a method `Store` has not.
/// - Generic wrappers say so: `impl<S: Store> Store for Wrapper<S> { … }` (one bound per
///   parameter).
///
/// The impl carries `#[warn(clippy::missing_trait_methods)]`: a method added to `Store` is
/// forwarded once it is added to this macro's table, in this file.
#[macro_export]
macro_rules! forward_store {
    (
        impl $(<$($g:ident : $b:path),+ $(,)?>)? Store for $ty:ty {
            forward |$s:ident| $inner:expr;
            $($own:tt)*
        }
    ) => {
        $crate::forward_store!(
            @own ($) [$($($g : $b),+)?] [$ty] [$s] [$inner] [] [] $($own)*
        );
    };

    // Collects the wrapper's own methods: their names, and their tokens.
    (
        @own ($d:tt) $gen:tt $ty:tt $s:tt $inner:tt [$($names:ident)*] [$($items:tt)*]
        $(#[$m:meta])* async fn $name:ident $args:tt -> $ret:ty $body:block $($rest:tt)*
    ) => {
        $crate::forward_store!(
            @own ($d) $gen $ty $s $inner [$($names)* $name]
            [$($items)* $(#[$m])* async fn $name $args -> $ret $body] $($rest)*
        );
    };
    (
        @own ($d:tt) $gen:tt $ty:tt $s:tt $inner:tt [$($names:ident)*] [$($items:tt)*]
        $(#[$m:meta])* fn $name:ident $args:tt -> $ret:ty $body:block $($rest:tt)*
    ) => {
        $crate::forward_store!(
            @own ($d) $gen $ty $s $inner [$($names)* $name]
            [$($items)* $(#[$m])* fn $name $args -> $ret $body] $($rest)*
        );
    };

    // All collected: a helper macro whose first rules match the wrapper's own methods by
    // name (a name becomes a literal in a pattern) and drop their forwards; it then walks
    // the table of every method and writes the impl.
    (
        @own ($d:tt) [$($g:ident : $b:path),*] [$ty:ty] [$s:ident] [$inner:expr]
        [$($names:ident)*] [$($items:tt)*]
    ) => {
        macro_rules! __taskmill_forward_store {
            $(
                ([$d($d acc:tt)*] $names $d forward:tt $d($d rest:tt)*) => {
                    __taskmill_forward_store!([$d($d acc)*] $d($d rest)*);
                };
            )*
            ([$d($d acc:tt)*] $d name:ident { $d($d forward:tt)* } $d($d rest:tt)*) => {
                __taskmill_forward_store!([$d($d acc)* $d($d forward)*] $d($d rest)*);
            };
            ([$d($d acc:tt)*]) => {
                #[$crate::__core::async_trait]
                #[warn(clippy::missing_trait_methods)]
                impl<$($g: $b),*> $crate::__core::Store for $ty {
                    $d($d acc)*
                    $($items)*
                }
            };
        }
        $crate::forward_store!(@table __taskmill_forward_store [$s] [$inner]);
    };

    // The table: every method of `Store`, forwarded.
    (@table $then:ident [$s:ident] [$inner:expr]) => {
        $then!([]
            capabilities {
                fn capabilities(&self) -> $crate::__core::store::Capabilities {
                    let $s = self;
                    ($inner).capabilities()
                }
            }
            enqueue {
                async fn enqueue(
                    &self,
                    tasks: Vec<$crate::__core::Task>,
                    opts: &$crate::__core::store::EnqueueOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Enqueued>> {
                    let $s = self;
                    ($inner).enqueue(tasks, opts).await
                }
            }
            claim {
                async fn claim(
                    &self,
                    opts: &$crate::__core::store::ClaimOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Claimed>> {
                    let $s = self;
                    ($inner).claim(opts).await
                }
            }
            renew {
                async fn renew(
                    &self,
                    leases: &[$crate::__core::store::LeaseRef],
                    opts: &$crate::__core::store::RenewOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Applied>> {
                    let $s = self;
                    ($inner).renew(leases, opts).await
                }
            }
            progress {
                async fn progress(
                    &self,
                    updates: &[$crate::__core::store::Progress],
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Applied>> {
                    let $s = self;
                    ($inner).progress(updates).await
                }
            }
            apply {
                async fn apply(
                    &self,
                    outcomes: &[$crate::__core::store::Outcome],
                    opts: &$crate::__core::store::ApplyOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Applied>> {
                    let $s = self;
                    ($inner).apply(outcomes, opts).await
                }
            }
            recover {
                async fn recover(
                    &self,
                    opts: &$crate::__core::store::RecoverOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Recovered>> {
                    let $s = self;
                    ($inner).recover(opts).await
                }
            }
            prune {
                async fn prune(
                    &self,
                    opts: &$crate::__core::store::PruneOptions,
                ) -> $crate::__core::Result<u64> {
                    let $s = self;
                    ($inner).prune(opts).await
                }
            }
            stats {
                async fn stats(
                    &self,
                    opts: &$crate::__core::store::StatsOptions,
                ) -> $crate::__core::Result<$crate::__core::Stats> {
                    let $s = self;
                    ($inner).stats(opts).await
                }
            }
            get {
                async fn get(
                    &self,
                    id: $crate::__core::TaskId,
                ) -> $crate::__core::Result<Option<$crate::__core::TaskRecord>> {
                    let $s = self;
                    ($inner).get(id).await
                }
            }
            list {
                async fn list(
                    &self,
                    opts: &$crate::__core::store::ListOptions,
                ) -> $crate::__core::Result<$crate::__core::store::Page> {
                    let $s = self;
                    ($inner).list(opts).await
                }
            }
            requeue {
                async fn requeue(
                    &self,
                    ids: &[$crate::__core::TaskId],
                    opts: &$crate::__core::store::RequeueOptions,
                ) -> $crate::__core::Result<Vec<bool>> {
                    let $s = self;
                    ($inner).requeue(ids, opts).await
                }
            }
            delete {
                async fn delete(
                    &self,
                    ids: &[$crate::__core::TaskId],
                ) -> $crate::__core::Result<Vec<bool>> {
                    let $s = self;
                    ($inner).delete(ids).await
                }
            }
            cancel {
                async fn cancel(
                    &self,
                    ids: &[$crate::__core::TaskId],
                    opts: &$crate::__core::store::CancelOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Cancellation>> {
                    let $s = self;
                    ($inner).cancel(ids, opts).await
                }
            }
            set_paused {
                async fn set_paused(&self, topic: &str, paused: bool) -> $crate::__core::Result<()> {
                    let $s = self;
                    ($inner).set_paused(topic, paused).await
                }
            }
            register_schedules {
                async fn register_schedules(
                    &self,
                    entries: &[$crate::__core::store::ScheduleEntry],
                    opts: &$crate::__core::store::RegisterOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::ScheduleState>> {
                    let $s = self;
                    ($inner).register_schedules(entries, opts).await
                }
            }
            fire {
                async fn fire(
                    &self,
                    ticks: Vec<$crate::__core::store::Tick>,
                    opts: &$crate::__core::store::EnqueueOptions,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::Fired>> {
                    let $s = self;
                    ($inner).fire(ticks, opts).await
                }
            }
            schedules {
                async fn schedules(
                    &self,
                ) -> $crate::__core::Result<Vec<$crate::__core::store::ScheduleState>> {
                    let $s = self;
                    ($inner).schedules().await
                }
            }
            set_schedule_paused {
                async fn set_schedule_paused(
                    &self,
                    name: &str,
                    paused: bool,
                ) -> $crate::__core::Result<bool> {
                    let $s = self;
                    ($inner).set_schedule_paused(name, paused).await
                }
            }
            prune_schedules {
                async fn prune_schedules(
                    &self,
                    opts: &$crate::__core::store::PruneSchedulesOptions,
                ) -> $crate::__core::Result<u64> {
                    let $s = self;
                    ($inner).prune_schedules(opts).await
                }
            }
            publish {
                async fn publish(
                    &self,
                    events: &[$crate::__core::Event],
                ) -> $crate::__core::Result<()> {
                    let $s = self;
                    ($inner).publish(events).await
                }
            }
            has_subscribers {
                fn has_subscribers(&self) -> bool {
                    let $s = self;
                    ($inner).has_subscribers()
                }
            }
            subscribe {
                async fn subscribe(&self) -> $crate::__core::Result<$crate::__core::EventStream> {
                    let $s = self;
                    ($inner).subscribe().await
                }
            }
            wakeups {
                async fn wakeups(
                    &self,
                ) -> $crate::__core::Result<$crate::__core::store::WakeStream> {
                    let $s = self;
                    ($inner).wakeups().await
                }
            }
            cancellations {
                async fn cancellations(
                    &self,
                ) -> $crate::__core::Result<$crate::__core::store::CancelStream> {
                    let $s = self;
                    ($inner).cancellations().await
                }
            }
        );
    };
}
