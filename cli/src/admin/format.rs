//! Text for people: durations, times, and cells cut to fit an 80-column table.

use std::time::Duration;
use taskmill::Timestamp;

/// `0`, `90`, `90s`, `10m`, `24h` or `7d` as a duration (plain numbers are seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use s, m, h or d)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 0, 90s, 10m, 24h or 7d"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// An RFC 3339 time in UTC (`2026-11-22T06:40:01Z`, fractions allowed) as a timestamp.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    humantime::parse_rfc3339(text)
        .map(Timestamp::from)
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 time in UTC such as 2026-11-22T06:40:01Z ({e})")
        })
}

/// A duration in at most two units: `0s`, `850ms`, `2.4s`, `12s`, `3m20s`, `2h05m`,
/// `3d04h`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return match d.as_millis() {
            0 => "0s".to_owned(),
            ms => format!("{ms}ms"),
        };
    }
    let (days, hours, mins, secs) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d.as_secs() < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{mins:02}m")
    } else if mins > 0 {
        format!("{mins}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// `text` on one line, cut to at most `width` characters (ending in `…` when cut).
pub fn fit(text: &str, width: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `Some(time)` as RFC 3339, `None` as `-`.
pub fn time_or_dash(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("3w").unwrap_err().contains("unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        let at = parse_time("2026-11-22T06:40:01.5Z").unwrap();
        assert_eq!(at.to_string(), "2026-11-22T06:40:01.500Z");
        assert!(parse_time("tomorrow").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn durations_read_in_two_units_at_most() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(2_449)), "2.4s");
        assert_eq!(human_duration(s(12)), "12s");
        assert_eq!(human_duration(s(200)), "3m20s");
        assert_eq!(human_duration(s(7_500)), "2h05m");
        assert_eq!(human_duration(s(3 * 86_400 + 4 * 3_600 + 59)), "3d04h");
    }

    #[test]
    fn cells_are_cut_to_their_width_on_one_line() {
        assert_eq!(fit("emails", 10), "emails");
        assert_eq!(fit("a-very-long-topic", 8), "a-very-…");
        assert_eq!(fit("two\nlines", 20), "two lines");
        assert_eq!(fit("ééééé", 3), "éé…");
    }
}
