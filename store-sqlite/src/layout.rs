//! The data layout (the schema), its version, and the upgrade from older versions.
//!
//! The store creates and upgrades its own schema: `PRAGMA user_version` holds the version
//! of the layout below and `PRAGMA application_id` marks the file as taskmill's. A file
//! whose version is newer than [`LAYOUT_VERSION`] was written by a newer taskmill and is
//! refused rather than misread; one whose version is older is upgraded in place, in the
//! same transaction that checks the version (see [`UPGRADE_V1`], [`UPGRADE_V2`] and
//! [`UPGRADE_V3`]).

use crate::error::backend_error;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;
use taskmill_core::{Error, Result};

/// The version of the data layout this code writes and understands, kept in the file's
/// `PRAGMA user_version`.
pub const LAYOUT_VERSION: u32 = 4;

/// `PRAGMA application_id` of a taskmill database: "TMIL" in ASCII.
pub const APPLICATION_ID: i64 = 0x544D_494C;

/// `tasks.state`: INPUT, due when last looked at (claimable by priority).
pub const READY: i64 = 0;
/// `tasks.state`: INPUT, waiting for its `run_at`.
pub const SCHEDULED: i64 = 1;
/// `tasks.state`: WORK.
pub const WORK: i64 = 2;
/// `tasks.state`: DEAD.
pub const DEAD: i64 = 3;
/// `tasks.state`: COMPLETED (kept until pruned).
pub const COMPLETED: i64 = 4;
/// `tasks.state`: CANCELLED (kept until pruned).
pub const CANCELLED: i64 = 5;

