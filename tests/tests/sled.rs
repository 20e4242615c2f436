//! The conformance suite on the sled store, each test on a fresh database in a temp dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::{ErrorKind, Store};
use taskmill_sled::SledStore;
use taskmill_testkit::{temp_dir, TempDir};
use taskmill_tests::Harness;

struct SledHarness {
    store: Option<SledStore>,
    path: PathBuf,
    // Dropped after the store, so the database closes before its directory goes.
    _dir: TempDir,
}

#[async_trait::async_trait]
impl Harness for SledHarness {
    async fn setup() -> Self {
        let dir = temp_dir();
        let path = dir.path().join("db");
        let store = SledStore::open(&path).await.expect("a fresh sled store");
        SledHarness {
            store: Some(store),
            path,
            _dir: dir,
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone().expect("the store is open"))
    }
    async fn reopen(&mut self) -> Arc<dyn Store> {
        // One opener at a time: the last handle goes first, and sled's threads release
        // the file lock a moment after it is dropped.
        drop(self.store.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        let store = loop {
            match SledStore::open(&self.path).await {
                Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => break other.expect("reopen the sled store"),
            }
        };
        self.store = Some(store);
        self.store()
    }
}

mod sled {
    taskmill_tests::conformance_suite!(super::SledHarness, taskmill_tests::Capabilities::DURABLE);
}

/// The facade opens the sled store by URL, and it keeps its tasks across a reopen.
mod sled_url {
    use taskmill_core::store::EnqueueOptions;
    use taskmill_core::{ErrorKind, Queue, StoreExt, Task, Timestamp};

    #[tokio::test]
    async fn taskmill_open_gives_a_durable_sled_store() {
        let dir = taskmill_testkit::temp_dir();
        let url = format!("sled://{}?flush=always", dir.path().join("db").display());
        let store = taskmill::open(&url).await.unwrap();
        assert!(store.capabilities().durable);
        let id = store
            .enqueue_one(
                Task::new("t", &7).unwrap(),
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .unwrap()
            .id();
        let again = taskmill::open(&url)
            .await
            .err()
            .expect("one opener at a time");
        assert_eq!(again.kind(), ErrorKind::Unavailable, "{again}");
        drop(store);
        let store = taskmill::open(&url).await.unwrap();
        let input = store.list_all(Queue::Input, None).await.unwrap();
        assert_eq!(input.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
        let bad = taskmill::open("sled://x?flush=sometimes")
            .await
            .err()
            .unwrap();
        assert_eq!(bad.kind(), ErrorKind::Misuse, "{bad}");
    }
}
