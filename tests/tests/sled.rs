//! The conformance suite on the sled store, each test on a fresh database in a temp dir.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_sled::SledStore;
use taskmill_tests::Harness;

struct SledHarness {
    store: SledStore,
    // Dropped after the store, so the database closes before its directory goes.
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Harness for SledHarness {
    async fn setup() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SledStore::open(dir.path().join("db"))
            .await
            .expect("a fresh sled store");
        SledHarness { store, _dir: dir }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

mod sled {
    taskmill_tests::conformance_suite!(super::SledHarness);
}

/// The facade opens the sled store by URL, and it keeps its tasks across a reopen.
mod sled_url {
    use taskmill_core::store::EnqueueOptions;
    use taskmill_core::{ErrorKind, Queue, StoreExt, Task, Timestamp};

    #[tokio::test]
    async fn taskmill_open_gives_a_durable_sled_store() {
        let dir = tempfile::tempdir().unwrap();
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
