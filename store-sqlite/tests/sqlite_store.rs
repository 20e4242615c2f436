//! What only the SQLite store has: a file that outlives the process, corrupt rows, schema
//! versions, refused writes, and several connections on one file.

use futures_util::{FutureExt, StreamExt};
use rusqlite::Connection;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions,
    Enqueued, Fired, LeaseRef, ListOptions, Outcome, OutcomeKind, Progress, PruneOptions,
    PruneSchedulesOptions, RegisterOptions, RenewOptions, ScheduleEntry, Tick, TopicClaim,
};
use taskmill_core::{
    ErrorKind, Event, Manager, Overlap, Payload, Queue, Store, StoreExt, Task, TaskContext,
    TaskError, TaskId, Timestamp, SCHEDULE_HEADER, TICK_HEADER,
};
use taskmill_sqlite::{Durability, SqliteOptions, SqliteStore, LAYOUT_VERSION};
use taskmill_testkit::{
    enqueue, enqueue_results, get, ready, tasks, temp_dir, wait_until, LEASE, T0,
};

fn claim_req(limit: usize, owner: &str) -> ClaimOptions {
    ClaimOptions::new([TopicClaim::new("t")], limit, owner, T0)
}

fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

#[tokio::test]
async fn tasks_survive_closing_and_reopening() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&store, tasks("t", 0..10)).await;
    let claimed = store.claim(&claim_req(3, "a")).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    drop(store);

    let store = SqliteStore::from_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        stats,
        "counters and sizes persist"
    );
    for id in &ids {
        assert!(store.get(*id).await.unwrap().is_some());
    }
    assert_eq!(store.list_all(Queue::Work, None).await.unwrap().len(), 3);
    // Ids and tokens keep growing after a reopen.
    let more = enqueue(&store, tasks("t", 10..11)).await;
    assert!(more[0] > ids[9]);
    let Claimed::Ready(first_after) = store.claim(&claim_req(1, "b")).await.unwrap().remove(0)
    else {
        panic!("corrupt claim")
    };
    let max_before = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => r.lease.as_ref().unwrap().token,
            Claimed::Corrupt { lease, .. } => lease.token,
        })
        .max()
        .unwrap();
    assert!(first_after.lease.unwrap().token > max_before);
}

#[tokio::test]
async fn urls_open_stores_with_options() {
    let dir = temp_dir();
    let url = format!(
        "sqlite://{}?durability=full&busy_timeout_ms=100",
        dir.path().join("t.db").display()
    );
    let store = SqliteStore::from_url(&url).await.unwrap();
    enqueue(&store, tasks("t", 0..1)).await;
    let mem = SqliteStore::from_url("sqlite://:memory:").await.unwrap();
    assert_eq!(enqueue(&mem, tasks("t", 0..2)).await.len(), 2);
    let err = SqliteStore::from_url("sqlite://t.db?durability=maybe")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misuse);
}

