//! Redis's errors as taskmill's: [`backend_error`].

use redis::RedisError;
use std::borrow::Cow;
use taskmill_core::Error;

/// Error replies that say "not now" rather than "no": loading after a restart, a busy
/// script, a failover in progress.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY"
    )
}

/// What a server that is a Redis Cluster node answers a client that does not know it: a
/// key of a slot it does not serve, or keys of several slots in one command.
fn cluster_code(code: &str) -> bool {
    matches!(code, "MOVED" | "ASK" | "CROSSSLOT")
}

/// The error of a store opened with a plain URL on a Redis Cluster node.
pub(crate) fn not_a_cluster_client(context: &str) -> Error {
    Error::misuse(format!(
        "{context}: the server is a Redis Cluster node; open the store with a \
         redis+cluster://host:port,host:port/?namespace=NAME URL"
    ))
}

/// Maps a redis-rs error to a taskmill error of the kind a caller can act on, with
/// `context` saying what was being done and the Redis error as the source: connection
/// trouble and "not now" replies are `Unavailable` (the call may be repeated), refused
/// credentials `Misuse`, anything else `Storage`.
pub(crate) fn backend_error(err: RedisError, context: impl Into<Cow<'static, str>>) -> Error {
    let context = context.into();
    // Checked first: redis-rs counts a refused login as a reason to reconnect, which
    // would make it `Unavailable`, retried for ever.
    if err.kind() == redis::ErrorKind::AuthenticationFailed {
        // Wrong credentials are a configuration mistake, like a bad URL.
        return Error::misuse(format!("{context}: redis refused the credentials")).with_source(err);
    }
    if err.code().is_some_and(cluster_code) {
        return not_a_cluster_client(&context).with_source(err);
    }
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
        Error::unavailable(context).with_source(err)
    } else {
        Error::storage(context).with_source(err)
    }
}

/// [`backend_error`] for the cluster connection, where redis-rs follows `MOVED` and `ASK`
/// itself: one that still reaches us means the slots kept moving past its retries, which
/// is `Unavailable` (the call may be repeated); `CROSSSLOT` is a script given keys of
/// several slots, a bug of this crate (`Storage`).
pub(crate) fn cluster_error(err: RedisError, context: impl Into<Cow<'static, str>>) -> Error {
    let context = context.into();
    match err.kind() {
        redis::ErrorKind::Moved | redis::ErrorKind::Ask => {
            Error::unavailable(format!("{context}: the cluster's slots are moving"))
                .with_source(err)
        }
        redis::ErrorKind::CrossSlot => Error::storage(context).with_source(err),
        _ => backend_error(err, context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmill_core::ErrorKind;

    /// The error a server replies with `line` (`-CODE message`).
    fn reply_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap() {
            redis::Value::ServerError(e) => RedisError::from(e),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn cluster_replies_to_a_plain_connection_are_misuse_naming_the_fix() {
        for line in [
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "CROSSSLOT Keys in request don't hash to the same slot",
        ] {
            let err = backend_error(reply_error(line), "redis command failed");
            assert_eq!(err.kind(), ErrorKind::Misuse, "{line}: {err}");
            assert!(err.to_string().contains("redis+cluster://"), "{err}");
        }
    }

    #[test]
    fn a_cluster_that_is_down_or_moving_is_unavailable() {
        for line in [
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            let err = cluster_error(reply_error(line), "redis command failed");
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{line}: {err}");
            let err = backend_error(reply_error(line), "redis command failed");
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{line}: {err}");
        }
        // Redirects redis-rs gave up following: the slots keep moving.
        for line in ["MOVED 3999 127.0.0.1:6381", "ASK 3999 127.0.0.1:6381"] {
            let err = cluster_error(reply_error(line), "redis command failed");
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{line}: {err}");
        }
        // Keys of several slots in one script call would be this crate's bug.
        let err = cluster_error(reply_error("CROSSSLOT Keys in request"), "x");
        assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    }
}
