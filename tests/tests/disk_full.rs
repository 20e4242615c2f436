//! The disk fills up under a running manager, on SQLite and on sled: writes fail with
//! `Storage`, no worker or manager dies, nothing acknowledged is lost, and once there is
//! room again every task completes and is counted once.
//!
//! CI runs as root, which a read-only directory does not stop, so the child process lowers
//! its own file-size limit (RLIMIT_FSIZE binds root too): a write past it fails with EFBIG,
//! as a full disk fails with ENOSPC. Raising the limit again is the disk getting room back.
//!
//! The child runs a manager whose processor stores an 8 KiB result per task (kept as
//! history), so processing alone fills the space; it probes with enqueues until one is
//! refused, keeps the disk full for two seconds while the manager runs into it, then gives
//! the room back and reports whether the store drained by itself. The parent then reopens
//! the store, finishes what is left with a fresh manager, and audits every task.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Manager, Queue, Store, StoreExt, Task, TaskContext, TaskError, Timestamp};

const CHILD_URL: &str = "TASKMILL_DISK_FULL_URL";
const CHILD_DIR: &str = "TASKMILL_DISK_FULL_DIR";
/// Tasks enqueued before the child starts.
const TASKS: u64 = 2_000;
/// The file-size headroom the child gets above the store's largest file: a few hundred
/// results' worth, far less than the 16 MiB all of them need.
const HEADROOM: u64 = 2 * 1024 * 1024;
const RESULT_BYTES: usize = 8 * 1024;

#[test]
fn sqlite_disk_full_under_a_running_manager() {
    run("sqlite", |dir| {
        format!("sqlite://{}", dir.join("tasks.db").display())
    });
}

#[test]
fn sled_disk_full_under_a_running_manager() {
    // A flush that waits on a refused write gives up after 2 s, not the default 30 s.
    run("sled", |dir| {
        format!(
            "sled://{}?flush_timeout_ms=2000",
            dir.join("tasks").display()
        )
    });
}

