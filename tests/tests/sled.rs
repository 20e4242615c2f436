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
        let store = SledStore::open(dir.path().join("db")).expect("a fresh sled store");
        SledHarness { store, _dir: dir }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

mod sled {
    taskmill_tests::conformance_suite!(super::SledHarness);
}
