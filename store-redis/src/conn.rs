//! The command connection and the script calls made over it: to one server, one
//! multiplexed connection that reconnects by itself; to a Redis Cluster, redis-rs's
//! cluster connection, which follows the slots. (The subscription connection is `bus.rs`.)

use crate::error::{backend_error, cluster_error};
use crate::layout::{Keys, TopicKeys};
use crate::scripts::Script;
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use taskmill_core::{Error, ErrorKind, Result};
use tracing::{info, warn};

/// The first pause between reconnect attempts; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between reconnect attempts: Redis coming back is noticed within it.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The shared command connection, to one server or to a cluster.
///
/// Both answer the same calls. To a cluster, commands never go pipelined: redis-rs sends a
/// pipeline to one node and, on a redirect, sends the whole pipeline again, which would
/// apply twice the scripts before the redirected one. Each command goes on its own
/// instead (a redirect or `TRYAGAIN` means it did not run, so following it is safe);
/// script calls of one slot go one after another, in order, and those of different slots
/// at the same time.
#[derive(Debug)]
pub(crate) enum Conn {
    /// One server.
    Single(Single),
    /// A Redis Cluster.
    Cluster(Cluster),
}

/// The connection to one server.
///
/// One multiplexed connection carries every concurrent caller's commands. When it breaks,
/// the next command reconnects; while Redis stays unreachable, attempts are spaced by an
/// exponential backoff (50 ms doubling to 1 s) and commands in between fail at once with
/// `Unavailable` rather than queueing behind a reconnect. It is opened on first use, so a
/// store can be built while Redis is still starting.
pub(crate) struct Single {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connection_timeout: Duration,
    current: std::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Held while connecting, so one caller dials and the others wait for its result.
    reconnect: tokio::sync::Mutex<Reconnect>,
}

#[derive(Debug)]
struct Reconnect {
    generation: u64,
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// Since when Redis is unreachable, so the outage is logged once, not per command.
    failing_since: Option<Instant>,
}

impl std::fmt::Debug for Single {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Single")
            .field("server", &self.client.get_connection_info().addr)
            .finish_non_exhaustive()
    }
}

/// One script call: the script, the topic whose keys it works on, and its own arguments.
pub(crate) struct Call<'a> {
    script: &'a Script,
    cmd: Cmd,
    /// The call's first key, which names its slot: calls with the same one run in order.
    first_key: String,
}

impl<'a> Call<'a> {
    /// A call of `script` on `topic`'s keys; add the script's own arguments with [`Call::arg`].
    pub fn new(script: &'a Script, keys: &Keys, topic: &TopicKeys) -> Self {
        Self::with_keys(script, keys, topic, &[])
    }

    /// A call of `script` on `topic`'s keys followed by `extra` keys (`KEYS[18]` on), for
    /// a script that also touches keys of the namespace (`fire`).
    pub fn with_keys(script: &'a Script, keys: &Keys, topic: &TopicKeys, extra: &[&str]) -> Self {
        let own = keys.of_topic(topic);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha)
            .arg(own.len() + extra.len())
            .arg(own)
            .arg(extra)
            .arg(&keys.wake)
            .arg(keys.events_for_scripts())
            .arg(&topic.topic_json);
        Call {
            script,
            cmd,
            first_key: own[0].clone(),
        }
    }

    /// A call of a script that takes no topic's keys and no preamble: `keys` are its
    /// `KEYS`, its arguments start at `ARGV[1]` (the schedule scripts but `fire`).
    pub fn of_namespace(script: &'a Script, keys: &[&str]) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha).arg(keys.len()).arg(keys);
        Call {
            script,
            cmd,
            first_key: keys.first().map(|k| k.to_string()).unwrap_or_default(),
        }
    }

    /// Appends an argument.
    pub fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}

impl Conn {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Sends plain commands and returns their replies in order; any error reply fails the
    /// whole call. To one server they go in one round trip; to a cluster each on its own,
    /// all at once.
    pub async fn query(&self, pipe: &Pipeline, count: usize) -> Result<Vec<Value>> {
        match self {
            Conn::Single(single) => single.query(pipe, count).await,
            Conn::Cluster(cluster) => cluster.query(pipe).await,
        }
    }

    /// Runs one command and returns its reply.
    pub async fn command(&self, cmd: &Cmd) -> Result<Value> {
        match self {
            Conn::Single(single) => single.command(cmd).await,
            Conn::Cluster(cluster) => cluster.command(cmd).await,
        }
    }