fn manager(store: Arc<dyn Store>, ran: Arc<AtomicU64>) -> Manager {
    let manager = Manager::builder(store)
        .concurrency(8)
        .lease(Duration::from_secs(3))
        .reap_interval(Duration::from_millis(250))
        .poll_interval(Duration::from_millis(50))
        .stats_interval(None)
        .build();
    manager
        .register("t", move |ctx: TaskContext| {
            let ran = ran.clone();
            async move {
                let n: u64 = ctx.args()?;
                ctx.set_result(&format!("{n}:{}", "r".repeat(RESULT_BYTES)))?;
                ran.fetch_add(1, Ordering::Relaxed);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager
}

/// Tasks of topic `t` still waiting or running.
async fn left(store: &dyn Store) -> taskmill_core::Result<u64> {
    let sizes = store
        .stats(&taskmill_testkit::all_due())
        .await?
        .topic("t")
        .sizes;
    Ok(sizes.input + sizes.work)
}

fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        largest = largest.max(if meta.is_dir() {
            largest_file(&entry.path())
        } else {
            meta.len()
        });
    }
    largest
}

fn set_file_size_limit(limit: u64) {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain libc calls on this process's own limits.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) }, 0);
}

/// The child: fills the disk under a running manager, then gives the room back.
async fn child(url: &str, dir: &Path) {
    // SAFETY: this process's own signal disposition. A write past the limit then fails
    // with EFBIG instead of killing the process.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let store = taskmill::open(url)
        .await
        .expect("the child opens the store");
    set_file_size_limit(largest_file(dir) + HEADROOM);
    let ran = Arc::new(AtomicU64::new(0));
    let manager = manager(store.clone(), ran.clone());
    manager.start().await.unwrap();

    // Probes go to a topic nobody processes; each that returns Ok must survive.
    let mut probes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        assert!(Instant::now() < deadline, "no write was refused in 60 s");
        match store
            .enqueue_one(
                Task::new("probe", &probes).unwrap(),
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
        {
            Ok(_) => probes += 1,
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "FULL kind={:?} probes={probes} ran={} error={refused}",
        refused.kind(),
        ran.load(Ordering::Relaxed)
    );
    // The disk stays full while the manager keeps claiming and storing outcomes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ran_full = ran.load(Ordering::Relaxed);
    set_file_size_limit(libc::RLIM_INFINITY);
    println!("ROOM ran={ran_full}");

    // sled refuses writes until reopened once one failed, so waiting long is no use there.
    let patience = if url.starts_with("sled") { 3 } else { 60 };
    let deadline = Instant::now() + Duration::from_secs(patience);
    let drained = loop {
        match left(&*store).await {
            Ok(0) => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    println!("DRAINED {drained} ran={}", ran.load(Ordering::Relaxed));
    let closed = tokio::time::timeout(Duration::from_secs(30), manager.close()).await;
    println!("CLOSED in_time={}", closed.is_ok());
}

fn run(scheme: &str, url_of: impl Fn(&Path) -> String) {
    if let (Ok(url), Ok(dir)) = (std::env::var(CHILD_URL), std::env::var(CHILD_DIR)) {
        if url.starts_with(scheme) {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(child(&url, Path::new(&dir)));
        }
        return;
    }
    let tmp = taskmill_testkit::temp_dir();
    let url = url_of(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = taskmill::open(&url).await.unwrap();
        let tasks = (0..TASKS).map(|n| Task::new("t", &n).unwrap()).collect();
        store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
    });

    let test = format!("{scheme}_disk_full_under_a_running_manager");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, &url)
        .env(CHILD_DIR, tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "child stdout:\n{stdout}\nchild stderr (tail):\n{}",
        tail(&String::from_utf8_lossy(&output.stderr), 20)
    );
    assert!(
        output.status.success(),
        "the child failed: {}",
        output.status
    );
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.find(tag).map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("the child never said {tag:?}: {stdout}"))
    };
    let full = line("FULL ");
    assert!(full.contains("kind=Storage"), "{full}");
    let probes: u64 = field(&full, "probes=");
    let drained = line("DRAINED ");
    assert!(
        line("CLOSED ").contains("in_time=true"),
        "the manager's close hung"
    );
    // SQLite rolls a refused transaction back and takes the next one once there is room:
    // the same manager finishes everything. sled refuses every write after its first failed
    // one, until the store is opened again (store-sled/README.md).
    if scheme == "sqlite" {
        assert!(drained.starts_with("DRAINED true"), "{drained}");
    }

    rt.block_on(async {
        let store = taskmill::open(&url).await.unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let manager = manager(store.clone(), ran);
        manager.start().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while left(&*store).await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "tasks left after 120 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        manager.close().await.unwrap();

        let completed = store.list_all(Queue::Completed, Some("t")).await.unwrap();
        let mut seen: Vec<u64> = completed
            .iter()
            .map(|r| {
                let result: String = r.result.as_ref().expect("a kept result").decode().unwrap();
                assert_eq!(result.len(), RESULT_BYTES + result.find(':').unwrap() + 1);
                r.args.decode().unwrap()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..TASKS).collect::<Vec<_>>(),
            "every task completed once"
        );
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let c = stats.topic("t").counters;
        assert_eq!((c.completed, c.failed), (TASKS, 0), "{c:?}");
        // Every acknowledged probe is kept; the refused one may be too: its batch is on
        // disk whole or not at all (store-sled/README.md, "Errors and bad data").
        let kept_probes = stats.topic("probe").sizes.input;
        assert!(
            (probes..=probes + 1).contains(&kept_probes),
            "{kept_probes} probes kept of {probes} acknowledged and one refused"
        );
        println!("{scheme}: {drained}; after reopening: {c:?}, {kept_probes} probes kept");
    });
}

fn field(line: &str, name: &str) -> u64 {
    line.split(name)
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