/// A row whose payload was damaged at rest: `get` says Corrupt, a claim hands it over as
/// `Claimed::Corrupt` under a lease, and a manager sends it to DEAD and runs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_payload_goes_to_dead_and_the_rest_run() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&store, tasks("t", 0..50)).await;
    let (bad_text, bad_blob) = (ids[10], ids[20]);
    let conn = raw(&path);
    conn.execute(
        "UPDATE tasks SET args = '{\"n\": [1, 2' WHERE id = ?1",
        [bad_text.get() as i64],
    )
    .unwrap();
    conn.execute(
        "UPDATE tasks SET args = x'ff00fe' WHERE id = ?1",
        [bad_blob.get() as i64],
    )
    .unwrap();
    drop(conn);

    let err = store.get(bad_text).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(
        store.get(bad_blob).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    assert!(store.get(ids[0]).await.unwrap().is_some());

    let done = Arc::new(AtomicU64::new(0));
    let manager = Manager::builder(store.clone())
        .poll_interval(Duration::from_millis(20))
        .stats_interval(None)
        .build();
    let counter = done.clone();
    manager
        .register("t", move |ctx: TaskContext| {
            let counter = counter.clone();
            async move {
                let _n: u64 = ctx.args()?;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager.start().await.unwrap();
    wait_until(
        "48 completions and 2 dead",
        Duration::from_secs(30),
        || async {
            let s = store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total;
            s.counters.completed == 48 && s.sizes.dead == 2
        },
    )
    .await;
    manager.close().await.unwrap();

    assert_eq!(done.load(Ordering::SeqCst), 48);
    let c = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .counters;
    assert_eq!(
        (c.started, c.completed, c.failed, c.retried),
        (50, 48, 2, 0),
        "the corrupt tasks failed at once, without retries"
    );
    let dead = store.list_all(Queue::Dead, None).await.unwrap();
    let dead_ids: HashSet<TaskId> = dead.iter().map(|r| r.id).collect();
    assert_eq!(dead_ids, HashSet::from([bad_text, bad_blob]));
    for record in &dead {
        let error = record.last_error().unwrap_or_default();
        assert!(error.contains("corrupt"), "dead with {error:?}");
        assert_eq!(record.attempt, 1);
        assert!(record.lease.is_none() && record.finished_at.is_some());
    }
    // A human can still delete what cannot be repaired.
    assert_eq!(
        store.delete(&[bad_text, bad_blob]).await.unwrap(),
        vec![true, true]
    );
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes;
    assert_eq!((sizes.active(), sizes.completed), (0, 48));
}

/// Damaged bookkeeping columns are reported the same way, and the row can still be moved.
#[tokio::test]
async fn corrupt_columns_are_claimed_as_corrupt_and_can_be_finished() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&store, tasks("t", 0..3)).await;
    let conn = raw(&path);
    conn.execute(
        "UPDATE tasks SET attempt = 'many', max_retries = -4 WHERE id = ?1",
        [ids[1].get() as i64],
    )
    .unwrap();
    drop(conn);
    let claimed = store.claim(&claim_req(10, "a")).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let Claimed::Corrupt { lease, error } = &claimed[1] else {
        panic!("the damaged row must be claimed as corrupt: {claimed:?}")
    };
    assert_eq!(lease.id, ids[1]);
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    assert!(matches!(claimed[0], Claimed::Ready(_)));
    let outcome = Outcome::new(lease.clone(), OutcomeKind::dead(error.to_string()));
    assert_eq!(
        store
            .apply(std::slice::from_ref(&outcome), &ApplyOptions::new(T0))
            .await
            .unwrap(),
        vec![Applied::Done]
    );
    assert_eq!(
        store
            .apply(&[outcome], &ApplyOptions::new(T0))
            .await
            .unwrap(),
        vec![Applied::Stale]
    );
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t")
        .sizes;
    assert_eq!((sizes.input, sizes.work, sizes.dead), (0, 2, 1));
}

#[tokio::test]
async fn a_schema_newer_than_the_code_is_refused_clearly() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    enqueue(&store, tasks("t", 0..3)).await;
    drop(store);
    let future = i64::from(LAYOUT_VERSION) + 1;
    raw(&path)
        .pragma_update(None, "user_version", future)
        .unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("version {future}")) && message.contains("newer"),
        "the message says what is wrong: {message}"
    );
    // Refusing changed nothing: the newer version and the tasks are still there.
    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, future);
    let count: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn files_that_are_not_taskmill_stores_are_refused() {
    let dir = temp_dir();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

    let other = dir.path().join("other.db");
    raw(&other)
        .pragma_update(None, "application_id", 1234)
        .unwrap();
    let err = SqliteStore::open(&other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");

    let missing_dir = dir.path().join("no/such/dir/tasks.db");
    let err = SqliteStore::open(&missing_dir).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
}

/// Every id and payload of `ids` is stored intact.
async fn assert_intact(store: &SqliteStore, ids: &[TaskId]) {
    for (n, id) in ids.iter().enumerate() {
        let record = store.get(*id).await.unwrap().expect("still stored");
        assert_eq!(record.args.decode::<u64>().unwrap(), n as u64);
    }
}

#[tokio::test]
async fn a_read_only_database_refuses_writes_and_loses_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&store, tasks("t", 0..20)).await;
    drop(store);

    let ro = SqliteStore::open_with(&path, SqliteOptions::default().read_only(true))
        .await
        .unwrap();
    assert_eq!(
        ro.stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        20
    );
    let err = ro
        .enqueue(tasks("t", 20..25), &EnqueueOptions::new(T0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let err = ro.claim(&claim_req(5, "a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    drop(ro);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        20
    );
    assert_intact(&store, &ids).await;
}

/// A full disk, simulated by capping the file's size: the batch that does not fit fails
/// with `Storage` as a whole, and everything stored before it stays.
#[tokio::test]
async fn a_full_database_refuses_the_batch_and_loses_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let capped = SqliteOptions::default().max_size(512 * 1024);
    let store = SqliteStore::open_with(&path, capped).await.unwrap();
    let pad = "x".repeat(1000);
    let mut stored: Vec<TaskId> = Vec::new();
    let mut refused = None;
    for batch in 0..100u64 {
        let batch_tasks = (0..50)
            .map(|i| Task::new("t", &(batch * 50 + i, &pad)).unwrap())
            .collect();
        match store.enqueue(batch_tasks, &EnqueueOptions::new(T0)).await {
            Ok(results) => stored.extend(results.iter().map(|r| r.id())),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("a 512 KiB database cannot hold 5 MB of tasks");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(!stored.is_empty());
    let stats = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total;
    assert_eq!(
        stats.sizes.input,
        stored.len() as u64,
        "no part of the batch"
    );
    assert_eq!(stats.counters.enqueued, stored.len() as u64);
    // Claims and outcomes still work on a full database (they do not grow it).
    let claimed = store.claim(&claim_req(5, "a")).await.unwrap();
    assert_eq!(claimed.len(), 5);
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    for (n, id) in stored.iter().enumerate() {
        let record = store.get(*id).await.unwrap().expect("still stored");
        let (k, _): (u64, String) = record.args.decode().unwrap();
        assert_eq!(k, n as u64);
    }
    let more = enqueue(&store, tasks("t", 0..10)).await;
    assert_eq!(more.len(), 10, "without the cap, writes work again");
}

/// Another connection holding the write lock past the busy timeout makes calls fail
/// with `Unavailable` (retryable), not hang.
#[tokio::test]
async fn a_lock_held_elsewhere_is_unavailable_after_the_busy_timeout() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let options = SqliteOptions::default()
        .busy_timeout(Duration::from_millis(100))
        .durability(Durability::Full);
    let store = SqliteStore::open_with(&path, options).await.unwrap();
    enqueue(&store, tasks("t", 0..2)).await;
    let conn = raw(&path);
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let err = store
        .enqueue(tasks("t", 2..3), &EnqueueOptions::new(T0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        2
    );
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(enqueue(&store, tasks("t", 2..3)).await.len(), 1);
}

/// Two connections on one file (as two processes would have) claim concurrently: no task
/// is handed to both, and every task is handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_on_one_file_never_share_a_task() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    let total = 2000u64;
    for chunk in 0..4 {
        enqueue(&a, tasks("t", chunk * 500..(chunk + 1) * 500)).await;
    }
    let worker = |store: SqliteStore, owner: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..10_000 {
                let claimed = store.claim(&claim_req(7, owner)).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                let outcomes: Vec<Outcome> = claimed
                    .iter()
                    .map(|c| match c {
                        Claimed::Ready(r) => {
                            mine.push(r.id);
                            Outcome::new(LeaseRef::of(r), OutcomeKind::complete())
                        }
                        Claimed::Corrupt { lease, .. } => panic!("corrupt {}", lease.id),
                    })
                    .collect();
                let applied = store
                    .apply(&outcomes, &ApplyOptions::new(T0))
                    .await
                    .unwrap();
                assert!(applied.iter().all(|a| *a == Applied::Done));
            }
            mine
        })
    };
    let (ra, rb) = tokio::join!(worker(a.clone(), "a"), worker(b, "b"));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all: HashSet<TaskId> = ra.iter().chain(&rb).copied().collect();
    assert_eq!(
        ra.len() + rb.len(),
        total as usize,
        "each task claimed once"
    );
    assert_eq!(all.len(), total as usize);
    let c = a.stats(&taskmill_testkit::all_due()).await.unwrap().total;
    assert_eq!(
        (c.counters.completed, c.sizes.active(), c.sizes.completed),
        (total, 0, total)
    );
}

