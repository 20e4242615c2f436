//! The sled taskmill store: durable, embedded, one process per database.
//!
//! Tasks live in a [sled](https://docs.rs/sled/0.34) database directory, in one tree, the
//! records of several tasks (enqueued together) per key. Every move of a task (enqueue, claim, outcome, reaper, requeue,
//! delete) is one atomic `apply_batch` on that tree, with the stats counters it moves, so
//! a crash never leaves a task in two queues or in none, and the counters never drift. By
//! default each change is flushed to disk before the call returns ([`FlushPolicy::Always`]):
//! a `kill -9` at any instant loses nothing that was acknowledged.
//!
//! sled allows one process per database. Opening a database that is already open (in
//! another process, or in this one) fails at once with [`ErrorKind::Unavailable`]; clones of
//! one [`SledStore`] share it, so hand clones to several managers of the same process.
//!
//! Every call is served by one dedicated writer thread. Being the only writer, it keeps the
//! indexes (claim order, schedules, leases, unique keys) in memory, rebuilt from the
//! records when the store opens, and lets concurrent calls share one flush (group commit).
//! The crate's README describes the flush policies, the layout on disk, and what a crash
//! can lose.
//!
//! ```
//! use taskmill_sled::{FlushPolicy, SledOptions, SledStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path().join("tasks"))?;
//! drop(store);
//! let relaxed = SledStore::open_with(
//!     dir.path().join("tasks"),
//!     SledOptions::default().flush(FlushPolicy::Enqueues),
//! )?;
//! drop(relaxed);
//! let by_url = SledStore::from_url(&format!("sled://{}", dir.path().join("tasks").display()))?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod codec;
mod index;
mod read;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use taskmill_core::raw::{LocalBus, StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, ErrorKind, Result};
use writer::{Request, Writer};

/// When changes reach the disk, and so what a crash (of the process or the machine) can
/// lose.
///
/// Whatever the policy, a crash never leaves a task half-moved: each move is one sled
/// batch, which recovery replays whole or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlushPolicy {
    /// Every call whose loss a crash could show returns only after its change is on disk:
    /// enqueues, outcomes, requeues, deletes, pauses. Concurrent calls share one flush. A
    /// crash loses nothing acknowledged.
    ///
    /// Claims, lease renewals and the reaper's recoveries are not flushed on their own
    /// (they reach the disk with the next flush: sled's log is sequential). Losing one in a
    /// crash is the same as the crash itself: a crash ends every lease of the process, a
    /// task whose claim was lost is back in INPUT at once rather than after its lease
    /// expires, and a lost recovery is made again by the next reaper.
    #[default]
    Always,
    /// Enqueues and admin calls (requeue, delete, pause) are flushed before they return;
    /// claims and outcomes reach the disk with sled's periodic flush
    /// ([`SledOptions::flush_every`]) or the next flushed call. A crash loses no task, but
    /// may lose the last outcomes: those tasks run again (at least once still holds).
    Enqueues,
    /// Nothing is flushed per call; sled flushes every [`SledOptions::flush_every`]. A crash
    /// may lose everything since the last flush, enqueued tasks included.
    Periodic,
}

impl std::str::FromStr for FlushPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(FlushPolicy::Always),
            "enqueues" => Ok(FlushPolicy::Enqueues),
            "periodic" => Ok(FlushPolicy::Periodic),
            _ => Err(Error::misuse(format!(
                "unknown flush policy {s:?} (expected always, enqueues or periodic)"
            ))),
        }
    }
}

/// How to open a [`SledStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SledOptions {
    /// When changes are flushed to disk; [`FlushPolicy::Always`] by default.
    pub flush: FlushPolicy,
    /// sled's background flush interval (500 ms by default); `None` turns it off, leaving
    /// only the flushes of [`FlushPolicy`].
    pub flush_every: Option<Duration>,
    /// sled's page cache size in bytes; sled's default (1 GiB) when `None`.
    pub cache_capacity: Option<u64>,
    /// How many events a subscriber may fall behind by.
    pub event_buffer: usize,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            flush: FlushPolicy::Always,
            flush_every: Some(Duration::from_millis(500)),
            cache_capacity: None,
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl SledOptions {
    /// Sets the flush policy.
    pub fn flush(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// Sets sled's background flush interval.
    pub fn flush_every(mut self, every: Option<Duration>) -> Self {
        self.flush_every = every;
        self
    }

    /// Sets sled's page cache size in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// Sets how many events a subscriber may fall behind by.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }
}

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
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel stops the writer, which flushes and drops the database (it
        // holds the only handle).
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // sled's I/O threads may hold the database file, and so its lock, a moment longer:
        // wait for that, so that once the last clone is gone the path opens again at once.
        wait_for_unlock(&self.path.join("db"), Duration::from_secs(5));
    }
}

