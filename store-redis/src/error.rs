//! Redis's errors as taskmill's: [`backend_error`].

use redis::RedisError;
use std::borrow::Cow;
use taskmill_core::Error;

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
