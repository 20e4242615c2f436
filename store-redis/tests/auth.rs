//! Credentials Redis refuses are a configuration mistake, like a bad URL.

use taskmill_core::ErrorKind;
use taskmill_redis::test_support::RedisServer;
use taskmill_redis::RedisStore;

/// Opening with a wrong password fails as `Misuse`, not as `Unavailable` (which a manager
/// would retry for ever); the right one opens.
#[tokio::test]
async fn wrong_credentials_are_misuse() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("secret")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let wrong = format!("redis://:wrong@127.0.0.1:{}/0", server.port());
    let err = RedisStore::open(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
    let right = format!("redis://:secret@127.0.0.1:{}/0", server.port());
    RedisStore::open(&right).await.unwrap();
}