/// Waits (bounded) until nothing in this process holds sled's lock on `path`.
fn wait_for_unlock(path: &Path, limit: Duration) {
    use fs2::FileExt;
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if file.try_lock_exclusive().is_ok() {
            let _ = FileExt::unlock(&file);
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::warn!(path = %path.display(), "the sled database lock outlived its store");
}

impl SledStore {
    /// Opens (creating if needed) the database in directory `path`, with default options.
    ///
    /// Fails with `Unavailable` when the database is open elsewhere (another process, or
    /// another `SledStore` in this one), `Corrupt` when it was written by a newer layout or
    /// cannot be read, and `Storage` when the directory cannot be created or written.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SledOptions::default())
    }

    /// Opens (creating if needed) the database in directory `path`.
    ///
    /// This blocks while sled opens and recovers the database.
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut config = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(options.flush_every.map(|d| d.as_millis().max(1) as u64));
        if let Some(bytes) = options.cache_capacity {
            config = config.cache_capacity(bytes);
        }
        let db = config.open().map_err(|e| open_error(&path, e))?;
        let opened = open_tree(&db, &path).and_then(|tree| {
            let started = std::time::Instant::now();
            let index = index::Index::load(&tree)?;
            tracing::debug!(elapsed = ?started.elapsed(), "sled indexes rebuilt");
            Ok((tree, index))
        });
        let (tree, index) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                drop(db);
                wait_for_unlock(&path.join("db"), Duration::from_secs(5));
                return Err(e);
            }
        };
        let bus = Arc::new(LocalBus::new(options.event_buffer));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(db, tree, index, bus.clone(), options.flush);
        let handle = std::thread::Builder::new()
            .name("taskmill-sled".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::storage("cannot start the sled writer thread").with_source(e))?;
        Ok(SledStore {
            shared: Arc::new(Shared {
                path,
                bus,
                requests: Some(tx),
                writer: Some(handle),
            }),
        })
    }

    /// A store from a URL: `sled://path/to/dir` (relative) or `sled:///abs/path`, with an
    /// optional `?flush=always|enqueues|periodic`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (path, options) = parse_url(url)?;
        Self::open_with(path, options)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Flushes every change made so far to disk (useful with a relaxed [`FlushPolicy`]).
    pub async fn flush(&self) -> Result<()> {
        self.call(Request::Flush).await
    }
}

fn parse_url(url: &str) -> Result<(PathBuf, SledOptions)> {
    let url = StoreUrl::parse(url, &["sled"], "sled://path/to/dir")?;
    let path = url.location("directory")?;
    let mut options = SledOptions::default();
    for (key, value) in url.options() {
        match key {
            "flush" => options.flush = value.parse()?,
            _ => return Err(url.unknown(key, &["flush"])),
        }
    }
    Ok((PathBuf::from(path), options))
}

/// The tree that holds everything (see `codec.rs`).
const TREE: &str = "taskmill";
/// The layout this code reads and writes: 3, several tasks per key (see `codec.rs`).
/// Layout 1 (eight trees, the indexes stored beside the records) kept its version in a
/// `meta` tree; layout 2 (one key per task) in this tree.
const SCHEMA_VERSION: u64 = 3;

/// Opens the tree, checking (and on a new database writing) the layout version.
fn open_tree(db: &sled::Db, path: &Path) -> Result<sled::Tree> {
    // Checked before opening the tree, which would add it to an old database.
    if db.tree_names().iter().any(|name| name == b"meta") {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the sled database at {} has layout version 1, which this taskmill-sled \
                 (layout {SCHEMA_VERSION}) does not read: drain it with the taskmill version \
                 that wrote it, or move it aside",
                path.display()
            ),
        ));
    }
    let tree = db.open_tree(TREE).map_err(sled_error)?;
    match tree.get(codec::SCHEMA).map_err(sled_error)? {
        Some(v) => {
            let version = codec::decode_u64(&v)?;
            if version < SCHEMA_VERSION {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the sled database at {} has layout version {version} (one key per \
                         task), which this taskmill-sled (layout {SCHEMA_VERSION}) does not \
                         read: drain it with the taskmill version that wrote it, or move it \
                         aside",
                        path.display()
                    ),
                ));
            }
            if version > SCHEMA_VERSION {
                return Err(Error::corrupt(format!(
                    "the sled database at {} has layout version {version}, newer than this \
                     taskmill-sled understands ({SCHEMA_VERSION}): upgrade taskmill",
                    path.display()
                )));
            }
        }
        None => {
            tree.insert(codec::SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                .map_err(sled_error)?;
            db.flush().map_err(sled_error)?;
        }
    }
    Ok(tree)
}

fn open_error(path: &Path, e: sled::Error) -> Error {
    // sled reports a held lock as an `Other` I/O error with this text (0.34).
    let locked =
        matches!(&e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"));
    if locked {
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "the sled database at {} is locked: it is open in another process or \
                 another SledStore of this one (sled allows one process per database; \
                 share one SledStore instead)",
                path.display()
            ),
        )
        .with_source(e);
    }
    let mut error = sled_error(e);
    error = Error::new(
        error.kind(),
        format!(
            "cannot open the sled database at {}: {}",
            path.display(),
            error.message()
        ),
    )
    .with_source(error);
    error
}

/// Maps a sled error to taskmill's: I/O failures are `Storage` (the write was refused),
/// detected corruption is `Corrupt`.
pub(crate) fn sled_error(e: sled::Error) -> Error {
    match &e {
        sled::Error::Corruption { .. } => Error::corrupt("sled found corrupt data on disk"),
        sled::Error::Io(_) => Error::storage("sled could not read or write its files"),
        sled::Error::CollectionNotFound(_) => Error::storage("a sled tree is missing"),
        sled::Error::Unsupported(_) => Error::storage("sled refused the operation"),
        sled::Error::ReportableBug(_) => Error::storage("sled hit an internal error"),
        #[allow(unreachable_patterns)]
        _ => Error::storage("sled failed"),
    }
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let (path, o) = parse_url("sled://data/tasks").unwrap();
        assert_eq!(
            (path, o.flush),
            (PathBuf::from("data/tasks"), FlushPolicy::Always)
        );
        let (path, o) = parse_url("sled:///var/lib/x?flush=enqueues").unwrap();
        assert_eq!(
            (path, o.flush),
            (PathBuf::from("/var/lib/x"), FlushPolicy::Enqueues)
        );
        for bad in [
            "sled://",
            "memory://",
            "sled://x?flush=never",
            "sled://x?cache=1",
        ] {
            assert_eq!(
                parse_url(bad).unwrap_err().kind(),
                ErrorKind::Misuse,
                "{bad}"
            );
        }
    }
}
