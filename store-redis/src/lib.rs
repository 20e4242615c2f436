#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod bus;
mod cluster;
mod codec;
mod conn;
mod error;
/// The record codec for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod layout;
mod ops;
mod options;
mod scripts;
mod store;

pub use options::{RedisOptions, DEFAULT_NAMESPACE};

use bus::Bus;
use conn::Conn;
use layout::Keys;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use taskmill_core::Result;

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
    /// Whether this process saw the waiting-topic index built (`scripts/reindex.lua`,
    /// before its first claim).
    indexed: std::sync::atomic::AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.bus.stop();
    }
}

impl RedisStore {
    /// Connects to the Redis a URL names, with default options, and checks that it
    /// answers: `redis://[user:password@]host[:port][/db][?namespace=name]` (or
    /// `rediss://` with the `tls` feature, where `?cacert=PATH` trusts a private
    /// certificate authority). Percent-encode `@ : / %` in a user name or password
    /// (`%40 %3A %2F %25`). For Redis the location is itself a URL, so this takes what
    /// [`from_url`](Self::from_url) takes.
    ///
    /// A Redis Cluster takes `redis+cluster://[user:password@]host:port[,host:port…]`
    /// `[?namespace=name]`: the seed nodes (any of the cluster's nodes; give several, so
    /// that one being down does not stop a start), from which the client learns the rest.
    /// See the README's "Redis Cluster".
    ///
    /// Fails with `Misuse` for a bad URL, or a plain URL naming a node of a cluster, and
    /// `Unavailable` when Redis does not answer.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, RedisOptions::default()).await
    }

    /// Connects to the Redis a URL names, with options, and checks that it answers
    /// (unless [`RedisOptions::connect_lazily`]); what the URL gives (namespace,
    /// credentials, `cacert`) overrides the options'. Fails as [`open`](Self::open) does.
    pub async fn open_with(url: &str, options: RedisOptions) -> Result<Self> {
        let (target, options) = options::parse_url(url, options)?;
        let (conn, subscribe_to, cluster) = match target {
            options::Target::Single(info) => {
                let client = options::open_client(info, &options)?;
                let conn = conn::Single::new(
                    client.clone(),
                    options.connection_timeout,
                    options.response_timeout,
                );
                (Conn::Single(conn), vec![client], None)
            }
            options::Target::Cluster(nodes) => {
                let seeds = nodes.iter().map(|n| n.addr.to_string()).collect();
                let clients = nodes
                    .iter()
                    .map(|n| options::open_client(n.clone(), &options))
                    .collect::<Result<Vec<_>>>()?;
                let node = nodes[0].clone();
                let client = options::open_cluster_client(nodes, &options)?;
                let cluster = Arc::new(conn::Cluster::new(
                    client,
                    seeds,
                    node,
                    options.connection_timeout,
                    options.response_timeout,
                ));
                (Conn::Cluster(cluster.clone()), clients, Some(cluster))
            }
        };
        let keys = Keys::new(&options.namespace, conn.is_cluster());
        let bus = Arc::new(Bus::new(
            subscribe_to,
            cluster,
            keys.wake.clone(),
            keys.events.clone(),
            keys.cancel.clone(),
            options.connection_timeout,
            options.event_buffer,
        ));
        let store = RedisStore {
            shared: Arc::new(Shared {
                conn,
                keys,
                bus,
                options,
                remote_listeners: Mutex::new(None),
                indexed: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if !store.shared.options.connect_lazily {
            store.ping().await?;
            if !store.shared.conn.is_cluster() && store.is_cluster_node().await? {
                return Err(error::not_a_cluster_client("cannot open the redis store"));
            }
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

    /// Whether the server (of a plain URL) has cluster mode enabled.
    async fn is_cluster_node(&self) -> Result<bool> {
        let mut info = redis::cmd("INFO");
        info.arg("cluster");
        let reply = self.shared.conn.command(&info).await?;
        let text = codec::string(reply, "INFO cluster").unwrap_or_default();
        Ok(text.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }

    /// Whether this store works on a Redis Cluster (it was opened with a
    /// `redis+cluster://` URL).
    pub fn is_cluster(&self) -> bool {
        self.shared.conn.is_cluster()
    }

    /// Rebuilds the waiting-topic index (the topics with tasks in INPUT, which a claim
    /// from many topics reads to visit only those) from every topic's queues, and returns
    /// how many topics it looked at.
    ///
    /// A claim builds it by itself the first time a process claims from a namespace
    /// written before the index existed; this is the full pass for an operator who
    /// suspects the index (a process of an older version enqueued into the namespace), and
    /// the fallback that would keep it under Redis Cluster. It holds Redis for time in
    /// proportion to the number of topics.
    pub async fn rebuild_waiting_index(&self) -> Result<u64> {
        ops::reindex(self, true).await
    }

    /// Deletes every key of this store's namespace (tasks, topics, counters) and returns
    /// how many there were; keys of other namespaces stay.
    ///
    /// For retiring a namespace, or starting a test or a benchmark from nothing. It walks
    /// the keys with `SCAN` and deletes them with `UNLINK`, so Redis stays responsive, but
    /// it is not atomic: run it when no manager works in the namespace, or keys written
    /// meanwhile may stay and running managers see their tasks vanish.
    pub async fn delete_namespace(&self) -> Result<u64> {
        ops::delete_namespace(self).await
    }
}
