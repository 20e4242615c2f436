//! How numbers, times and JSON read on a page.

use taskmill_core::Timestamp;

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A timestamp as people read it in a table: `2026-11-22 06:40:01`, UTC.
pub(crate) fn time(at: Timestamp) -> String {
    let text = at.to_string();
    // RFC 3339 with milliseconds: "2026-11-22T06:40:01.123Z".
    match (text.get(..10), text.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock}"),
        _ => text,
    }
}

/// How far `at` is from `now`: `12 s ago`, `in 3 min`, `now`.
pub(crate) fn relative(at: Timestamp, now: Timestamp) -> String {
    let ms = at.as_millis() - now.as_millis();
    let secs = ms.unsigned_abs() / 1000;
    if secs == 0 {
        return "now".to_owned();
    }
    let span = match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if ms < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A wait as people read it: `0 s`, `42 s`, `3 min`, `5 h`, `2 d`; the queue latency.
pub(crate) fn wait(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn preview(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Valid JSON text indented by two spaces, keys in their stored order; `None` when the
/// text is not JSON.
pub(crate) fn pretty_json(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers on one line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or(']'));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Compact JSON text for a one-line preview: as stored, whitespace outside strings dropped.
pub(crate) fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn relative_times_read_both_ways() {
        let now = Timestamp::from_millis(10_000_000);
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(Timestamp::from_millis(9_988_000), now), "12 s ago");
        assert_eq!(
            relative(Timestamp::from_millis(10_180_000), now),
            "in 3 min"
        );
        assert_eq!(relative(Timestamp::from_millis(0), now), "2 h ago");
    }

    #[test]
    fn pretty_json_keeps_key_order_and_strings() {
        let text = r#"{"z":1,"a":[1,{"s":"x, {y}: \"q\""}],"e":{},"l":[ ]}"#;
        assert_eq!(
            pretty_json(text).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    {\n      \"s\": \"x, {y}: \\\"q\\\"\"\n    }\n  ],\n  \"e\": {},\n  \"l\": []\n}"
        );
        assert_eq!(pretty_json("{not json"), None);
        assert_eq!(pretty_json("3"), Some("3".to_owned()));
    }

    #[test]
    fn previews_cut_on_characters() {
        assert_eq!(preview("héllo", 2), "hé…");
        assert_eq!(preview("hi", 2), "hi");
        assert_eq!(compact_json("{ \"a b\" : [1, 2] }"), "{\"a b\":[1,2]}");
    }
}
