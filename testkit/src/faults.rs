//! [`FaultyStore`]: a store wrapper that injects the faults a real backend shows, seeded so
//! that a failing run can be repeated.
//!
//! Each call to a wrapped method draws at most one fault from the store's seeded
//! [`fastrand::Rng`], with the probabilities of its [`FaultRates`]:
//!
//! | fault | what the caller sees | what the store did |
//! |---|---|---|
//! | [`Unavailable`](FaultKind::Unavailable) | `ErrorKind::Unavailable` | nothing |
//! | [`Refused`](FaultKind::Refused) | `ErrorKind::Storage` | nothing (a refused write) |
//! | [`LostReply`](FaultKind::LostReply) | `ErrorKind::Unavailable` | the whole call |
//! | [`Dropped`](FaultKind::Dropped) | `ErrorKind::Unavailable` | some, all or none of it |
//! | [`Delayed`](FaultKind::Delayed) | the answer, late | the call, late |
//! | [`Outage`](FaultKind::Outage) | `ErrorKind::Unavailable` | nothing |
//!
//! The first five are drawn per call; an outage is switched on and off by the test
//! ([`FaultyStore::set_outage`]): while it lasts, every call fails, as while a server is
//! down, which is how a test makes leases run out.
//!
//! A dropped call runs under a short [`tokio::time::timeout`], so that its future is dropped
//! while in flight; one that completes within it is answered as usual (and counted as
//! [`drops_missed`](FaultCounts::drops_missed)), which is what a store that never awaits
//! (the memory store) always does.
//!
//! # Which methods get which faults
//!
//! Any method may fail before doing anything, or answer late. The faults that leave work
//! done behind an error (a lost reply, a dropped call) are injected only where the
//! contract makes that safe to repeat or obliges the manager to cope:
//!
//! - `claim`: the tasks of a lost claim are leased to nobody; the reaper returns them once
//!   their lease expires (the contract's cancel safety).
//! - `apply`: applying outcomes again answers `Stale` for those already applied.
//! - `renew`, `progress`, `recover`, `prune`, `requeue`, `delete`, `cancel`, `set_paused`,
//!   the schedule methods and `publish`: repeating them leaves the store as one call
//!   would (`fire` enqueues at most once per tick however often it is called).
//! - reads (`stats`, `get`, `list`, `schedules`): change nothing, so a lost reply is an
//!   unavailable store; they are never refused as a write is.
//!
//! `enqueue` gets neither: a repeated enqueue adds its tasks twice (unless they have unique
//! keys), so its contract promises that an error means nothing was added. `subscribe`,
//! `wakeups` and `cancellations` fail before or answer late; the streams they return are
//! the inner store's. `capabilities` and `has_subscribers` are synchronous and forwarded.
//!
//! # Reproducing a run
//!
//! [`FaultyStore::new`] takes its seed from `TASKMILL_FAULT_SEED` when set, or a random one;
//! a test prints [`seed`](FaultyStore::seed) so that a failure can be run again. The seed
//! fixes the sequence of draws, one per call in the order calls are made: under a
//! multi-threaded manager running in real time the order of calls varies from run to run,
//! so the same seed gives the same fault rates and the same first faults, not the same
//! interleaving.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, CancelStream, Cancellation, ClaimOptions, Claimed,
    EnqueueOptions, Enqueued, Fired, LeaseRef, ListOptions, Outcome, Page, Progress, PruneOptions,
    PruneSchedulesOptions, RecoverOptions, Recovered, RegisterOptions, RenewOptions,
    RequeueOptions, ScheduleEntry, ScheduleState, StatsOptions, Tick, WakeStream,
};
use taskmill_core::{Error, Event, EventStream, Result, Stats, Store, Task, TaskId, TaskRecord};

/// The environment variable that sets the seed of [`FaultyStore::new`].
pub const FAULT_SEED_VAR: &str = "TASKMILL_FAULT_SEED";

/// The seed in [`FAULT_SEED_VAR`], or a random one when it is unset.
///
/// # Panics
/// When the variable is set but is not a `u64`: a typo must not silently run another seed.
pub fn fault_seed() -> u64 {
    match std::env::var(FAULT_SEED_VAR) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{FAULT_SEED_VAR}={s:?} is not a u64 seed")),
        Err(_) => fastrand::u64(..),
    }
}

