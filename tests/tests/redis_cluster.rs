//! The conformance suite on the Redis store in cluster mode (`redis+cluster://`).
//!
//! Every test works in a namespace of its own on the process's shared cluster
//! (`RedisCluster::shared`: three primaries on free loopback ports, never a Redis the user
//! runs), which dies with the test process; without `redis-server` and `redis-cli` the
//! tests fail saying how to install them. The cluster's own scenarios (slots moving,
//! failovers) are in store-redis/tests/cluster.rs.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::fresh_namespace;
use taskmill_testkit::redis_cluster::RedisCluster;
use taskmill_tests::Harness;

struct ClusterHarness {
    store: RedisStore,
    url: String,
}

async fn open(url: &str) -> RedisStore {
    RedisStore::open(url)
        .await
        .expect("open the redis store in cluster mode")
}

#[async_trait::async_trait]
impl Harness for ClusterHarness {
    async fn setup() -> Self {
        // Started at the first setup of the process (blocking, a few seconds, once).
        let url = RedisCluster::shared().url(&fresh_namespace());
        ClusterHarness {
            store: open(&url).await,
            url,
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
    async fn open_another(&self) -> Arc<dyn Store> {
        Arc::new(open(&self.url).await)
    }
    /// A new handle with connections of its own: what the store keeps lives in the
    /// cluster.
    async fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = open(&self.url).await;
        self.store()
    }
}

mod redis_cluster {
    taskmill_tests::conformance_suite!(super::ClusterHarness, taskmill_tests::Capabilities::SHARED);
}
