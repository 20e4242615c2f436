//! # taskmill
//!
//! Durable background tasks for Rust, on the store you choose: register a processor per
//! topic, enqueue tasks, and a [`Manager`] claims them, runs them on a bounded pool of
//! workers, retries failures with exponential backoff, parks the hopeless ones in a dead
//! queue, and reports everything as [`Event`]s and [`Stats`].
//!
//! Stores are picked with cargo features (`memory`, the default) and opened by URL with
//! [`open`], or by their typed constructors. Each store is a module named after its
//! feature (`taskmill::sqlite::SqliteOptions`), with its store type also at the top level
//! (`taskmill::SqliteStore`).
//!
//! ```
//! use taskmill::{Manager, Task, TaskContext, TaskError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> taskmill::Result<()> {
//! let store = taskmill::open("memory://").await?;
//! let manager = Manager::builder_shared(store).build();
//! manager.register("greet", |ctx: TaskContext| async move {
//!     let name: String = ctx.args()?;
//!     println!("hello, {name}");
//!     Ok::<_, TaskError>(())
//! })?;
//! manager.start().await?;
//! manager.enqueue(Task::new("greet", "ada")?).await?;
//! manager.close_with_timeout(std::time::Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```
//!
//! A process that only enqueues or administers (a web server, an operator's script) uses
//! a [`Client`] on the store instead: enqueue, status by id with the task's result and
//! progress, lists, cancel, requeue and delete by id or in bulk, pause, stats, events.
//!
//! ```
//! use taskmill::{Client, Task};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> taskmill::Result<()> {
//! let client = Client::shared(taskmill::open("memory://").await?).by("web");
//! let id = client.enqueue(Task::new("greet", "ada")?).await?.id();
//! let info = client.status(id).await?.expect("just enqueued");
//! assert_eq!(info.status.as_str(), "pending");
//! client.cancel(&[id]).await?; // it never runs
//! # Ok(()) }
//! ```
//!
//! The crate root and [`store`] are what an application uses. Writing a backend of your
//! own? Implement [`Store`] with the building blocks in [`raw`].
#![warn(missing_docs)]

pub use taskmill_core::*;

/// For backend authors: the building blocks of a [`Store`] implementation (record
/// transitions, the in-process event bus, id-keyed maps, the store URL parser).
/// Applications do not need it.
pub use taskmill_core::raw;

/// The in-memory store and its options (`taskmill::memory::MemoryOptions`).
#[cfg(feature = "memory")]
pub use taskmill_memory as memory;
#[cfg(feature = "memory")]
#[doc(inline)]
pub use taskmill_memory::MemoryStore;

/// The SQLite store and its options (`taskmill::sqlite::SqliteOptions`, `Durability`).
#[cfg(feature = "sqlite")]
pub use taskmill_sqlite as sqlite;
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use taskmill_sqlite::SqliteStore;

/// The sled store and its options (`taskmill::sled::SledOptions`, `FlushPolicy`).
#[cfg(feature = "sled")]
pub use taskmill_sled as sled;
#[cfg(feature = "sled")]
#[doc(inline)]
pub use taskmill_sled::SledStore;

/// The Redis store and its options (`taskmill::redis::RedisOptions`).
#[cfg(feature = "redis")]
pub use taskmill_redis as redis;
#[cfg(feature = "redis")]
#[doc(inline)]
pub use taskmill_redis::RedisStore;

/// Prometheus metrics (feature `metrics`): store-wide counters, queue sizes and latency
/// read at each scrape, and a middleware timing this process's runs
/// (`taskmill::metrics::Metrics`; with feature `metrics-axum`, a `/metrics` router).
#[cfg(feature = "metrics")]
pub use taskmill_metrics as metrics;

use std::sync::Arc;

/// Opens the store a URL names, with the backends this build enables:
///
/// | URL | feature |
/// |---|---|
/// | `memory://` | `memory` (default) |
/// | `sqlite://path/to/tasks.db[?durability=full]` | `sqlite` |
/// | `sled://path/to/dir` (`sled:///abs/dir`, `?flush=always\|enqueues\|periodic`) | `sled` |
/// | `redis://[user:password@]host[:port][/db][?namespace=app]`, `rediss://…` | `redis` (`rediss` also needs taskmill-redis's `tls`) |
/// | `redis+cluster://host:port[,host:port…][?namespace=app]` (a Redis Cluster) | `redis` |
///
/// Fails with [`ErrorKind::Misuse`] for a malformed URL or an unknown scheme, and with
/// [`ErrorKind::Unsupported`] for a backend whose feature is not enabled.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let parsed = raw::StoreUrl::parse_any(url)?;
    match parsed.scheme() {
        #[cfg(feature = "memory")]
        "memory" => Ok(Arc::new(MemoryStore::from_url(url).await?)),
        #[cfg(not(feature = "memory"))]
        "memory" => Err(not_enabled("memory")),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(SqliteStore::from_url(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(not_enabled("sqlite")),
        #[cfg(feature = "sled")]
        "sled" => Ok(Arc::new(SledStore::from_url(url).await?)),
        #[cfg(not(feature = "sled"))]
        "sled" => Err(not_enabled("sled")),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            Ok(Arc::new(RedisStore::from_url(url).await?))
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => Err(not_enabled("redis")),
        other => Err(Error::misuse(format!(
            "unknown store scheme {other:?} in {parsed}"
        ))),
    }
}

#[allow(dead_code)]
fn not_enabled(feature: &str) -> Error {
    Error::unsupported(format!(
        "the {feature} store is not built in: enable taskmill's `{feature}` cargo feature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_picks_the_backend_by_scheme() {
        let store = open("memory://").await.unwrap();
        assert!(!store.capabilities().durable);
    }

    /// `Box<S>` and `Arc<S>` are stores that reach the one inside, every method included.
    #[tokio::test]
    async fn boxed_and_shared_stores_forward_to_the_store_inside() {
        let memory = MemoryStore::new();
        let boxed: Box<dyn Store> = Box::new(memory.clone());
        let shared: Arc<Box<dyn Store>> = Arc::new(boxed);
        let opts = store::EnqueueOptions::new(Timestamp::from_millis(1));
        let task = Task::new("t", &1).unwrap();
        let id = shared.enqueue_one(task, &opts).await.unwrap().id();
        assert_eq!(memory.get(id).await.unwrap().map(|r| r.id), Some(id));
        assert!(!shared.has_subscribers(), "nobody listens yet");
        let _events = shared.subscribe().await.unwrap();
        assert!(shared.has_subscribers());
        shared.set_paused("t", true).await.unwrap();
        assert!(
            memory
                .stats(&store::StatsOptions::new(Timestamp::from_millis(1)))
                .await
                .unwrap()
                .topic("t")
                .paused
        );
    }

    #[tokio::test]
    async fn open_rejects_bad_urls_with_misuse() {
        for url in ["tasks.db", "nosuch://x", "memory://extra"] {
            let err = open(url)
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} opened"));
            assert_eq!(err.kind(), ErrorKind::Misuse, "{url}: {err}");
        }
    }
}
