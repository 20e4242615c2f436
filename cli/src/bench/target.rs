//! Where a benchmark run keeps its data: a fresh location derived from the URL the user
//! gave, so runs never accumulate tasks (or measure a store already holding a million),
//! removed again when the run ends.
//!
//! | given | each scenario runs on | removed after |
//! |---|---|---|
//! | `memory://` | a new memory store | (dropped) |
//! | `sqlite://DIR/NAME?q` | `sqlite://DIR/NAME.bench-PID-K/NAME?q` | the `….bench-PID-K` directory (with `-wal`, `-shm`) |
//! | `sled://DIR?q` | `sled://DIR.bench-PID-K?q` | that directory |
//! | `redis://HOST/DB?namespace=NS&q` | `…?namespace=NS-bench-PID-K&q` (NS defaults to `taskmill`) | every key whose name contains `NS-bench-PID-K` |
//!
//! `PID` is the benchmark's process id and `K` counts scenarios within the run, so two
//! benchmarks started side by side never share data. Any other scheme is opened as given.

use super::resp;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use taskmill::{Error, Result, Store};

static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// A fresh store location for one scenario, and how to remove it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL to open.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cleanup {
    Nothing,
    RemoveDir(PathBuf),
    RedisNamespace { url: String, namespace: String },
}

impl Target {
    /// A fresh location derived from `url`, unique to this process and call.
    pub fn fresh(url: &str) -> Result<Target> {
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        Self::derive(url, &format!("bench-{}-{run}", std::process::id()))
    }

    /// The location for `url` with `tag` making it unique.
    pub fn derive(url: &str, tag: &str) -> Result<Target> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::misuse(format!("not a store URL: {url:?} (expected scheme://…)"))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let with_query = |path: &str| match query {
            Some(q) => format!("{scheme}://{path}?{q}"),
            None => format!("{scheme}://{path}"),
        };
        // `:memory:`-style or empty paths hold no data on disk: nothing to isolate.
        let on_disk = !path.is_empty() && !path.starts_with(':');
        match scheme {
            "sqlite" if on_disk => {
                let file = Path::new(path);
                let name = file
                    .file_name()
                    .ok_or_else(|| Error::misuse(format!("{url:?} names no database file")))?;
                let dir = PathBuf::from(format!("{path}.{tag}"));
                let db = dir.join(name);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::storage(format!("cannot create {}", dir.display())).with_source(e)
                })?;
                Ok(Target {
                    url: with_query(&db.to_string_lossy()),
                    cleanup: Cleanup::RemoveDir(dir),
                })
            }
            "sled" if on_disk => {
                let dir = format!("{}.{tag}", path.trim_end_matches('/'));
                Ok(Target {
                    url: with_query(&dir),
                    cleanup: Cleanup::RemoveDir(PathBuf::from(dir)),
                })
            }
            "redis" | "rediss" => {
                let mut base = "taskmill".to_string();
                let mut params: Vec<String> = Vec::new();
                for pair in query.into_iter().flat_map(|q| q.split('&')) {
                    match pair.strip_prefix("namespace=") {
                        Some(ns) if !ns.is_empty() => base = ns.to_string(),
                        Some(_) => {}
                        None if pair.is_empty() => {}
                        None => params.push(pair.to_string()),
                    }
                }
                let namespace = format!("{base}-{tag}");
                params.insert(0, format!("namespace={namespace}"));
                let url = format!("{scheme}://{path}?{}", params.join("&"));
                Ok(Target {
                    cleanup: Cleanup::RedisNamespace {
                        url: url.clone(),
                        namespace,
                    },
                    url,
                })
            }
            _ => Ok(Target {
                url: url.to_string(),
                cleanup: Cleanup::Nothing,
            }),
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
            Cleanup::RedisNamespace { url, namespace } => {
                let (url, namespace) = (url.clone(), namespace.clone());
                tokio::task::spawn_blocking(move || resp::delete_matching(&url, &namespace))
                    .await
                    .map_err(|e| Error::storage("redis cleanup panicked").with_source(e))?
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
    fn redis_gets_a_fresh_namespace_keeping_other_options() {
        let t = Target::derive("redis://127.0.0.1:6379/0?pool=4&namespace=app", "b-1").unwrap();
        assert_eq!(t.url, "redis://127.0.0.1:6379/0?namespace=app-b-1&pool=4");
        let t = Target::derive("redis://127.0.0.1:6379", "b-1").unwrap();
        assert_eq!(t.url, "redis://127.0.0.1:6379?namespace=taskmill-b-1");
        assert!(matches!(
            t.cleanup,
            Cleanup::RedisNamespace { ref namespace, .. } if namespace == "taskmill-b-1"
        ));
    }

    #[test]
    fn fresh_locations_differ() {
        let a = Target::fresh("sled://x").unwrap();
        let b = Target::fresh("sled://x").unwrap();
        assert_ne!(a.url, b.url);
    }
}