/// The `tasks` table of version 3 (unchanged in 4), created under `{name}` (the upgrade from version 1
/// builds it beside the old one, then renames it).
///
/// `state` splits INPUT the way the memory store does: `0` (ready: due when last looked
/// at, claimed by `(priority, id)`) and `1` (scheduled: waiting for `run_at`); a claim
/// first promotes the scheduled tasks of its topic that fell due. `2` is WORK, `3` DEAD,
/// `4` COMPLETED and `5` CANCELLED. `max_retries` is NULL until the first claim writes
/// the claiming topic's limit. `errors` is a JSON array of
/// [`AttemptError`](taskmill_core::AttemptError)s (NULL when empty), `result` and
/// `progress` JSON text, times milliseconds since the Unix epoch. `headers` is a JSON
/// object of strings, NULL when the task has none (so a task without headers writes no
/// text); it is the last column, so rows written before it existed read it as NULL.
const TASKS_TABLE: &str = "
CREATE TABLE {name} (
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
";

/// The indexes of `tasks`, version 3 (unchanged in 4).
///
/// Each is partial, so a task sits only in the indexes of its state, and every claim,
/// promotion, reaper pass and pruning is an index range scan: O(log n + k) in the number
/// of rows, whatever the other states hold.
///
/// - `tasks_waiting (topic, state, run_at)` holds all of INPUT, due (`0`) and scheduled
///   (`1`): a promotion is the range `(topic, 1, ..= now)`, and a topic's earliest
///   `run_at` is the first entry of `(topic, 0)` or of `(topic, 1)`, two seeks. Queries
///   repeat its condition (`state <= 1 AND state = ...`), SQLite's query planner does not
///   infer it from `state = 0`.
/// - `tasks_pruning (topic, finished_at)` is the one index of COMPLETED and CANCELLED: it
///   finds each topic's oldest finished rows, so pruning never reads a kept row that is
///   not due. Listings walk the rowid (one of a small topic reads the topic's range
///   here and sorts it) instead of a second index by id, which would cost
///   every kept completion one more entry (and one more page written per commit): a
///   kept completion is then an update of its row and one index entry, where a removed
///   one is a delete.
/// - `tasks_unique` holds the rows that [hold their unique
///   key](taskmill_core::TaskRecord::holds_unique_key): any row not finished, and finished
///   ones that asked for `unique_while_kept`. A row that finishes leaves the index in the
///   same update, which frees its key while the record keeps showing it. Queries that look
///   a key up repeat the index's condition word for word, so SQLite can use it.
const TASKS_INDEXES: &str = "
CREATE INDEX tasks_ready     ON tasks (topic, priority, id)  WHERE state = 0;
CREATE INDEX tasks_waiting   ON tasks (topic, state, run_at) WHERE state <= 1;
CREATE INDEX tasks_leases    ON tasks (lease_deadline)       WHERE state = 2;
CREATE INDEX tasks_dead      ON tasks (id)                   WHERE state = 3;
CREATE INDEX tasks_pruning   ON tasks (topic, finished_at)   WHERE state >= 4;
CREATE UNIQUE INDEX tasks_unique ON tasks (topic, unique_key)
    WHERE unique_key IS NOT NULL AND (state < 4 OR unique_while_kept);
";

/// The condition of `tasks_unique`, for the queries that look a key up.
pub const HOLDS_UNIQUE_KEY: &str = "(state < 4 OR unique_while_kept)";

/// The condition of `tasks_waiting`, for the queries that read it.
pub const IN_INPUT: &str = "state <= 1";

/// The other tables (unchanged since version 2).
///
/// `topics` holds each topic's counters, its queue sizes (`input`, `work`, `dead`,
/// `kept_completed`, `kept_cancelled`; updated in the transaction of every move, so they
/// never drift) and its paused flag. `meta` holds the last task id and the last fencing
/// token handed out, so neither is ever reused, even after the newest task is deleted.
const OTHER_TABLES: &str = "
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
";

/// The `schedules` table, new in version 4: one row per schedule, the
/// [`ScheduleState`](taskmill_core::store::ScheduleState) of `Store::fire` and
/// `Store::register_schedules`.
///
/// `name` is the schedule's name, bound as a parameter (any text up to 128 bytes: `:`,
/// `/`, spaces, unicode), and its `BINARY` collation compares the UTF-8 bytes, so
/// `ORDER BY name` is the byte order `Store::schedules` promises. `spec`, `zone` and
/// `topic` are what was registered last (empty `spec` and `zone` for a schedule fired
/// before any registration). `last_tick`, `last_task` and `fired_at` are NULL until the
/// first tick is fired (`last_task` and `fired_at` until the first one that enqueued);
/// times are milliseconds since the Unix epoch. `last_task` is a task id, not a foreign
/// key: the task may be pruned or deleted while the schedule keeps its id.
const SCHEDULES_TABLE: &str = "
CREATE TABLE schedules (
    name      TEXT PRIMARY KEY,
    spec      TEXT NOT NULL,
    zone      TEXT NOT NULL,
    topic     TEXT NOT NULL,
    paused    INTEGER NOT NULL DEFAULT 0,
    last_tick INTEGER,
    last_task INTEGER,
    fired_at  INTEGER,
    seen_at   INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 1 → 3, for a file written before finished tasks were kept (followed by
/// [`UPGRADE_V3`]).
///
/// `tasks` is rebuilt in the current layout (SQLite cannot make `max_retries` nullable in place): the new table
/// is filled from the old one, the old one dropped and the new one renamed, all in the
/// transaction that read the version, so a failure or a crash leaves the file at
/// version 1, untouched. Version 1 never kept a finished task, so every row stays in its
/// state; its `last_error` becomes the one entry of `errors` (the attempt it was stored
/// for, at `failed_at`, or at `enqueued_at` for a task that was retrying, the closest the
/// old layout knew), and `failed_at` of a DEAD task becomes `finished_at`; no task has
/// headers. `topics` gains its new columns, all zero.
const UPGRADE_V1: &str = "
INSERT INTO tasks_v2 (id, state, topic, priority, run_at, args, external_id, attempt,
    max_retries, enqueued_at, unique_key, finished_at, errors, lease_owner, lease_token,
    lease_deadline)
SELECT id, state, topic, priority, run_at, args, external_id, attempt, max_retries,
    enqueued_at, unique_key,
    CASE WHEN state = 3 THEN failed_at END,
    CASE WHEN last_error IS NOT NULL THEN json_array(json_object(
        'attempt', CASE WHEN state = 2 THEN max(attempt - 1, 0) ELSE attempt END,
        'at', coalesce(failed_at, enqueued_at),
        'message', last_error)) END,
    lease_owner, lease_token, lease_deadline
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v2 RENAME TO tasks;
ALTER TABLE topics ADD COLUMN cancelled      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN kept_completed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN kept_cancelled INTEGER NOT NULL DEFAULT 0;
";

/// Version 2 → 3: task headers, the index of INPUT by `run_at`, one index of finished
/// tasks instead of two (followed by [`UPGRADE_V3`]).
///
/// `headers` is added at the end of `tasks` (no row is rewritten: they all read it as
/// NULL, no headers), `tasks_scheduled (topic, run_at) WHERE state = 1` is replaced by
/// `tasks_waiting`, which also holds the due tasks, and `tasks_history` is dropped (see
/// [`TASKS_INDEXES`]). Building the new index reads the table once; it all runs in the
/// transaction that read the version, so a failure or a crash leaves the file at version
/// 2, untouched.
const UPGRADE_V2: &str = "
ALTER TABLE tasks ADD COLUMN headers TEXT;
DROP INDEX tasks_scheduled;
DROP INDEX tasks_history;
CREATE INDEX tasks_waiting ON tasks (topic, state, run_at) WHERE state <= 1;
";

/// Version 3 → 4: schedules.
///
/// Adds the empty [`SCHEDULES_TABLE`]; no existing row is read or rewritten, so it takes
/// no longer on a large file than on an empty one. It runs in the transaction that read
/// the version, so a failure leaves the file at version 3, untouched. Older files run
/// their own steps to version 3 first, in the same transaction.
const UPGRADE_V3: &str = SCHEDULES_TABLE;

/// Creates the schema in an empty database, upgrades an older one, checks the version of
/// one that is current.
pub fn migrate(conn: &mut Connection, path: &Path, read_only: bool) -> Result<()> {
    let ctx = || format!("cannot read the schema of {}", path.display());
    // IMMEDIATE: two processes opening a fresh (or old) file at once must not both create
    // or upgrade tables.
    let behavior = if read_only {
        TransactionBehavior::Deferred
    } else {
        TransactionBehavior::Immediate
    };
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(|e| backend_error(e, ctx()))?;
    let app_id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| backend_error(e, ctx()))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| backend_error(e, ctx()))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(Error::misuse(format!(
            "{} is a SQLite database of another application (application_id {app_id:#x}), \
             not a taskmill store",
            path.display()
        )));
    }
    let current = i64::from(LAYOUT_VERSION);
    if version > current {
        return Err(Error::corrupt(format!(
            "{} has taskmill layout version {version}, newer than the newest this build of \
             taskmill-sqlite understands ({LAYOUT_VERSION}): it was written by a newer \
             taskmill; upgrade taskmill to open it",
            path.display()
        )));
    }
    if version == current {
        return Ok(());
    }
    if read_only {
        return Err(Error::storage(if version == 0 {
            format!(
                "{} has no taskmill schema yet and is opened read-only, so none can be created",
                path.display()
            )
        } else {
            format!(
                "{} has taskmill layout version {version}, older than this build's \
                 ({LAYOUT_VERSION}), and is opened read-only, so it cannot be upgraded: open \
                 it once read-write to upgrade it",
                path.display()
            )
        }));
    }
    match version {
        0 => create(&tx, path)?,
        1 => upgrade(&tx, path, 1, &format!("{}{UPGRADE_V3}", upgrade_v1_steps()))?,
        2 => upgrade(&tx, path, 2, &format!("{UPGRADE_V2}{UPGRADE_V3}"))?,
        _ => upgrade(&tx, path, 3, UPGRADE_V3)?,
    }
    tx.pragma_update(None, "user_version", LAYOUT_VERSION)
        .map_err(|e| backend_error(e, ctx()))?;
    tx.commit().map_err(|e| backend_error(e, ctx()))
}

