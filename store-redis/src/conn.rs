//! The command connection and the script calls made over it: to one server, one
//! multiplexed connection that reconnects by itself; to a Redis Cluster, redis-rs's
//! cluster connection, which follows the slots. (The subscription connection is `bus.rs`.)

pub(crate) use crate::cluster::Cluster;
use crate::error::backend_error;
use crate::layout::{Keys, TopicKeys};
use crate::scripts::Script;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, Value};
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
#[allow(
    clippy::large_enum_variant,
    reason = "one per store, behind its Arc: boxing would only add an indirection to every command"
)]
pub(crate) enum Conn {
    /// One server.
    Single(Single),
    /// A Redis Cluster (shared with the subscription, which asks it where to subscribe).
    Cluster(std::sync::Arc<Cluster>),
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
    pub(crate) script: &'a Script,
    pub(crate) cmd: Cmd,
    /// The call's first key, which names its slot: calls with the same one run in order.
    pub(crate) first_key: String,
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
            Conn::Cluster(cluster) => cluster.wait_on_primaries(keys, &wait).await?,
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
