//! When a schedule ticks: a cron expression in a time zone, or a fixed interval.

use crate::error::{Error, Result};
use crate::time::Timestamp;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The shortest interval of [`Cadence::every`]: a tick more often than once a second is a
/// loop, not a schedule.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When a schedule ticks.
///
/// Both forms name ticks by their instant, so every manager computes the same ticks
/// from the same cadence without talking to the others:
///
/// - A cron expression ([`Cadence::cron`]) with five fields (minute granularity) or six
///   (seconds first), the aliases `@yearly`, `@monthly`, `@weekly`, `@daily`,
///   `@hourly`, and croner's `L`, `W` and `#`, read in an IANA time zone (UTC unless
///   [`in_zone`](Cadence::in_zone) says otherwise).
/// - A fixed interval ([`Cadence::every`], or `@every 90s` as an expression): ticks at
///   every multiple of the interval since the Unix epoch, so `@every 1h` ticks on the hour
///   in UTC, whenever a manager started.
///
/// # Daylight-saving time
///
/// A cron expression follows the convention of Vixie cron and the Open Cron Pattern
/// Specification, which croner implements. A *fixed-time* expression (one value each for
/// seconds, minutes and hours, like `30 2 * * *`) fires once a day whatever the clocks do:
/// on a spring-forward day a time in the skipped hour fires at the first instant after the
/// gap, and on a fall-back day a time in the repeated hour fires at its first occurrence
/// only. An *interval* expression (a wildcard or step in those fields, like `*/15 * * * *`)
/// follows the wall clock: it does not fire in the skipped hour and fires in both copies of
/// the repeated one. An interval cadence (`@every`) counts real time and ignores zones.
#[derive(Clone)]
pub struct Cadence(Kind);

#[derive(Clone)]
enum Kind {
    Cron {
        cron: Box<Cron>,
        source: Arc<str>,
        zone: Tz,
    },
    Every(Duration),
}