/// A fault [`FaultyStore`] injects into one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Fails with `Unavailable` before calling the store.
    Unavailable,
    /// Fails with `Storage` before calling the store: a refused write.
    Refused,
    /// Calls the store, then fails with `Unavailable` anyway: the reply was lost.
    LostReply,
    /// Calls the store under a short timeout, dropping the call's future if it is still in
    /// flight then, and failing with `Unavailable`.
    Dropped,
    /// Waits, then calls the store.
    Delayed,
    /// Fails with `Unavailable` before calling the store, because an outage is on.
    Outage,
}

/// The probability of each fault per call (each in `0.0..=1.0`, their sum at most 1), and
/// their durations.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FaultRates {
    /// Of [`FaultKind::Unavailable`].
    pub unavailable: f64,
    /// Of [`FaultKind::Refused`].
    pub refused: f64,
    /// Of [`FaultKind::LostReply`].
    pub lost_reply: f64,
    /// Of [`FaultKind::Dropped`].
    pub dropped: f64,
    /// Of [`FaultKind::Delayed`].
    pub delayed: f64,
    /// A delayed call waits a duration drawn evenly from zero to this.
    pub max_delay: Duration,
    /// A dropped call's timeout is drawn evenly from zero to this.
    pub max_drop_after: Duration,
}

impl FaultRates {
    /// No faults at all.
    pub const NONE: FaultRates = FaultRates {
        unavailable: 0.0,
        refused: 0.0,
        lost_reply: 0.0,
        dropped: 0.0,
        delayed: 0.0,
        max_delay: Duration::from_millis(50),
        max_drop_after: Duration::from_millis(2),
    };

    /// About `total` of all calls faulty (for example `0.04`), shared among the kinds:
    /// a third unavailable, a sixth each refused, lost, dropped and delayed. Delays are up
    /// to 50 ms, drops within 2 ms.
    pub fn total(total: f64) -> FaultRates {
        let total = total.clamp(0.0, 1.0);
        FaultRates {
            unavailable: total / 3.0,
            refused: total / 6.0,
            lost_reply: total / 6.0,
            dropped: total / 6.0,
            delayed: total / 6.0,
            ..FaultRates::NONE
        }
    }
}

/// Which faults a method may get (see the [module docs](self)).
#[derive(Clone, Copy)]
enum Class {
    /// A write that is safe to repeat, or whose lost work the manager must cope with:
    /// every fault.
    Repeatable,
    /// A read: no `Refused`.
    Read,
    /// A write that must not be repeated blindly (`enqueue`): fails only before, or late.
    Once,
    /// Opening a stream: fails only before, or late.
    Stream,
}

impl Class {
    fn allows(self, kind: FaultKind) -> bool {
        use FaultKind::*;
        match self {
            Class::Repeatable => true,
            Class::Read => kind != Refused,
            Class::Once => matches!(kind, Unavailable | Refused | Delayed),
            Class::Stream => matches!(kind, Unavailable | Delayed),
        }
    }
}

/// How many calls a [`FaultyStore`] saw and how many faults of each kind it injected, in
/// total and per method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Calls of the wrapped (async) methods, faulty or not, while faults or an outage were
    /// on.
    pub calls: u64,
    /// Faults injected, by kind. A `Dropped` counts only when the timeout did drop the
    /// call in flight.
    pub injected: BTreeMap<FaultKind, u64>,
    /// Faults injected, by method.
    pub by_method: BTreeMap<&'static str, u64>,
    /// Calls drawn for a drop that completed within their timeout (answered as usual).
    pub drops_missed: u64,
}

impl FaultCounts {
    /// Faults of `kind` injected.
    pub fn of(&self, kind: FaultKind) -> u64 {
        self.injected.get(&kind).copied().unwrap_or(0)
    }

    /// Faults injected into calls of `method`.
    pub fn of_method(&self, method: &str) -> u64 {
        self.by_method.get(method).copied().unwrap_or(0)
    }

    /// Every fault injected.
    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }

    fn count(&mut self, kind: FaultKind, method: &'static str) {
        *self.injected.entry(kind).or_default() += 1;
        *self.by_method.entry(method).or_default() += 1;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} faults in {} calls (", self.total(), self.calls)?;
        for (i, (kind, n)) in self.injected.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{kind:?} {n}")?;
        }
        write!(f, "; drops missed {}; by method:", self.drops_missed)?;
        for (method, n) in &self.by_method {
            write!(f, " {method} {n}")?;
        }
        write!(f, ")")
    }
}

/// What the rng and the counts share: one lock per call.
struct Dice {
    rng: fastrand::Rng,
    counts: FaultCounts,
}

/// A fault drawn for one call, with its duration where it has one.
enum Drawn {
    Before(FaultKind),
    LostReply,
    Drop(Duration),
    Delay(Duration),
}

