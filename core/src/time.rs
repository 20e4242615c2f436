//! Wall-clock time as stores see it, and the clock the Manager reads it from.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

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

/// The last instant RFC 3339 can write (`9999-12-31T23:59:59.999Z`).
const LAST_RFC3339: i64 = 253_402_300_799_999;

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T06:40:01.123Z`; an instant before
/// the epoch or after year 9999, which RFC 3339 cannot write, as its milliseconds
/// (`@-5ms`).
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0..=LAST_RFC3339 => {
                fmt::Display::fmt(&humantime::format_rfc3339_millis(self.to_system_time()), f)
            }
            ms => write!(f, "@{ms}ms"),
        }
    }
}

/// Where the Manager reads the time it hands to its store.
///
/// [`Clock::system`] (the default) is the wall clock, which is what several processes
/// sharing one store must agree on. [`Clock::tokio`] follows tokio's clock, so a test
/// running with paused time (`#[tokio::test(start_paused = true)]`) sees backoffs and
/// lease deadlines pass as tokio's time advances. [`Clock::manual`] stands still until a
/// test moves it, for schedules driven tick by tick on any runtime and any store.
#[derive(Debug, Clone)]
pub struct Clock(ClockKind);

#[derive(Debug, Clone)]
enum ClockKind {
    System,
    Tokio {
        base: Timestamp,
        start: tokio::time::Instant,
    },
    Manual(Arc<watch::Sender<Timestamp>>),
}

impl Clock {
    /// The system wall clock.
    pub fn system() -> Self {
        Clock(ClockKind::System)
    }

    /// tokio's clock, anchored at the current wall-clock time.
    pub fn tokio() -> Self {
        Self::tokio_at(Timestamp::now())
    }

    /// tokio's clock, reading `base` now.
    pub fn tokio_at(base: Timestamp) -> Self {
        Clock(ClockKind::Tokio {
            base,
            start: tokio::time::Instant::now(),
        })
    }

    /// A clock that reads `start` until [`set`](Self::set) or [`advance`](Self::advance)
    /// moves it; its clones share the one time. What waits for a time on it (a manager's
    /// schedules) wakes as it is moved.
    pub fn manual(start: Timestamp) -> Self {
        Clock(ClockKind::Manual(Arc::new(watch::Sender::new(start))))
    }

    /// The current time by this clock.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            ClockKind::System => Timestamp::now(),
            ClockKind::Tokio { base, start } => *base + start.elapsed(),
            ClockKind::Manual(time) => *time.borrow(),
        }
    }

    /// Sets a [`manual`](Self::manual) clock to `t` (earlier or later).
    ///
    /// # Panics
    /// On a clock that is not manual: the other clocks are read, not set.
    pub fn set(&self, t: Timestamp) {
        match &self.0 {
            ClockKind::Manual(time) => {
                time.send_replace(t);
            }
            _ => panic!("Clock::set needs a manual clock"),
        }
    }

    /// Moves a [`manual`](Self::manual) clock forward by `d`.
    ///
    /// # Panics
    /// On a clock that is not manual.
    pub fn advance(&self, d: Duration) {
        self.set(self.now() + d);
    }

    /// Waits until this clock reads `t` or later.
    ///
    /// On the system clock this sleeps for the difference and checks again, so a wall
    /// clock stepped back while sleeping makes it sleep on rather than wake early.
    pub async fn sleep_until(&self, t: Timestamp) {
        match &self.0 {
            ClockKind::Manual(time) => {
                let mut changes = time.subscribe();
                // The sender lives as long as this clock, so this ends only when it reads t.
                let _ = changes.wait_for(|now| *now >= t).await;
            }
            _ => loop {
                let left = t.saturating_since(self.now());
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left).await;
            },
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

    #[test]
    fn display_writes_rfc3339_and_never_fails() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::from_millis(LAST_RFC3339).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(Timestamp::from_millis(-5).to_string(), "@-5ms");
        assert_eq!(
            Timestamp::from_millis(i64::MAX).to_string(),
            format!("@{}ms", i64::MAX)
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
