//! The SQLite taskmill store: durable, embedded, and shareable by several processes.
//!
//! Tasks live in one SQLite database file (WAL mode, built with the bundled SQLite, so
//! nothing needs to be installed). A task whose enqueue returned `Ok` survives a crash of
//! the process at any instant, and several processes may open the same file: each claim
//! and each batch of outcomes is one `BEGIN IMMEDIATE` transaction, so SQLite's write lock
//! orders them, and leases with fencing tokens keep a task with one runner at a time.
//!
//! Every [`SqliteStore`] owns one connection, driven by a dedicated thread that runs the
//! store's calls one after another (the way sqlx drives SQLite): async callers send their
//! batch to it and await the answer, so no call blocks the async runtime, and one call is
//! one round trip whatever the size of its batch.
//!
//! ```no_run
//! use taskmill_sqlite::{Durability, SqliteOptions, SqliteStore};
//!
//! # async fn demo() -> taskmill_core::Result<()> {
//! let store = SqliteStore::open("tasks.db").await?;
//! let careful = SqliteStore::open_with(
//!     "critical.db",
//!     SqliteOptions::default().durability(Durability::Full),
//! )
//! .await?;
//! let by_url = SqliteStore::from_url("sqlite://tasks.db?durability=full").await?;
//! # Ok(()) }
//! ```
//!
//! See the crate README for durability, sharing a file between processes, and the layout
//! on disk.
#![warn(missing_docs)]

mod codec;
mod ops;
mod schema;
mod store;

pub use schema::SCHEMA_VERSION;

use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use taskmill_core::raw::{LocalBus, StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};
use tokio::sync::oneshot;

/// How hard a commit works to survive a power failure.
///
/// Both levels survive a crash of the process (kill -9) at any instant: a committed
/// transaction is in the write-ahead log, which the operating system holds. They differ
/// when the machine itself loses power or the kernel crashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous = NORMAL`: the log is synced at checkpoints, not at each
    /// commit. A power loss may roll back the last commits (the database stays
    /// consistent); a process crash loses nothing. The default, and much faster.
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`: each commit syncs the log before returning, so a
    /// commit that returned survives a power loss too.
    Full,
}

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How hard a commit works to survive a power failure. Default: [`Durability::Normal`].
    pub durability: Durability,
    /// How long a call waits for another process's write transaction before it fails
    /// with [`ErrorKind::Unavailable`](taskmill_core::ErrorKind::Unavailable).
    /// Default: 5 s.
    pub busy_timeout: Duration,
    /// How many events a subscriber may fall behind before it gets `Event::Lagged`.
    pub event_buffer: usize,
    /// Open the file read-only: reads work, every write fails with
    /// [`ErrorKind::Storage`](taskmill_core::ErrorKind::Storage). The file must already
    /// hold a taskmill schema. Default: false.
    pub read_only: bool,
    /// The largest the database may grow, in bytes (`PRAGMA max_page_count`); a write
    /// that would grow it further fails with
    /// [`ErrorKind::Storage`](taskmill_core::ErrorKind::Storage) and changes nothing, as
    /// on a full disk. Default: no limit.
    pub max_size: Option<u64>,
    pub(crate) in_memory: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
            event_buffer: DEFAULT_EVENT_BUFFER,
            read_only: false,
            max_size: None,
            in_memory: false,
        }
    }
}

impl SqliteOptions {
    /// Sets the durability level.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long to wait for another process's write transaction.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how far an event subscriber may fall behind.
    pub fn event_buffer(mut self, buffer: usize) -> Self {
        self.event_buffer = buffer;
        self
    }

    /// Opens the database read-only.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Caps the size of the database file.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

/// A job for the connection thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A taskmill store in a SQLite database.
///
/// Clones share one connection (and one event bus): hand one to several managers in a
/// process to have them share it. Another process, or another [`SqliteStore::open`] of the
/// same file, has its own connection; the file's locks and the leases keep them apart,
/// but events and wake-ups only reach subscribers of the same handle (other handles see
/// new work at their manager's next poll).
///
/// The connection thread stops, and the database is closed, when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: mpsc::Sender<Job>,
    bus: Arc<LocalBus>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    ///
    /// Async because opening runs on the store's connection thread: it creates or checks
    /// the schema, which may wait for another process's transaction.
    ///
    /// Fails with `Storage` when the file cannot be opened or written, `Corrupt` when it is
    /// not a SQLite database or has a schema newer than this build understands, and
    /// `Misuse` when it belongs to another application.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if needed) the database at `path`; see [`open`](Self::open).
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        Self::start(path.as_ref().to_path_buf(), options).await
    }

    /// A fresh database in memory, gone when the store is dropped: for tests. It is not
    /// durable and cannot be shared with another process.
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteOptions {
            in_memory: true,
            ..SqliteOptions::default()
        };
        Self::start(PathBuf::from(":memory:"), options).await
    }

    /// Opens the store a URL names: `sqlite://PATH[?OPTIONS]`.
    ///
    /// `sqlite://tasks.db` is relative to the working directory, `sqlite:///var/lib/x.db`
    /// absolute, and `sqlite://:memory:` a fresh in-memory database. The path is taken
    /// literally (no percent-decoding). Options, joined by `&`:
    /// `durability=normal|full`, `busy_timeout_ms=N`, `max_size=BYTES`,
    /// `read_only=true|false`.
    ///
    /// Fails with `Misuse` for a malformed URL or an unknown option, and otherwise as
    /// [`open`](Self::open).
    pub async fn from_url(url: &str) -> Result<Self> {
        let (path, options) = parse_url(url)?;
        Self::start(path, options).await
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn start(path: PathBuf, options: SqliteOptions) -> Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel::<Result<()>>();
        let thread_path = path.clone();
        let event_buffer = options.event_buffer;
        std::thread::Builder::new()
            .name("taskmill-sqlite".into())
            .spawn(move || {
                let mut conn = match connect(&thread_path, &options) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
                // Every handle is gone: the connection closes here, checkpointing the log.
            })
            .map_err(|e| {
                Error::unavailable("cannot start the SQLite connection thread").with_source(e)
            })?;
        opened.await.map_err(|_| {
            Error::storage(format!(
                "the SQLite connection thread for {} stopped while opening it",
                path.display()
            ))
        })??;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                jobs,
                bus: Arc::new(LocalBus::new(event_buffer)),
                path,
            }),
        })
    }

    /// Runs `f` on the connection thread and returns its result.
    ///
    /// If the caller's future is dropped, `f` still runs to completion (or not at all):
    /// a transaction is never cut in half.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &LocalBus) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let bus = self.shared.bus.clone();
        let job: Job = Box::new(move |conn| {
            // A bug must not take the thread (and with it every later call) down; the
            // open transaction rolls back as the panic unwinds through it.
            if let Ok(result) = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn, &bus))) {
                let _ = reply.send(result);
            }
        });
        self.shared.jobs.send(job).map_err(|_| {
            Error::unavailable("the SQLite connection thread has stopped; reopen the store")
        })?;
        answer.await.map_err(|_| {
            Error::storage("the SQLite connection thread failed while running this call")
        })?
    }
}

