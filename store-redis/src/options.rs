//! The options of a [`RedisStore`](crate::RedisStore) and its URL form.

use std::fmt;
use std::time::Duration;
use taskmill_core::raw::{StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};

/// The namespace of a URL that names none.
pub const DEFAULT_NAMESPACE: &str = "taskmill";

/// Options for [`RedisStore::open_with`](crate::RedisStore::open_with).
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
    /// How many replicas must acknowledge an enqueue (and a fire) before it returns: after
    /// its scripts, `WAIT replicas replica_timeout` on the primary (of each slot the
    /// batch touched, on a cluster). Replication is asynchronous, so without it an
    /// acknowledged enqueue can be lost when a primary fails before its replicas have it.
    /// Fewer acknowledgements in time fail the enqueue with `Unavailable`: its tasks are
    /// on the primary but may be lost at a failover (enqueue again, with unique keys, to
    /// be sure). Default 0: do not wait. The URL's `?enqueue_replicas=N` sets it too.
    pub enqueue_replicas: usize,
    /// How long an enqueue waits for [`enqueue_replicas`](Self::enqueue_replicas).
    pub replica_timeout: Duration,
    /// Open without connecting: the first call connects (and fails as `Unavailable` while
    /// Redis is unreachable), so a store can be made before Redis is up. Default: false,
    /// opening connects and checks that Redis answers.
    pub connect_lazily: bool,
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
            enqueue_replicas: 0,
            replica_timeout: Duration::from_secs(1),
            connect_lazily: false,
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
            .field("promote_limit", &self.promote_limit)
            .field("enqueue_replicas", &self.enqueue_replicas)
            .field("replica_timeout", &self.replica_timeout)
            .field("connect_lazily", &self.connect_lazily);
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

    /// Makes each enqueue wait until `replicas` replicas have it, for at most `timeout`;
    /// see [`enqueue_replicas`](Self::enqueue_replicas).
    pub fn enqueue_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.enqueue_replicas = replicas;
        self.replica_timeout = timeout;
        self
    }

    /// Opens without connecting; see [`connect_lazily`](Self::connect_lazily).
    pub fn connect_lazily(mut self, lazily: bool) -> Self {
        self.connect_lazily = lazily;
        self
    }
}

/// Where a store URL points: one server, or the seed nodes of a Redis Cluster.
#[derive(Debug)]
pub(crate) enum Target {
    /// `redis://` or `rediss://`.
    Single(redis::ConnectionInfo),
    /// `redis+cluster://`: every node given, in order.
    Cluster(Vec<redis::ConnectionInfo>),
}

/// Reads a store URL, `redis://[user:password@]host[:port][/db][?namespace=name]` (or
/// `rediss://…[&cacert=PATH]`, or `redis+cluster://[user:password@]host:port,host:port…`),
/// into what redis-rs needs to connect and `options` with what the URL sets (which
/// overrides the options': namespace, credentials, `cacert`).
pub(crate) fn parse_url(url: &str, mut options: RedisOptions) -> Result<(Target, RedisOptions)> {
    let parsed = StoreUrl::parse_any(url)?;
    let target = match parsed.scheme() {
        "redis+cluster" => Target::Cluster(cluster_nodes(url, &parsed, &mut options)?),
        "rediss+cluster" => {
            return Err(Error::unsupported(
                "rediss+cluster:// (TLS to a Redis Cluster) is not supported yet",
            ))
        }
        _ => {
            let url = StoreUrl::parse(url, &["redis", "rediss"], URL_FORM)?;
            Target::Single(connection_info(&url, &mut options)?)
        }
    };
    validate_namespace(&options.namespace)?;
    Ok((target, options))
}

/// The URL form error messages show.
const URL_FORM: &str = "redis://[user:password@]host[:port][/db][?namespace=name]";

/// The cluster URL form error messages show.
const CLUSTER_FORM: &str =
    "redis+cluster://[user:password@]host:port[,host:port…][/][?namespace=name]";

/// The seed nodes of a `redis+cluster://` URL: each `host[:port]` of the comma-separated
/// list, with the credentials and options given once for all. A cluster has database 0
/// alone, so the URL names none.
fn cluster_nodes(
    text: &str,
    url: &StoreUrl,
    options: &mut RedisOptions,
) -> Result<Vec<redis::ConnectionInfo>> {
    // Split on the raw text: `,` `@` and `/` are separators there, and a password holding
    // them is percent-encoded.
    let rest = &text[url.scheme().len() + "://".len()..];
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (credentials, hosts) = match location.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, location),
    };
    let (hosts, path) = hosts.split_once('/').unwrap_or((hosts, ""));
    let form = || StoreUrl::parse(text, &["redis+cluster"], CLUSTER_FORM);
    if !path.is_empty() {
        return Err(form()?.invalid("the database (a cluster has database 0 alone)", path));
    }
    if hosts.is_empty() {
        return Err(Error::misuse(format!(
            "{}: names no host; expected {CLUSTER_FORM}",
            StoreUrl::redact(text)
        )));
    }
    hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err(Error::misuse(format!(
                    "{}: an empty host in the list; expected {CLUSTER_FORM}",
                    StoreUrl::redact(text)
                )));
            }
            let credentials = credentials.map(|c| format!("{c}@")).unwrap_or_default();
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            let node = StoreUrl::parse(
                &format!("redis://{credentials}{host}{query}"),
                &["redis"],
                CLUSTER_FORM,
            )?;
            connection_info(&node, options)
        })
        .collect()
}

