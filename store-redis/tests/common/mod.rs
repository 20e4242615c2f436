//! What the tests that look at the Redis keys themselves share: a store on a private
//! server with a raw connection beside it.

use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};

/// A store on a private server, a raw connection to it, and the namespace.
pub struct Setup {
    pub store: RedisStore,
    pub raw: redis::aio::MultiplexedConnection,
    pub namespace: String,
    /// The store's URL (the server and the namespace), for another handle on it.
    #[allow(dead_code)] // Not every test opens another handle.
    pub url: String,
    _server: RedisServer,
}

impl Setup {
    pub async fn new() -> Self {
        let server = RedisServer::start();
        let namespace = fresh_namespace();
        let url = server.url(&namespace);
        let store = RedisStore::open(&url).await.unwrap();
        let raw = server.connect().await;
        Setup {
            store,
            raw,
            namespace,
            url,
            _server: server,
        }
    }

    /// The key `suffix` of `topic` (`{ns:topic}:suffix`).
    #[allow(dead_code)] // Not every test reads a topic's keys.
    pub fn key(&self, topic: &str, suffix: &str) -> String {
        format!("{{{}:{topic}}}:{suffix}", self.namespace)
    }
}
