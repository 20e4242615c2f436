//! A short run of the `soak` binary (README, "Soak"): the same load, kills and audit as the
//! long runs, for a few seconds, so that `cargo test` fails when the audit does.

use std::process::{Command, Output};

/// Runs the soak with `args`; fails the test unless it exits 0. Returns its summary line.
fn soak(args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(args)
        .output()
        .expect("run the soak binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the soak failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .find(|l| l.starts_with("soak "))
        .expect("a summary line")
        .to_string()
}

/// The figure before `what` in the summary line (`… 3 kills, …`).
fn figure(summary: &str, what: &str) -> u64 {
    let at = summary
        .find(&format!(" {what}"))
        .unwrap_or_else(|| panic!("no {what:?} in {summary}"));
    summary[..at]
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {what:?} in {summary}"))
}

/// Eight seconds on SQLite, two workers, a kill every two to six seconds (at least one in
/// eight seconds, whatever the seed): nothing lost, every duplicate explained.
#[cfg(feature = "sqlite")]
#[test]
fn sqlite_soak_with_kills_passes_its_audit() {
    let dir = taskmill_testkit::temp_dir();
    let url = format!("sqlite://{}", dir.path().join("soak.db").display());
    let records = dir.path().join("records").display().to_string();
    let summary = soak(&[
        "--store",
        &url,
        "--duration",
        "8s",
        "--workers",
        "2",
        "--kill-every",
        "3s",
        "--lease",
        "1500ms",
        "--drain-timeout",
        "60s",
        "--dir",
        &records,
    ]);
    assert!(figure(&summary, "kills") >= 1, "{summary}");
    assert!(figure(&summary, "tasks") > 100, "{summary}");
    assert_eq!(figure(&summary, "violations"), 0, "{summary}");
    assert!(summary.contains("lost 0,"), "{summary}");
}

/// A few seconds in one process on the memory store (no kills: it is not shared).
#[test]
fn memory_soak_passes_its_audit() {
    let dir = taskmill_testkit::temp_dir();
    let records = dir.path().join("records").display().to_string();
    let summary = soak(&[
        "--store",
        "memory://",
        "--duration",
        "3s",
        "--drain-timeout",
        "60s",
        "--dir",
        &records,
    ]);
    assert!(figure(&summary, "tasks") > 100, "{summary}");
    assert!(figure(&summary, "cancelled") > 0, "{summary}");
    assert!(figure(&summary, "dead") > 0, "{summary}");
    assert!(summary.contains("lost 0,"), "{summary}");
}
