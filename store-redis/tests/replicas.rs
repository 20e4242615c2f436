//! `RedisOptions::enqueue_replicas`: an enqueue returns once that many replicas have it,
//! and fails as `Unavailable` (its tasks still on the primary) when fewer acknowledge in
//! time. Against a private primary with one replica of its own.

use std::time::Duration;
use taskmill_core::{ErrorKind, Store};
use taskmill_redis::{RedisOptions, RedisStore};
use taskmill_testkit::redis::{fresh_namespace, RedisServer, ServerConfig};
use taskmill_testkit::{enqueue_n, task, wait_until, T0};

/// A primary and a replica of it, once the replica's link is up and it has the data set.
async fn primary_with_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica = RedisServer::start_with(ServerConfig::default().args([
        "--replicaof",
        "127.0.0.1",
        &primary.port().to_string(),
    ]));
    let mut conn = replica.connect().await;
    wait_until(
        "the replica's link to the primary",
        Duration::from_secs(20),
        || {
            let mut conn = conn.clone();
            async move {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                info.lines().any(|l| l.trim() == "master_link_status:up")
            }
        },
    )
    .await;
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    (primary, replica)
}

#[tokio::test]
async fn an_enqueue_waits_for_its_replicas() {
    let (primary, replica) = primary_with_replica().await;
    let ns = fresh_namespace();
    let options = RedisOptions::default().enqueue_replicas(1, Duration::from_secs(5));
    let store = RedisStore::open_with(&primary.url(&ns), options)
        .await
        .unwrap();
    let ids = enqueue_n(&store, "t", 20).await;
    // Acknowledged by the replica: it holds every task, read behind the store's back.
    let mut conn = replica.connect().await;
    let kept: u64 = redis::cmd("HLEN")
        .arg(format!("{{{ns}:t}}:tasks"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, ids.len() as u64);
}

#[tokio::test]
async fn too_few_replicas_fail_the_enqueue_as_unavailable_and_lose_nothing() {
    let (primary, _replica) = primary_with_replica().await;
    let ns = fresh_namespace();
    let options = RedisOptions::default().enqueue_replicas(2, Duration::from_millis(100));
    let store = RedisStore::open_with(&primary.url(&ns), options)
        .await
        .unwrap();
    let err = store
        .enqueue(
            vec![task("t", 1)],
            &taskmill_core::store::EnqueueOptions::new(T0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("1 of 2 replicas"), "{err}");
    // The task is on the primary all the same.
    let plain = RedisStore::open(&primary.url(&ns)).await.unwrap();
    let stats = plain
        .stats(&taskmill_core::store::StatsOptions::new(T0))
        .await
        .unwrap();
    assert_eq!(stats.total.sizes.input, 1);
}

#[tokio::test]
async fn the_url_sets_the_replica_count() {
    let server = RedisServer::start();
    let url = format!("{}&enqueue_replicas=1", server.url(&fresh_namespace()));
    let store = RedisStore::open(&url).await.unwrap();
    // No replica: the wait times out (after the default second).
    let err = store
        .enqueue(
            vec![task("t", 1)],
            &taskmill_core::store::EnqueueOptions::new(T0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
}
