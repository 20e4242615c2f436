//! Files written by an older layout: upgraded in place when opened read-write, left alone
//! (with an error naming the fix) when the upgrade cannot run.
//!
//! Each test builds a file of an older version (1, 2 or 3) with the SQL that version
//! wrote, as an older taskmill-sqlite left it, then opens it with this build.

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired, LeaseRef,
    ListOptions, Outcome, OutcomeKind, PruneOptions, RegisterOptions, RenewOptions, ScheduleEntry,
    Tick, TopicClaim,
};
use taskmill_core::{ErrorKind, Overlap, Queue, Store, Task, TaskId, Timestamp};
use taskmill_sqlite::{SqliteOptions, SqliteStore, LAYOUT_VERSION};
use taskmill_testkit::{enqueue_results, temp_dir, T0};

/// The schema of layout version 1, as `taskmill-sqlite` wrote it.
const SCHEMA_V1: &str = "
CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    state          INTEGER NOT NULL,
    topic          TEXT NOT NULL,
    priority       INTEGER NOT NULL,
    run_at         INTEGER NOT NULL,
    args           TEXT NOT NULL,
    external_id    TEXT,
    attempt        INTEGER NOT NULL,
    max_retries    INTEGER NOT NULL,
    enqueued_at    INTEGER NOT NULL,
    unique_key     TEXT,
    last_error     TEXT,
    failed_at      INTEGER,
    lease_owner    TEXT,
    lease_token    INTEGER,
    lease_deadline INTEGER
);
CREATE INDEX tasks_ready     ON tasks (topic, priority, id) WHERE state = 0;
CREATE INDEX tasks_scheduled ON tasks (topic, run_at)       WHERE state = 1;
CREATE INDEX tasks_leases    ON tasks (lease_deadline)      WHERE state = 2;
CREATE INDEX tasks_dead      ON tasks (id)                  WHERE state = 3;
CREATE UNIQUE INDEX tasks_unique ON tasks (topic, unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE topics (
    topic     TEXT PRIMARY KEY,
    enqueued  INTEGER NOT NULL DEFAULT 0,
    started   INTEGER NOT NULL DEFAULT 0,
    retried   INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    released  INTEGER NOT NULL DEFAULT 0,
    requeued  INTEGER NOT NULL DEFAULT 0,
    input     INTEGER NOT NULL DEFAULT 0,
    work      INTEGER NOT NULL DEFAULT 0,
    dead      INTEGER NOT NULL DEFAULT 0,
    paused    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('last_id', 0), ('last_token', 0);
PRAGMA application_id = 0x544D494C;
PRAGMA user_version = 1;
";

const ENQUEUED_AT: i64 = T0.as_millis() - 60_000;
const FAILED_AT: i64 = T0.as_millis() - 5_000;
const RETRY_AT: i64 = T0.as_millis() + 60_000;
const LEASE_DEADLINE: i64 = T0.as_millis() + 30_000;

/// A version 1 file holding one task in each state its layout had: 1 ready with a unique
/// key, 2 retrying (scheduled, with the error of its first attempt), 3 running under
/// token 7, 4 dead; and topic `t`'s counters for that history (5 started: 1, 2, 3 and 4
/// three times, after 2 retried once and 4 failed).
fn version_1_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    let rows = format!(
        "INSERT INTO tasks (id, state, topic, priority, run_at, args, attempt, max_retries,
             enqueued_at, unique_key, last_error, failed_at, lease_owner, lease_token,
             lease_deadline) VALUES
         (1, 0, 't', 0, {e}, '1', 0, 3, {e}, 'k1', NULL, NULL, NULL, NULL, NULL),
         (2, 1, 't', 0, {r}, '2', 1, 3, {e}, NULL, 'boom', NULL, NULL, NULL, NULL),
         (3, 2, 't', 0, {e}, '3', 1, 3, {e}, NULL, NULL, NULL, 'm1', 7, {d}),
         (4, 3, 't', 0, {e}, '4', 3, 2, {e}, 'k4', 'fatal', {f}, NULL, NULL, NULL);
         INSERT INTO topics (topic, enqueued, started, retried, failed, input, work, dead)
             VALUES ('t', 4, 5, 1, 1, 2, 1, 1);
         UPDATE meta SET value = 4 WHERE key = 'last_id';
         UPDATE meta SET value = 7 WHERE key = 'last_token';",
        e = ENQUEUED_AT,
        r = RETRY_AT,
        d = LEASE_DEADLINE,
        f = FAILED_AT,
    );
    conn.execute_batch(&rows).unwrap();
}

