//! `RedisStore::delete_namespace` removes every key of its namespace and nothing else.

use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Store, Task, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::RedisServer;

async fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    let mut conn = server.connect().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Fills namespace `ns` with tasks on several topics, one of them paused.
async fn fill(server: &RedisServer, ns: &str) -> RedisStore {
    let store = RedisStore::open(&server.url(ns)).await.unwrap();
    // More tasks than one SCAN pass returns.
    let tasks = (0..3000)
        .map(|i| Task::new(format!("topic-{}", i % 4), &i).unwrap())
        .collect();
    store
        .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap();
    store.set_paused("topic-0", true).await.unwrap();
    store
}

#[tokio::test]
async fn deletes_exactly_its_namespace() {
    let server = RedisServer::start();
    // Namespaces that share a prefix with "app", and keys that merely contain it.
    let store = fill(&server, "app").await;
    for other in ["app-1", "app.x", "ap", "xapp"] {
        fill(&server, other).await;
    }
    let mut conn = server.connect().await;
    for key in ["app", "app-1:stray", "{app-1:t}:x", "other:app:x"] {
        redis::cmd("SET")
            .arg(key)
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let everything = keys(&server, "*").await;
    let mine = everything
        .iter()
        .filter(|k| k.starts_with("app:") || k.starts_with("{app:"))
        .count();
    assert!(mine > 10, "{everything:?}");

    assert_eq!(store.delete_namespace().await.unwrap(), mine as u64);
    let left = keys(&server, "*").await;
    assert_eq!(left.len(), everything.len() - mine, "{left:?}");
    assert!(
        left.iter()
            .all(|k| !k.starts_with("app:") && !k.starts_with("{app:")),
        "{left:?}"
    );
    assert!(left.contains(&"app".to_owned()) && left.contains(&"other:app:x".to_owned()));

    // Nothing left to delete is fine, and the store works on from nothing.
    assert_eq!(store.delete_namespace().await.unwrap(), 0);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert!(stats.topics.is_empty(), "{stats:?}");
}
