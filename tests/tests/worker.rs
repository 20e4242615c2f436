//! The crash-test worker itself: it runs every task, and its records parse and check.

use std::time::Duration;
use taskmill_tests::process::{run_worker, Records};
use taskmill_tests::worker_bin;

#[test]
fn worker_records_every_run_once() {
    let dir = taskmill_testkit::temp_dir();
    let record = dir.path().join("runs.log");
    let path = record.to_str().unwrap();
    run_worker(
        worker_bin!(),
        &[
            "run",
            "--store",
            "memory://",
            "--record",
            path,
            "--tasks",
            "500",
            "--topics",
            "3",
            "--until-empty",
        ],
        Duration::from_secs(60),
    );
    let records = Records::read(&record);
    assert_eq!(records.runs.len(), 500, "one finished run per task");
    assert_eq!(records.started.len(), 500);
    assert!(records.lost(500).is_empty());
    assert_eq!(records.duplicated(), 0);
    assert!(records.overlapping().is_empty());
}