    /// Runs script calls and returns their replies in order: to one server pipelined, in
    /// one round trip; to a cluster, those of one slot in order and the slots at once.
    ///
    /// A script Redis does not know (after a restart or `SCRIPT FLUSH`) is loaded and its
    /// calls sent again: a `NOSCRIPT` reply means the call did not run, so that is safe.
    /// Any other error reply fails the whole call, and other calls may have been applied.
    pub async fn eval(&self, calls: &[Call<'_>]) -> Result<Vec<Value>> {
        match self {
            Conn::Single(single) => single.eval(calls).await,
            Conn::Cluster(cluster) => cluster.eval(calls).await,
        }
    }

    /// Runs one script call.
    pub async fn eval_one(&self, call: Call<'_>) -> Result<Value> {
        let mut replies = self.eval(std::slice::from_ref(&call)).await?;
        replies
            .pop()
            .ok_or_else(|| Error::storage("redis returned no reply"))
    }

    /// Waits until `replicas` replicas have every write sent so far to the primaries of
    /// `keys` (`WAIT`: on one server the connection's writes, on a cluster those of the
    /// connection to each key's primary), for at most `timeout`; fails with `Unavailable`
    /// when fewer acknowledge in time.
    pub async fn wait_for_replicas(
        &self,
        keys: &[&str],
        replicas: usize,
        timeout: Duration,
    ) -> Result<()> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        let counts = match self {
            Conn::Single(single) => vec![single.command(&wait).await?],
            Conn::Cluster(cluster) => {
                let mut slots: Vec<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
                slots.sort_unstable();
                slots.dedup();
                let waits = slots.into_iter().map(|slot| {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(slot, SlotAddr::Master),
                    ));
                    let wait = &wait;
                    async move {
                        let mut connection = cluster.connection().await?;
                        connection
                            .route_command(wait, route)
                            .await
                            .map_err(|e| cluster_error(e, "WAIT failed"))
                    }
                });
                join_all(waits).await.into_iter().collect::<Result<_>>()?
            }
        };
        for count in counts {
            let acknowledged = crate::codec::int(&count, "WAIT")?;
            if acknowledged < replicas as i64 {
                return Err(Error::unavailable(format!(
                    "the write is on the primary, but {acknowledged} of {replicas} replicas \
                     acknowledged it within {timeout:?}: a failover now may lose it"
                )));
            }
        }
        Ok(())
    }
}