/// What redis-rs needs to connect to the server `url` names; the URL's options go into
/// `options`.
pub(crate) fn connection_info(
    url: &StoreUrl,
    options: &mut RedisOptions,
) -> Result<redis::ConnectionInfo> {
    let server = url.server()?;
    let mut cacert = None;
    for (key, value) in url.options() {
        match key {
            "namespace" => options.namespace = value.to_owned(),
            "cacert" => cacert = Some(value),
            "enqueue_replicas" => {
                options.enqueue_replicas = value
                    .parse()
                    .map_err(|_| url.invalid("enqueue_replicas", value))?;
            }
            _ => return Err(url.unknown(key, &["namespace", "cacert", "enqueue_replicas"])),
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

/// The cluster client for the seed nodes `nodes`.
pub(crate) fn open_cluster_client(
    nodes: Vec<redis::ConnectionInfo>,
    options: &RedisOptions,
) -> Result<redis::cluster::ClusterClient> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(options.connection_timeout)
        .response_timeout(options.response_timeout)
        .tcp_settings(crate::conn::tcp_settings());
    if let Some(username) = &options.username {
        builder = builder.username(username.clone());
    }
    if let Some(password) = &options.password {
        builder = builder.password(password.clone());
    }
    builder
        .build()
        .map_err(|e| Error::misuse("invalid redis cluster settings").with_source(e))
}

pub(crate) fn open_client(
    info: redis::ConnectionInfo,
    options: &RedisOptions,
) -> Result<redis::Client> {
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

pub(crate) fn validate_namespace(namespace: &str) -> Result<()> {
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
    use crate::RedisStore;
    use taskmill_core::ErrorKind;

    fn parse(url: &str) -> Result<(redis::ConnectionInfo, RedisOptions)> {
        match parse_url(url, RedisOptions::default())? {
            (Target::Single(info), options) => Ok((info, options)),
            (Target::Cluster(_), _) => panic!("{url} is a cluster URL"),
        }
    }

    fn parse_cluster(url: &str) -> Result<(Vec<redis::ConnectionInfo>, RedisOptions)> {
        match parse_url(url, RedisOptions::default())? {
            (Target::Cluster(nodes), options) => Ok((nodes, options)),
            (Target::Single(_), _) => panic!("{url} is not a cluster URL"),
        }
    }

    #[test]
    fn cluster_urls_give_every_seed_node() {
        let (nodes, options) =
            parse_cluster("redis+cluster://u:p%40%2C@10.0.0.1:7000,h2:7001,[::1]/?namespace=app")
                .unwrap();
        let addrs: Vec<_> = nodes.iter().map(|n| n.addr.clone()).collect();
        assert_eq!(
            addrs,
            [
                redis::ConnectionAddr::Tcp("10.0.0.1".into(), 7000),
                redis::ConnectionAddr::Tcp("h2".into(), 7001),
                redis::ConnectionAddr::Tcp("::1".into(), 6379),
            ]
        );
        for node in &nodes {
            assert_eq!(node.redis.db, 0);
            assert_eq!(node.redis.username.as_deref(), Some("u"));
            assert_eq!(node.redis.password.as_deref(), Some("p@,"));
        }
        assert_eq!(options.namespace, "app");
        let (nodes, options) = parse_cluster("redis+cluster://h:7000").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(options.namespace, DEFAULT_NAMESPACE);

        for (bad, says) in [
            ("redis+cluster://", "names no host"),
            ("redis+cluster://h:1,,h:2", "an empty host"),
            ("redis+cluster://h:1/2", "database 0 alone"),
            ("redis+cluster://h:x", "invalid port"),
            ("redis+cluster://h:1?namespace=a:b", "invalid namespace"),
            ("redis+cluster://h:1?pool=2", "unknown option"),
        ] {
            let err = parse_url(bad, RedisOptions::default()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Misuse, "{bad}: {err}");
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        let err = parse_url("rediss+cluster://h:1", RedisOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
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

        let (_, options) = parse("redis://127.0.0.1:7/2?namespace=app-b.1_x").unwrap();
        assert_eq!(options.namespace, "app-b.1_x");
        assert_eq!(options.enqueue_replicas, 0);
        let (_, options) = parse("redis://h?enqueue_replicas=2").unwrap();
        assert_eq!(options.enqueue_replicas, 2);
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
                "unknown option \"pool\" (known: namespace, cacert, enqueue_replicas)",
            ),
            ("redis://h?cacert=ca.pem", "rediss://"),
            ("redis://h?enqueue_replicas=-1", "enqueue_replicas"),
            ("redis://h/0#insecure", "#fragment"),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Misuse, "{bad}: {err}");
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_needs_the_tls_feature() {
        let err = parse("rediss://h").unwrap_err();
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
        let err = parse("rediss://h?cacert=/nonexistent/ca.pem").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
    }

    #[tokio::test]
    async fn passwords_never_show() {
        let options = RedisOptions::default()
            .username("app")
            .password("opt-secret");
        let shown = format!("{options:?}");
        assert!(!shown.contains("opt-secret"), "{shown}");
        assert!(shown.contains("password: Some(\"***\")"), "{shown}");
        let url = "redis://:url%40secret@127.0.0.1:7/0";
        let store = RedisStore::open_with(url, options.connect_lazily(true))
            .await
            .unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret"), "{shown}");
        for bad in [
            "redis://:url%40secret@h:port/0",
            "redis://:url%40secret@h/x",
            "redis://:url%40secret@h?pool=1",
            "redis://:url%40secret@h?namespace=a:b",
            "redis://:url/secret@h/0",
        ] {
            let err = RedisStore::from_url(bad).await.unwrap_err().to_string();
            assert!(!err.contains("secret"), "{bad}: {err}");
        }
    }
}
