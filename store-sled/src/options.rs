//! The options of a [`SledStore`](crate::SledStore) and its URL form.

use std::path::PathBuf;
use std::time::Duration;
use taskmill_core::raw::{StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};

/// When changes reach the disk, and so what a crash (of the process or the machine) can
/// lose.
///
/// Whatever the policy, a crash never leaves a task half-moved: each move is one sled
/// batch, which recovery replays whole or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlushPolicy {
    /// Every call whose loss a crash could show returns only after its change is on disk:
    /// enqueues, outcomes, requeues, deletes, pauses. Concurrent calls share one flush. A
    /// crash loses nothing acknowledged.
    ///
    /// Claims, lease renewals and the reaper's recoveries are not flushed on their own
    /// (they reach the disk with the next flush: sled's log is sequential). Losing one in a
    /// crash is the same as the crash itself: a crash ends every lease of the process, a
    /// task whose claim was lost is back in INPUT at once rather than after its lease
    /// expires, and a lost recovery is made again by the next reaper.
    #[default]
    Always,
    /// Enqueues and admin calls (requeue, delete, pause) are flushed before they return;
    /// claims and outcomes reach the disk with sled's periodic flush
    /// ([`SledOptions::flush_every`]) or the next flushed call. A crash loses no task, but
    /// may lose the last outcomes: those tasks run again (at least once still holds).
    Enqueues,
    /// Nothing is flushed per call; sled flushes every [`SledOptions::flush_every`]. A crash
    /// may lose everything since the last flush, enqueued tasks included.
    Periodic,
}

impl std::str::FromStr for FlushPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(FlushPolicy::Always),
            "enqueues" => Ok(FlushPolicy::Enqueues),
            "periodic" => Ok(FlushPolicy::Periodic),
            _ => Err(Error::misuse(format!(
                "unknown flush policy {s:?} (expected always, enqueues or periodic)"
            ))),
        }
    }
}

/// Options for [`SledStore::open_with`](crate::SledStore::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SledOptions {
    /// When changes are flushed to disk; [`FlushPolicy::Always`] by default.
    pub flush: FlushPolicy,
    /// sled's background flush interval (500 ms by default); `None` turns it off, leaving
    /// only the flushes of [`FlushPolicy`].
    pub flush_every: Option<Duration>,
    /// sled's page cache size in bytes; sled's default (1 GiB) when `None`.
    pub cache_capacity: Option<u64>,
    /// How many events a subscriber may fall behind by.
    pub event_buffer: usize,
    /// How long a flush may take before the store gives up on it (30 s by default). sled
    /// can wait forever for a write the disk refused (a full disk); past this the calls
    /// waiting on the flush fail with `Storage` and the store refuses writes until it is
    /// opened again, instead of hanging every caller.
    pub flush_timeout: Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            flush: FlushPolicy::Always,
            flush_every: Some(Duration::from_millis(500)),
            cache_capacity: None,
            event_buffer: DEFAULT_EVENT_BUFFER,
            flush_timeout: Duration::from_secs(30),
        }
    }
}

impl SledOptions {
    /// Sets the flush policy.
    pub fn flush(mut self, policy: FlushPolicy) -> Self {
        self.flush = policy;
        self
    }

    /// Sets sled's background flush interval.
    pub fn flush_every(mut self, every: Option<Duration>) -> Self {
        self.flush_every = every;
        self
    }

    /// Sets sled's page cache size in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// Sets how many events a subscriber may fall behind by.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }

    /// Sets how long a flush may take before the store gives up on it.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }
}

/// Splits a store URL, `sled://DIR[?flush=…&flush_timeout_ms=…]`, into the database directory and the
/// options.
pub(crate) fn parse_url(url: &str) -> Result<(PathBuf, SledOptions)> {
    let url = StoreUrl::parse(url, &["sled"], "sled://path/to/dir")?;
    let path = url.location("directory")?;
    let mut options = SledOptions::default();
    for (key, value) in url.options() {
        match key {
            "flush" => options.flush = value.parse()?,
            "flush_timeout_ms" => {
                let ms: u64 = value.parse().map_err(|_| url.invalid(key, value))?;
                options.flush_timeout = Duration::from_millis(ms.max(1));
            }
            _ => return Err(url.unknown(key, &["flush", "flush_timeout_ms"])),
        }
    }
    Ok((PathBuf::from(path), options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmill_core::ErrorKind;

    #[test]
    fn urls_parse() {
        let (path, o) = parse_url("sled://data/tasks").unwrap();
        assert_eq!(
            (path, o.flush),
            (PathBuf::from("data/tasks"), FlushPolicy::Always)
        );
        let (path, o) = parse_url("sled:///var/lib/x?flush=enqueues").unwrap();
        assert_eq!(
            (path, o.flush),
            (PathBuf::from("/var/lib/x"), FlushPolicy::Enqueues)
        );
        let (_, o) = parse_url("sled://x?flush_timeout_ms=2500").unwrap();
        assert_eq!(o.flush_timeout, Duration::from_millis(2500));
        for bad in [
            "sled://",
            "memory://",
            "sled://x?flush=never",
            "sled://x?cache=1",
            "sled://x?flush_timeout_ms=soon",
        ] {
            assert_eq!(
                parse_url(bad).unwrap_err().kind(),
                ErrorKind::Misuse,
                "{bad}"
            );
        }
    }
}