/// Any store, with faults injected into its calls (see the [module docs](self)).
///
/// Faults are on from the start; [`set_enabled`](Self::set_enabled) turns them off and on.
/// Clones share the switch, the rng and the counts.
#[derive(Clone)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    rates: FaultRates,
    seed: u64,
    enabled: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    dice: Arc<Mutex<Dice>>,
}

impl FaultyStore {
    /// Wraps `inner`, seeded by [`fault_seed`] (`TASKMILL_FAULT_SEED`, or random).
    pub fn new(inner: Arc<dyn Store>, rates: FaultRates) -> Self {
        Self::with_seed(inner, rates, fault_seed())
    }

    /// Wraps `inner`, with faults drawn from `seed`.
    pub fn with_seed(inner: Arc<dyn Store>, rates: FaultRates, seed: u64) -> Self {
        FaultyStore {
            inner,
            rates,
            seed,
            enabled: Arc::new(AtomicBool::new(true)),
            outage: Arc::new(AtomicBool::new(false)),
            dice: Arc::new(Mutex::new(Dice {
                rng: fastrand::Rng::with_seed(seed),
                counts: FaultCounts::default(),
            })),
        }
    }

    /// The seed the faults are drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Turns fault injection on or off (for every clone). Off, every call goes straight to
    /// the inner store and draws nothing.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    /// Starts (`true`) or ends an outage (for every clone): while it lasts, every call of
    /// an async method fails with `Unavailable` before reaching the store, whether drawn
    /// faults are enabled or not.
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// The calls and faults so far.
    pub fn counts(&self) -> FaultCounts {
        self.dice().counts.clone()
    }

    fn dice(&self) -> std::sync::MutexGuard<'_, Dice> {
        // The rng and counts are updated in whole steps; a panic elsewhere leaves them sound.
        self.dice.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draws the fault of one call of `method`, if any, and counts the call and the
    /// faults that are decided here (a drop counts once its timeout fires).
    fn draw(&self, method: &'static str, class: Class) -> Option<Drawn> {
        if self.outage.load(Ordering::SeqCst) {
            let mut dice = self.dice();
            dice.counts.calls += 1;
            dice.counts.count(FaultKind::Outage, method);
            return Some(Drawn::Before(FaultKind::Outage));
        }
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let r = &self.rates;
        let mut dice = self.dice();
        dice.counts.calls += 1;
        let mut x = dice.rng.f64();
        let mut kind = None;
        for (k, p) in [
            (FaultKind::Unavailable, r.unavailable),
            (FaultKind::Refused, r.refused),
            (FaultKind::LostReply, r.lost_reply),
            (FaultKind::Dropped, r.dropped),
            (FaultKind::Delayed, r.delayed),
        ] {
            if x < p {
                kind = Some(k);
                break;
            }
            x -= p;
        }
        // A kind the method does not allow draws nothing: the method's faults keep their
        // rates, whatever the others'.
        let kind = kind.filter(|k| class.allows(*k))?;
        // In microseconds: a drop within a store's round trip of a fraction of a
        // millisecond must be able to land in it.
        let mut upto = |max: Duration| {
            let us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
            Duration::from_micros(dice.rng.u64(0..=us))
        };
        let drawn = match kind {
            FaultKind::Unavailable | FaultKind::Refused | FaultKind::Outage => Drawn::Before(kind),
            FaultKind::LostReply => Drawn::LostReply,
            FaultKind::Dropped => Drawn::Drop(upto(r.max_drop_after)),
            FaultKind::Delayed => Drawn::Delay(upto(r.max_delay)),
        };
        if kind != FaultKind::Dropped {
            dice.counts.count(kind, method);
        }
        Some(drawn)
    }