fn version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn id(n: u64) -> TaskId {
    TaskId::new(n)
}

/// The names of the tables of the file.
fn tables(path: &Path) -> Vec<String> {
    Connection::open(path)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// An upgraded file keeps schedules (new in version 4): one registered and fired gets
/// task `expected` (the ids go on from the old file's), and keeps its state across a
/// reopen.
async fn schedules_work(store: SqliteStore, path: &Path, expected: TaskId) {
    let entry = ScheduleEntry::new("nightly", "0 3 * * *", "UTC", "t");
    store
        .register_schedules(&[entry], &RegisterOptions::new(T0))
        .await
        .unwrap();
    let tick =
        |at: Timestamp| Tick::new("nightly", at, Task::new("t", &0).unwrap(), Overlap::Allow);
    let fired = store
        .fire(vec![tick(T0)], &EnqueueOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(fired, vec![Fired::Enqueued(Enqueued::New(expected))]);
    let states = store.schedules().await.unwrap();
    drop(store);
    let store = SqliteStore::open(path).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), states);
    assert_eq!(states[0].last_task, Some(expected));
    let again = store
        .fire(vec![tick(T0)], &EnqueueOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(again, vec![Fired::Stale { last: T0 }]);
}

#[tokio::test]
async fn a_version_1_file_is_upgraded_in_place_and_keeps_every_task() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_1_file(&path);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(version(&path), i64::from(LAYOUT_VERSION));

    let t = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    let (c, s) = (t.counters, t.sizes);
    assert_eq!(
        (c.enqueued, c.started, c.retried, c.failed, c.cancelled),
        (4, 5, 1, 1, 0),
        "counters carried over, the new one at zero"
    );
    assert_eq!(
        (s.input, s.work, s.dead, s.completed, s.cancelled),
        (2, 1, 1, 0, 0)
    );

    let ready = store.get(id(1)).await.unwrap().unwrap();
    assert_eq!(ready.queue, Queue::Input);
    assert_eq!(
        ready.max_retries,
        Some(3),
        "version 1 resolved it at enqueue"
    );
    assert_eq!(ready.unique_key.as_deref(), Some("k1"));
    assert!(ready.errors.is_empty() && ready.finished_at.is_none());

    let retrying = store.get(id(2)).await.unwrap().unwrap();
    assert_eq!(retrying.run_at, Timestamp::from_millis(RETRY_AT));
    assert_eq!(retrying.errors.len(), 1);
    let error = &retrying.errors[0];
    assert_eq!(
        (error.attempt, error.at, &*error.message),
        (1, Timestamp::from_millis(ENQUEUED_AT), "boom"),
        "the last error, of the attempt it was stored for, at the closest time known"
    );
    assert_eq!(retrying.finished_at, None);

    let dead = store.get(id(4)).await.unwrap().unwrap();
    assert_eq!(dead.queue, Queue::Dead);
    assert_eq!(dead.last_error(), Some("fatal"));
    assert_eq!(dead.errors[0].attempt, 3);
    assert_eq!(dead.errors[0].at, Timestamp::from_millis(FAILED_AT));
    assert_eq!(dead.finished_at, Some(Timestamp::from_millis(FAILED_AT)));

    // The running task's lease still holds: renew, then complete it into COMPLETED.
    let running = store.get(id(3)).await.unwrap().unwrap();
    let lease = LeaseRef::of(&running);
    assert_eq!(lease.token, 7);
    let renewed = store
        .renew(
            std::slice::from_ref(&lease),
            &RenewOptions::new(T0 + Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(renewed, vec![Applied::Done]);
    let applied = store
        .apply(
            &[Outcome::new(lease, OutcomeKind::complete())],
            &ApplyOptions::new(T0),
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![Applied::Done]);
    let completed = store
        .list(&ListOptions::new(Queue::Completed).topic("t"))
        .await
        .unwrap();
    assert_eq!(completed.tasks.len(), 1);
    assert_eq!(completed.tasks[0].finished_at, Some(T0));

    // Unique keys still hold, ids and tokens go on from where version 1 left them.
    let again = enqueue_results(
        &store,
        vec![
            Task::new("t", &5).unwrap().unique_key("k1"),
            Task::new("t", &6).unwrap(),
        ],
    )
    .await;
    assert_eq!(again[0].id(), id(1), "k1 is still held: {again:?}");
    assert!(again[1].is_new() && again[1].id() > id(4));
    let claimed = store
        .claim(&ClaimOptions::new([TopicClaim::new("t")], 10, "m2", T0))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "the ready task and the new one");
    for c in &claimed {
        let Claimed::Ready(r) = c else {
            panic!("corrupt claim: {c:?}")
        };
        assert!(r.lease.as_ref().unwrap().token > 7);
    }

    // The finished task can be pruned; reopening upgrades nothing again.
    let pruned = store
        .prune(&PruneOptions::new(T0, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        stats
    );
    assert_eq!(version(&path), i64::from(LAYOUT_VERSION));
    assert!(tables(&path).contains(&"schedules".to_owned()));
    schedules_work(store, &path, id(6)).await;
}

/// An upgrade that fails part way (here: a table in the way of the one it builds) is
/// rolled back whole: the file is still a readable version 1 file.
#[tokio::test]
async fn a_failed_upgrade_changes_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_1_file(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE tasks_v2 (x INTEGER)")
        .unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(
        err.to_string().contains("nothing was changed"),
        "the message says the file is intact: {err}"
    );
    assert_eq!(version(&path), 1);
    let conn = Connection::open(&path).unwrap();
    let errors: Vec<Option<String>> = conn
        .prepare("SELECT last_error FROM tasks ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        errors,
        vec![None, Some("boom".into()), None, Some("fatal".into())],
        "the version 1 table, as it was"
    );
}

/// Read-only, an old file cannot be upgraded: the error says how to fix it, and the file
/// stays as it was.
#[tokio::test]
async fn a_version_1_file_opened_read_only_is_refused_with_the_fix() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_1_file(&path);
    let err = SqliteStore::open_with(&path, SqliteOptions::default().read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("version 1") && message.contains("read-write"),
        "{message}"
    );
    assert_eq!(version(&path), 1);
    // Opened read-write once, it is upgraded, and then read-only works.
    drop(SqliteStore::open(&path).await.unwrap());
    let ro = SqliteStore::open_with(&path, SqliteOptions::default().read_only(true))
        .await
        .unwrap();
    assert_eq!(
        ro.stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .topic("t")
            .sizes
            .input,
        2
    );
}

/// The schema of layout version 2, as `taskmill-sqlite` wrote it.
const SCHEMA_V2: &str = "
CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    state             INTEGER NOT NULL,
    topic             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    args              TEXT NOT NULL,
    external_id       TEXT,
    attempt           INTEGER NOT NULL,
    max_retries       INTEGER,
    enqueued_at       INTEGER NOT NULL,
    unique_key        TEXT,
    unique_while_kept INTEGER NOT NULL DEFAULT 0,
    first_started_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    errors            TEXT,
    result            TEXT,
    progress          TEXT,
    cancelled_by      TEXT,
    lease_owner       TEXT,
    lease_token       INTEGER,
    lease_deadline    INTEGER
);
CREATE INDEX tasks_ready     ON tasks (topic, priority, id)  WHERE state = 0;
CREATE INDEX tasks_scheduled ON tasks (topic, run_at)        WHERE state = 1;
CREATE INDEX tasks_leases    ON tasks (lease_deadline)       WHERE state = 2;
CREATE INDEX tasks_dead      ON tasks (id)                   WHERE state = 3;
CREATE INDEX tasks_history   ON tasks (topic, state, id)     WHERE state >= 4;
CREATE INDEX tasks_pruning   ON tasks (topic, finished_at)   WHERE state >= 4;
CREATE UNIQUE INDEX tasks_unique ON tasks (topic, unique_key)
    WHERE unique_key IS NOT NULL AND (state < 4 OR unique_while_kept);
