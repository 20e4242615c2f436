//! Credentials from the store URL reach Redis decoded: a password (and a user name) with
//! `@ % : /` in it, percent-encoded in the URL, against a private redis-server that
//! requires them.

use taskmill_core::store::EnqueueOptions;
use taskmill_core::{ErrorKind, Store, Task, Timestamp};
use taskmill_redis::{RedisOptions, RedisStore};
use taskmill_testkit::redis::{fresh_namespace, RedisServer};

/// Every character a URL parser could split on, and a `%41` that must not be decoded twice.
const PASSWORD: &str = "p@ss%41:w/rd";
const PASSWORD_IN_URL: &str = "p%40ss%2541%3Aw%2Frd";
const USER: &str = "app:1@x/y";
const USER_IN_URL: &str = "app%3A1%40x%2Fy";

/// A server whose default user needs `PASSWORD` and which knows user `USER` with the same.
///
/// The launcher waits for an unauthenticated PING, so the password is set once the server
/// answers, on the connection it opened before (`CONFIG SET requirepass` is what
/// `--requirepass` sets).
async fn server_with_passwords() -> RedisServer {
    let server = RedisServer::start();
    let mut admin = server.connect().await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(USER)
        .arg("on")
        .arg(format!(">{PASSWORD}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    RedisServer::require_password(&mut admin, PASSWORD).await;
    server
}

async fn round_trip(store: &RedisStore) {
    let enqueued = store
        .enqueue(
            vec![Task::new("t", &1).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    assert!(store.get(enqueued[0].id()).await.unwrap().is_some());
}

#[tokio::test]
async fn percent_encoded_credentials_authenticate() {
    let server = server_with_passwords().await;
    let port = server.port();
    let ns = fresh_namespace();

    let url = format!("redis://:{PASSWORD_IN_URL}@127.0.0.1:{port}/0?namespace={ns}");
    round_trip(&RedisStore::open(&url).await.unwrap()).await;

    let url = format!("redis://{USER_IN_URL}:{PASSWORD_IN_URL}@127.0.0.1:{port}/0?namespace={ns}");
    round_trip(&RedisStore::open(&url).await.unwrap()).await;

    // The password from the options, kept out of the URL.
    let url = format!("redis://127.0.0.1:{port}/0?namespace={ns}");
    let options = RedisOptions::default().password(PASSWORD);
    round_trip(&RedisStore::open_with(&url, options).await.unwrap()).await;

    // Without the password, or with a wrong one, Redis refuses; the error does not show it.
    assert!(RedisStore::open(&url).await.is_err());
    let wrong = format!("redis://:wrong%40{PASSWORD_IN_URL}@127.0.0.1:{port}/0");
    let err = RedisStore::open(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
    let text = format!("{err} {err:?}");
    for shown in ["wrong", PASSWORD, PASSWORD_IN_URL] {
        assert!(!text.contains(shown), "{shown} shows in {text}");
    }
}
