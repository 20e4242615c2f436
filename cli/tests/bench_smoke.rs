//! A quick run of every benchmark scenario on every store this build can open, so the
//! tool never rots. Figures are not checked (that is what the benchmark is for), only
//! that each scenario ran, lost nothing, repeated nothing, and reports what it should.

use std::process::Command;
use std::time::Duration;
use taskmill::ErrorKind;
use taskmill_cli::bench::{self, BenchConfig, Row, Scenario, Target};
use taskmill_testkit::redis::RedisServer;
use taskmill_testkit::temp_dir;

const REQUIRED_KEYS: [&str; 10] = [
    "store",
    "scenario",
    "tasks",
    "enqueue_per_sec",
    "process_per_sec",
    "latency_p50_ms",
    "latency_p99_ms",
    "lost",
    "duplicated",
    "peak_rss_bytes",
];

/// The stores to smoke-test: memory always, and each other store this build can open
/// (found by opening it: a store that is not built in says `Unsupported`, or `Misuse` for
/// a scheme the facade does not know yet). Redis runs on a server of the test's own.
async fn stores(dir: &std::path::Path, redis: &mut Option<RedisServer>) -> Vec<String> {
    let mut stores = vec!["memory://".to_string()];
    for url in [
        format!("sqlite://{}/smoke.db", dir.display()),
        format!("sled://{}/smoke", dir.display()),
    ] {
        let target = Target::fresh(&url).expect("a valid URL");
        let opened = target.open().await.map(drop);
        target.remove().await.expect("remove the probe");
        match opened {
            Ok(()) => stores.push(url),
            Err(e) if not_built_in(&e) => eprintln!("not smoke-testing {url}: {e}"),
            Err(e) => panic!("cannot open {url}: {e}"),
        }
    }
    // Nothing listens on port 1: a built-in Redis store fails there with another kind
    // (or opens lazily), which is all the probe needs to know.
    match taskmill::open("redis://127.0.0.1:1/0").await {
        Err(e) if not_built_in(&e) => eprintln!("not smoke-testing redis: {e}"),
        _ => {
            let server = RedisServer::start();
            stores.push(server.url("smoke"));
            *redis = Some(server);
        }
    }
    stores
}

fn not_built_in(e: &taskmill::Error) -> bool {
    matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::Misuse)
}

fn tiny(stores: Vec<String>) -> BenchConfig {
    let mut config = BenchConfig::new(stores);
    config.tasks = 2_000;
    config.topics = 3;
    config.concurrency = 8;
    config.batch = 250;
    config.latency_rate = 200;
    config.latency_duration = Duration::from_millis(250);
    config.backlog_small = 500;
    config.backlog_large = 5_000;
    config.backlog_measure = 300;
    config.stall_timeout = Duration::from_secs(20);
    config.progress = false;
    // 3 topics and 12, so that the skewed spread differs from the even one.
    config.topic_counts = vec![3, 12];
    // 400 and 1,600 tasks.
    config.work_durations = vec![Duration::from_millis(1)];
    config.work_concurrencies = vec![8, 32];
    config.work_time = Duration::from_millis(50);
    // 2,000 tasks of 1 KiB, 32 of 64 KiB.
    config.payload_budget = 2 << 20;
    config.process_counts = vec![1, 2];
    config.idle_case_processes = 1;
    config.worker_program = Some(env!("CARGO_BIN_EXE_taskmill").into());
    config
}

/// Rows `config` gives per store: one per case of each scenario.
fn rows_per_store(config: &BenchConfig) -> usize {
    config
        .scenarios
        .iter()
        .map(|&scenario| config.cases(scenario).len())
        .sum()
}