CREATE TABLE topics (
    topic          TEXT PRIMARY KEY,
    enqueued       INTEGER NOT NULL DEFAULT 0,
    started        INTEGER NOT NULL DEFAULT 0,
    retried        INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    completed      INTEGER NOT NULL DEFAULT 0,
    recovered      INTEGER NOT NULL DEFAULT 0,
    released       INTEGER NOT NULL DEFAULT 0,
    requeued       INTEGER NOT NULL DEFAULT 0,
    input          INTEGER NOT NULL DEFAULT 0,
    work           INTEGER NOT NULL DEFAULT 0,
    dead           INTEGER NOT NULL DEFAULT 0,
    paused         INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    kept_completed INTEGER NOT NULL DEFAULT 0,
    kept_cancelled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('last_id', 0), ('last_token', 0);
PRAGMA application_id = 0x544D494C;
PRAGMA user_version = 2;
";

/// A version 2 file of topic `t`: 1 due since `ENQUEUED_AT`, 2 scheduled for `RETRY_AT`,
/// 3 completed (kept) at `FAILED_AT`; none has headers, a column version 2 did not have.
fn version_2_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_V2).unwrap();
    let rows = format!(
        "INSERT INTO tasks (id, state, topic, priority, run_at, args, attempt, max_retries,
             enqueued_at, first_started_at, started_at, finished_at, result) VALUES
         (1, 0, 't', 0, {e}, '1', 0, NULL, {e}, NULL, NULL, NULL, NULL),
         (2, 1, 't', 0, {r}, '2', 0, NULL, {e}, NULL, NULL, NULL, NULL),
         (3, 4, 't', 0, {e}, '3', 1, 3, {e}, {e}, {e}, {f}, 'null');
         INSERT INTO topics (topic, enqueued, started, completed, input, kept_completed)
             VALUES ('t', 3, 1, 1, 2, 1);
         UPDATE meta SET value = 3 WHERE key = 'last_id';
         UPDATE meta SET value = 1 WHERE key = 'last_token';",
        e = ENQUEUED_AT,
        r = RETRY_AT,
        f = FAILED_AT,
    );
    conn.execute_batch(&rows).unwrap();
}

