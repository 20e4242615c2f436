//! The options of a [`SqliteStore`](crate::SqliteStore) and its URL form.

use std::path::PathBuf;
use std::time::Duration;
use taskmill_core::raw::{StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::Result;

/// How hard a commit works to survive a power failure.
///
/// Both levels survive a crash of the process (kill -9) at any instant: a committed
/// transaction is in the write-ahead log, which the operating system holds. They differ
/// when the machine itself loses power or the kernel crashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous = NORMAL`: the log is synced at checkpoints, not at each
    /// commit. A power loss may roll back the last commits (the database stays
    /// consistent); a process crash loses nothing. The default, and much faster.
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`: each commit syncs the log before returning, so a
    /// commit that returned survives a power loss too.
    Full,
}

/// Options for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How hard a commit works to survive a power failure. Default: [`Durability::Normal`].
    pub durability: Durability,
    /// How long a call waits for another process's write transaction before it fails
    /// with [`ErrorKind::Unavailable`](taskmill_core::ErrorKind::Unavailable).
    /// Default: 5 s.
    pub busy_timeout: Duration,
    /// How many events a subscriber may fall behind before it gets `Event::Lagged`.
    pub event_buffer: usize,
    /// Open the file read-only: reads work, every write fails with
    /// [`ErrorKind::Storage`](taskmill_core::ErrorKind::Storage). The file must already
    /// hold a taskmill schema. Default: false.
    pub read_only: bool,
    /// The largest the database may grow, in bytes (`PRAGMA max_page_count`); a write
    /// that would grow it further fails with
    /// [`ErrorKind::Storage`](taskmill_core::ErrorKind::Storage) and changes nothing, as
    /// on a full disk. Default: no limit.
    pub max_size: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
            event_buffer: DEFAULT_EVENT_BUFFER,
            read_only: false,
            max_size: None,
        }
    }
}

impl SqliteOptions {
    /// Sets the durability level.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long to wait for another process's write transaction.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how far an event subscriber may fall behind.
    pub fn event_buffer(mut self, buffer: usize) -> Self {
        self.event_buffer = buffer;
        self
    }

    /// Opens the database read-only.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Caps the size of the database file.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

/// Splits a store URL, `sqlite://PATH[?OPTIONS]`, into the database path and the options.
pub(crate) fn parse_url(url: &str) -> Result<(PathBuf, SqliteOptions)> {
    let url = StoreUrl::parse(url, &["sqlite"], "sqlite://PATH, e.g. sqlite://tasks.db")?;
    let path = url.location("database file")?;
    let mut options = SqliteOptions::default();
    for (key, value) in url.options() {
        let bad = || url.invalid(key, value);
        match key {
            "durability" => {
                options.durability = match value {
                    "normal" => Durability::Normal,
                    "full" => Durability::Full,
                    _ => return Err(bad()),
                }
            }
            "busy_timeout_ms" => {
                options.busy_timeout = Duration::from_millis(value.parse().map_err(|_| bad())?)
            }
            "max_size" => options.max_size = Some(value.parse().map_err(|_| bad())?),
            "read_only" => options.read_only = value.parse().map_err(|_| bad())?,
            _ => {
                let known = ["durability", "busy_timeout_ms", "max_size", "read_only"];
                return Err(url.unknown(key, &known));
            }
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
        let (path, o) = parse_url("sqlite://data/tasks.db").unwrap();
        assert_eq!(path, PathBuf::from("data/tasks.db"));
        assert_eq!(o.durability, Durability::Normal);
        let (path, o) =
            parse_url("sqlite:///abs/t.db?durability=full&busy_timeout_ms=250").unwrap();
        assert_eq!(path, PathBuf::from("/abs/t.db"));
        assert_eq!(o.durability, Durability::Full);
        assert_eq!(o.busy_timeout, Duration::from_millis(250));
        assert_eq!(
            parse_url("sqlite://:memory:").unwrap().0,
            PathBuf::from(":memory:")
        );
        for bad in [
            "sqlite://",
            "redis://x",
            "sqlite://t.db?durability=lots",
            "sqlite://t.db?colour=blue",
        ] {
            assert_eq!(
                parse_url(bad).unwrap_err().kind(),
                ErrorKind::Misuse,
                "{bad}"
            );
        }
    }
}