fn check_row(row: &Row) {
    let what = format!("{} {}", row.store, row.scenario);
    assert!(row.ok(), "{what} failed: {row:?}");
    assert_eq!((row.lost, row.duplicated), (0, 0), "{what}");
    assert!(row.peak_rss_bytes.unwrap_or(0) > 0, "{what}: no peak RSS");
    let positive = |v: Option<f64>| v.is_some_and(|v| v > 0.0);
    let shared = row.store.starts_with("redis");
    match row.scenario {
        "topics" => {
            assert_eq!(row.tasks, 2_000, "{what}");
            assert!([3, 12].contains(&row.topics), "{what}: {}", row.topics);
            assert!(positive(row.enqueue_per_sec) && positive(row.process_per_sec));
            // The first case (3 topics, even) is the reference of every row.
            assert!(positive(row.process_ratio) && positive(row.enqueue_ratio));
            if (row.topics, row.topic_spread) == (3, "even") {
                assert_eq!(row.process_ratio, Some(1.0), "{what}");
            }
            assert_ne!((row.topics, row.topic_spread), (3, "skewed"), "{what}");
        }
        "work" => {
            assert_eq!(row.work_ms, Some(1.0), "{what}");
            let expected = row.concurrency as f64 / 1e-3;
            assert_eq!(row.tasks, (expected * 0.05).ceil() as u64, "{what}");
            assert_eq!(row.reference_per_sec, Some(expected), "{what}");
            let ratio = row.process_ratio.expect("ratio");
            assert!(ratio > 0.0 && ratio <= 1.0, "{what}: {ratio}");
            assert!(positive(row.cpu_us_per_task), "{what}");
            assert!(row.work_slept_ms.expect("slept") >= 1.0, "{what}");
        }
        "payload" => {
            assert!([1024, 65536].contains(&row.payload_bytes), "{what}");
            let tasks = ((2 << 20) / row.payload_bytes as u64).min(2_000);
            assert_eq!(row.tasks, tasks, "{what}");
            let mb = row.process_per_sec.expect("rate") * row.payload_bytes as f64 / 1e6;
            assert_eq!(row.process_mb_per_sec, Some(mb), "{what}");
            assert!(positive(row.enqueue_mb_per_sec), "{what}");
        }
        "processes" if !shared => {
            assert!(row.skipped.is_some(), "{what}: not skipped");
            assert_eq!(row.process_per_sec, None, "{what}");
        }
        "processes" => {
            assert_eq!(row.skipped, None, "{what}");
            assert_eq!(row.tasks, 2_000, "{what}");
            assert!(positive(row.process_per_sec) && positive(row.process_ratio));
            assert!(positive(row.cpu_us_per_task), "{what}");
            assert!(positive(row.server_cpu_us_per_task), "{what}");
            assert!(positive(row.server_cpu_busy), "{what}");
            assert!(row.processes.is_some() && row.idle_processes.is_some());
        }
        "loaded-latency" => {
            assert_eq!(row.load_share, Some(0.5), "{what}");
            let load = row.reference_per_sec.expect("the load offered");
            assert!(load > 0.0, "{what}");
            // The background load (0.75 s of it) and 50 probes.
            assert_eq!(row.tasks, (load * 0.75).ceil() as u64 + 50, "{what}");
            assert!(positive(row.process_per_sec) && positive(row.process_ratio));
            let (p50, p99) = (
                row.latency_p50_ms.expect("p50"),
                row.latency_p99_ms.expect("p99"),
            );
            assert!(0.0 < p50 && p50 <= p99, "{what}: {p50} {p99}");
        }
        "throughput" => {
            assert_eq!(row.tasks, 2_000, "{what}");
            assert!(row.enqueue_per_sec.unwrap_or(0.0) > 0.0, "{what}");
            assert!(row.process_per_sec.unwrap_or(0.0) > 0.0, "{what}");
            assert_eq!(row.latency_p50_ms, None, "{what}");
        }
        "latency" => {
            assert_eq!(row.tasks, 50, "{what}");
            let (p50, p99, max) = (
                row.latency_p50_ms.expect("p50"),
                row.latency_p99_ms.expect("p99"),
                row.latency_max_ms.expect("max"),
            );
            assert!(
                0.0 < p50 && p50 <= p99 && p99 <= max,
                "{what}: {p50} {p99} {max}"
            );
            assert_eq!(row.process_per_sec, None, "{what}");
        }
        "backlog" => {
            assert_eq!(row.tasks, 5_000, "{what}");
            let (small, large) = (
                row.backlog_small_per_sec.expect("small rate"),
                row.backlog_large_per_sec.expect("large rate"),
            );
            assert!(small > 0.0 && large > 0.0, "{what}");
            assert_eq!(row.process_per_sec, Some(large), "{what}");
            let ratio = row.backlog_ratio.expect("ratio");
            assert!((ratio - large / small).abs() < 1e-9, "{what}");
            let (small, large) = (
                row.stats_small_ms.expect("stats() with the small backlog"),
                row.stats_large_ms.expect("stats() with the large backlog"),
            );
            assert!(small > 0.0 && large > 0.0, "{what}: {small} {large}");
        }
        "schedules" => {
            // 2,000 ticks: 8 rounds of 250 schedules (the batch size).
            assert_eq!(row.tasks, 2_000, "{what}");
            for rate in [
                row.enqueue_per_sec,
                row.fire_per_sec,
                row.stale_fire_per_sec,
            ] {
                assert!(rate.unwrap_or(0.0) > 0.0, "{what}: {rate:?}");
            }
            assert_eq!(row.process_per_sec, None, "{what}");
        }
        other => panic!("unexpected scenario {other}"),
    }
    let measures_memory = matches!(
        row.scenario,
        "throughput" | "backlog" | "topics" | "work" | "payload"
    );
    if row.store.starts_with("memory:") && measures_memory {
        assert!(row.bytes_per_task.is_some(), "{what}: no bytes per task");
    } else {
        assert_eq!(row.bytes_per_task, None, "{what}");
    }
}

