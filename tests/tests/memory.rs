//! The conformance suite on the memory store, plus what only the memory store can show.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_memory::MemoryStore;
use taskmill_tests::Harness;

struct MemoryHarness(MemoryStore);

#[async_trait::async_trait]
impl Harness for MemoryHarness {
    async fn setup() -> Self {
        MemoryHarness(MemoryStore::new())
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.0.clone())
    }
}

mod memory {
    taskmill_tests::conformance_suite!(super::MemoryHarness);
}
