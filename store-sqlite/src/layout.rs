//! The data layout (the schema) and its version.
//!
//! The store creates and upgrades its own schema: `PRAGMA user_version` holds the version
//! of the layout below and `PRAGMA application_id` marks the file as taskmill's. A file
//! whose version is newer than [`LAYOUT_VERSION`] was written by a newer taskmill and is
//! refused rather than misread.

use crate::error::backend_error;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use taskmill_core::{Error, Result};

/// The version of the data layout this code writes and understands, kept in the file's
/// `PRAGMA user_version`.
pub const LAYOUT_VERSION: u32 = 1;

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

/// Version 1.
///
/// `tasks.state` splits INPUT the way the memory store does: `0` (ready: due when last
/// looked at, claimed by `(priority, id)`) and `1` (scheduled: waiting for `run_at`); a
/// claim first promotes the scheduled tasks of its topic that fell due. `2` is WORK and
/// `3` is DEAD. Each index is partial, so a task sits in exactly the index of its state
/// and every claim, promotion and reaper pass is an index range scan: O(log n + k) in the
/// size of the backlog.
///
/// `topics` holds each topic's counters and queue sizes (updated in the transaction of
/// every move, so they never drift) and its paused flag. `meta` holds the last task id
/// and the last fencing token handed out, so neither is ever reused, even after the
/// newest task is deleted.
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
";

/// Creates the schema in an empty database, checks the version of an existing one.
pub fn migrate(conn: &mut Connection, path: &Path, read_only: bool) -> Result<()> {
    let ctx = || format!("cannot read the schema of {}", path.display());
    // IMMEDIATE: two processes opening a fresh file at once must not both create tables.
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
        return Err(Error::storage(format!(
            "{} has no taskmill schema yet and is opened read-only, so none can be created",
            path.display()
        )));
    }
    if version == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('tasks', 'topics', 'meta')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| backend_error(e, ctx()))?;
        if tables != 0 {
            return Err(Error::misuse(format!(
                "{} already has tables named like taskmill's but no taskmill layout version; \
                 refusing to touch it",
                path.display()
            )));
        }
        let create = || format!("cannot create the taskmill schema in {}", path.display());
        tx.execute_batch(SCHEMA_V1)
            .map_err(|e| backend_error(e, create()))?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| backend_error(e, create()))?;
    }
    // Later versions add their steps here, each from the version before it.
    tx.pragma_update(None, "user_version", LAYOUT_VERSION)
        .map_err(|e| backend_error(e, ctx()))?;
    tx.commit().map_err(|e| backend_error(e, ctx()))
}