/// The names of the indexes of `tasks`.
fn task_indexes(path: &Path) -> Vec<String> {
    Connection::open(path)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_version_2_file_gains_headers_and_the_earliest_run_at_in_place() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_2_file(&path);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(version(&path), i64::from(LAYOUT_VERSION));
    let indexes = task_indexes(&path);
    assert!(
        indexes.contains(&"tasks_waiting".to_owned())
            && !indexes.contains(&"tasks_scheduled".to_owned())
            && !indexes.contains(&"tasks_history".to_owned()),
        "{indexes:?}"
    );

    let t = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    assert_eq!((t.sizes.input, t.sizes.completed), (2, 1));
    assert_eq!(
        t.earliest_run_at,
        Some(Timestamp::from_millis(ENQUEUED_AT)),
        "the due task's, earlier than the scheduled one's"
    );
    for n in 1..=3 {
        let record = store.get(id(n)).await.unwrap().unwrap();
        assert!(record.headers.is_empty(), "task {n}: {:?}", record.headers);
    }
    let kept = store
        .list(&ListOptions::new(Queue::Completed).topic("t"))
        .await
        .unwrap();
    assert_eq!(kept.tasks.len(), 1);
    assert!(kept.tasks[0].headers.is_empty());

    // New tasks keep their headers beside the old rows; the scheduled one is promoted.
    let new = enqueue_results(
        &store,
        vec![Task::new("t", &4)
            .unwrap()
            .header("x-request-id", "r-1")
            .unwrap()],
    )
    .await[0]
        .id();
    assert_eq!(new, id(4));
    let later = Timestamp::from_millis(RETRY_AT);
    let claimed = store
        .claim(&ClaimOptions::new([TopicClaim::new("t")], 10, "m", later))
        .await
        .unwrap();
    let claimed: Vec<_> = claimed
        .into_iter()
        .map(|c| match c {
            Claimed::Ready(r) => (r.id, r.headers.get("x-request-id").map(str::to_owned)),
            other => panic!("corrupt claim: {other:?}"),
        })
        .collect();
    assert_eq!(
        claimed,
        [
            (id(1), None),
            (id(2), None),
            (id(4), Some("r-1".to_owned()))
        ]
    );
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .topic("t")
            .earliest_run_at,
        None
    );

    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        stats
    );
    schedules_work(store, &path, id(5)).await;
}

/// An upgrade from version 2 that fails (an index in the way of the one it builds) is
/// rolled back whole: the file is still a version 2 file, without the new column.
#[tokio::test]
async fn a_failed_upgrade_from_version_2_changes_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_2_file(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE INDEX tasks_waiting ON meta (value)")
        .unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("from version 2") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(version(&path), 2);
    assert!(task_indexes(&path).contains(&"tasks_scheduled".to_owned()));
    let has_headers: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'headers'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(has_headers, 0);
}

