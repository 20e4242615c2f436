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
#[cfg(feature = "test-support")]
pub mod test_support;

use bus::Bus;
use conn::Conn;
use keys::Keys;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::raw::{StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};

/// The namespace of a URL that names none.
pub const DEFAULT_NAMESPACE: &str = "taskmill";

/// Options of a [`RedisStore`] beyond its URL.
///
/// `Debug` does not show the password.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Keeps applications apart on one Redis: every key and channel starts with it.
    /// 1 to 64 characters out of `A-Z a-z 0-9 _ - .`. The URL's `?namespace=` sets it too.
    pub namespace: String,
    /// The user to authenticate as (Redis ACLs), for a URL that names none.
    pub username: Option<String>,
    /// The password to authenticate with, for a URL that names none: keeps it out of a
    /// URL that may be logged.
    pub password: Option<String>,
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
    /// certificate, instead of the usual web roots (a private CA). The URL's
    /// `?cacert=PATH` reads them from a file.
    #[cfg(feature = "tls")]
    pub tls_root_certificate: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            username: None,
            password: None,
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            event_buffer: DEFAULT_EVENT_BUFFER,
            promote_limit: 10_000,
            #[cfg(feature = "tls")]
            tls_root_certificate: None,
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RedisOptions");
        s.field("namespace", &self.namespace)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("event_buffer", &self.event_buffer)
            .field("promote_limit", &self.promote_limit);
        #[cfg(feature = "tls")]
        s.field(
            "tls_root_certificate",
            &self.tls_root_certificate.as_ref().map(Vec::len),
        );
        s.finish()
    }
}

impl RedisOptions {
    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the user to authenticate as.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password to authenticate with.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
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
/// Clones share one command connection and one subscription connection. `Debug` shows
/// the namespace and the server, never the credentials.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace())
            .field("conn", &self.shared.conn)
            .finish_non_exhaustive()
    }
}

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
    /// the `tls` feature, where `?cacert=PATH` trusts a private certificate authority).
    /// Percent-encode `@ : / %` in a user name or password (`%40 %3A %2F %25`).
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
        Self::with_options(url, RedisOptions::default())
    }

    /// A store for a URL with options; what the URL gives (namespace, credentials,
    /// `cacert`) overrides the options'.
    pub fn with_options(url: &str, mut options: RedisOptions) -> Result<Self> {
        let url = StoreUrl::parse(url, &["redis", "rediss"], URL_FORM)?;
        let info = connection_info(&url, &mut options)?;
        validate_namespace(&options.namespace)?;
        let client = open_client(info, &options)?;
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

    /// Deletes every key of this store's namespace (tasks, topics, counters) and returns
    /// how many there were; keys of other namespaces stay.
    ///
    /// For retiring a namespace, or starting a test or a benchmark from nothing. It walks
    /// the keys with `SCAN` and deletes them with `UNLINK`, so Redis stays responsive, but
    /// it is not atomic: run it when no manager works in the namespace, or keys written
    /// meanwhile may stay and running managers see their tasks vanish.
    pub async fn delete_namespace(&self) -> Result<u64> {
        let conn = &self.shared.conn;
        let mut deleted = 0;
        for pattern in self.shared.keys.patterns() {
            // SCAN returns cursor 0 once it has visited every key that existed throughout.
            let mut cursor = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let mut reply = codec::array(conn.command(&scan).await?, "SCAN")?.into_iter();
                let (Some(next), Some(keys)) = (reply.next(), reply.next()) else {
                    return Err(Error::storage("SCAN returned fewer than two values"));
                };
                let keys = codec::array(keys, "SCAN")?;
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    for key in keys {
                        unlink.arg(codec::string(key, "SCAN")?);
                    }
                    deleted += codec::int(&conn.command(&unlink).await?, "UNLINK")? as u64;
                }
                cursor = codec::string(next, "SCAN")?
                    .parse::<u64>()
                    .map_err(|e| Error::storage("SCAN returned a bad cursor").with_source(e))?;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// The URL form error messages show.
const URL_FORM: &str = "redis://[user:password@]host[:port][/db][?namespace=name]";

/// What redis-rs needs to connect to the server `url` names; the URL's options go into
/// `options`.
fn connection_info(url: &StoreUrl, options: &mut RedisOptions) -> Result<redis::ConnectionInfo> {
    let server = url.server()?;
    let mut cacert = None;
    for (key, value) in url.options() {
        match key {
            "namespace" => options.namespace = value.to_owned(),
            "cacert" => cacert = Some(value),
            _ => return Err(url.unknown(key, &["namespace", "cacert"])),
        }
    }
    let db = match server.path.trim_end_matches('/') {
        "" => 0,
        db => db.parse().map_err(|_| url.invalid("the database", db))?,
    };
    let port = server.port.unwrap_or(DEFAULT_PORT);
    let addr = if url.scheme() == "rediss" {
        #[cfg(not(feature = "tls"))]
        return Err(Error::unsupported(
            "rediss:// needs the `tls` feature of taskmill-redis",
        ));
        #[cfg(feature = "tls")]
        {
            if let Some(path) = cacert {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::misuse(format!("cannot read the cacert file {path:?}")).with_source(e)
                })?;
                options.tls_root_certificate = Some(pem);
            }
            redis::ConnectionAddr::TcpTls {
                host: server.host,
                port,
                insecure: false,
                tls_params: None,
            }
        }
    } else {
        if let Some(path) = cacert {
            return Err(url.invalid("cacert (a rediss:// option)", path));
        }
        redis::ConnectionAddr::Tcp(server.host, port)
    };
    if server.username.is_some() {
        options.username = server.username;
    }
    if server.password.is_some() {
        options.password = server.password;
    }
    Ok(redis::ConnectionInfo {
        addr,
        redis: redis::RedisConnectionInfo {
            db,
            username: options.username.clone(),
            password: options.password.clone(),
            protocol: redis::ProtocolVersion::RESP2,
        },
    })
}

