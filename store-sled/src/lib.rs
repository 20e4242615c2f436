#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod codec;
mod conn;
mod error;
/// The record codec for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod layout;
mod ops;
mod options;
mod store;

pub use layout::LAYOUT_VERSION;
pub use options::{FlushPolicy, SledOptions};

use conn::{Command, Conn};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use taskmill_core::raw::LocalBus;
use taskmill_core::Result;

/// A durable store in a sled database directory.
///
/// Clones share the database (and its writer thread); the database closes, after a final
/// flush, when the last clone is dropped. That drop blocks until the flush is done and
/// sled has released the database's lock (usually a few milliseconds), so the same path
/// can be opened again right after it.
#[derive(Clone, Debug)]
pub struct SledStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    bus: Arc<LocalBus>,
    conn: Conn,
}

impl SledStore {
    /// Opens (creating if needed) the database in directory `path`, with default options.
    ///
    /// Async because opening runs on the store's writer thread, which waits while sled
    /// opens and recovers the database and then rebuilds the indexes from it.
    ///
    /// Fails with `Unavailable` when the database is open elsewhere (another process, or
    /// another `SledStore` in this one), `Corrupt` when it was written by a newer layout or
    /// cannot be read, `Unsupported` when it was written by an older layout, and `Storage`
    /// when the directory cannot be created or written.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SledOptions::default()).await
    }

    /// Opens (creating if needed) the database in directory `path`; see
    /// [`open`](Self::open).
    pub async fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bus = Arc::new(LocalBus::new(options.event_buffer));
        let conn = Conn::open(&path, &options, bus.clone()).await?;
        Ok(SledStore {
            shared: Arc::new(Shared { path, bus, conn }),
        })
    }

    /// Opens the store a URL names: `sled://path/to/dir` (relative) or `sled:///abs/path`,
    /// with an optional `?flush=always|enqueues|periodic`.
    ///
    /// Fails with `Misuse` for a malformed URL or an unknown option, and otherwise as
    /// [`open`](Self::open).
    pub async fn from_url(url: &str) -> Result<Self> {
        let (path, options) = options::parse_url(url)?;
        Self::open_with(path, options).await
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Flushes every change made so far to disk (useful with a relaxed [`FlushPolicy`]).
    pub async fn flush(&self) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.conn.send(Command::Flush { reply }).await?;
        answer
            .await
            .map_err(|_| taskmill_core::Error::unavailable("the sled writer thread has stopped"))?
    }
}
