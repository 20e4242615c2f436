//! Small helpers the checks share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, Outcome, OutcomeKind,
    RecoverOptions, Recovered, TopicClaim,
};
use taskmill_core::{QueueSizes, Store, Task, TaskId, TaskRecord, Timestamp};

/// A fixed "now" for store-level checks: stores never read a clock, so time is ours.
pub const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// The lease every store-level claim takes.
pub const LEASE: Duration = Duration::from_secs(30);

/// `T0` plus `ms` milliseconds.
pub fn at(ms: u64) -> Timestamp {
    T0 + Duration::from_millis(ms)
}

/// A task of `topic` whose argument is `n`.
pub fn task(topic: &str, n: u64) -> Task {
    Task::new(topic, &n).expect("a valid task")
}

/// Enqueues tasks at `T0` and returns their ids, asserting each was new.
pub async fn enqueue(store: &dyn Store, tasks: Vec<Task>) -> Vec<TaskId> {
    let results = store
        .enqueue(tasks, &EnqueueOptions::new(T0))
        .await
        .expect("enqueue");
    results
        .into_iter()
        .map(|r| {
            assert!(r.is_new(), "unexpected duplicate of {}", r.id());
            r.id()
        })
        .collect()
}

/// Enqueues `n` tasks of `topic` at `T0`.
pub async fn enqueue_n(store: &dyn Store, topic: &str, n: u64) -> Vec<TaskId> {
    enqueue(store, (0..n).map(|i| task(topic, i)).collect()).await
}

/// Claims up to `limit` tasks of `topics` at `now` as owner "owner-a"; all must be ready.
pub async fn claim_at(
    store: &dyn Store,
    topics: &[&str],
    limit: usize,
    now: Timestamp,
) -> Vec<TaskRecord> {
    claim_as(store, "owner-a", topics, limit, now).await
}

/// Claims up to `limit` tasks of `topics` at `T0`.
pub async fn claim(store: &dyn Store, topics: &[&str], limit: usize) -> Vec<TaskRecord> {
    claim_at(store, topics, limit, T0).await
}

/// Claims as `owner`.
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

/// Applies one outcome to a claimed record at `now`.
pub async fn finish_at(
    store: &dyn Store,
    record: &TaskRecord,
    kind: OutcomeKind,
    now: Timestamp,
) -> Applied {
    let outcome = Outcome {
        lease: LeaseRef::of(record),
        kind,
    };
    let mut applied = store
        .apply(&[outcome], &ApplyOptions::new(now))
        .await
        .expect("apply");
    assert_eq!(applied.len(), 1, "one result per outcome");
    applied.pop().unwrap()
}

/// Applies one outcome at `T0`.
pub async fn finish(store: &dyn Store, record: &TaskRecord, kind: OutcomeKind) -> Applied {
    finish_at(store, record, kind, T0).await
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

/// Polls `condition` every few milliseconds until it holds, failing after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A shared, growing list of what a test observed.
pub type Log<T> = Arc<std::sync::Mutex<Vec<T>>>;

/// A new, empty log.
pub fn log<T>() -> Log<T> {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}
