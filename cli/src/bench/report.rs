//! Printing rows: an aligned table for people, JSON lines for scripts.

use super::Row;

/// One row as a line of JSON (without the newline).
pub fn json_line(row: &Row) -> String {
    // A Row holds only strings, numbers and options of them: serializing cannot fail.
    serde_json::to_string(row).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

const HEADERS: [&str; 19] = [
    "store",
    "scenario",
    "keep",
    "middleware",
    "tasks",
    "enqueue/s",
    "process/s",
    "CPU µs/task",
    "p50 ms",
    "p99 ms",
    "max ms",
    "backlog small→large /s (ratio)",
    "stats() ms small→large",
    "fire/s (stale)",
    "lost",
    "dup",
    "peak RSS",
    "B/task",
    "kept B/task",
];

/// The rows as a plain table with aligned columns, followed by the error of each failed
/// row. Missing figures show as `-`.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 19]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i > 0 {
                text.push_str("  ");
            }
            // Text columns align left, figures right.
            if i < 4 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(String::from));
    for row in &cells {
        line(row);
    }
    for row in rows {
        if let Some(error) = &row.error {
            out.push_str(&format!("FAILED {} {}: {error}\n", row.store, row.scenario));
        }
    }
    out
}

fn cells(row: &Row) -> [String; 19] {
    let rate = |v: Option<f64>| v.map_or("-".to_string(), |v| thousands(v.round() as u64));
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let backlog = match (row.backlog_small_per_sec, row.backlog_large_per_sec) {
        (None, None) => "-".to_string(),
        (s, l) => format!(
            "{} → {} ({})",
            rate(s),
            rate(l),
            row.backlog_ratio
                .map_or("-".to_string(), |r| format!("{r:.2}"))
        ),
    };
    [
        row.store.clone(),
        row.scenario.to_string(),
        row.retention_secs
            .map_or("default".to_string(), duration_label),
        middleware_label(row.metrics, row.middleware),
        thousands(row.tasks),
        rate(row.enqueue_per_sec),
        rate(row.process_per_sec),
        row.cpu_us_per_task
            .map_or("-".to_string(), |us| format!("{us:.2}")),
        ms(row.latency_p50_ms),
        ms(row.latency_p99_ms),
        ms(row.latency_max_ms),
        backlog,
        match (row.stats_small_ms, row.stats_large_ms) {
            (None, None) => "-".to_string(),
            (s, l) => format!("{} → {}", ms(s), ms(l)),
        },
        match (row.fire_per_sec, row.stale_fire_per_sec) {
            (None, None) => "-".to_string(),
            (f, s) => format!("{} ({})", rate(f), rate(s)),
        },
        row.lost.to_string(),
        row.duplicated.to_string(),
        row.peak_rss_bytes.map_or("-".to_string(), |b| {
            format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
        }),
        row.bytes_per_task
            .map_or("-".to_string(), |b| format!("{b:.0}")),
        row.kept_bytes_per_task
            .map_or("-".to_string(), |b| format!("{b:.0}")),
    ]
}

/// What observes or wraps each run (the metrics observer, no-op middleware): `-`,
/// `metrics`, `4 no-op`, `metrics+4 no-op`.
fn middleware_label(metrics: bool, no_ops: usize) -> String {
    match (metrics, no_ops) {
        (false, 0) => "-".to_string(),
        (true, 0) => "metrics".to_string(),
        (false, n) => format!("{n} no-op"),
        (true, n) => format!("metrics+{n} no-op"),
    }
}

/// Seconds in the largest whole unit: `0s`, `90s`, `10m`, `24h`, `7d`.
fn duration_label(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchConfig, Scenario};

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn table_aligns_and_lists_failures() {
        let config = BenchConfig::default();
        let mut a = Row::new("memory://", Scenario::Throughput, &config);
        a.tasks = 100_000;
        a.process_per_sec = Some(1_500_000.4);
        let mut b = Row::new("sqlite:///tmp/x.db", Scenario::Latency, &config);
        b.latency_p50_ms = Some(0.25);
        b.error = Some("2 tasks lost".into());
        let text = table(&[a, b]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].contains("1,500,000"), "{text}");
        assert!(lines[2].contains("0.250"), "{text}");
        // The scenario column starts at the same place on every line.
        let col = lines[0].find("scenario").unwrap();
        assert_eq!(&lines[1][col..col + 10], "throughput");
        assert_eq!(&lines[2][col..col + 7], "latency");
        assert_eq!(lines[3], "FAILED sqlite:///tmp/x.db latency: 2 tasks lost");
    }

    #[test]
    fn middleware_and_stats_columns() {
        assert_eq!(middleware_label(false, 0), "-");
        assert_eq!(middleware_label(true, 0), "metrics");
        assert_eq!(middleware_label(false, 4), "4 no-op");
        assert_eq!(middleware_label(true, 1), "metrics+1 no-op");
        let config = BenchConfig::default();
        let mut row = Row::new("memory://", Scenario::Backlog, &config);
        row.stats_small_ms = Some(0.0123);
        row.stats_large_ms = Some(0.02);
        let text = table(&[row]);
        assert!(text.contains("0.012 → 0.020"), "{text}");
    }
}
