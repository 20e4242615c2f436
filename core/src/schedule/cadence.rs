//! When a schedule ticks: a cron expression in a time zone, or a fixed interval.
//!
//! # Why croner and chrono-tz
//!
//! Cron expressions are parsed and evaluated by [croner](https://docs.rs/croner) (4.x):
//! a maintained crate (the Rust port of the JavaScript croner, on its fourth major
//! release) that covers what a schedule needs in one parser: five fields or six with
//! seconds, the `@hourly`-style aliases, `L`, `W` and `#`, and documented daylight-saving
//! rules (Vixie cron's, as the Open Cron Pattern Specification states them; see
//! [`Cadence`]). The `cron` crate, the usual alternative, has no five-field form and no
//! `L`, `W` or nth-weekday `#`, and saffron no seconds and no zones (croner's comparison,
//! against cron 0.12 and saffron 0.1).
//!
//! Zones come from [chrono-tz](https://docs.rs/chrono-tz) (0.10), chrono's own zone crate,
//! which croner evaluates in through chrono's `TimeZone`: its build compiles the IANA
//! time zone database into the binary (release 2025b in 0.10.4), so every manager computes
//! the same ticks from the same cadence whatever zoneinfo its machine has, or none. A new
//! zone rule reaches the schedules with a chrono-tz update, not an operating-system one.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        humantime::parse_rfc3339(s).unwrap().into()
    }

    /// The ticks in `[from, to)`, walking with `next_after`.
    fn ticks(cadence: &Cadence, from: &str, to: &str) -> Vec<String> {
        let (mut t, to) = (utc(from) - Duration::from_millis(1), utc(to));
        let mut out = Vec::new();
        while let Some(next) = cadence.next_after(t).filter(|n| *n < to) {
            out.push(next.to_string());
            t = next;
            assert!(out.len() < 5000, "runaway");
        }
        out
    }

    fn berlin(expression: &str) -> Cadence {
        Cadence::cron(expression)
            .unwrap()
            .in_zone("Europe/Berlin")
            .unwrap()
    }

    // Europe/Berlin in 2026: 02:00 CET becomes 03:00 CEST on 29 March (01:00 UTC), and
    // 03:00 CEST becomes 02:00 CET on 25 October (01:00 UTC).

    #[test]
    fn a_fixed_time_in_the_skipped_hour_fires_once_right_after_the_gap() {
        let daily = berlin("0 30 2 * * *");
        assert_eq!(
            ticks(&daily, "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                "2026-03-27T01:30:00.000Z", // 02:30 CET
                "2026-03-28T01:30:00.000Z",
                "2026-03-29T01:00:00.000Z", // 03:00 CEST, the first instant after the gap
                "2026-03-30T00:30:00.000Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_fires_at_its_first_occurrence_only() {
        let daily = berlin("30 2 * * *");
        assert_eq!(
            ticks(&daily, "2026-10-23T00:00:00Z", "2026-10-27T00:00:00Z"),
            [
                "2026-10-23T00:30:00.000Z",
                "2026-10-24T00:30:00.000Z",
                "2026-10-25T00:30:00.000Z", // 02:30 CEST; not again at 02:30 CET
                "2026-10-26T01:30:00.000Z", // 02:30 CET
            ]
        );
    }

    #[test]
    fn interval_expressions_follow_the_wall_clock_through_both_transitions() {
        let hourly = berlin("@hourly");
        assert_eq!(
            ticks(&hourly, "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z"),
            [
                "2026-03-28T23:00:00.000Z",
                "2026-03-29T00:00:00.000Z",
                "2026-03-29T01:00:00.000Z", // 03:00 CEST: there was no 02:00
                "2026-03-29T02:00:00.000Z",
            ]
        );
        let half_hours_at_two = berlin("*/30 2 * * *");
        assert_eq!(
            ticks(
                &half_hours_at_two,
                "2026-10-24T23:00:00Z",
                "2026-10-25T03:00:00Z"
            ),
            [
                "2026-10-25T00:00:00.000Z", // 02:00 CEST
                "2026-10-25T00:30:00.000Z",
                "2026-10-25T01:00:00.000Z", // 02:00 CET, the repeated hour
                "2026-10-25T01:30:00.000Z",
            ]
        );
    }

    #[test]
    fn latest_at_agrees_with_the_forward_ticks() {
        for cadence in [
            berlin("0 30 2 * * *"),
            berlin("0 * * * *"),
            berlin("*/30 2 * * *"),
            Cadence::cron("*/7 * * * * *").unwrap(),
            Cadence::every(Duration::from_secs(90)).unwrap(),
        ] {
            for (from, to) in [
                ("2026-03-28T22:00:00Z", "2026-03-29T04:00:00Z"),
                ("2026-10-24T22:00:00Z", "2026-10-25T04:00:00Z"),
            ] {
                let all = ticks(&cadence, from, to);
                // Every tick is its own latest, and a moment after it still is.
                for tick in &all {
                    let t = utc(tick);
                    assert_eq!(cadence.latest_at(t), Some(t), "{cadence} at {tick}");
                    let later = t + Duration::from_millis(999);
                    if cadence.next_after(t).is_none_or(|n| n > later) {
                        assert_eq!(cadence.latest_at(later), Some(t), "{cadence} after {tick}");
                    }
                }
            }
        }
    }

    #[test]
    fn seconds_aliases_and_intervals_parse() {
        let every_five_seconds = Cadence::cron("*/5 * * * * *").unwrap();
        assert_eq!(
            every_five_seconds.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:05Z"))
        );
        let hourly = Cadence::cron("@hourly").unwrap();
        assert_eq!(
            hourly.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T01:00:00Z"))
        );
        let every = Cadence::cron("@every 1m 30s").unwrap();
        assert_eq!(every, Cadence::every(Duration::from_secs(90)).unwrap());
        assert_eq!(every.spec(), "@every 1m 30s");
        // Interval ticks are multiples of the interval since the epoch.
        assert_eq!(
            every.next_after(Timestamp::from_millis(100_000)),
            Some(Timestamp::from_millis(180_000))
        );
        assert_eq!(
            every.latest_at(Timestamp::from_millis(179_999)),
            Some(Timestamp::from_millis(90_000))
        );
        // What spec and zone write, parse reads back.
        let zoned = berlin("0 30 2 * * *");
        assert_eq!(Cadence::parse(&zoned.spec(), zoned.zone()).unwrap(), zoned);
    }

    #[test]
    fn bad_expressions_zones_and_intervals_are_misuse() {
        use crate::ErrorKind;
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "@fortnightly",
            "@every",
            "@every soon",
        ] {
            let e = Cadence::cron(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Misuse, "{bad:?}");
            assert!(e.message().contains("invalid"), "{bad:?}: {e}");
        }
        let e = Cadence::cron("@hourly")
            .unwrap()
            .in_zone("Mars/Olympus_Mons")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(e.message().contains("Mars/Olympus_Mons"), "{e}");
        let e = Cadence::every(Duration::from_millis(999)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        let e = Cadence::every(Duration::from_secs(60))
            .unwrap()
            .in_zone("Europe/Berlin")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        // A date that never comes parses, and has no ticks.
        let never = Cadence::cron("0 0 30 2 *").unwrap();
        assert_eq!(never.next_after(utc("2026-01-01T00:00:00Z")), None);
    }
}
