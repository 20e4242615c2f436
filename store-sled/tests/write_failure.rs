//! A write the disk refuses: an enqueue fails with `Storage`, and nothing that was stored
//! before is lost.
//!
//! The test runs as root in CI, where a read-only directory does not stop a write, so the
//! child process lowers its own file-size limit (RLIMIT_FSIZE, which binds root too): a
//! write past it fails with EFBIG, as a full disk fails with ENOSPC.

use std::path::Path;
use std::process::Command;
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{Queue, Store, StoreExt, Task, Timestamp};
use taskmill_sled::SledStore;

const CHILD_ENV: &str = "TASKMILL_SLED_FSIZE_CHILD";
const BEFORE: u64 = 1000;
/// The file-size headroom the child gets above the database's largest file.
const HEADROOM: u64 = 2 * 1024 * 1024;

fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            largest = largest.max(largest_file(&entry.path()));
        } else {
            largest = largest.max(meta.len());
        }
    }
    largest
}

fn opts() -> EnqueueOptions {
    EnqueueOptions::new(Timestamp::now())
}

/// Runs in the child: enqueues big tasks until the limit is hit; prints how far it got.
async fn child(path: &str) {
    // SAFETY: plain libc calls on this process's own signal disposition and limits.
    unsafe {
        // A write past the limit then fails with EFBIG instead of killing the process.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = largest_file(Path::new(path)) + HEADROOM;
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
    }
    let store = SledStore::open(path)
        .await
        .expect("the child opens the database");
    let payload = "x".repeat(16 * 1024);
    let mut acknowledged = 0u64;
    // 64 MiB in all: far past the limit, so the loop ends by an error or fails the test.
    for batch in 0..256u64 {
        let tasks = (0..16)
            .map(|i| Task::new("big", &format!("{batch}-{i}-{payload}")).unwrap())
            .collect();
        match store.enqueue(tasks, &opts()).await {
            Ok(ids) => acknowledged += ids.len() as u64,
            Err(e) => {
                println!(
                    "FAILED kind={:?} acknowledged={acknowledged} error={e}",
                    e.kind()
                );
                // The store refuses writes from now on instead of pretending.
                let again = store
                    .enqueue_one(Task::new("big", &"more").unwrap(), &opts())
                    .await
                    .unwrap_err();
                println!("AGAIN kind={:?}", again.kind());
                return;
            }
        }
    }
    println!("NEVER FAILED acknowledged={acknowledged}");
}

#[tokio::test]
async fn a_refused_write_fails_the_enqueue_and_loses_nothing_stored() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path).await;
        return;
    }
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).await.unwrap();
        let tasks = (0..BEFORE)
            .map(|i| Task::new("small", &i).unwrap())
            .collect();
        store.enqueue(tasks, &opts()).await.unwrap();
    }

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_refused_write_fails_the_enqueue_and_loses_nothing_stored",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");
    assert!(
        output.status.success(),
        "the child failed: {}",
        output.status
    );
    let failed = stdout
        .lines()
        .find_map(|l| l.find("FAILED kind=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("the enqueue never failed: {stdout}"));
    assert!(failed.contains("kind=Storage"), "{failed}");
    assert!(stdout.contains("AGAIN kind=Storage"), "{stdout}");
    let acknowledged: u64 = failed
        .split("acknowledged=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the child says how many enqueues it acknowledged");

    // Reopen without the limit: everything acknowledged is there, the batch that failed
    // is there whole or not at all, and the store works.
    let store = SledStore::open(path).await.unwrap();
    let small = store.list_all(Queue::Input, Some("small")).await.unwrap();
    assert_eq!(
        small.len() as u64,
        BEFORE,
        "tasks stored before the failure survive"
    );
    for (i, record) in small.iter().enumerate() {
        assert_eq!(record.args.decode::<u64>().unwrap(), i as u64);
    }
    let big = store
        .list_all(Queue::Input, Some("big"))
        .await
        .unwrap()
        .len() as u64;
    assert!(
        big == acknowledged || big == acknowledged + 16,
        "acknowledged {acknowledged}, found {big}: a batch was split"
    );
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(
        stats.total.sizes.input,
        BEFORE + big,
        "sizes match the tasks"
    );
    assert_eq!(stats.total.counters.enqueued, BEFORE + big);
    store
        .enqueue_one(Task::new("small", &BEFORE).unwrap(), &opts())
        .await
        .unwrap();
}