/// The port of a URL that names none.
const DEFAULT_PORT: u16 = 6379;

fn open_client(info: redis::ConnectionInfo, options: &RedisOptions) -> Result<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(root) = &options.tls_root_certificate {
        return redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            },
        )
        .map_err(|e| Error::misuse("invalid TLS root certificate").with_source(e));
    }
    let _ = options;
    redis::Client::open(info).map_err(|e| Error::misuse("invalid redis settings").with_source(e))
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
    use taskmill_core::ErrorKind;

    fn parse(url: &str) -> Result<(redis::ConnectionInfo, RedisOptions)> {
        let mut options = RedisOptions::default();
        let url = StoreUrl::parse(url, &["redis", "rediss"], URL_FORM)?;
        Ok((connection_info(&url, &mut options)?, options))
    }

    #[test]
    fn urls_give_the_server_database_credentials_and_namespace() {
        let (info, options) =
            parse("redis://app%40x:a%40b%25c%3Ad%2Fe@cache.local:6380/2?namespace=app").unwrap();
        assert_eq!(
            info.addr,
            redis::ConnectionAddr::Tcp("cache.local".into(), 6380)
        );
        assert_eq!(info.redis.db, 2);
        assert_eq!(info.redis.username.as_deref(), Some("app@x"));
        assert_eq!(info.redis.password.as_deref(), Some("a@b%c:d/e"));
        assert_eq!(options.namespace, "app");

        let (info, options) = parse("redis://[::1]").unwrap();
        assert_eq!(info.addr, redis::ConnectionAddr::Tcp("::1".into(), 6379));
        assert_eq!(info.redis.db, 0);
        assert_eq!((info.redis.username, info.redis.password), (None, None));
        assert_eq!(options.namespace, DEFAULT_NAMESPACE);

        // Credentials in the options serve a URL without them; the URL's win.
        let url = StoreUrl::parse("redis://h/1/", &["redis"], URL_FORM).unwrap();
        let mut options = RedisOptions::default()
            .username("u")
            .password("from-options");
        let info = connection_info(&url, &mut options).unwrap();
        assert_eq!(info.redis.db, 1);
        assert_eq!(info.redis.username.as_deref(), Some("u"));
        assert_eq!(info.redis.password.as_deref(), Some("from-options"));
        let url = StoreUrl::parse("redis://:from-url@h", &["redis"], URL_FORM).unwrap();
        let info = connection_info(&url, &mut options).unwrap();
        assert_eq!(info.redis.password.as_deref(), Some("from-url"));

        let s = RedisStore::from_url("redis://127.0.0.1:7/2?namespace=app-b.1_x").unwrap();
        assert_eq!(s.namespace(), "app-b.1_x");
    }

    #[test]
    fn bad_urls_are_misuse() {
        for (bad, says) in [
            ("memory://", "not a redis store URL"),
            ("redis:/h", "not a store URL"),
            ("redis://h:port", "invalid port"),
            ("redis:///0", "names no host"),
            ("redis://h/x", "for the database"),
            ("redis://h/0/1", "for the database"),
            ("redis://h?namespace=", "invalid namespace"),
            ("redis://h?namespace=a:b", "invalid namespace"),
            ("redis://h?namespace=a%7Bb", "invalid namespace"),
            (
                "redis://h?pool=4",
                "unknown option \"pool\" (known: namespace, cacert)",
            ),
            ("redis://h?cacert=ca.pem", "rediss://"),
            ("redis://h/0#insecure", "#fragment"),
        ] {
            let err = RedisStore::from_url(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Misuse, "{bad}: {err}");
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_needs_the_tls_feature() {
        let err = RedisStore::from_url("rediss://h").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rediss_connects_with_tls() {
        let (info, _) = parse("rediss://h:6380").unwrap();
        assert!(matches!(
            info.addr,
            redis::ConnectionAddr::TcpTls { ref host, port: 6380, insecure: false, .. } if host == "h"
        ));
        let err = RedisStore::from_url("rediss://h?cacert=/nonexistent/ca.pem").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
    }

    #[test]
    fn passwords_never_show() {
        let options = RedisOptions::default()
            .username("app")
            .password("opt-secret");
        let shown = format!("{options:?}");
        assert!(!shown.contains("opt-secret"), "{shown}");
        assert!(shown.contains("password: Some(\"***\")"), "{shown}");
        let store =
            RedisStore::with_options("redis://:url%40secret@127.0.0.1:7/0", options).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret"), "{shown}");
        for bad in [
            "redis://:url%40secret@h:port/0",
            "redis://:url%40secret@h/x",
            "redis://:url%40secret@h?pool=1",
            "redis://:url%40secret@h?namespace=a:b",
            "redis://:url/secret@h/0",
        ] {
            let err = RedisStore::from_url(bad).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{bad}: {err}");
        }
    }
}
