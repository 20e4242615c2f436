//! A password in the store URL or the options never shows: not in `Debug` of the options
//! or the store, not in the message, `Debug` or source chain of an error (a wrong
//! password, a refused connection), and not in the log lines written while opening,
//! working and failing.

use std::error::Error as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use taskmill_core::Store;
use taskmill_redis::{RedisOptions, RedisStore};
use taskmill_testkit::redis::{free_port, fresh_namespace, RedisServer};

const PASSWORD: &str = "s3cr3t-PW-zq";

/// Log lines, shared between the subscriber's writers and the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails if `text` contains the password.
fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password shows in {what}: {text}"
    );
}

/// The error's message, `Debug` and every source's message and `Debug`.
fn all_of(err: &taskmill_core::Error) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!(" | {e} {e:?}"));
        source = e.source();
    }
    text
}

#[tokio::test]
async fn passwords_stay_out_of_debug_errors_and_logs() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This test's thread only (the runtime is current-thread): other tests keep theirs.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = RedisServer::start();
    let port = server.port();
    let mut admin = server.connect().await;
    RedisServer::require_password(&mut admin, PASSWORD).await;
    let ns = fresh_namespace();

    // Opening and working with the right password.
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}/0?namespace={ns}");
    let store = RedisStore::open(&url).await.unwrap();
    assert_hidden("the store's Debug", &format!("{store:?}"));
    let id = taskmill_testkit::enqueue_n(&store, "t", 1).await[0];
    let options = RedisOptions::default().username("u").password(PASSWORD);
    assert_hidden("the options' Debug", &format!("{options:?}"));

    // A wrong password: the URL holds the real one as part of a wrong one.
    let wrong = format!("redis://:{PASSWORD}x@127.0.0.1:{port}/0");
    let err = RedisStore::open(&wrong).await.unwrap_err();
    assert_hidden("a refused login's error", &all_of(&err));
    let wrong = format!("redis://127.0.0.1:{port}/0");
    let options = RedisOptions::default().password(format!("x{PASSWORD}"));
    let err = RedisStore::open_with(&wrong, options).await.unwrap_err();
    assert_hidden("a refused login's error (options)", &all_of(&err));

    // Nothing listens on a free port.
    let closed = format!("redis://user:{PASSWORD}@127.0.0.1:{}/0", free_port());
    let err = RedisStore::open(&closed).await.unwrap_err();
    assert_hidden("a refused connection's error", &all_of(&err));
    let lazy = RedisStore::open_with(&closed, RedisOptions::default().connect_lazily(true))
        .await
        .unwrap();
    assert_hidden("a lazy store's Debug", &format!("{lazy:?}"));
    let err = lazy.get(id).await.unwrap_err();
    assert_hidden("a lazy store's call error", &all_of(&err));

    // The server going away while the store works logs the outage.
    drop(admin);
    let mut server = server;
    server.kill();
    let _ = store.get(id).await;
    drop(store);
    drop(lazy);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The capture works: the outage or reconnect was logged.
    assert!(!logs.is_empty(), "nothing was logged");
    assert_hidden("the log", &logs);
}