/// Listing shows what can be read of a damaged row, so an admin can find it.
#[tokio::test]
async fn list_shows_corrupt_rows() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&store, tasks("t", 0..3)).await;
    raw(&path)
        .execute(
            "UPDATE tasks SET args = 'not json' WHERE id = ?1",
            [ids[2].get() as i64],
        )
        .unwrap();
    let page = store.list(&ListOptions::new(Queue::Input)).await.unwrap();
    assert_eq!(page.tasks.len(), 3);
    assert_eq!(page.tasks[2].args.as_str(), "not json");
}

/// Headers are stored as a JSON object of strings, and none at all (NULL) for a task
/// without them. A stored object with a repeated key reads with the last value; one that
/// is not an object of strings makes the record `Corrupt` for `get` and `claim`, while a
/// listing still shows the rest of it, with no headers.
#[tokio::test]
async fn headers_are_a_json_object_and_damaged_ones_are_reported() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(
        &store,
        vec![
            Task::new("t", &0).unwrap().header("b", "2").unwrap(),
            Task::new("t", &1).unwrap(),
            Task::new("t", &2).unwrap(),
            Task::new("t", &3).unwrap(),
        ],
    )
    .await;
    let conn = raw(&path);
    let stored = |id: TaskId| -> Option<String> {
        conn.query_row(
            "SELECT headers FROM tasks WHERE id = ?1",
            [id.get() as i64],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(stored(ids[0]).as_deref(), Some(r#"{"b":"2"}"#));
    assert_eq!(stored(ids[1]), None, "no headers, no text");
    let set = |id: TaskId, json: &str| {
        conn.execute(
            "UPDATE tasks SET headers = ?2 WHERE id = ?1",
            rusqlite::params![id.get() as i64, json],
        )
        .unwrap();
    };
    set(ids[1], r#"{"b":"1","a":"x","b":"3"}"#);
    set(ids[2], r#"{"a":1}"#);
    set(ids[3], "[not json");
    let repeated = get(&store, ids[1]).await.headers;
    assert_eq!(
        repeated.iter().collect::<Vec<_>>(),
        [("a", "x"), ("b", "3")]
    );
    for id in [ids[2], ids[3]] {
        let error = store.get(id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
        assert!(error.to_string().contains("headers"), "{error}");
    }
    let page = store.list(&ListOptions::new(Queue::Input)).await.unwrap();
    assert_eq!(page.tasks.len(), 4);
    assert!(page.tasks[2].headers.is_empty() && page.tasks[3].headers.is_empty());
    let claimed = store.claim(&claim_req(10, "a")).await.unwrap();
    let corrupt: Vec<TaskId> = claimed
        .iter()
        .filter_map(|c| match c {
            Claimed::Corrupt { lease, .. } => Some(lease.id),
            Claimed::Ready(_) => None,
        })
        .collect();
    assert_eq!(corrupt, [ids[2], ids[3]]);
}

/// Processes starting together on a new file all get a store: one creates the schema, the
/// others wait for it instead of failing on the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_opens_of_a_new_file_all_succeed() {
    for round in 0..100 {
        let dir = temp_dir();
        let path = dir.path().join("tasks.db");
        let (a, b, c) = tokio::join!(
            SqliteStore::open(&path),
            SqliteStore::open(&path),
            SqliteStore::open(&path)
        );
        for store in [a, b, c] {
            let store = store.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(
                store
                    .stats(&taskmill_testkit::all_due())
                    .await
                    .unwrap()
                    .total
                    .sizes
                    .total(),
                0
            );
        }
    }
}

/// A cancel made through another connection (as another process would) reaches the
/// manager that runs the task through its renewal, which the store refuses: the
/// cancellation streams are per handle.
#[tokio::test]
async fn a_cancel_from_another_connection_is_learnt_at_renewal() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    let ids = enqueue(&a, tasks("t", 0..3)).await;
    let running = ready(a.claim(&claim_req(2, "m1")).await.unwrap());
    let leases: Vec<LeaseRef> = running.iter().map(LeaseRef::of).collect();
    let mut a_cancels = a.cancellations().await.unwrap();
    let mut b_cancels = b.cancellations().await.unwrap();
    let mut b_events = b.subscribe().await.unwrap();

    let unknown = TaskId::new(1_000);
    let results = b
        .cancel(&[ids[0], ids[2], unknown], &CancelOptions::new(T0, "ops"))
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            Cancellation::Requested,
            Cancellation::Cancelled,
            Cancellation::NotFound
        ]
    );
    let heard = tokio::time::timeout(Duration::from_secs(5), b_cancels.next()).await;
    assert_eq!(
        heard.unwrap(),
        Some(ids[0]),
        "the cancelling handle's stream"
    );
    assert!(
        a_cancels.next().now_or_never().is_none(),
        "another handle's stream hears nothing"
    );
    let event = tokio::time::timeout(Duration::from_secs(5), b_events.next()).await;
    match event.unwrap() {
        Some(Event::TaskCancelled {
            id,
            by,
            was_running,
            ..
        }) => assert_eq!(
            (id, by.as_deref(), was_running),
            (ids[2], Some("ops"), false)
        ),
        other => panic!("expected the waiting task's TaskCancelled, got {other:?}"),
    }

    let later = T0 + Duration::from_secs(60);
    let renewed = a.renew(&leases, &RenewOptions::new(later)).await.unwrap();
    assert_eq!(renewed, vec![Applied::Cancelled, Applied::Done]);
    let cancelled_run = get(&a, ids[0]).await;
    assert_eq!(
        cancelled_run.lease.unwrap().deadline,
        T0 + LEASE,
        "not extended"
    );
    assert_eq!(cancelled_run.cancelled_by.as_deref(), Some("ops"));
    assert_eq!(get(&a, ids[1]).await.lease.unwrap().deadline, later);

    // The run goes on until it ends: its progress is stored, its outcome ends it CANCELLED.
    let value = Payload::new(&serde_json::json!({"done": 3})).unwrap();
    let progress = Progress {
        lease: leases[0].clone(),
        value: value.clone(),
    };
    assert_eq!(
        a.progress(&[progress]).await.unwrap(),
        vec![Applied::Cancelled]
    );
    let result = Payload::new(&"partial").unwrap();
    let outcome = Outcome::new(
        leases[0].clone(),
        OutcomeKind::complete_with(Some(result.clone())),
    );
    let applied = a
        .apply(&[outcome], &ApplyOptions::new(later))
        .await
        .unwrap();
    assert_eq!(applied, vec![Applied::Cancelled]);
    let record = get(&a, ids[0]).await;
    assert_eq!(record.queue, Queue::Cancelled);
    assert_eq!(
        (record.result, record.progress),
        (Some(result), Some(value))
    );
    assert_eq!((record.finished_at, record.attempt), (Some(later), 1));
    assert!(record.lease.is_none());

    let t = b
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    assert_eq!((t.counters.cancelled, t.counters.completed), (2, 0));
    assert_eq!((t.sizes.cancelled, t.sizes.work, t.sizes.input), (2, 1, 0));
    let again = b
        .cancel(&[ids[0]], &CancelOptions::new(later, "ops"))
        .await
        .unwrap();
    assert_eq!(again, vec![Cancellation::Refused(Queue::Cancelled)]);
}

/// A kept completion keeps the run's result and progress; one not kept removes the row;
/// a finished task frees its unique key unless it holds it while kept, until pruned.
#[tokio::test]
async fn completions_keep_or_remove_and_free_unique_keys() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    let ids = enqueue(
        &store,
        vec![
            Task::new("t", &0).unwrap().unique_key("a"),
            Task::new("t", &1)
                .unwrap()
                .unique_key("b")
                .unique_while_kept(),
            Task::new("t", &2).unwrap(),
        ],
    )
    .await;
    let running = ready(store.claim(&claim_req(3, "m1")).await.unwrap());
    let leases: Vec<LeaseRef> = running.iter().map(LeaseRef::of).collect();
    let reported = Payload::new(&10).unwrap();
    let last = Payload::new(&20).unwrap();
    let result = Payload::new(&"ok").unwrap();
    let stored = store
        .progress(&[Progress {
            lease: leases[0].clone(),
            value: reported.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(stored, vec![Applied::Done]);
    let outcomes = vec![
        Outcome::new(
            leases[0].clone(),
            OutcomeKind::complete_with(Some(result.clone())),
        ),
        Outcome::new(leases[1].clone(), OutcomeKind::complete()).progress(Some(last.clone())),
        Outcome::new(leases[2].clone(), OutcomeKind::complete()).keep(false),
    ];
    let applied = store
        .apply(&outcomes, &ApplyOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(applied, vec![Applied::Done; 3]);
    let again = store
        .apply(&outcomes, &ApplyOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(again, vec![Applied::Stale; 3], "applied once only");

    let a = get(&store, ids[0]).await;
    assert_eq!(a.queue, Queue::Completed);
    assert_eq!((a.result, a.progress), (Some(result), Some(reported)));
    assert_eq!((a.finished_at, a.attempt), (Some(T0), 1));
    assert!(a.lease.is_none());
    assert_eq!(
        a.unique_key.as_deref(),
        Some("a"),
        "the record still shows its key"
    );
    let b = get(&store, ids[1]).await;
    assert_eq!((b.result, b.progress), (None, Some(last)));
    assert_eq!(store.get(ids[2]).await.unwrap(), None, "not kept");
    let t = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    assert_eq!(
        (t.counters.completed, t.sizes.completed, t.sizes.work),
        (3, 2, 0)
    );

    let keys = |n: u64| {
        vec![
            Task::new("t", &n).unwrap().unique_key("a"),
            Task::new("t", &n).unwrap().unique_key("b"),
        ]
    };
    let first = enqueue_results(&store, keys(3)).await;
    assert!(first[0].is_new(), "a finished task frees its key");
    assert_eq!(first[1], Enqueued::Duplicate(ids[1]), "held while kept");

    let retention = Duration::from_secs(3600);
    let prune = |now| PruneOptions::new(now, retention);
    assert_eq!(store.prune(&prune(T0)).await.unwrap(), 0, "not due yet");
    assert_eq!(store.prune(&prune(T0 + retention)).await.unwrap(), 2);
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .topic("t")
            .sizes
            .completed,
        0
    );
    let second = enqueue_results(&store, keys(4)).await;
    assert_eq!(second[0], Enqueued::Duplicate(first[0].id()));
    assert!(second[1].is_new(), "pruning frees a key held while kept");
}

/// The task a schedule's tick `at` enqueues, with the headers a manager stamps on it.
fn tick(schedule: &str, at: Timestamp, overlap: Overlap) -> Tick {
    let task = Task::new("t", &at.as_millis())
        .unwrap()
        .header(SCHEDULE_HEADER, schedule)
        .unwrap()
        .header(TICK_HEADER, at.to_string())
        .unwrap();
    Tick::new(schedule, at, task, overlap)
}

/// Tick `n` of a schedule: one a minute from `T0`.
fn minute(n: u64) -> Timestamp {
    T0 + Duration::from_secs(60 * n)
}

/// Schedule states are rows of the file: reopened, it shows them as they were, and names
/// of any text (quotes, separators, unicode) are stored as given, listed in byte order.
#[tokio::test]
async fn schedules_survive_reopening_and_any_name_is_stored_as_given() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let names = [
        "reports/daily: 06:00",
        "Z",
        "évier ☕",
        "'); DROP TABLE schedules; --",
        "a\"b%_*",
    ];
    let entries: Vec<ScheduleEntry> = names
        .iter()
        .map(|n| ScheduleEntry::new(*n, "0 6 * * *", "Europe/Paris", "t"))
        .collect();
    let registered = store
        .register_schedules(&entries, &RegisterOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(
        registered.iter().map(|s| &*s.name).collect::<Vec<_>>(),
        names,
        "in the order given"
    );
    let fired = store
        .fire(
            vec![tick(names[0], minute(1), Overlap::Allow)],
            &EnqueueOptions::new(minute(1)),
        )
        .await
        .unwrap();
    let Fired::Enqueued(Enqueued::New(id)) = fired[0] else {
        panic!("not fired: {fired:?}")
    };
    assert!(store.set_schedule_paused(names[2], true).await.unwrap());
    assert!(!store.set_schedule_paused("unknown", true).await.unwrap());

    let before = store.schedules().await.unwrap();
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        before.iter().map(|s| &*s.name).collect::<Vec<_>>(),
        sorted,
        "by name, byte order"
    );
    let daily = before.iter().find(|s| &*s.name == names[0]).unwrap();
    assert_eq!(
        (
            daily.last_tick,
            daily.last_task,
            daily.fired_at,
            daily.seen_at
        ),
        (Some(minute(1)), Some(id), Some(minute(1)), T0)
    );
    assert_eq!((&*daily.spec, &*daily.zone), ("0 6 * * *", "Europe/Paris"));
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), before);
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.headers.get(SCHEDULE_HEADER), Some(names[0]));
    // The same tick again, after the reopen: the file remembers it was fired.
    let again = store
        .fire(
            vec![tick(names[0], minute(1), Overlap::Allow)],
            &EnqueueOptions::new(minute(2)),
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Fired::Stale { last: minute(1) }]);
    assert_eq!(
        store
            .prune_schedules(&PruneSchedulesOptions::new(T0 + Duration::from_millis(1)))
            .await
            .unwrap(),
        5
    );
    assert!(store.schedules().await.unwrap().is_empty());
    assert!(store.get(id).await.unwrap().is_some(), "its task stays");
}

