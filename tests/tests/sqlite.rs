//! The conformance suite on the SQLite store, each test on a real database file in its
//! own temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use taskmill_core::Store;
use taskmill_sqlite::SqliteStore;
use taskmill_testkit::{temp_dir, TempDir};
use taskmill_tests::Harness;

struct SqliteHarness {
    store: SqliteStore,
    path: PathBuf,
    // Dropped after the store: the directory outlives the connection.
    _dir: TempDir,
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    async fn setup() -> Self {
        let dir = temp_dir();
        let path = dir.path().join("tasks.db");
        let store = SqliteStore::open(&path)
            .await
            .expect("open a fresh SQLite store");
        SqliteHarness {
            store,
            path,
            _dir: dir,
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
    async fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = SqliteStore::open(&self.path)
            .await
            .expect("reopen the SQLite store");
        self.store()
    }
}

mod sqlite {
    taskmill_tests::conformance_suite!(super::SqliteHarness, taskmill_tests::Capabilities::DURABLE);
}
