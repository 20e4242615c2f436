//! The options of a [`RedisStore`](crate::RedisStore) and its URL form.

use std::time::Duration;
use taskmill_core::store::DEFAULT_EVENT_BUFFER;
use taskmill_core::{Error, Result};

/// The namespace of a URL that names none.
pub const DEFAULT_NAMESPACE: &str = "taskmill";

/// Options for [`RedisStore::open_with`](crate::RedisStore::open_with).
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
    /// Open without connecting: the first call connects (and fails as `Unavailable` while
    /// Redis is unreachable), so a store can be made before Redis is up. Default: false,
    /// opening connects and checks that Redis answers.
    pub connect_lazily: bool,
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
            connect_lazily: false,
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

    /// Opens without connecting; see [`connect_lazily`](Self::connect_lazily).
    pub fn connect_lazily(mut self, lazily: bool) -> Self {
        self.connect_lazily = lazily;
        self
    }
}

/// Splits a store URL, `redis://[user:password@]host[:port][/db][?namespace=name]`, into
/// the URL redis-rs connects to and `options` with what the URL sets (its namespace
/// overrides the options').
pub(crate) fn parse_url(url: &str, mut options: RedisOptions) -> Result<(String, RedisOptions)> {
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
    Ok((url, options))
}

pub(crate) fn open_client(url: &str, options: &RedisOptions) -> redis::RedisResult<redis::Client> {
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
pub(crate) fn split_namespace(url: &str) -> Result<(String, Option<String>)> {
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

    #[test]
    fn urls_give_their_namespace() {
        let namespace =
            |url: &str| parse_url(url, RedisOptions::default()).map(|(_, o)| o.namespace);
        assert_eq!(
            namespace("redis://127.0.0.1:7/2?namespace=app").unwrap(),
            "app"
        );
        assert_eq!(
            namespace("redis://u:p@127.0.0.1:7").unwrap(),
            DEFAULT_NAMESPACE
        );
        for bad in [
            "memory://",
            "redis://h?namespace=",
            "redis://h?namespace=a:b",
            "redis://h?namespace=a%7Bb",
        ] {
            let err = namespace(bad).unwrap_err();
            assert_eq!(err.kind(), taskmill_core::ErrorKind::Misuse, "{bad}");
        }
        // Other query parameters go to redis-rs, which ignores those it does not know.
        assert_eq!(
            namespace("redis://127.0.0.1:7/0?namespace=app-b-1&pool=4").unwrap(),
            "app-b-1"
        );
        assert_eq!(
            split_namespace("redis://h/1?protocol=resp2&namespace=x").unwrap(),
            (
                "redis://h/1?protocol=resp2".to_owned(),
                Some("x".to_owned())
            )
        );
    }
}
