//! The operator's commands, driven through the real `taskmill` binary as a person would:
//! against a SQLite file that a manager in this test process works on (and sled, and a
//! private Redis for `watch`), reading what the command prints and its exit status.

// The strict OpenMetrics parser of the metrics crate's tests (not every helper is used here).
#[allow(dead_code)]
#[path = "../../metrics/tests/common/exposition.rs"]
mod exposition;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use taskmill::{Manager, Task, TaskContext, TaskError};
use taskmill_testkit::redis::RedisServer;
use taskmill_testkit::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_taskmill");
/// How long any condition below may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

/// `taskmill ARGS` on `store` (through TASKMILL_STORE), to completion.
fn taskmill(store: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TASKMILL_STORE", store)
        .env_remove("TASKMILL_TOKEN")
        .output()
        .expect("run taskmill")
}

/// Runs it, requires exit 0, and returns stdout.
fn ok(store: &str, args: &[&str]) -> String {
    let out = taskmill(store, args);
    assert!(
        out.status.success(),
        "taskmill {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs it with `--json`, requires exit 0, and parses its one document.
fn json(store: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ok(store, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

/// Runs it, requires exit `code`, and returns stderr.
fn fails(store: &str, args: &[&str], code: i32) -> String {
    let out = taskmill(store, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "taskmill {args:?}\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Polls `condition` until it holds, failing the test at the deadline.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn state(store: &str, id: u64) -> String {
    let info = json(store, &["show", &id.to_string()]);
    info["status"]["state"]
        .as_str()
        .expect("a state")
        .to_owned()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/tasks.db", dir.display())
}

/// A manager on `url`: `ok` tasks succeed with a result, `bad` ones fail for good.
async fn worker(url: &str) -> Manager {
    let store = taskmill::open(url).await.expect("open the store");
    let manager = Manager::builder_shared(store)
        .concurrency(4)
        .poll_interval(Duration::from_millis(20))
        .default_retries(0)
        .build();
    manager
        .register("ok", |ctx: TaskContext| async move {
            let n: u64 = ctx.args::<Value>()?["n"].as_u64().unwrap_or(0);
            ctx.set_result(&serde_json::json!({ "doubled": n * 2 }))?;
            Ok::<(), TaskError>(())
        })
        .unwrap();
    manager
        .register("bad", |_ctx: TaskContext| async move {
            Err::<(), _>(TaskError::msg("the printer is on fire"))
        })
        .unwrap();
    manager.start().await.expect("start the manager");
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_enqueued_completed_shown_failed_retried_and_deleted() {
    let dir = temp_dir();
    let url = sqlite_url(dir.path());
    let store = url.as_str();
    let id_of = |v: Value| v["id"].as_u64().expect("an id");

    let good = id_of(json(store, &["enqueue", "ok", r#"{"n": 21}"#]));
    let plain = ok(store, &["enqueue", "bad", "{}", "--retries", "0"]);
    let bad: u64 = plain.trim().parse().expect("enqueue prints the id");
    assert_eq!(state(store, good), "pending");

    let manager = worker(&url).await;
    let store2 = store.to_owned();
    tokio::task::spawn_blocking(move || {
        let store = store2.as_str();
        wait_for("the good task to complete", || {
            state(store, good) == "completed"
        });
        wait_for("the bad task to die", || state(store, bad) == "dead");

        let shown = ok(store, &["show", &good.to_string()]);
        assert!(shown.contains("completed"), "{shown}");
        assert!(shown.contains("\"doubled\": 42"), "{shown}");
        let info = json(store, &["show", &good.to_string()]);
        assert_eq!(info["record"]["attempt"], 1);
        assert_eq!(info["record"]["args"]["n"], 21);
        let dead = json(store, &["show", &bad.to_string()]);
        assert_eq!(
            dead["record"]["errors"][0]["message"],
            "the printer is on fire"
        );

        let stats = json(store, &["stats"]);
        assert_eq!(stats["topics"]["ok"]["completed"], 1, "{stats}");
        assert_eq!(stats["topics"]["bad"]["dead"], 1, "{stats}");
        assert_eq!(stats["topics"]["bad"]["paused"], false, "{stats}");
        let table = ok(store, &["stats"]);
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
        }
        assert!(table.contains("TOTAL"), "{table}");

        let page = json(store, &["ls", "dead"]);
        let ids: Vec<u64> = page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [bad]);
        assert_eq!(page["next"], Value::Null);

        // Paused, the requeued task waits where `stats` can see it: no manager claims it.
        ok(store, &["pause", "bad"]);
        let out = ok(store, &["retry", &bad.to_string()]);
        assert!(out.contains("requeued"), "{out}");
        // Beside it, one due in an hour: scheduled, not pending.
        let later = ok(store, &["enqueue", "bad", "{}", "--delay", "1h"]);
        let later: u64 = later.trim().parse().expect("enqueue prints the id");
        let stats = json(store, &["stats"]);
        let bad_stats = &stats["topics"]["bad"];
        assert_eq!(bad_stats["paused"], true, "{stats}");
        assert_eq!(bad_stats["input"], 2, "{stats}");
        assert_eq!(bad_stats["pending"], 1, "{stats}");
        assert_eq!(bad_stats["scheduled"], 1, "{stats}");
        assert_eq!(bad_stats["retrying"], 0, "{stats}");
        assert_eq!(bad_stats["dead"], 0, "{stats}");
        assert_eq!(stats["pending"], 1, "the total: {stats}");
        let table = ok(store, &["stats"]);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "TOPIC",
                "PENDING",
                "SCHEDULED",
                "RUNNING",
                "RETRYING",
                "DEAD",
                "COMPLETED",
                "LATENCY",
                "PAUSED"
            ],
            "{table}"
        );
        let row = table.lines().find(|l| l.starts_with("bad ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..7], ["1", "1", "0", "0", "0", "0"], "{table}");
        assert!(row.ends_with("yes"), "{row}");
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
        }
        let out = ok(store, &["delete", &later.to_string()]);
        assert!(out.contains("deleted"), "{out}");

        ok(store, &["resume", "bad"]);
        wait_for("the retried task to die again", || {
            state(store, bad) == "dead"
        });
        assert_eq!(json(store, &["stats"])["topics"]["bad"]["paused"], false);
        assert_eq!(
            json(store, &["show", &bad.to_string()])["record"]["attempt"],
            1
        );

        // Retrying a task that is not dead says so, and fails.
        let err = fails(store, &["retry", &good.to_string()], 1);
        assert!(err.contains("not requeued"), "{err}");

        let out = ok(store, &["delete", &bad.to_string()]);
        assert!(out.contains("deleted"), "{out}");
        let err = fails(store, &["show", &bad.to_string()], 1);
        assert!(err.contains(&format!("no task {bad}")), "{err}");
        let err = fails(store, &["delete", &bad.to_string()], 1);
        assert!(err.contains("not deleted"), "{err}");
    })
    .await
    .unwrap();
    manager.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_and_delete_go_through_every_page_of_dead_tasks() {
    // More than two pages of Client::BULK_PAGE (500).
    const DEAD: u64 = 1_100;
    let dir = temp_dir();
    let url = sqlite_url(dir.path());
    let client = taskmill::Client::shared(taskmill::open(&url).await.unwrap());
    let tasks = (0..DEAD).map(|n| Task::new("bad", &n).unwrap()).collect();
    client.enqueue_batch(tasks).await.unwrap();
    let dead = |client: &taskmill::Client| {
        let client = client.clone();
        async move { client.stats().await.unwrap().topic("bad").sizes.dead }
    };
    let manager = worker(&url).await;
    taskmill_testkit::wait_until("every task to die", DEADLINE, || async {
        dead(&client).await == DEAD
    })
    .await;
    client.pause("bad").await.unwrap();

    let store = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        json(&store, &["retry", "--all-dead", "--topic", "bad"])
    })
    .await
    .unwrap();
    assert_eq!(out["count"], DEAD, "{out}");
    let sizes = client.stats().await.unwrap().topic("bad").sizes;
    assert_eq!((sizes.input, sizes.dead), (DEAD, 0));

    client.resume("bad").await.unwrap();
    taskmill_testkit::wait_until("every task to die again", DEADLINE, || async {
        dead(&client).await == DEAD
    })
    .await;
    let store = url.clone();
    let out = tokio::task::spawn_blocking(move || ok(&store, &["delete", "--all-dead"]))
        .await
        .unwrap();
    assert_eq!(out.trim(), format!("deleted {DEAD} dead tasks"));
    assert_eq!(client.stats().await.unwrap().total.sizes.dead, 0);
    manager.close().await.unwrap();
}

#[test]
fn bad_usage_exits_2_and_failed_operations_exit_1() {
    let dir = temp_dir();
    let url = sqlite_url(dir.path());
    let store = url.as_str();

    // No store at all.
    let out = Command::new(BIN)
        .arg("stats")
        .env_remove("TASKMILL_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--store") && err.contains("TASKMILL_STORE"),
        "{err}"
    );

    fails(store, &["frobnicate"], 2);
    fails(store, &["ls", "sideways"], 2);
    fails(store, &["show", "not-a-number"], 2);
    fails(store, &["retry"], 2);
    fails(store, &["retry", "1", "--all-dead"], 2);
    fails(store, &["enqueue", "t", "1", "--delay", "5w"], 2);
    fails(store, &["enqueue", "t", "1", "--at", "tomorrow"], 2);
    fails(store, &["watch", "--type", "explosion"], 2);
    fails("bogus://nowhere", &["stats"], 2);

    let err = fails(store, &["enqueue", "t", "{not json"], 2);
    assert!(err.contains("not valid JSON"), "{err}");
    let err = fails(store, &["enqueue", "t", "1", "--header", "=v"], 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let stats = json(store, &["stats"]);
    assert_eq!(stats["enqueued"], 0, "nothing was enqueued: {stats}");

    fails(store, &["show", "12345"], 1);
    let err = fails(store, &["cancel", "12345"], 1);
    assert!(err.contains("not cancelled"), "{err}");
    fails(store, &["pause", ""], 2);
    // Nothing listens on port 1; the password stays out of the message.
    let err = fails("redis://ops:hunter2@127.0.0.1:1/0", &["stats"], 1);
    assert!(err.contains("cannot open the store"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn enqueue_options_duplicates_cancel_and_headers_on_sled() {
    let dir = temp_dir();
    let url = format!("sled://{}/tasks", dir.path().display());
    let store = url.as_str();

    let args = [
        "enqueue",
        "mail",
        r#"{"to": "ada"}"#,
        "--delay",
        "1h",
        "--priority",
        "-5",
        "--unique-key",
        "ada",
        "--retries",
        "3",
        "--header",
        "tenant=acme",
    ];
    let first = json(store, &args);
    assert_eq!(first["duplicate"], false);
    let id = first["id"].as_u64().unwrap();
    let again = ok(store, &args);
    assert!(
        again.contains(&format!("duplicate of task {id}")),
        "{again}"
    );

    let info = json(store, &["show", &id.to_string()]);
    assert_eq!(info["status"]["state"], "scheduled", "{info}");
    assert_eq!(info["record"]["priority"], -5);
    assert_eq!(info["record"]["max_retries"], 3);
    assert_eq!(info["record"]["unique_key"], "ada");
    assert_eq!(info["record"]["headers"]["tenant"], "acme", "{info}");
    let shown = ok(store, &["show", &id.to_string()]);
    assert!(shown.contains("tenant: acme"), "{shown}");

    let at = json(
        store,
        &["enqueue", "mail", "1", "--at", "2030-01-02T03:04:05Z"],
    );
    let at_id = at["id"].as_u64().unwrap().to_string();
    let info = json(store, &["show", &at_id]);
    assert_eq!(info["status"]["at"], 1_893_553_445_000_i64, "{info}");

    // Every waiting task shows under each of INPUT's names, a page at a time; both are
    // scheduled (not yet due, never run), so neither is pending nor retrying.
    for name in ["input", "waiting", "scheduled"] {
        let page = json(store, &["ls", name, "--topic", "mail", "--limit", "1"]);
        assert_eq!(page["tasks"][0]["id"], id, "{name}: {page}");
        assert_eq!(page["next"], id, "{name}: {page}");
    }
    let second = json(store, &["ls", "scheduled", "--after", &id.to_string()]);
    assert_eq!(second["tasks"][0]["id"].to_string(), at_id);
    assert_eq!(second["next"], Value::Null);
    let due = json(store, &["enqueue", "mail", "2"]);
    let due_id = due["id"].as_u64().unwrap();
    let pending = json(store, &["ls", "pending", "--topic", "mail"]);
    assert_eq!(
        pending["tasks"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );
    assert_eq!(pending["tasks"][0]["id"], due_id, "{pending}");
    let retrying = json(store, &["ls", "retrying"]);
    assert_eq!(retrying["tasks"], serde_json::json!([]), "{retrying}");
    let out = ok(store, &["delete", &due_id.to_string()]);
    assert!(out.contains("deleted"), "{out}");
    let second = json(store, &["ls", "input", "--after", &id.to_string()]);
    assert_eq!(second["tasks"][0]["id"].to_string(), at_id);
    assert_eq!(second["next"], Value::Null);
    let text = ok(store, &["ls", "input", "--limit", "1"]);
    assert!(text.contains(&format!("next page: --after {id}")), "{text}");

    let out = ok(store, &["cancel", &id.to_string()]);
    assert!(out.contains("cancelled"), "{out}");
    let page = json(store, &["ls", "cancelled"]);
    assert_eq!(page["tasks"][0]["id"], id);
    let err = fails(store, &["cancel", &id.to_string()], 1);
    assert!(err.contains("not cancelled"), "{err}");
    // The key is free again.
    assert_eq!(json(store, &args)["duplicate"], false);
}

/// Sends SIGINT (what Ctrl-C sends) and waits for the child to exit.
fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the command ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The child's stdout lines, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `GET path` over HTTP/1.0 (the server closes the connection after the answer): the
/// status code and the body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to serve");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// Starts `taskmill serve ARGS` and returns it with the address it printed.
fn serve(store: &str, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env("TASKMILL_STORE", store)
        .env_remove("TASKMILL_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = lines(&mut child)
        .recv_timeout(DEADLINE)
        .expect("serve prints where it listens");
    let addr = first
        .strip_prefix("serving on http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (child, addr)
}

#[test]
fn serve_answers_the_dashboard_and_metrics_on_loopback_and_stops_on_ctrl_c() {
    let dir = temp_dir();
    let url = sqlite_url(dir.path());
    let store = url.as_str();
    ok(store, &["enqueue", "mail", "1"]);

    let (mut child, addr) = serve(store, &["--addr", "127.0.0.1:0", "--title", "Acme queues"]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (status, page) = get(&addr, "/", None);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Acme queues"), "{page}");
    let (status, metrics) = get(&addr, "/metrics", None);
    assert_eq!(status, 200, "{metrics}");
    // The exposition parses strictly, and shows the one task enqueued, still waiting.
    let metrics = exposition::parse(&metrics);
    assert_eq!(metrics.kind("taskmill_tasks_enqueued"), Some("counter"));
    let mail = [("topic", "mail")];
    assert_eq!(
        metrics.value("taskmill_tasks_enqueued_total", &mail),
        Some(1.0)
    );
    let input = [("topic", "mail"), ("queue", "input")];
    assert_eq!(metrics.value("taskmill_queue_size", &input), Some(1.0));
    assert!(interrupt(&mut child).success());

    // With a token, /metrics needs it too.
    let (mut child, addr) = serve(store, &["--addr", "127.0.0.1:0", "--token", "s3cret"]);
    assert_eq!(get(&addr, "/metrics", None).0, 401);
    assert_eq!(get(&addr, "/metrics", Some("wrong")).0, 401);
    assert_eq!(get(&addr, "/metrics", Some("s3cret")).0, 200);
    assert_eq!(get(&addr, "/", Some("s3cret")).0, 200);
    assert_ne!(get(&addr, "/", None).0, 200);
    assert!(interrupt(&mut child).success());

    // A browser's live event stream never ends by itself: Ctrl-C still stops the server,
    // after the grace period.
    let (mut child, addr) = serve(store, &["--addr", "127.0.0.1:0"]);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the event stream is open");
    assert!(interrupt(&mut child).success());
    drop(stream);

    let err = fails(store, &["serve", "--addr", "0.0.0.0:0"], 2);
    assert!(err.contains("without a token"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--addr", "[::]:0"])
        .env("TASKMILL_STORE", store)
        .env("TASKMILL_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an empty token is no token");
}

#[test]
fn watch_follows_events_across_processes_on_redis_until_ctrl_c_and_the_rest_works_there() {
    let server = RedisServer::start();
    let url = server.url("watch");
    let store = url.as_str();
    let mut child = Command::new(BIN)
        .args(["watch", "--json", "--topic", "seen", "--type", "enqueue"])
        .env("TASKMILL_STORE", store)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = lines(&mut child);
    // The watcher subscribes some time after it starts: enqueue until it reports one.
    let deadline = Instant::now() + DEADLINE;
    let event: Value = loop {
        ok(store, &["enqueue", "unseen", "0"]);
        ok(store, &["enqueue", "seen", "1"]);
        if let Ok(line) = events.recv_timeout(Duration::from_millis(200)) {
            break serde_json::from_str(&line).expect("a JSON line");
        }
        assert!(Instant::now() < deadline, "watch printed nothing");
    };
    assert_eq!(event["type"], "TASK_ENQUEUE", "{event}");
    assert_eq!(event["topic"], "seen", "{event}");
    assert!(interrupt(&mut child).success());
    // Everything it printed passed the filters.
    for line in events.try_iter() {
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (event["type"].as_str(), event["topic"].as_str()),
            (Some("TASK_ENQUEUE"), Some("seen"))
        );
    }

    // The other commands on the same Redis store.
    let id = event["id"].as_u64().unwrap().to_string();
    assert_eq!(json(store, &["show", &id])["status"]["state"], "pending");
    ok(store, &["pause", "seen"]);
    let stats = json(store, &["stats"]);
    assert_eq!(stats["topics"]["seen"]["paused"], true, "{stats}");
    assert!(
        stats["topics"]["seen"]["input"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    ok(store, &["resume", "seen"]);
    assert_eq!(json(store, &["stats"])["topics"]["seen"]["paused"], false);
    ok(store, &["cancel", &id]);
    assert_eq!(json(store, &["show", &id])["status"]["state"], "cancelled");
    ok(store, &["delete", &id]);
    fails(store, &["show", &id], 1);
}

#[test]
fn cron_commands_say_what_is_wrong_with_their_input() {
    // A memory store lives as long as the command: empty, and knowing no schedule.
    let store = "memory://";
    assert_eq!(
        ok(store, &["cron", "ls"]).lines().nth(1),
        Some("(no schedules)")
    );
    let list = json(store, &["cron", "ls"]);
    assert_eq!(list["schedules"], serde_json::json!([]), "{list}");
    for verb in ["pause", "resume"] {
        let err = fails(store, &["cron", verb, "nightly"], 1);
        assert!(
            err.starts_with(&format!("taskmill cron {verb}: "))
                && err.contains(r#"no schedule named "nightly""#)
                && err.contains("taskmill cron ls"),
            "{err}"
        );
        let err = fails(store, &["cron", verb, ""], 2);
        assert!(err.contains("must not be empty"), "{err}");
        fails(store, &["cron", verb], 2);
    }
    fails(store, &["cron"], 2);
    fails(store, &["cron", "frobnicate", "nightly"], 2);
    fails(store, &["cron", "ls", "extra"], 2);
    // The names the commands had before the issue's `cron` are not kept as aliases.
    for old in [&["schedules"][..], &["schedule", "pause", "nightly"]] {
        let err = fails(store, old, 2);
        assert!(err.contains("unrecognized subcommand"), "{err}");
    }
}

/// `cron ls`, `cron pause` and `cron resume` through the binary on a SQLite file whose
/// schedules this process registered and fired, as a manager would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_lists_pauses_and_resumes_a_sqlite_files_schedules() {
    use taskmill::store::{EnqueueOptions, RegisterOptions, ScheduleEntry, Tick};
    use taskmill::{Overlap, Timestamp};

    let dir = temp_dir();
    let url = sqlite_url(dir.path());
    let store = taskmill::open(&url).await.expect("open the store");
    let now = Timestamp::now();
    store
        .register_schedules(
            &[ScheduleEntry::new(
                "hourly sync",
                "0 0 * * * *",
                "UTC",
                "sync",
            )],
            &RegisterOptions::new(now),
        )
        .await
        .unwrap();
    let tick = Timestamp::from_millis(now.as_millis() - 60_000);
    store
        .fire(
            vec![Tick::new(
                "hourly sync",
                tick,
                Task::new("sync", &"all").unwrap(),
                Overlap::Allow,
            )],
            &EnqueueOptions::new(now),
        )
        .await
        .unwrap();
    drop(store);

    tokio::task::spawn_blocking(move || {
        let store = url.as_str();
        let table = ok(store, &["cron", "ls"]);
        let row = table
            .lines()
            .find(|l| l.starts_with("hourly sync "))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(
            row.contains(" 0 0 * * * * ") && row.contains(" active "),
            "{table}"
        );
        let listed = &json(store, &["cron", "ls"])["schedules"][0];
        assert_eq!(listed["state"]["last_tick"], tick.as_millis(), "{listed}");
        assert_eq!(listed["state"]["paused"], false, "{listed}");

        let said = ok(store, &["cron", "pause", "hourly sync"]);
        assert!(said.starts_with("paused schedule hourly sync"), "{said}");
        let listed = &json(store, &["cron", "ls"])["schedules"][0];
        assert_eq!(listed["state"]["paused"], true, "{listed}");
        assert!(listed["next_tick"].is_null(), "{listed}");
        assert!(ok(store, &["cron", "ls"]).contains(" paused "));

        let said = ok(store, &["cron", "resume", "hourly sync"]);
        assert!(said.starts_with("resumed schedule hourly sync"), "{said}");
        let listed = &json(store, &["cron", "ls"])["schedules"][0];
        assert_eq!(listed["state"]["paused"], false, "{listed}");
        assert!(listed["next_tick"].is_i64(), "{listed}");
        fails(store, &["cron", "pause", "hourly"], 1);
    })
    .await
    .unwrap();
}

/// The cron commands' work, in process on one memory store (a store each command
/// process opened itself would be empty): a registered, fired schedule is listed with its
/// cadence, zone, ticks and task, paused and resumed.
#[tokio::test]
async fn schedules_are_listed_paused_and_resumed() {
    use taskmill::store::{EnqueueOptions, RegisterOptions, ScheduleEntry, Tick};
    use taskmill::{Overlap, Schedule, Timestamp};
    use taskmill_cli::admin::cron::{schedules_json, schedules_table, set_paused};

    let store: std::sync::Arc<dyn taskmill::Store> =
        std::sync::Arc::new(taskmill::MemoryStore::new());
    let client = taskmill::Client::shared(store.clone());
    let now = Timestamp::now();
    let nightly = Schedule::new(
        "nightly report",
        "0 30 2 * * *",
        Task::new("reports", &"daily").unwrap(),
    )
    .unwrap()
    .zone("Europe/Berlin")
    .unwrap();
    let entries = [
        ScheduleEntry::new("heartbeat", "@every 30s", "UTC", "ping"),
        ScheduleEntry::new(
            nightly.name(),
            nightly.cadence().spec(),
            nightly.cadence().zone(),
            "reports",
        ),
    ];
    store
        .register_schedules(&entries, &RegisterOptions::new(now))
        .await
        .unwrap();
    let tick = Timestamp::from_millis(now.as_millis() - 90_000);
    let task = nightly.task_for(tick).unwrap();
    let fired = store
        .fire(
            vec![Tick::new(nightly.name(), tick, task, Overlap::Allow)],
            &EnqueueOptions::new(now),
        )
        .await
        .unwrap();
    let taskmill::store::Fired::Enqueued(enqueued) = &fired[0] else {
        panic!("not fired: {fired:?}");
    };
    let task_id = enqueued.id();

    let schedules = client.schedules().await.unwrap();
    let table = schedules_table(&schedules, now);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header = lines[0];
    assert!(header.starts_with("NAME "), "{table}");
    // Columns line up: each cell starts where its heading does.
    let column = |name: &str| header.find(name).unwrap();
    let row = lines
        .iter()
        .find(|l| l.starts_with("nightly report "))
        .unwrap();
    assert_eq!(&row[column("CADENCE")..][..12], "0 30 2 * * *", "{table}");
    assert!(
        row[column("ZONE")..].starts_with("Europe/Berlin "),
        "{table}"
    );
    assert!(row[column("TOPIC")..].starts_with("reports "), "{table}");
    assert!(row[column("STATE")..].starts_with("active "), "{table}");
    assert!(
        row[column("LAST TICK")..].starts_with("1m30s ago "),
        "{table}"
    );
    assert!(row[column("NEXT TICK")..].starts_with("in "), "{table}");
    assert_eq!(&row[column("TASK")..], task_id.to_string(), "{table}");
    let heartbeat = lines.iter().find(|l| l.starts_with("heartbeat ")).unwrap();
    assert!(
        heartbeat[column("LAST TICK")..].starts_with("- "),
        "{table}"
    );
    assert!(heartbeat.ends_with(" -"), "never fired: {table}");

    let doc = schedules_json(&schedules, now).unwrap();
    assert_eq!(doc["at"], now.as_millis());
    let listed = &doc["schedules"][1];
    assert_eq!(listed["state"]["name"], "nightly report", "{doc}");
    assert_eq!(listed["state"]["zone"], "Europe/Berlin", "{doc}");
    assert_eq!(listed["state"]["last_tick"], tick.as_millis(), "{doc}");
    assert_eq!(listed["state"]["last_task"], task_id.get(), "{doc}");
    assert_eq!(listed["state"]["paused"], false, "{doc}");
    assert!(
        listed["next_tick"].as_i64().unwrap() > now.as_millis(),
        "{doc}"
    );

    let said = set_paused(&client, "nightly report", true).await.unwrap();
    assert!(said.starts_with("paused schedule nightly report"), "{said}");
    let schedules = client.schedules().await.unwrap();
    let table = schedules_table(&schedules, now);
    let row = table
        .lines()
        .find(|l| l.starts_with("nightly report "))
        .unwrap();
    assert!(row[column("STATE")..].starts_with("paused "), "{table}");
    assert!(
        row[column("NEXT TICK")..].starts_with("- "),
        "no next tick while paused: {table}"
    );
    assert_eq!(
        schedules_json(&schedules, now).unwrap()["schedules"][1]["state"]["paused"],
        true
    );

    let said = set_paused(&client, "nightly report", false).await.unwrap();
    assert!(
        said.starts_with("resumed schedule nightly report"),
        "{said}"
    );
    assert!(!client.schedules().await.unwrap()[1].state.paused);

    let failure = set_paused(&client, "nightly", true).await.unwrap_err();
    assert_eq!(failure.code, 1);
    assert!(
        failure.message.contains(r#"no schedule named "nightly""#),
        "{failure}"
    );
    assert!(
        client.schedules().await.unwrap().len() == 2,
        "an unknown name is not created"
    );
}