impl Cadence {
    /// A cadence from a cron expression, an alias, or `@every <duration>` (humantime's
    /// syntax: `90s`, `5m`, `1h 30m`), in UTC.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse), naming the expression
    /// and what is wrong with it.
    pub fn cron(expression: &str) -> Result<Self> {
        let expression = expression.trim();
        if let Some(interval) = expression.strip_prefix("@every") {
            let interval = humantime::parse_duration(interval.trim()).map_err(|e| {
                Error::misuse(format!("schedule interval {expression:?} is invalid: {e}"))
            })?;
            return Self::every(interval);
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                Error::misuse(format!("cron expression {expression:?} is invalid: {e}"))
            })?;
        Ok(Cadence(Kind::Cron {
            cron: Box::new(cron),
            source: expression.into(),
            zone: Tz::UTC,
        }))
    }

    /// Ticks every `interval` (whole milliseconds, at least [`MIN_INTERVAL`]), at its
    /// multiples since the Unix epoch.
    pub fn every(interval: Duration) -> Result<Self> {
        if interval < MIN_INTERVAL {
            return Err(Error::misuse(format!(
                "schedule interval {} is shorter than the minimum, {}",
                humantime::format_duration(interval),
                humantime::format_duration(MIN_INTERVAL)
            )));
        }
        if interval.subsec_nanos() % 1_000_000 != 0 || interval.as_millis() > i64::MAX as u128 {
            return Err(Error::misuse(format!(
                "schedule interval {interval:?} is not a whole number of milliseconds"
            )));
        }
        Ok(Cadence(Kind::Every(interval)))
    }

    /// Reads the cron expression in `zone`, an IANA name such as `Europe/Berlin`.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse) for an unknown zone, and
    /// for a zone other than UTC on an interval cadence (which has no wall clock to read).
    pub fn in_zone(self, zone: &str) -> Result<Self> {
        let parsed: Tz = zone.parse().map_err(|_| {
            Error::misuse(format!(
                "unknown time zone {zone:?} (an IANA name such as \"Europe/Berlin\" is expected)"
            ))
        })?;
        match self.0 {
            Kind::Cron { cron, source, .. } => Ok(Cadence(Kind::Cron {
                cron,
                source,
                zone: parsed,
            })),
            Kind::Every(_) if parsed == Tz::UTC => Ok(self),
            Kind::Every(_) => Err(Error::misuse(format!(
                "an interval schedule counts real time and takes no time zone (got {zone:?})"
            ))),
        }
    }

    /// Parses what [`spec`](Self::spec) and [`zone`](Self::zone) returned.
    pub fn parse(spec: &str, zone: &str) -> Result<Self> {
        Self::cron(spec)?.in_zone(zone)
    }

    /// The expression as registered (`@every 1m 30s` for an interval), which
    /// [`parse`](Self::parse) reads back.
    pub fn spec(&self) -> String {
        match &self.0 {
            Kind::Cron { source, .. } => source.to_string(),
            Kind::Every(d) => format!("@every {}", humantime::format_duration(*d)),
        }
    }

    /// The time zone's IANA name (`UTC` for an interval).
    pub fn zone(&self) -> &'static str {
        match &self.0 {
            Kind::Cron { zone, .. } => zone.name(),
            Kind::Every(_) => "UTC",
        }
    }

    /// The first tick strictly after `t`, or `None` if there is none (a cron expression
    /// naming a date that never comes, such as February 30th).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.0 {
            Kind::Every(d) => {
                let p = d.as_millis() as i64;
                let k = t.as_millis().div_euclid(p).checked_add(1)?;
                k.checked_mul(p).map(Timestamp::from_millis)
            }
            Kind::Cron { cron, zone, .. } => {
                let start = to_zoned(t, zone)?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(Timestamp::from_millis(next.timestamp_millis()))
            }
        }
    }

    /// The last tick at or before `t`, or `None` if there is none.
    pub fn latest_at(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.0 {
            Kind::Every(d) => {
                let p = d.as_millis() as i64;
                t.as_millis()
                    .div_euclid(p)
                    .checked_mul(p)
                    .map(Timestamp::from_millis)
            }
            Kind::Cron { cron, zone, .. } => {
                let start = to_zoned(t, zone)?;
                let prev = cron.find_previous_occurrence(&start, true).ok()?;
                let prev = Timestamp::from_millis(prev.timestamp_millis());
                // A tick is what the forward search reaches (it carries the DST rules), so
                // step forward from croner's backward answer to the last such tick <= t.
                let mut tick = self.next_after(prev - Duration::from_millis(1))?;
                for _ in 0..8 {
                    match self.next_after(tick) {
                        Some(next) if next <= t => tick = next,
                        _ => break,
                    }
                }
                (tick <= t).then_some(tick)
            }
        }
    }
}

/// `t` in `zone`, truncated to the second (cron ticks are whole seconds).
fn to_zoned(t: Timestamp, zone: &Tz) -> Option<DateTime<Tz>> {
    let secs = t.as_millis().div_euclid(1000);
    let utc = Utc.timestamp_opt(secs, 0).single()?;
    Some(utc.with_timezone(zone))
}

impl fmt::Debug for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Cron { source, zone, .. } => f
                .debug_struct("Cadence")
                .field("cron", source)
                .field("zone", &zone.name())
                .finish(),
            Kind::Every(d) => f.debug_struct("Cadence").field("every", d).finish(),
        }
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Cron { source, zone, .. } if *zone == Tz::UTC => f.write_str(source),
            Kind::Cron { source, zone, .. } => write!(f, "{source} ({})", zone.name()),
            Kind::Every(d) => write!(f, "@every {}", humantime::format_duration(*d)),
        }
    }
}

impl PartialEq for Cadence {
    fn eq(&self, other: &Self) -> bool {
        self.spec() == other.spec() && self.zone() == other.zone()
    }
}

impl Eq for Cadence {}
