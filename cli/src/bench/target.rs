//! Where a benchmark run keeps its data: a fresh location derived from the URL the user
//! gave, so runs never accumulate tasks (or measure a store already holding a million),
//! removed again when the run ends.
//!
//! | given | each scenario runs on | removed after |
//! |---|---|---|
//! | `memory://` | a new memory store | (dropped) |
//! | `sqlite://DIR/NAME?q` | `sqlite://DIR/NAME.bench-PID-K/NAME?q` | the `….bench-PID-K` directory (with `-wal`, `-shm`) |
//! | `sled://DIR?q` | `sled://DIR.bench-PID-K?q` | that directory |
//! | `redis://HOST/DB?namespace=NS&q` (or `rediss://`, `redis+cluster://HOST:PORT,…`) | `…?q&namespace=NS-bench-PID-K` (NS defaults to `taskmill`) | every key of namespace `NS-bench-PID-K` (`RedisStore::delete_namespace`) |
//!
//! `PID` is the benchmark's process id and `K` counts scenarios within the run, so two
//! benchmarks started side by side never share data. Any other scheme is opened as given.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use taskmill::raw::StoreUrl;
use taskmill::{Error, Result, Store};

static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// A fresh store location for one scenario, and how to remove it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL to open.
    pub url: String,
    cleanup: Cleanup,
}

/// What a store occupies: the bytes of its files, or the process's resident memory for
/// the memory store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Footprint {
    /// The files under this directory.
    Disk(PathBuf),
    /// The process's resident set (after handing freed memory back).
    Resident,
    /// Not measured (Redis: the server's memory is another process's).
    Unknown,
}

impl Footprint {
    /// The bytes occupied now, if measured.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Footprint::Disk(dir) => dir_size(dir).ok(),
            Footprint::Resident => {
                super::rss::release_free_memory();
                super::rss::current()
            }
            Footprint::Unknown => None,
        }
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cleanup {
    Nothing,
    RemoveDir(PathBuf),
    /// Delete the keys of the namespace [`Target::url`] names.
    #[cfg(feature = "redis")]
    RedisNamespace,
}

impl Target {
    /// A fresh location derived from `url`, unique to this process and call.
    pub fn fresh(url: &str) -> Result<Target> {
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        Self::derive(url, &format!("bench-{}-{run}", std::process::id()))
    }

