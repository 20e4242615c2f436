//! Printing rows: an aligned table for people, JSON lines for scripts.

use super::Row;

/// One row as a line of JSON (without the newline).
pub fn json_line(row: &Row) -> String {
    // A Row holds only strings, numbers and options of them: serializing cannot fail.
    serde_json::to_string(row).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Columns of the table.
const COLUMNS: usize = 24;
/// The first columns, which hold text (aligned left); the others hold figures.
const TEXT_COLUMNS: usize = 5;

const HEADERS: [&str; COLUMNS] = [
    "store",
    "scenario",
    "keep",
    "middleware",
    "case",
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
    "ref/s (ratio)",
    "enqueue ratio",
    "MB/s enqueue→process",
    "server µs/task (busy)",
    "lost",
    "dup",
    "peak RSS",
    "B/task",
    "kept B/task",
];

/// The rows as a plain table with aligned columns, followed by the error of each failed
/// row. Missing figures show as `-`.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; COLUMNS]> = rows.iter().map(cells).collect();
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
            if i < TEXT_COLUMNS {
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
        if let Some(why) = &row.skipped {
            out.push_str(&format!("SKIPPED {} {}: {why}\n", row.store, row.scenario));
        }
    }
    out
}

fn cells(row: &Row) -> [String; COLUMNS] {
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
        case_label(row),
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
        match (row.reference_per_sec, row.process_ratio) {
            (None, None) => "-".to_string(),
            (r, ratio) => format!("{} ({})", rate(r), fixed2(ratio)),
        },
        fixed2(row.enqueue_ratio),
        match (row.enqueue_mb_per_sec, row.process_mb_per_sec) {
            (None, None) => "-".to_string(),
            (e, p) => format!("{} → {}", fixed1(e), fixed1(p)),
        },
        match (row.server_cpu_us_per_task, row.server_cpu_busy) {
            (None, None) => "-".to_string(),
            (us, busy) => format!("{} ({})", fixed2(us), fixed2(busy)),
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

fn fixed1(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.1}"))
}

fn fixed2(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// What a row of a scenario with cases measured: `2,000 topics skewed`, `10 ms × 1,000
/// (slept 10.9)` (the mean time the timers took),
/// `64 KiB`, `4 busy`, `1 busy + 3 idle`, `load 0.5`; `-` for the other scenarios.
fn case_label(row: &Row) -> String {
    if row.skipped.is_some() {
        return "-".to_string();
    }
    match row.scenario {
        "topics" => format!(
            "{} topics {}",
            thousands(row.topics as u64),
            row.topic_spread
        ),
        "work" => {
            let mut label = format!(
                "{} ms × {}",
                row.work_ms.unwrap_or_default(),
                thousands(row.concurrency as u64)
            );
            if let Some(slept) = row.work_slept_ms {
                label.push_str(&format!(" (slept {slept:.2})"));
            }
            label
        }
        "payload" => bytes_label(row.payload_bytes),
        "processes" => match (row.processes, row.idle_processes) {
            (Some(busy), Some(idle)) if idle > 0 => format!("{busy} busy + {idle} idle"),
            (Some(busy), _) => format!("{busy} busy"),
            _ => "-".to_string(),
        },
        "loaded-latency" => row
            .load_share
            .map_or("-".to_string(), |share| format!("load {share}")),
        _ => "-".to_string(),
    }
}

/// Bytes in the largest binary unit they are a whole number of: `16 B`, `1 KiB`, `64 KiB`.
fn bytes_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
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
    fn case_columns_name_what_each_row_measured() {
        let config = BenchConfig::default();
        let mut row = Row::new("memory://", Scenario::Topics, &config);
        row.topics = 2_000;
        row.topic_spread = "skewed";
        assert_eq!(case_label(&row), "2,000 topics skewed");
        for case in config.cases(Scenario::Work).iter().skip(3) {
            assert_eq!(
                case_label(&Row::new("memory://", Scenario::Work, case)),
                "10 ms × 1,000"
            );
        }
        let cases = config.cases(Scenario::Payload);
        assert_eq!(
            case_label(&Row::new("memory://", Scenario::Payload, &cases[1])),
            "64 KiB"
        );
        let cases = config.cases(Scenario::Processes);
        let labels: Vec<String> = cases
            .iter()
            .map(|c| case_label(&Row::new("redis://h/0", Scenario::Processes, c)))
            .collect();
        assert_eq!(labels, ["1 busy", "2 busy", "4 busy", "1 busy + 3 idle"]);
        assert_eq!(bytes_label(16), "16 B");
        let mut skipped = Row::new("memory://", Scenario::Processes, &config);
        skipped.skipped = Some("not shared".into());
        let text = table(&[skipped]);
        assert!(
            text.ends_with("SKIPPED memory:// processes: not shared\n"),
            "{text}"
        );
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