/// The schema of layout version 3, as `taskmill-sqlite` wrote it (no `schedules`).
const SCHEMA_V3: &str = "
CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    state             INTEGER NOT NULL,
    topic             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    args              TEXT NOT NULL,
    external_id       TEXT,
    attempt           INTEGER NOT NULL,
    max_retries       INTEGER,
    enqueued_at       INTEGER NOT NULL,
    unique_key        TEXT,
    unique_while_kept INTEGER NOT NULL DEFAULT 0,
    first_started_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    errors            TEXT,
    result            TEXT,
    progress          TEXT,
    cancelled_by      TEXT,
    lease_owner       TEXT,
    lease_token       INTEGER,
    lease_deadline    INTEGER,
    headers           TEXT
);
CREATE INDEX tasks_ready     ON tasks (topic, priority, id)  WHERE state = 0;
CREATE INDEX tasks_waiting   ON tasks (topic, state, run_at) WHERE state <= 1;
CREATE INDEX tasks_leases    ON tasks (lease_deadline)       WHERE state = 2;
CREATE INDEX tasks_dead      ON tasks (id)                   WHERE state = 3;
CREATE INDEX tasks_pruning   ON tasks (topic, finished_at)   WHERE state >= 4;
CREATE UNIQUE INDEX tasks_unique ON tasks (topic, unique_key)
    WHERE unique_key IS NOT NULL AND (state < 4 OR unique_while_kept);
CREATE TABLE topics (
    topic          TEXT PRIMARY KEY,
    enqueued       INTEGER NOT NULL DEFAULT 0,
    started        INTEGER NOT NULL DEFAULT 0,
    retried        INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    completed      INTEGER NOT NULL DEFAULT 0,
    recovered      INTEGER NOT NULL DEFAULT 0,
    released       INTEGER NOT NULL DEFAULT 0,
    requeued       INTEGER NOT NULL DEFAULT 0,
    input          INTEGER NOT NULL DEFAULT 0,
    work           INTEGER NOT NULL DEFAULT 0,
    dead           INTEGER NOT NULL DEFAULT 0,
    paused         INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    kept_completed INTEGER NOT NULL DEFAULT 0,
    kept_cancelled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('last_id', 0), ('last_token', 0);
PRAGMA application_id = 0x544D494C;
PRAGMA user_version = 3;
";

/// A version 3 file of topic `t`: 1 due with unique key `k1` and a header, 2 completed
/// (kept) at `FAILED_AT`.
fn version_3_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_V3).unwrap();
    let rows = format!(
        r#"INSERT INTO tasks (id, state, topic, priority, run_at, args, attempt, max_retries,
             enqueued_at, unique_key, first_started_at, started_at, finished_at, result,
             headers) VALUES
         (1, 0, 't', 0, {e}, '1', 0, NULL, {e}, 'k1', NULL, NULL, NULL, NULL, '{{"h":"v"}}'),
         (2, 4, 't', 0, {e}, '2', 1, 3, {e}, NULL, {e}, {e}, {f}, 'null', NULL);
         INSERT INTO topics (topic, enqueued, started, completed, input, kept_completed)
             VALUES ('t', 2, 1, 1, 1, 1);
         UPDATE meta SET value = 2 WHERE key = 'last_id';
         UPDATE meta SET value = 1 WHERE key = 'last_token';"#,
        e = ENQUEUED_AT,
        f = FAILED_AT,
    );
    conn.execute_batch(&rows).unwrap();
}

#[tokio::test]
async fn a_version_3_file_gains_schedules_in_place() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_3_file(&path);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(version(&path), i64::from(LAYOUT_VERSION));
    assert!(tables(&path).contains(&"schedules".to_owned()));
    assert!(store.schedules().await.unwrap().is_empty());
    let t = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("t");
    assert_eq!((t.sizes.input, t.sizes.completed), (1, 1));
    let due = store.get(id(1)).await.unwrap().unwrap();
    assert_eq!(due.headers.get("h"), Some("v"));
    let dup = enqueue_results(&store, vec![Task::new("t", &3).unwrap().unique_key("k1")]).await;
    assert_eq!(dup, vec![Enqueued::Duplicate(id(1))], "k1 is still held");
    schedules_work(store, &path, id(3)).await;
}

/// An upgrade from version 3 that fails (a table in the way of `schedules`) is rolled back
/// whole: the file is still a version 3 file.
#[tokio::test]
async fn a_failed_upgrade_from_version_3_changes_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_3_file(&path);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE schedules (x INTEGER)")
        .unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("from version 3") && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(version(&path), 3);
    let columns: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM pragma_table_info('schedules')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 1, "the table in the way, as it was");
}

/// Read-only, a version 3 file is refused with the fix, as older ones are, and left alone.
#[tokio::test]
async fn a_version_3_file_opened_read_only_is_refused_with_the_fix() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    version_3_file(&path);
    let err = SqliteStore::open_with(&path, SqliteOptions::default().read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("version 3") && message.contains("read-write"),
        "{message}"
    );
    assert_eq!(version(&path), 3);
    assert!(!tables(&path).contains(&"schedules".to_owned()));
}
