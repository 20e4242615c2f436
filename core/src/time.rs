//! Wall-clock time as stores see it, and the clock the Manager reads it from.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time: milliseconds since the Unix epoch.
///
/// Stores never read a clock themselves: every time-dependent operation is handed `now`
/// by the caller. That keeps a backend's behaviour deterministic under test and lets one
/// clock (the Manager's) decide what is due, even across machines sharing a Redis.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current system time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl Timestamp {
    /// The timestamp as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T06:40:01.123Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_millis(self.to_system_time()), f)
    }
}

/// Where the Manager reads the time it hands to its store.
///
/// [`Clock::system`] (the default) is the wall clock, which is what several processes
/// sharing one store must agree on. [`Clock::tokio`] follows tokio's clock, so a test
/// running with paused time (`#[tokio::test(start_paused = true)]`) sees backoffs and
/// lease deadlines pass as tokio's time advances.
#[derive(Debug, Clone, Copy)]
pub struct Clock(ClockKind);

#[derive(Debug, Clone, Copy)]
enum ClockKind {
    System,
    Tokio {
        base: Timestamp,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// The system wall clock.
    pub fn system() -> Self {
        Clock(ClockKind::System)
    }

    /// tokio's clock, anchored at the current wall-clock time.
    pub fn tokio() -> Self {
        Clock(ClockKind::Tokio {
            base: Timestamp::now(),
            start: tokio::time::Instant::now(),
        })
    }

    /// The current time by this clock.
    pub fn now(&self) -> Timestamp {
        match self.0 {
            ClockKind::System => Timestamp::now(),
            ClockKind::Tokio { base, start } => base + start.elapsed(),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!((t + Duration::from_millis(500)).as_millis(), 1_500);
        assert_eq!((t - Duration::from_millis(500)).as_millis(), 500);
        assert_eq!(
            t.saturating_since(Timestamp::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(
            t.saturating_since(Timestamp::from_millis(4_000)),
            Duration::ZERO
        );
        assert_eq!(
            (Timestamp::from_millis(i64::MAX) + Duration::from_secs(1)).as_millis(),
            i64::MAX
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let before = clock.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            clock.now().saturating_since(before),
            Duration::from_secs(3600)
        );
    }
}
