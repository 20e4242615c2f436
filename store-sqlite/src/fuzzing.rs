//! Row decoding (`codec.rs`) for the fuzz targets in `fuzz/` (issue #17): a row of
//! `tasks` or `schedules` made of any values, read as the store reads the rows it selects.
//! Not part of the API: hidden, unstable. Each row is a `SELECT` of bound values on an
//! in-memory database of this thread, which holds no table.

use crate::codec::{self, COLUMNS, SCHEDULE_COLUMNS};
use crate::error::backend_error;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use std::cell::RefCell;
use taskmill_core::store::ScheduleState;
use taskmill_core::{Result, TaskRecord, Timestamp};

/// A column's value, of any of SQLite's storage classes; text need not be UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text, as bytes.
    Text(Vec<u8>),
    /// A blob.
    Blob(Vec<u8>),
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(i) => ValueRef::Integer(*i),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(t) => ValueRef::Text(t),
            Cell::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// How many columns a row of [`decode_task`] has: those `codec::COLUMNS` lists.
pub fn task_columns() -> usize {
    COLUMNS.split(',').count()
}

/// How many columns a row of [`decode_schedule`] has.
pub fn schedule_columns() -> usize {
    SCHEDULE_COLUMNS.split(',').count()
}

thread_local! {
    static DB: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

/// Runs `read` on the row `SELECT ?1 AS <first column>, ?2 AS …` of `cells`, named as
/// `columns` lists them.
fn select<T>(
    columns: &str,
    cells: &[Cell],
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    DB.with(|db| {
        let mut db = db.borrow_mut();
        let db = match &mut *db {
            Some(db) => db,
            none => none.insert(Connection::open_in_memory()?),
        };
        let names: Vec<_> = columns.split(',').map(str::trim).collect();
        assert_eq!(cells.len(), names.len(), "one cell per column");
        let select: Vec<_> = (1..)
            .zip(&names)
            .map(|(i, name)| format!("?{i} AS {name}"))
            .collect();
        let mut statement = db.prepare_cached(&format!("SELECT {}", select.join(", ")))?;
        let params: Vec<&dyn ToSql> = cells.iter().map(|c| c as &dyn ToSql).collect();
        let mut rows = statement.query(params.as_slice())?;
        let row = rows.next()?.expect("one row");
        read(row)
    })
}

/// Reads `cells` (one per column of [`task_columns`], the first the id, an integer as
/// the rowid always is) as a row of `tasks`, strictly as `get` and claims do, payloads
/// checked: `Corrupt` for a column that cannot be read. Also returns the lenient record a
/// listing shows, which every row gives.
pub fn decode_task(cells: &[Cell]) -> (Result<TaskRecord>, TaskRecord) {
    let decoded = select(COLUMNS, cells, |row| codec::decode(row, None, true))
        .expect("a row of bound values reads");
    let lenient = decoded.record.clone();
    (decoded.strict(), lenient)
}

/// The row the store writes for `record` at `now`, in the order of `codec::COLUMNS`, as its
/// inserts and updates bind the values.
pub fn encode_task(record: &TaskRecord, now: Timestamp) -> Vec<Cell> {
    let text = |s: Option<&str>| s.map_or(Cell::Null, |s| Cell::Text(s.as_bytes().to_vec()));
    let time = |t: Option<Timestamp>| t.map_or(Cell::Null, |t| Cell::Int(t.as_millis()));
    let r = record;
    let lease = r.lease.as_ref();
    vec![
        Cell::Int(codec::sql_u64(r.id.get())),
        Cell::Int(codec::state_of(r.queue, r.run_at, now)),
        text(Some(&r.topic)),
        Cell::Int(r.priority.into()),
        Cell::Int(r.run_at.as_millis()),
        text(Some(r.args.as_str())),
        text(r.external_id.as_deref()),
        Cell::Int(r.attempt.into()),
        r.max_retries.map_or(Cell::Null, |m| Cell::Int(m.into())),
        Cell::Int(r.enqueued_at.as_millis()),
        text(r.unique_key.as_deref()),
        Cell::Int(r.unique_while_kept.into()),
        time(r.first_started_at),
        time(r.started_at),
        time(r.finished_at),
        text(codec::encode_errors(&r.errors).as_deref()),
        text(r.result.as_ref().map(|p| p.as_str())),
        text(r.progress.as_ref().map(|p| p.as_str())),
        text(r.cancelled_by.as_deref()),
        text(lease.map(|l| &*l.owner)),
        lease.map_or(Cell::Null, |l| Cell::Int(codec::sql_u64(l.token))),
        time(lease.map(|l| l.deadline)),
        text(codec::encode_headers(&r.headers).as_deref()),
    ]
}

/// Reads `cells` (one per column of [`schedule_columns`]) as a row of `schedules`;
/// `Corrupt` for a column of the wrong type.
pub fn decode_schedule(cells: &[Cell]) -> Result<ScheduleState> {
    select(SCHEDULE_COLUMNS, cells, codec::decode_schedule)
        .map_err(|e| backend_error(e, "cannot read a schedule"))
}

/// The row the store writes for a schedule's state, in the order of
/// `codec::SCHEDULE_COLUMNS`.
pub fn encode_schedule(state: &ScheduleState) -> Vec<Cell> {
    let text = |s: &str| Cell::Text(s.as_bytes().to_vec());
    let time = |t: Option<Timestamp>| t.map_or(Cell::Null, |t| Cell::Int(t.as_millis()));
    vec![
        text(&state.name),
        text(&state.spec),
        text(&state.zone),
        text(&state.topic),
        Cell::Int(state.paused.into()),
        time(state.last_tick),
        state
            .last_task
            .map_or(Cell::Null, |id| Cell::Int(codec::sql_u64(id.get()))),
        time(state.fired_at),
        Cell::Int(state.seen_at.as_millis()),
    ]
}

/// Parses a store URL as [`SqliteStore::from_url`](crate::SqliteStore::from_url) does,
/// without opening anything: the database file, or `Misuse` for a URL it does not take.
pub fn parse_url(url: &str) -> Result<std::path::PathBuf> {
    crate::options::parse_url(url).map(|(path, _)| path)
}
