//! sled allows one process per database: a second open fails at once with a clear error,
//! whether the first is in this process or another, and the lock goes with its holder.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use taskmill_core::ErrorKind;
use taskmill_sled::SledStore;

/// Opens, failing the test if that takes longer than a few seconds: a hang is exactly what
/// must not happen.
async fn open_within_deadline(path: std::path::PathBuf) -> taskmill_core::Result<SledStore> {
    tokio::time::timeout(Duration::from_secs(10), SledStore::open(path))
        .await
        .expect("opening a locked database must fail at once, not hang")
}

fn assert_locked(err: &taskmill_core::Error, path: &std::path::Path) {
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let message = err.message();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("locked"), "{message}");
}

#[tokio::test]
async fn a_second_open_in_the_same_process_fails_clearly() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let first = SledStore::open(&path).await.unwrap();
    let err = open_within_deadline(path.clone()).await.unwrap_err();
    assert_locked(&err, &path);
    // A clone shares the open database instead.
    let clone = first.clone();
    drop(first);
    assert_locked(
        &open_within_deadline(path.clone()).await.unwrap_err(),
        &path,
    );
    // Dropping the last clone closes the database and releases the lock at once.
    drop(clone);
    open_within_deadline(path)
        .await
        .expect("reopens once closed");
}

const CHILD_ENV: &str = "TASKMILL_SLED_LOCK_CHILD";

/// The child holds the database open until its stdin closes; the parent cannot open it
/// meanwhile, and can once the child is killed.
#[tokio::test]
async fn a_second_open_from_another_process_fails_clearly() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let store = SledStore::open(&path)
            .await
            .expect("the child opens the database");
        println!("OPEN");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(store);
        return;
    }
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_second_open_from_another_process_fails_clearly",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("OPEN") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the child never opened the database");
    }
    let err = open_within_deadline(path.clone()).await.unwrap_err();
    assert_locked(&err, &path);
    // The lock dies with its process, however it ends.
    child.kill().unwrap();
    child.wait().unwrap();
    open_within_deadline(path)
        .await
        .expect("reopens once the holder is gone");
}