/// Opens and sets up the connection, on the connection thread.
fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let conn = if options.in_memory {
        Connection::open_in_memory()
    } else {
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        Connection::open_with_flags(path, flags)
    };
    let mut conn = conn.map_err(|e| {
        codec::map_err(
            e,
            format!("cannot open the SQLite database {}", path.display()),
        )
    })?;
    schema::configure(&conn, path, options)?;
    schema::migrate(&mut conn, path, options.read_only)?;
    Ok(conn)
}

fn parse_url(url: &str) -> Result<(PathBuf, SqliteOptions)> {
    let url = StoreUrl::parse(url, &["sqlite"], "sqlite://PATH, e.g. sqlite://tasks.db")?;
    let path = url.location("database file")?;
    let mut options = SqliteOptions {
        in_memory: path == ":memory:",
        ..SqliteOptions::default()
    };
    for (key, value) in url.options() {
        let bad = || url.invalid(key, value);
        match key {
            "durability" => {
                options.durability = match value {
                    "normal" => Durability::Normal,
                    "full" => Durability::Full,
                    _ => return Err(bad()),
                }
            }
            "busy_timeout_ms" => {
                options.busy_timeout = Duration::from_millis(value.parse().map_err(|_| bad())?)
            }
            "max_size" => options.max_size = Some(value.parse().map_err(|_| bad())?),
            "read_only" => options.read_only = value.parse().map_err(|_| bad())?,
            _ => {
                let known = ["durability", "busy_timeout_ms", "max_size", "read_only"];
                return Err(url.unknown(key, &known));
            }
        }
    }
    Ok((PathBuf::from(path), options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmill_core::ErrorKind;

    fn pragma(conn: &Connection, name: &str) -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
    }

    #[test]
    fn connections_use_wal_and_the_chosen_durability() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = connect(&path, &SqliteOptions::default()).unwrap();
        assert_eq!(pragma(&conn, "journal_mode"), "wal");
        assert_eq!(pragma(&conn, "synchronous"), "1", "NORMAL");
        assert_eq!(pragma(&conn, "busy_timeout"), "5000");
        assert_eq!(pragma(&conn, "user_version"), SCHEMA_VERSION.to_string());
        let full = SqliteOptions::default()
            .durability(Durability::Full)
            .busy_timeout(Duration::from_millis(250));
        let conn = connect(&path, &full).unwrap();
        assert_eq!(pragma(&conn, "synchronous"), "2", "FULL");
        assert_eq!(pragma(&conn, "busy_timeout"), "250");
    }

    #[test]
    fn urls_parse() {
        let (path, o) = parse_url("sqlite://data/tasks.db").unwrap();
        assert_eq!(path, PathBuf::from("data/tasks.db"));
        assert_eq!(o.durability, Durability::Normal);
        let (path, o) =
            parse_url("sqlite:///abs/t.db?durability=full&busy_timeout_ms=250").unwrap();
        assert_eq!(path, PathBuf::from("/abs/t.db"));
        assert_eq!(o.durability, Durability::Full);
        assert_eq!(o.busy_timeout, Duration::from_millis(250));
        assert!(parse_url("sqlite://:memory:").unwrap().1.in_memory);
        for bad in [
            "sqlite://",
            "redis://x",
            "sqlite://t.db?durability=lots",
            "sqlite://t.db?colour=blue",
        ] {
            assert_eq!(
                parse_url(bad).unwrap_err().kind(),
                ErrorKind::Misuse,
                "{bad}"
            );
        }
    }
}
