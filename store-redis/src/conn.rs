//! The command connection: one multiplexed connection that reconnects by itself, the
//! script calls made over it, and how Redis errors map to taskmill's error kinds.

use crate::keys::TopicKeys;
use crate::scripts::Script;
use crate::Keys;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use taskmill_core::{Error, Result};
use tokio::sync::OnceCell;
use tracing::{info, warn};

/// The shared command connection.
///
/// redis-rs's `ConnectionManager` multiplexes every concurrent caller over one TCP
/// connection and, when it drops, reconnects in the background with exponential backoff.
/// It is created on first use, so a store can be built while Redis is still starting.
pub(crate) struct Conn {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: OnceCell<ConnectionManager>,
    /// False while Redis is unreachable, so the outage is logged once, not per command.
    healthy: AtomicBool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("server", &self.client.get_connection_info().addr)
            .finish_non_exhaustive()
    }
}

/// One script call: the script, the topic whose keys it works on, and its own arguments.
pub(crate) struct Call<'a> {
    script: &'a Script,
    cmd: Cmd,
}

impl<'a> Call<'a> {
    /// A call of `script` on `topic`'s keys; add the script's own arguments with [`arg`].
    pub fn new(script: &'a Script, keys: &Keys, topic: &TopicKeys) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&script.sha)
            .arg(topic.keys.len())
            .arg(&topic.keys[..])
            .arg(&topic.task_prefix)
            .arg(&keys.wake)
            .arg(&keys.events)
            .arg(&topic.topic_json);
        Call { script, cmd }
    }

    /// Appends an argument.
    pub fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}

impl Conn {
    pub fn new(
        client: redis::Client,
        connection_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let config = ConnectionManagerConfig::new()
            // Reconnect attempts back off 50 ms, 100 ms, 200 ms… (with jitter), capped at
            // 2 s; a command waits for at most this many attempts before it fails with
            // `Unavailable`, and the next command starts a new round.
            .set_factor(50)
            .set_exponent_base(2)
            .set_max_delay(2_000)
            .set_number_of_retries(4)
            .set_connection_timeout(connection_timeout)
            .set_response_timeout(response_timeout);
        Conn {
            client,
            config,
            manager: OnceCell::new(),
            healthy: AtomicBool::new(true),
        }
    }

    async fn manager(&self) -> Result<ConnectionManager> {
        let manager = self
            .manager
            .get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            })
            .await
            .map_err(|e| self.fail(e, "cannot connect to redis"))?;
        Ok(manager.clone())
    }

    /// Maps an error, logging the start of an outage once.
    fn fail(&self, err: RedisError, what: &'static str) -> Error {
        let error = map_error(err, what);
        if error.kind() == taskmill_core::ErrorKind::Unavailable
            && self.healthy.swap(false, Ordering::Relaxed)
        {
            warn!(error = %error, "redis is unreachable; reconnecting with backoff, calls fail as unavailable until it is back");
        }
        error
    }

    fn succeeded(&self) {
        if !self.healthy.load(Ordering::Relaxed) && !self.healthy.swap(true, Ordering::Relaxed) {
            info!("redis connection restored");
        }
    }

    /// Sends commands in one round trip and returns each reply, server errors included
    /// as `Value::ServerError`.
    pub async fn raw(&self, pipe: &Pipeline, count: usize) -> Result<Vec<Value>> {
        let mut manager = self.manager().await?;
        let replies = manager
            .req_packed_commands(pipe, 0, count)
            .await
            .map_err(|e| self.fail(e, "redis command failed"))?;
        self.succeeded();
        if replies.len() != count {
            return Err(Error::storage(format!(
                "redis returned {} replies to {count} commands",
                replies.len()
            )));
        }
        Ok(replies)
    }

    /// Sends plain commands in one round trip; any error reply fails the whole call.
    pub async fn query(&self, pipe: &Pipeline, count: usize) -> Result<Vec<Value>> {
        self.raw(pipe, count)
            .await?
            .into_iter()
            .map(|v| reply(v, "redis command"))
            .collect()
    }

    /// Runs script calls in one round trip (pipelined) and returns their replies in order.
    ///
    /// A script Redis does not know (after a restart or `SCRIPT FLUSH`) is loaded and its
    /// calls sent again: a `NOSCRIPT` reply means the call did not run, so that is safe.
    /// Any other error reply fails the whole call, and calls before it in the pipeline may
    /// have been applied.
    pub async fn eval(&self, calls: &[Call<'_>]) -> Result<Vec<Value>> {
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

    /// Runs one script call.
    pub async fn eval_one(&self, call: Call<'_>) -> Result<Value> {
        let mut replies = self.eval(std::slice::from_ref(&call)).await?;
        replies
            .pop()
            .ok_or_else(|| Error::storage("redis returned no reply"))
    }
}

fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Turns an error reply into an error.
fn reply(value: Value, what: &str) -> Result<Value> {
    match value {
        Value::ServerError(e) => {
            let code = e.code().to_owned();
            let err: RedisError = e.into();
            let kind = if transient_code(&code) {
                taskmill_core::ErrorKind::Unavailable
            } else {
                taskmill_core::ErrorKind::Storage
            };
            Err(Error::new(kind, format!("redis refused {what}")).with_source(err))
        }
        other => Ok(other),
    }
}

/// Error replies that say "not now" rather than "no": loading after a restart, a busy
/// script, a failover in progress.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING"
            | "BUSY"
            | "TRYAGAIN"
            | "CLUSTERDOWN"
            | "MASTERDOWN"
            | "READONLY"
            | "MOVED"
            | "ASK"
    )
}

/// Maps a redis-rs error to taskmill's kinds: connection trouble is `Unavailable` (the
/// call may be repeated), anything else `Storage`.
pub(crate) fn map_error(err: RedisError, what: &'static str) -> Error {
    let transient = err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || err.code().is_some_and(transient_code)
        || matches!(
            err.kind(),
            redis::ErrorKind::BusyLoadingError
                | redis::ErrorKind::TryAgain
                | redis::ErrorKind::ClusterDown
                | redis::ErrorKind::MasterDown
                | redis::ErrorKind::ReadOnly
        );
    if transient {
        Error::unavailable(what).with_source(err)
    } else {
        Error::storage(what).with_source(err)
    }
}