/// The connection to a Redis Cluster: redis-rs's cluster connection, which keeps the slot
/// map, connects to each node as needed, follows `MOVED` and `ASK`, and retries
/// `TRYAGAIN` and `CLUSTERDOWN` for a while. Opened on first use.
pub(crate) struct Cluster {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
    connection_timeout: Duration,
    /// The seed nodes, for `Debug`.
    seeds: Vec<String>,
    /// How to connect to one node (a seed's settings, another address): for what a node
    /// answers for itself alone (`PUBSUB NUMSUB`), which redis-rs's cluster connection,
    /// made to route by slot, answers slowly from replicas (the first command it routes to
    /// a replica waits for the response timeout).
    node: redis::ConnectionInfo,
    /// Plain connections to single nodes, by address, made on first use.
    direct: tokio::sync::Mutex<HashMap<(String, u16), MultiplexedConnection>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(
        client: redis::cluster::ClusterClient,
        seeds: Vec<String>,
        node: redis::ConnectionInfo,
        connection_timeout: Duration,
    ) -> Self {
        Cluster {
            client,
            connection: tokio::sync::OnceCell::new(),
            connection_timeout,
            seeds,
            node,
            direct: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Runs `cmd` on the node at `host:port` itself, over a plain connection of its own
    /// (see `Cluster::node`); a connection that fails is dropped, and the next call dials
    /// again.
    pub async fn command_on_node(&self, cmd: &Cmd, host: &str, port: u16) -> Result<Value> {
        let address = (host.to_owned(), port);
        let cached = self.direct.lock().await.get(&address).cloned();
        let mut connection = match cached {
            Some(connection) => connection,
            None => {
                let mut info = self.node.clone();
                info.addr = redis::ConnectionAddr::Tcp(host.to_owned(), port);
                let client = redis::Client::open(info)
                    .map_err(|e| Error::misuse("invalid redis settings").with_source(e))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(self.connection_timeout)
                    .set_response_timeout(self.connection_timeout);
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| backend_error(e, "cannot connect to a cluster node"))?;
                self.direct
                    .lock()
                    .await
                    .insert(address.clone(), connection.clone());
                connection
            }
        };
        match connection.req_packed_command(cmd).await {
            Ok(value) => Ok(value),
            Err(e) => {
                self.direct.lock().await.remove(&address);
                Err(backend_error(e, "redis command failed"))
            }
        }
    }

    /// The cluster connection (a cheap clone of a handle), opened on first use.
    async fn connection(&self) -> Result<ClusterConnection> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                match tokio::time::timeout(
                    self.connection_timeout * 2,
                    self.client.get_async_connection(),
                )
                .await
                {
                    Ok(Ok(connection)) => Ok(connection),
                    Ok(Err(e)) => Err(cluster_error(e, "cannot connect to the redis cluster")),
                    Err(_) => Err(Error::unavailable(format!(
                        "cannot connect to the redis cluster: timed out after {:?}",
                        self.connection_timeout * 2
                    ))),
                }
            })
            .await?;
        Ok(connection.clone())
    }

    async fn command(&self, cmd: &Cmd) -> Result<Value> {
        let mut connection = self.connection().await?;
        connection
            .req_packed_command(cmd)
            .await
            .map_err(|e| cluster_error(e, "redis command failed"))
    }

    /// Runs `cmd` on the node at `host:port`.
    pub async fn command_at(&self, cmd: &Cmd, host: &str, port: u16) -> Result<Value> {
        let mut connection = self.connection().await?;
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port,
        });
        connection
            .route_command(cmd, routing)
            .await
            .map_err(|e| cluster_error(e, "redis command failed"))
    }

    /// Runs `cmd` (a command of no key) on any node.
    pub async fn command_at_any(&self, cmd: &Cmd) -> Result<Value> {
        let mut connection = self.connection().await?;
        connection
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
            .map_err(|e| cluster_error(e, "redis command failed"))
    }

    /// The addresses of the cluster's nodes (`CLUSTER NODES`), only the primaries with
    /// `primaries`, leaving out those marked failed.
    pub async fn nodes(&self, primaries: bool) -> Result<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let reply = self.command_at_any(&cmd).await?;
        let text = crate::codec::string(reply, "CLUSTER NODES")?;
        let mut nodes = Vec::new();
        for line in text.lines() {
            // <id> <ip:port@cport[,hostname]> <flags> …
            let mut fields = line.split(' ');
            let (Some(_), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let flags: Vec<&str> = flags.split(',').collect();
            let failed = flags
                .iter()
                .any(|f| f.starts_with("fail") || *f == "noaddr");
            if failed || (primaries && !flags.contains(&"master")) {
                continue;
            }
            let addr = addr.split(['@', ',']).next().unwrap_or_default();
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    nodes.push((host.to_owned(), port));
                }
            }
        }
        if nodes.is_empty() {
            return Err(Error::storage("CLUSTER NODES listed no node"));
        }
        Ok(nodes)
    }

    async fn query(&self, pipe: &Pipeline) -> Result<Vec<Value>> {
        join_all(pipe.cmd_iter().map(|cmd| self.command(cmd)))
            .await
            .into_iter()
            .collect()
    }

    async fn eval_call(&self, call: &Call<'_>) -> Result<Value> {
        let mut connection = self.connection().await?;
        let refused = |e| cluster_error(e, format!("redis refused {}", call.script.name));
        match connection.req_packed_command(&call.cmd).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                // Routed to every node, so a node that takes the slot later knows it too.
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(&call.script.source);
                connection
                    .req_packed_command(&load)
                    .await
                    .map_err(|e| cluster_error(e, "cannot load a script"))?;
                connection
                    .req_packed_command(&call.cmd)
                    .await
                    .map_err(refused)
            }
            reply => reply.map_err(refused),
        }
    }

    async fn eval(&self, calls: &[Call<'_>]) -> Result<Vec<Value>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut places: HashMap<&str, usize> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let at = *places.entry(&call.first_key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(i);
        }
        let runs = groups.iter().map(|group| async move {
            let mut replies = Vec::with_capacity(group.len());
            for &i in group {
                let reply = self.eval_call(&calls[i]).await;
                let failed = reply.is_err();
                replies.push((i, reply));
                if failed {
                    break;
                }
            }
            replies
        });
        let mut replies = vec![Value::Nil; calls.len()];
        let mut failure = None;
        for (i, reply) in join_all(runs).await.into_iter().flatten() {
            match reply {
                Ok(value) => replies[i] = value,
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }
}

impl Single {
    pub fn new(
        client: redis::Client,
        connection_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(connection_timeout)
            .set_response_timeout(response_timeout)
            .set_tcp_settings(tcp_settings());
        Single {
            client,
            config,
            connection_timeout,
            current: std::sync::Mutex::new(None),
            reconnect: tokio::sync::Mutex::new(Reconnect {
                generation: 0,
                next_attempt: None,
                backoff: MIN_BACKOFF,
                failing_since: None,
            }),
        }
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The live connection, or a new one.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut state = self.reconnect.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        if let Some(next) = state.next_attempt {
            let now = Instant::now();
            if now < next {
                return Err(Error::unavailable(format!(
                    "redis is unreachable; reconnecting in {:?}",
                    next - now
                )));
            }
        }
        let dial = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        let error = match tokio::time::timeout(self.connection_timeout, dial).await {
            Ok(Ok(connection)) => {
                state.generation += 1;
                state.next_attempt = None;
                state.backoff = MIN_BACKOFF;
                if let Some(since) = state.failing_since.take() {
                    info!(down_for = ?since.elapsed(), "redis connection restored");
                }
                let current = (state.generation, connection);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.clone());
                return Ok(current);
            }
            Ok(Err(e)) => backend_error(e, "cannot connect to redis"),
            Err(_) => Error::unavailable(format!(
                "cannot connect to redis: timed out after {:?}",
                self.connection_timeout
            )),
        };
        if error.kind() == ErrorKind::Unavailable {
            if state.failing_since.is_none() {
                state.failing_since = Some(Instant::now());
                warn!(%error, "redis is unreachable; reconnecting with backoff, calls fail as unavailable until it is back");
            }
            state.next_attempt = Some(Instant::now() + state.backoff);
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
        }
        Err(error)
    }

    /// Maps a command error; a broken connection is dropped so the next call reconnects.
    fn fail(&self, generation: u64, err: RedisError) -> Error {
        let broken = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
            || err.is_unrecoverable_error();
        if broken {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                warn!(error = %err, "redis connection lost; reconnecting");
                *current = None;
            }
        }
        backend_error(err, "redis command failed")
    }

    /// Sends commands in one round trip and returns each reply, server errors included
    /// as `Value::ServerError`.
    async fn raw(&self, pipe: &Pipeline, count: usize) -> Result<Vec<Value>> {
        let (generation, mut connection) = self.connection().await?;
        let replies = connection
            .req_packed_commands(pipe, 0, count)
            .await
            .map_err(|e| self.fail(generation, e))?;
        if replies.len() != count {
            return Err(Error::storage(format!(
                "redis returned {} replies to {count} commands",
                replies.len()
            )));
        }
        Ok(replies)
    }

    /// Sends plain commands in one round trip; any error reply fails the whole call.
    async fn query(&self, pipe: &Pipeline, count: usize) -> Result<Vec<Value>> {
        self.raw(pipe, count)
            .await?
            .into_iter()
            .map(|v| reply(v, "redis command"))
            .collect()
    }

    async fn command(&self, cmd: &Cmd) -> Result<Value> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        Ok(self.query(&pipe, 1).await?.pop().unwrap_or(Value::Nil))
    }

    /// [`Conn::eval`], in one round trip (pipelined).
    async fn eval(&self, calls: &[Call<'_>]) -> Result<Vec<Value>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for call in calls {
            pipe.add_command(call.cmd.clone());
        }
        let mut replies = self.raw(&pipe, calls.len()).await?;
        let missing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, v)| is_noscript(v))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            let mut load = redis::pipe();
            let mut loaded: Vec<&str> = Vec::new();
            for &i in &missing {
                let script = calls[i].script;
                if !loaded.contains(&script.name) {
                    loaded.push(script.name);
                    load.cmd("SCRIPT").arg("LOAD").arg(&script.source);
                }
            }
            self.query(&load, loaded.len()).await?;
            let mut again = redis::pipe();
            for &i in &missing {
                again.add_command(calls[i].cmd.clone());
            }
            let retried = self.raw(&again, missing.len()).await?;
            for (i, value) in missing.into_iter().zip(retried) {
                replies[i] = value;
            }
        }
        replies
            .into_iter()
            .zip(calls)
            .map(|(v, call)| reply(v, call.script.name))
            .collect()
    }
}

/// The cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (what is between the
/// first `{` and the next `}`, when that is not empty) or of the whole key, mod 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// No Nagle delay (claims and outcomes are small writes that want their reply now), and
/// keepalive probes, so a connection to a machine that vanished is noticed and replaced.
pub(crate) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A reply, or the error it is: an error reply is mapped as [`backend_error`] maps it.
fn reply(value: Value, what: &str) -> Result<Value> {
    match value {
        Value::ServerError(e) => Err(backend_error(
            RedisError::from(e),
            format!("redis refused {what}"),
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_are_those_redis_computes() {
        // What `CLUSTER KEYSLOT` answers on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{taskmill:emails}:meta"), 12821);
        assert_eq!(key_slot(b"{taskmill:emails}:ready"), 12821);
        assert_eq!(key_slot(b"a{}b"), 13694);
        assert_eq!(key_slot(b"taskmill:ids"), 8438);
    }
}
