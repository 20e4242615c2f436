//! The conformance suite on the SQLite store, each test on a real database file in its
//! own temporary directory.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_sqlite::SqliteStore;
use taskmill_tests::Harness;

struct SqliteHarness {
    store: SqliteStore,
    // Dropped after the store: the directory outlives the connection.
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    async fn setup() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path().join("tasks.db"))
            .await
            .expect("open a fresh SQLite store");
        SqliteHarness { store, _dir: dir }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

mod sqlite {
    taskmill_tests::conformance_suite!(super::SqliteHarness);
}
