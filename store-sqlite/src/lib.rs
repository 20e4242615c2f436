#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod codec;
mod conn;
mod error;
/// Row decoding for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod layout;
mod ops;
mod options;
mod store;

pub use layout::LAYOUT_VERSION;
pub use options::{Durability, SqliteOptions};

use conn::Conn;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use taskmill_core::raw::LocalBus;
use taskmill_core::Result;

/// A taskmill store in a SQLite database.
///
/// Clones share one connection (and one event bus): hand one to several managers in a
/// process to have them share it. Another process, or another [`SqliteStore::open`] of the
/// same file, has its own connection; the file's locks and the leases keep them apart,
/// but events, wake-ups and cancel requests only reach subscribers of the same handle
/// (other handles see new work at their manager's next poll, and a cancel of a task they
/// run when their next renewal is refused).
///
/// The connection thread stops, and the database is closed, when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Conn,
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
    /// Opens (creating if needed) the database at `path` with default options;
    /// `":memory:"` opens a fresh database in memory, gone when the store is dropped (for
    /// tests: it is not durable and cannot be shared with another process).
    ///
    /// Async because opening runs on the store's connection thread: it creates or checks
    /// the schema, which may wait for another process's transaction.
    ///
    /// Fails with `Storage` when the file cannot be opened or written, `Corrupt` when it is
    /// not a SQLite database or has a layout newer than this build understands, and
    /// `Misuse` when it belongs to another application.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating if needed) the database at `path`; see [`open`](Self::open).
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bus = Arc::new(LocalBus::new(options.event_buffer));
        let conn = Conn::open(&path, options, bus.clone()).await?;
        Ok(SqliteStore {
            shared: Arc::new(Shared { conn, bus, path }),
        })
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
        let (path, options) = options::parse_url(url)?;
        Self::open_with(path, options).await
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}
