//! redis-server's own CPU time, from `INFO cpu` (`used_cpu_sys` + `used_cpu_user`): where
//! a workload on Redis saturates, which the benchmark process's own CPU time cannot show.
//!
//! Only a single server (`redis://`, and `rediss://` where the redis client is built with
//! TLS) is read; for a cluster, or a build without Redis, [`ServerCpu::connect`] gives
//! `None`.

use std::time::Duration;
use taskmill::Result;

/// A connection that reads a Redis server's CPU time.
pub struct ServerCpu {
    #[cfg(feature = "redis")]
    conn: redis::aio::MultiplexedConnection,
}

impl ServerCpu {
    /// Connects to the server a store URL names, if it is a single Redis server: the
    /// store's own options (`?namespace=…`) are left off.
    pub async fn connect(store_url: &str) -> Result<Option<ServerCpu>> {
        #[cfg(feature = "redis")]
        {
            let Some(url) = server_url(store_url) else {
                return Ok(None);
            };
            let Ok(client) = redis::Client::open(url) else {
                // A scheme this client is not built for (rediss:// without TLS).
                return Ok(None);
            };
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| {
                    taskmill::Error::unavailable("cannot read redis-server's CPU time")
                        .with_source(e)
                })?;
            Ok(Some(ServerCpu { conn }))
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = store_url;
            Ok(None)
        }
    }

    /// The CPU time (system and user) the server has used since it started.
    pub async fn used(&mut self) -> Result<Duration> {
        #[cfg(feature = "redis")]
        {
            let text: String = redis::cmd("INFO")
                .arg("cpu")
                .query_async(&mut self.conn)
                .await
                .map_err(|e| taskmill::Error::unavailable("INFO cpu failed").with_source(e))?;
            parse_info_cpu(&text).ok_or_else(|| {
                taskmill::Error::storage(format!("no CPU times in INFO cpu: {text}"))
            })
        }
        #[cfg(not(feature = "redis"))]
        {
            Err(taskmill::Error::unsupported("built without Redis"))
        }
    }
}

/// The URL of the server itself: a single-server scheme, without the query.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn server_url(store_url: &str) -> Option<&str> {
    let single = store_url.starts_with("redis://") || store_url.starts_with("rediss://");
    single.then(|| store_url.split('?').next().unwrap_or(store_url))
}

/// `used_cpu_sys` + `used_cpu_user` of an `INFO cpu` reply.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn parse_info_cpu(text: &str) -> Option<Duration> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse::<f64>().ok())
    };
    let secs = field("used_cpu_sys")? + field("used_cpu_user")?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_system_and_user_time() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n";
        assert_eq!(parse_info_cpu(info), Some(Duration::from_millis(3_750)));
        assert_eq!(parse_info_cpu("# CPU\r\n"), None);
    }

    #[test]
    fn only_single_servers_without_the_store_options() {
        assert_eq!(
            server_url("redis://127.0.0.1:6391/0?namespace=x"),
            Some("redis://127.0.0.1:6391/0")
        );
        assert_eq!(server_url("redis+cluster://a:1,b:2"), None);
        assert_eq!(server_url("memory://"), None);
    }
}