    /// The location for `url` with `tag` making it unique.
    pub fn derive(url: &str, tag: &str) -> Result<Target> {
        let parsed = StoreUrl::parse_any(url)?;
        // `:memory:`-style or empty paths hold no data on disk: nothing to isolate.
        let on_disk = parsed
            .location("location")
            .ok()
            .filter(|path| !path.starts_with(':'));
        let target = match (parsed.scheme(), on_disk) {
            ("sqlite", Some(path)) => {
                let file = Path::new(path);
                let name = file
                    .file_name()
                    .ok_or_else(|| parsed.invalid("the database file", path))?;
                let dir = PathBuf::from(format!("{path}.{tag}"));
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::storage(format!("cannot create {}", dir.display())).with_source(e)
                })?;
                let db = dir.join(name);
                Target {
                    url: parsed
                        .with_location(&db.to_string_lossy())
                        .as_str()
                        .to_owned(),
                    cleanup: Cleanup::RemoveDir(dir),
                }
            }
            ("sled", Some(path)) => {
                let dir = format!("{}.{tag}", path.trim_end_matches('/'));
                Target {
                    url: parsed.with_location(&dir).as_str().to_owned(),
                    cleanup: Cleanup::RemoveDir(PathBuf::from(dir)),
                }
            }
            #[cfg(feature = "redis")]
            ("redis" | "rediss" | "redis+cluster" | "rediss+cluster", _) => {
                let base = parsed
                    .option("namespace")
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(taskmill_redis::DEFAULT_NAMESPACE);
                let namespace = format!("{base}-{tag}");
                Target {
                    url: parsed
                        .with_option("namespace", &namespace)
                        .as_str()
                        .to_owned(),
                    cleanup: Cleanup::RedisNamespace,
                }
            }
            _ => Target {
                url: url.to_owned(),
                cleanup: Cleanup::Nothing,
            },
        };
        Ok(target)
    }

    /// How to measure what the store at this location occupies.
    pub fn footprint(&self) -> Footprint {
        match &self.cleanup {
            Cleanup::RemoveDir(dir) => Footprint::Disk(dir.clone()),
            _ if self.url.starts_with("memory:") => Footprint::Resident,
            _ => Footprint::Unknown,
        }
    }

    /// Opens the store at this location.
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        taskmill::open(&self.url).await
    }

    /// Removes what the run left. Call it after the last handle on the store is dropped
    /// (a sled directory is locked while open).
    pub async fn remove(&self) -> Result<()> {
        match &self.cleanup {
            Cleanup::Nothing => Ok(()),
            Cleanup::RemoveDir(dir) => match std::fs::remove_dir_all(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => {
                    Err(Error::storage(format!("cannot remove {}", dir.display())).with_source(e))
                }
            },
            #[cfg(feature = "redis")]
            Cleanup::RedisNamespace => {
                let store = taskmill_redis::RedisStore::open(&self.url).await?;
                store.delete_namespace().await.map(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_unknown_schemes_are_used_as_given() {
        let t = Target::derive("memory://", "x").unwrap();
        assert_eq!(t.url, "memory://");
        assert_eq!(t.cleanup, Cleanup::Nothing);
        assert!(Target::derive("no-scheme", "x").is_err());
    }

    #[test]
    fn sqlite_gets_a_directory_beside_the_file() {
        let base = std::env::temp_dir().join(format!("taskmill-target-{}", std::process::id()));
        let url = format!("sqlite://{}/jobs.db?mode=wal", base.display());
        let t = Target::derive(&url, "bench-1-2").unwrap();
        let dir = PathBuf::from(format!("{}/jobs.db.bench-1-2", base.display()));
        assert_eq!(
            t.url,
            format!("sqlite://{}/jobs.db?mode=wal", dir.display())
        );
        assert!(dir.is_dir());
        assert_eq!(t.cleanup, Cleanup::RemoveDir(dir.clone()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(t.remove()).unwrap();
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(base);
        // A database held in memory has nothing to isolate.
        assert_eq!(
            Target::derive("sqlite://:memory:", "x").unwrap().url,
            "sqlite://:memory:"
        );
    }

    #[test]
    fn sled_gets_a_sibling_directory() {
        let t = Target::derive("sled:///var/tmp/q/", "bench-1-2").unwrap();
        assert_eq!(t.url, "sled:///var/tmp/q.bench-1-2");
        assert_eq!(
            t.cleanup,
            Cleanup::RemoveDir(PathBuf::from("/var/tmp/q.bench-1-2"))
        );
    }

    #[test]
    fn percent_encoded_paths_are_decoded_and_encoded_again() {
        let base = std::env::temp_dir().join(format!("taskmill-target-pct-{}", std::process::id()));
        let url = format!("sqlite://{}/50%25%3F.db", base.display());
        let t = Target::derive(&url, "b-1").unwrap();
        let dir = PathBuf::from(format!("{}/50%?.db.b-1", base.display()));
        assert_eq!(t.cleanup, Cleanup::RemoveDir(dir.clone()));
        assert!(dir.is_dir());
        assert_eq!(
            StoreUrl::parse_any(&t.url)
                .unwrap()
                .location("file")
                .unwrap(),
            dir.join("50%?.db").to_str().unwrap()
        );
        let _ = std::fs::remove_dir_all(base);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_gets_a_fresh_namespace_keeping_other_options() {
        let t = Target::derive(
            "redis://:p%40ss@127.0.0.1:6379/0?cacert=ca.pem&namespace=app",
            "b-1",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "redis://:p%40ss@127.0.0.1:6379/0?cacert=ca.pem&namespace=app-b-1"
        );
        assert_eq!(t.cleanup, Cleanup::RedisNamespace);
        let t = Target::derive("rediss://127.0.0.1:6379?namespace=", "b-1").unwrap();
        assert_eq!(t.url, "rediss://127.0.0.1:6379?namespace=taskmill-b-1");
    }

    /// The cleanup deletes the run's namespace and nothing else, on a server that wants a
    /// password with `@ : / %` in it (percent-encoded in the URL).
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_cleanup_deletes_the_namespace_only() {
        use taskmill::store::EnqueueOptions;
        use taskmill::{Task, Timestamp};
        let server = taskmill_testkit::redis::RedisServer::start();
        let mut admin = server.connect().await;
        let set = |key: &str| redis::cmd("SET").arg(key).arg(1).clone();
        for key in ["app:ids", "app-b-10:ids", "{app-b-1x:t}:ready"] {
            set(key).query_async::<()>(&mut admin).await.unwrap();
        }
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("a@b:c/d%41")
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        let url = format!(
            "redis://:a%40b%3Ac%2Fd%2541@127.0.0.1:{}/0?namespace=app",
            server.port()
        );
        let target = Target::derive(&url, "b-1").unwrap();
        let store = target.open().await.unwrap();
        let tasks = (0..50)
            .map(|i| Task::new(format!("t{}", i % 3), &i).unwrap())
            .collect();
        store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
        drop(store);
        let count = || redis::cmd("DBSIZE").clone();
        let before: u64 = count().query_async(&mut admin).await.unwrap();
        assert!(before > 3, "{before}");
        target.remove().await.unwrap();
        let after: u64 = count().query_async(&mut admin).await.unwrap();
        assert_eq!(after, 3);
    }

    #[test]
    fn fresh_locations_differ() {
        let a = Target::fresh("sled://x").unwrap();
        let b = Target::fresh("sled://x").unwrap();
        assert_ne!(a.url, b.url);
    }
}
