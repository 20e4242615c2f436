//! One call for what tests do to a store over and over; each fails the test on an error.

use std::ops::Range;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions,
    Enqueued, LeaseRef, Outcome, OutcomeKind, PruneOptions, RecoverOptions, Recovered, TopicClaim,
};
use taskmill_core::{QueueSizes, Store, Task, TaskId, TaskRecord, Timestamp};

/// A fixed "now" for store-level tests: stores never read a clock, so time is the test's.
pub const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// The lease every claim made through these helpers takes.
pub const LEASE: Duration = Duration::from_secs(30);

/// The owner every claim made through [`claim`] and [`claim_at`] names.
pub const OWNER: &str = "owner-a";

/// `T0` plus `ms` milliseconds.
pub fn at(ms: u64) -> Timestamp {
    T0 + Duration::from_millis(ms)
}

/// A task of `topic` whose argument is `n`.
pub fn task(topic: &str, n: u64) -> Task {
    Task::new(topic, &n).expect("a valid task")
}

/// Tasks of `topic`, one per argument in `args`.
pub fn tasks(topic: &str, args: Range<u64>) -> Vec<Task> {
    args.map(|i| task(topic, i)).collect()
}

/// Enqueues tasks at `T0`; what became of each (new or a duplicate).
pub async fn enqueue_results(store: &dyn Store, tasks: Vec<Task>) -> Vec<Enqueued> {
    store
        .enqueue(tasks, &EnqueueOptions::new(T0))
        .await
        .expect("enqueue")
}

/// Enqueues tasks at `T0` and returns their ids, asserting each was new.
pub async fn enqueue(store: &dyn Store, tasks: Vec<Task>) -> Vec<TaskId> {
    enqueue_results(store, tasks)
        .await
        .into_iter()
        .map(|r| {
            assert!(r.is_new(), "unexpected duplicate of {}", r.id());
            r.id()
        })
        .collect()
}

/// Enqueues `n` tasks of `topic` at `T0` (arguments `0..n`); their ids.
pub async fn enqueue_n(store: &dyn Store, topic: &str, n: u64) -> Vec<TaskId> {
    enqueue(store, tasks(topic, 0..n)).await
}

/// Claims up to `limit` tasks of `topics` at `T0` as [`OWNER`]; none may be corrupt.
pub async fn claim(store: &dyn Store, topics: &[&str], limit: usize) -> Vec<TaskRecord> {
    claim_at(store, topics, limit, T0).await
}

/// Claims up to `limit` tasks of `topics` at `now` as [`OWNER`]; none may be corrupt.
pub async fn claim_at(
    store: &dyn Store,
    topics: &[&str],
    limit: usize,
    now: Timestamp,
) -> Vec<TaskRecord> {
    claim_as(store, OWNER, topics, limit, now).await
}

/// Claims up to `limit` tasks of `topics` at `now` as `owner`, under a [`LEASE`]; none may
/// be corrupt.
pub async fn claim_as(
    store: &dyn Store,
    owner: &str,
    topics: &[&str],
    limit: usize,
    now: Timestamp,
) -> Vec<TaskRecord> {
    let req = ClaimOptions::new(
        topics.iter().map(|t| TopicClaim::new(*t)),
        limit,
        owner,
        now,
    )
    .lease(LEASE);
    ready(store.claim(&req).await.expect("claim"))
}

/// The records of a claim, asserting none was corrupt.
pub fn ready(claimed: Vec<Claimed>) -> Vec<TaskRecord> {
    claimed
        .into_iter()
        .map(|c| match c {
            Claimed::Ready(r) => r,
            Claimed::Corrupt { lease, error } => {
                panic!("task {} claimed as corrupt: {error}", lease.id)
            }
        })
        .collect()
}

/// Queue sizes with these figures (and zero in any other queue), to compare with a store's.
pub fn sizes(input: u64, work: u64, dead: u64) -> QueueSizes {
    let mut sizes = QueueSizes::default();
    sizes.input = input;
    sizes.work = work;
    sizes.dead = dead;
    sizes
}

/// Ids of records.
pub fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

/// Applies one outcome to a claimed record at `T0`.
pub async fn apply_outcome(store: &dyn Store, record: &TaskRecord, kind: OutcomeKind) -> Applied {
    apply_outcome_at(store, record, kind, T0).await
}

/// Applies one outcome to a claimed record at `now` (a finished task is kept).
pub async fn apply_outcome_at(
    store: &dyn Store,
    record: &TaskRecord,
    kind: OutcomeKind,
    now: Timestamp,
) -> Applied {
    apply_one(store, Outcome::new(LeaseRef::of(record), kind), now).await
}

/// Applies one outcome at `now`.
pub async fn apply_one(store: &dyn Store, outcome: Outcome, now: Timestamp) -> Applied {
    let mut applied = store
        .apply(&[outcome], &ApplyOptions::new(now))
        .await
        .expect("apply");
    assert_eq!(applied.len(), 1, "one result per outcome");
    applied.pop().expect("one result")
}

/// Cancels tasks at `now` on behalf of `by`.
pub async fn cancel_at(
    store: &dyn Store,
    ids: &[TaskId],
    by: &str,
    now: Timestamp,
) -> Vec<Cancellation> {
    let results = store
        .cancel(ids, &CancelOptions::new(now, by))
        .await
        .expect("cancel");
    assert_eq!(results.len(), ids.len(), "one result per id");
    results
}

/// Prunes finished tasks as `opts` says; how many it removed.
pub async fn prune(store: &dyn Store, opts: &PruneOptions) -> u64 {
    store.prune(opts).await.expect("prune")
}

/// Runs the reaper at `now` for up to `limit` tasks.
pub async fn recover(store: &dyn Store, now: Timestamp, limit: usize) -> Vec<Recovered> {
    store
        .recover(&RecoverOptions::new(now).limit(limit))
        .await
        .expect("recover")
}

/// The stored record of `id`, which must exist.
pub async fn get(store: &dyn Store, id: TaskId) -> TaskRecord {
    store
        .get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("task {id} should exist"))
}

/// Stats options for a test that looks at queue sizes and counters, not at the split of
/// INPUT by time: as of the end of time, when every INPUT task is due (pending), so each
/// INPUT task counts in `input` and none in `scheduled` or `retrying`.
pub fn all_due() -> taskmill_core::store::StatsOptions {
    taskmill_core::store::StatsOptions::new(taskmill_core::Timestamp::from_millis(i64::MAX))
}