fn check_json_line(line: &str) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    for key in REQUIRED_KEYS {
        assert!(value.get(key).is_some(), "missing {key:?} in {line}");
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_clean_on_every_store() {
    let dir = temp_dir();
    let dir = dir.path();
    let mut redis = None;
    let stores = stores(dir, &mut redis).await;
    let config = tiny(stores.clone());
    let mut printed = Vec::new();
    let rows = bench::run(&config, |row| printed.push(bench::json_line(row)))
        .await
        .expect("a valid configuration");
    // processes runs only on Redis, and says so in one row on the other stores.
    let processes_cases = config.cases(Scenario::Processes).len();
    let unshared = stores.iter().filter(|s| !s.starts_with("redis")).count();
    assert_eq!(
        rows.len(),
        stores.len() * rows_per_store(&config) - unshared * (processes_cases - 1)
    );
    for store in &stores {
        let scenarios: Vec<_> = rows
            .iter()
            .filter(|r| &r.store == store)
            .map(|r| r.scenario)
            .collect();
        for scenario in Scenario::ALL {
            assert!(
                scenarios.contains(&scenario.as_str()),
                "{store}: no {scenario}"
            );
        }
    }
    for row in &rows {
        check_row(row);
    }
    assert_eq!(printed.len(), rows.len());
    for (line, row) in printed.iter().zip(&rows) {
        let value = check_json_line(line);
        assert_eq!(value["store"], row.store.as_str());
        assert_eq!(value["scenario"], row.scenario);
        assert_eq!(value["lost"], 0);
    }
    let table = bench::table(&rows);
    let skipped = rows.iter().filter(|r| r.skipped.is_some()).count();
    assert_eq!(table.lines().count(), rows.len() + 1 + skipped, "{table}");
    // Every fresh location was removed again: only what the test made is left.
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // And every Redis namespace the runs used is gone.
    if let Some(server) = &redis {
        assert_eq!(server.dbsize(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_runs_give_one_row() {
    let mut config = tiny(vec!["memory://".into()]);
    config.scenarios = vec![Scenario::Throughput];
    config.repeat = 3;
    let rows = bench::run(&config, |_| {}).await.unwrap();
    assert_eq!(rows.len(), 1);
    check_row(&rows[0]);
    assert_eq!(rows[0].runs, 3);
}

/// `--metrics` and `--middleware N`: a row per setting, alternating, and with metrics on
/// the layer must have seen every run (the scenario fails otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_middleware_sweeps_give_a_row_each() {
    let mut config = tiny(vec!["memory://".into()]);
    config.scenarios = vec![Scenario::Throughput, Scenario::Latency];
    config.metrics_sweep = vec![false, true];
    config.middleware = 2;
    let rows = bench::run(&config, |_| {}).await.unwrap();
    let settings: Vec<_> = rows
        .iter()
        .map(|r| (r.scenario, r.metrics, r.middleware))
        .collect();
    assert_eq!(
        settings,
        [
            ("throughput", false, 2),
            ("throughput", true, 2),
            ("latency", false, 2),
            ("latency", true, 2),
        ]
    );
    for row in &rows {
        check_row(row);
    }
    let value = check_json_line(&bench::json_line(&rows[1]));
    assert_eq!(
        (value["metrics"].clone(), value["middleware"].clone()),
        (true.into(), 2.into())
    );
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let mut config = tiny(vec!["memory://".into()]);
    config.backlog_measure = config.backlog_small + 1;
    assert!(bench::run(&config, |_| {}).await.is_err());
    let mut config = tiny(vec![]);
    config.tasks = 1;
    assert!(bench::run(&config, |_| {}).await.is_err());
}

#[test]
fn the_binary_prints_json_lines_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_taskmill"))
        .args(["bench", "--store", "memory://", "--tasks", "2000", "--json"])
        // Scaled down from the defaults (a 1M backlog, 2 s of latency probes) so the test
        // takes a second or two in a debug build.
        .args(["--backlog-small", "500", "--backlog-large", "5000"])
        .args(["--backlog-measure", "300", "--latency-secs", "0.25"])
        .output()
        .expect("run taskmill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Vec<_> = stdout.lines().map(check_json_line).collect();
    let scenarios: Vec<_> = values.iter().map(|v| v["scenario"].clone()).collect();
    assert_eq!(scenarios, ["throughput", "latency", "backlog"]);
    let throughput = &values[0];
    assert_eq!(throughput["tasks"], 2000);
    assert_eq!(throughput["duplicated"], 0);
    assert!(throughput["process_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(values[1]["process_per_sec"].is_null());
}

#[test]
fn the_binary_fails_when_a_store_cannot_be_measured() {
    let out = Command::new(env!("CARGO_BIN_EXE_taskmill"))
        .args(["bench", "--store", "nosuch://x", "--scenario", "throughput"])
        .args(["--tasks", "10", "--quiet"])
        .output()
        .expect("run taskmill");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED nosuch://x throughput"), "{stdout}");
}