/// Creates the current schema in a file that has none.
fn create(tx: &Transaction<'_>, path: &Path) -> Result<()> {
    let tables: i64 = tx
        .query_row(
            "SELECT count(*) FROM sqlite_master \
             WHERE name IN ('tasks', 'topics', 'meta', 'schedules')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| backend_error(e, format!("cannot read the schema of {}", path.display())))?;
    if tables != 0 {
        return Err(Error::misuse(format!(
            "{} already has tables named like taskmill's but no taskmill layout version; \
             refusing to touch it",
            path.display()
        )));
    }
    let create = || format!("cannot create the taskmill schema in {}", path.display());
    let schema = format!(
        "{}{TASKS_INDEXES}{OTHER_TABLES}{SCHEDULES_TABLE}",
        TASKS_TABLE.replace("{name}", "tasks")
    );
    tx.execute_batch(&schema)
        .map_err(|e| backend_error(e, create()))?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(|e| backend_error(e, create()))
}

/// The steps of the upgrade from version 1 (see [`UPGRADE_V1`]).
fn upgrade_v1_steps() -> String {
    format!(
        "{}{UPGRADE_V1}{TASKS_INDEXES}",
        TASKS_TABLE.replace("{name}", "tasks_v2")
    )
}

/// Upgrades a file of layout `from` to the current one by running `steps`.
fn upgrade(tx: &Transaction<'_>, path: &Path, from: i64, steps: &str) -> Result<()> {
    tx.execute_batch(steps).map_err(|e| {
        backend_error(
            e,
            format!(
                "cannot upgrade the taskmill schema of {} from version {from} to \
                 {LAYOUT_VERSION} (nothing was changed)",
                path.display()
            ),
        )
    })
}