/// Two handles on one file, as two processes would have, fire the same 200 ticks at once,
/// one tick per call so that their transactions interleave: each tick is enqueued by
/// exactly one of them, and the other is told it is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_firing_the_same_ticks_enqueue_each_once() {
    const TICKS: u64 = 200;
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let firer = |store: SqliteStore, start: Arc<tokio::sync::Barrier>| {
        tokio::spawn(async move {
            start.wait().await;
            let mut answers = Vec::with_capacity(TICKS as usize);
            for n in 0..TICKS {
                let at = minute(n);
                let fired = store
                    .fire(
                        vec![tick("every minute", at, Overlap::Allow)],
                        &EnqueueOptions::new(at),
                    )
                    .await
                    .unwrap();
                answers.push(fired.into_iter().next().unwrap());
            }
            answers
        })
    };
    let (ra, rb) = tokio::join!(firer(a.clone(), start.clone()), firer(b.clone(), start));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());

    let mut ids = HashSet::new();
    let mut enqueued_by_a = 0;
    for (n, (fa, fb)) in ra.iter().zip(&rb).enumerate() {
        let at = minute(n as u64);
        let enqueued: Vec<TaskId> = [fa, fb]
            .into_iter()
            .filter_map(|f| match f {
                Fired::Enqueued(Enqueued::New(id)) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(enqueued.len(), 1, "tick {n}: {fa:?} and {fb:?}");
        ids.insert(enqueued[0]);
        enqueued_by_a += usize::from(matches!(fa, Fired::Enqueued(_)));
        let other = if matches!(fa, Fired::Enqueued(_)) {
            fb
        } else {
            fa
        };
        assert!(
            matches!(other, Fired::Stale { last } if *last >= at),
            "tick {n}: the other answer is {other:?}"
        );
    }
    assert_eq!(ids.len(), TICKS as usize, "200 distinct tasks");
    let stats = a
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    assert_eq!((stats.counters.enqueued, stats.sizes.input), (TICKS, TICKS));
    let listed = a.list_all(Queue::Input, Some("t")).await.unwrap();
    assert_eq!(listed.len(), TICKS as usize);
    for record in &listed {
        let tick = record.schedule_tick().unwrap();
        assert_eq!(record.args.as_str(), tick.tick.as_millis().to_string());
    }
    let state = b.schedules().await.unwrap().remove(0);
    assert_eq!(state.last_tick, Some(minute(TICKS - 1)));
    assert!(ids.contains(&state.last_task.unwrap()));
    // Not a requirement, only a sign the two really ran side by side.
    eprintln!("handle a enqueued {enqueued_by_a} of {TICKS} ticks");
}

/// A fired tick is published like an enqueue, once its transaction committed: its event
/// carries the tick, and managers are woken. A tick that did not enqueue publishes nothing.
#[tokio::test]
async fn a_fired_tick_is_published_with_its_tick() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    let mut events = store.subscribe().await.unwrap();
    let mut wakeups = store.wakeups().await.unwrap();
    let fired = store
        .fire(
            vec![
                tick("s", minute(1), Overlap::Skip),
                tick("s", minute(2), Overlap::Skip),
            ],
            &EnqueueOptions::new(minute(2)),
        )
        .await
        .unwrap();
    let Fired::Enqueued(Enqueued::New(id)) = fired[0] else {
        panic!("{fired:?}")
    };
    assert_eq!(fired[1], Fired::Overlapped { running: id });
    match events.next().now_or_never() {
        Some(Some(Event::TaskEnqueue { id: got, tick, .. })) => {
            assert_eq!(got, id);
            let tick = tick.expect("the tick");
            assert_eq!((&*tick.schedule, tick.tick), ("s", minute(1)));
        }
        other => panic!("no enqueue event: {other:?}"),
    }
    assert!(events.next().now_or_never().is_none(), "one event only");
    assert!(wakeups.next().now_or_never().is_some(), "woken");
}