    /// Runs `call` (a call of the inner store, not yet polled) with the fault drawn for it.
    async fn call<T>(
        &self,
        method: &'static str,
        class: Class,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.draw(method, class) {
            None => call.await,
            Some(Drawn::Before(FaultKind::Refused)) => Err(Error::storage(format!(
                "injected fault: {method} refused before it was carried out"
            ))),
            Some(Drawn::Before(FaultKind::Outage)) => Err(Error::unavailable(format!(
                "injected fault: store down (outage) for {method}"
            ))),
            Some(Drawn::Before(_)) => Err(Error::unavailable(format!(
                "injected fault: store unavailable for {method}"
            ))),
            Some(Drawn::LostReply) => {
                // Whatever it did, and whether it failed, the caller never hears.
                let _ = call.await;
                Err(Error::unavailable(format!(
                    "injected fault: the reply to {method} was lost"
                )))
            }
            Some(Drawn::Drop(after)) => match tokio::time::timeout(after, call).await {
                Ok(answer) => {
                    self.dice().counts.drops_missed += 1;
                    answer
                }
                Err(_) => {
                    self.dice().counts.count(FaultKind::Dropped, method);
                    Err(Error::unavailable(format!(
                        "injected fault: {method} dropped in flight after {after:?}"
                    )))
                }
            },
            Some(Drawn::Delay(d)) => {
                tokio::time::sleep(d).await;
                call.await
            }
        }
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("seed", &self.seed)
            .field("rates", &self.rates)
            .field("enabled", &self.enabled.load(Ordering::SeqCst))
            .field("outage", &self.outage.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

// Every async method names its class; the two synchronous ones are forwarded.
crate::forward_store! {
    impl Store for FaultyStore {
        forward |s| &s.inner;
        async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
            self.call("enqueue", Class::Once, self.inner.enqueue(tasks, opts))
                .await
        }
        async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
            self.call("claim", Class::Repeatable, self.inner.claim(opts))
                .await
        }
        async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
            self.call("renew", Class::Repeatable, self.inner.renew(leases, opts))
                .await
        }
        async fn progress(&self, updates: &[Progress]) -> Result<Vec<Applied>> {
            self.call("progress", Class::Repeatable, self.inner.progress(updates))
                .await
        }
        async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
            self.call("apply", Class::Repeatable, self.inner.apply(outcomes, opts))
                .await
        }
        async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
            self.call("recover", Class::Repeatable, self.inner.recover(opts))
                .await
        }
        async fn prune(&self, opts: &PruneOptions) -> Result<u64> {
            self.call("prune", Class::Repeatable, self.inner.prune(opts))
                .await
        }
        async fn stats(&self, opts: &StatsOptions) -> Result<Stats> {
            self.call("stats", Class::Read, self.inner.stats(opts)).await
        }
        async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
            self.call("get", Class::Read, self.inner.get(id)).await
        }
        async fn list(&self, opts: &ListOptions) -> Result<Page> {
            self.call("list", Class::Read, self.inner.list(opts)).await
        }
        async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
            self.call("requeue", Class::Repeatable, self.inner.requeue(ids, opts))
                .await
        }
        async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
            self.call("delete", Class::Repeatable, self.inner.delete(ids))
                .await
        }
        async fn cancel(&self, ids: &[TaskId], opts: &CancelOptions) -> Result<Vec<Cancellation>> {
            self.call("cancel", Class::Repeatable, self.inner.cancel(ids, opts))
                .await
        }
        async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
            let call = self.inner.set_paused(topic, paused);
            self.call("set_paused", Class::Repeatable, call).await
        }
        async fn register_schedules(
            &self,
            entries: &[ScheduleEntry],
            opts: &RegisterOptions,
        ) -> Result<Vec<ScheduleState>> {
            let call = self.inner.register_schedules(entries, opts);
            self.call("register_schedules", Class::Repeatable, call)
                .await
        }
        async fn fire(&self, ticks: Vec<Tick>, opts: &EnqueueOptions) -> Result<Vec<Fired>> {
            self.call("fire", Class::Repeatable, self.inner.fire(ticks, opts))
                .await
        }
        async fn schedules(&self) -> Result<Vec<ScheduleState>> {
            self.call("schedules", Class::Read, self.inner.schedules())
                .await
        }
        async fn set_schedule_paused(&self, name: &str, paused: bool) -> Result<bool> {
            let call = self.inner.set_schedule_paused(name, paused);
            self.call("set_schedule_paused", Class::Repeatable, call)
                .await
        }
        async fn prune_schedules(&self, opts: &PruneSchedulesOptions) -> Result<u64> {
            let call = self.inner.prune_schedules(opts);
            self.call("prune_schedules", Class::Repeatable, call).await
        }
        async fn publish(&self, events: &[Event]) -> Result<()> {
            self.call("publish", Class::Repeatable, self.inner.publish(events))
                .await
        }
        async fn subscribe(&self) -> Result<EventStream> {
            self.call("subscribe", Class::Stream, self.inner.subscribe())
                .await
        }
        async fn wakeups(&self) -> Result<WakeStream> {
            self.call("wakeups", Class::Stream, self.inner.wakeups())
                .await
        }
        async fn cancellations(&self) -> Result<CancelStream> {
            self.call("cancellations", Class::Stream, self.inner.cancellations())
                .await
        }
    }
}
