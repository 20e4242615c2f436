#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod bus;
mod codec;
mod conn;
mod error;
mod layout;
mod ops;
mod options;
mod scripts;
mod store;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use options::{RedisOptions, DEFAULT_NAMESPACE};

use bus::Bus;
use conn::Conn;
use layout::Keys;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use taskmill_core::{Error, Result};

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
    /// Connects to the Redis a URL names, with default options, and checks that it
    /// answers: `redis://[user:password@]host[:port][/db][?namespace=name]` (or
    /// `rediss://` with the `tls` feature). For Redis the location is itself a URL, so
    /// this takes what [`from_url`](Self::from_url) takes.
    ///
    /// Fails with `Misuse` for a bad URL and `Unavailable` when Redis does not answer.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, RedisOptions::default()).await
    }

    /// Connects to the Redis a URL names, with options, and checks that it answers
    /// (unless [`RedisOptions::connect_lazily`]); a `namespace` in the URL overrides the
    /// options'. Fails as [`open`](Self::open) does.
    pub async fn open_with(url: &str, options: RedisOptions) -> Result<Self> {
        let (url, options) = options::parse_url(url, options)?;
        let client = options::open_client(&url, &options)
            .map_err(|e| Error::misuse(format!("invalid redis URL {url:?}")).with_source(e))?;
        let keys = Keys::new(&options.namespace);
        let bus = Arc::new(Bus::new(
            client.clone(),
            keys.wake.clone(),
            keys.events.clone(),
            options.connection_timeout,
            options.event_buffer,
        ));
        let store = RedisStore {
            shared: Arc::new(Shared {
                conn: Conn::new(client, options.connection_timeout, options.response_timeout),
                keys,
                bus,
                options,
                remote_listeners: Mutex::new(None),
            }),
        };
        if !store.shared.options.connect_lazily {
            store.ping().await?;
        }
        Ok(store)
    }

    /// Opens the store a URL names; the same as [`open`](Self::open), since the location
    /// of a Redis store is a URL.
    pub async fn from_url(url: &str) -> Result<Self> {
        Self::open(url).await
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
