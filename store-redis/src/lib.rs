//! The Redis taskmill store: many processes on many machines share one queue.
//!
//! Every state change is one Lua script (the `.lua` files in `src/scripts/`), so each move
//! is atomic, carries its fencing check, and moves the stats counters in the same step.
//! Keys of one topic share the hash tag `{namespace:topic}`, so every script stays within
//! one Cluster slot. Idle managers wake from a pub/sub message the moment another process
//! adds work, and events cross processes on the namespace's event channel. The crate
//! README documents the key layout and the persistence settings the at-least-once promise
//! needs.
//!
//! ```no_run
//! use taskmill_redis::RedisStore;
//!
//! # async fn demo() -> taskmill_core::Result<()> {
//! let store = RedisStore::open("redis://127.0.0.1:6379/0?namespace=myapp").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bus;
mod codec;
mod conn;
mod keys;
mod scripts;
mod store;

use bus::Bus;
use conn::Conn;
use keys::Keys;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::DEFAULT_EVENT_BUFFER;
use taskmill_core::{Error, Result};

/// The namespace of a URL that names none.
pub const DEFAULT_NAMESPACE: &str = "taskmill";

/// Options of a [`RedisStore`] beyond its URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Keeps applications apart on one Redis: every key and channel starts with it.
    /// 1 to 64 characters out of `A-Z a-z 0-9 _ - .`. The URL's `?namespace=` sets it too.
    pub namespace: String,
    /// How long a connection attempt may take.
    pub connection_timeout: Duration,
    /// How long a command may wait for its reply before it fails as `Unavailable`.
    pub response_timeout: Duration,
    /// How many events a subscriber may fall behind by before it gets `Lagged`.
    pub event_buffer: usize,
    /// The most scheduled tasks that one claim moves to the ready set as they fall due;
    /// bounds the work of one script call after a large backlog comes due at once.
    pub promote_limit: usize,
    /// For `rediss://`: the PEM certificate(s) of the authority that signed the server's
    /// certificate, instead of the usual web roots (a private CA).
    #[cfg(feature = "tls")]
    pub tls_root_certificate: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            event_buffer: DEFAULT_EVENT_BUFFER,
            promote_limit: 10_000,
            #[cfg(feature = "tls")]
            tls_root_certificate: None,
        }
    }
}

impl RedisOptions {
    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the connection timeout.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Trusts the PEM certificate authority `pem` for `rediss://` connections.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// Sets the event buffer of each subscriber.
    pub fn event_buffer(mut self, buffer: usize) -> Self {
        self.event_buffer = buffer;
        self
    }
}

/// A store in Redis, shared by every process that opens the same server and namespace.
///
/// Clones share one command connection and one subscription connection.
#[derive(Clone, Debug)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    conn: Conn,
    keys: Keys,
    bus: Arc<Bus>,
    options: RedisOptions,
    /// Whether another process listened to events when last asked, and when that was.
    remote_listeners: Mutex<Option<(Instant, bool)>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.bus.stop();
    }
}

impl RedisStore {
    /// Connects to the Redis a URL names and checks that it answers:
    /// `redis://[user:password@]host[:port][/db][?namespace=name]` (or `rediss://` with
    /// the `tls` feature).
    ///
    /// Fails with `Misuse` for a bad URL and `Unavailable` when Redis does not answer.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::from_url(url)?;
        store.ping().await?;
        Ok(store)
    }

    /// A store for a URL (see [`open`](Self::open)) that connects on first use, so it can
    /// be built before Redis is up.
    pub fn from_url(url: &str) -> Result<Self> {
        let (url, namespace) = split_namespace(url)?;
        let options = RedisOptions {
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            ..RedisOptions::default()
        };
        Self::with_options(&url, options)
    }

    /// A store for a URL with options; a `namespace` in the URL overrides the options'.
    pub fn with_options(url: &str, mut options: RedisOptions) -> Result<Self> {
        let (url, namespace) = split_namespace(url)?;
        if let Some(namespace) = namespace {
            options.namespace = namespace;
        }
        validate_namespace(&options.namespace)?;
        if url.starts_with("rediss://") && !cfg!(feature = "tls") {
            return Err(Error::unsupported(
                "rediss:// needs the `tls` feature of taskmill-redis",
            ));
        }
        let client = open_client(&url, &options)
            .map_err(|e| Error::misuse(format!("invalid redis URL {url:?}")).with_source(e))?;
        let keys = Keys::new(&options.namespace);
        let bus = Arc::new(Bus::new(
            client.clone(),
            keys.wake.clone(),
            keys.events.clone(),
            options.connection_timeout,
            options.event_buffer,
        ));
        Ok(RedisStore {
            shared: Arc::new(Shared {
                conn: Conn::new(client, options.connection_timeout, options.response_timeout),
                keys,
                bus,
                options,
                remote_listeners: Mutex::new(None),
            }),
        })
    }

    /// The namespace this store works in.
    pub fn namespace(&self) -> &str {
        self.shared.keys.namespace()
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<()> {
        self.shared.conn.command(&redis::cmd("PING")).await?;
        Ok(())
    }
}

fn open_client(url: &str, options: &RedisOptions) -> redis::RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(root) = &options.tls_root_certificate {
        return redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            },
        );
    }
    let _ = options;
    redis::Client::open(url)
}

/// Takes the `namespace` query parameter out of a URL (redis-rs does not know it).
fn split_namespace(url: &str) -> Result<(String, Option<String>)> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(Error::misuse(format!(
            "not a redis store URL: {url:?} (expected redis://host:port/db?namespace=name)"
        )));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut namespace = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("namespace", value)) => namespace = Some(value.to_owned()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, namespace))
}

fn validate_namespace(namespace: &str) -> Result<()> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::misuse(format!(
            "invalid namespace {namespace:?}: use 1 to 64 characters out of A-Z a-z 0-9 _ - ."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_namespace() {
        let s = RedisStore::from_url("redis://127.0.0.1:7/2?namespace=app").unwrap();
        assert_eq!(s.namespace(), "app");
        let s = RedisStore::from_url("redis://u:p@127.0.0.1:7").unwrap();
        assert_eq!(s.namespace(), DEFAULT_NAMESPACE);
        for bad in [
            "memory://",
            "redis://h?namespace=",
            "redis://h?namespace=a:b",
            "redis://h?namespace=a%7Bb",
        ] {
            let err = RedisStore::from_url(bad).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Misuse, "{bad}");
        }
        // Other query parameters go to redis-rs, which ignores those it does not know.
        let s = RedisStore::from_url("redis://127.0.0.1:7/0?namespace=app-b-1&pool=4").unwrap();
        assert_eq!(s.namespace(), "app-b-1");
        assert_eq!(
            split_namespace("redis://h/1?protocol=resp2&namespace=x").unwrap(),
            (
                "redis://h/1?protocol=resp2".to_owned(),
                Some("x".to_owned())
            )
        );
    }
}
