//! Garbage written straight into the `tasks` tree: `get` says `Corrupt`, a manager sends
//! that one task to DEAD with a corrupt-data error and runs every other task.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{
    ErrorKind, Manager, Queue, Store, StoreExt, Task, TaskContext, TaskError, Timestamp,
};
use taskmill_sled::SledStore;

const TASKS: u64 = 50;

/// Opens the store once the raw sled handle used to tamper with it has let go: sled's I/O
/// threads release the file lock a moment after the handle is dropped.
fn reopen(path: &Path) -> taskmill_core::Result<SledStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(path) {
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

/// Overwrites the stored record of task `id` with `bytes`, as a disk error or a stray tool
/// would: the record keys start with `t` and the id (see the crate's README).
fn overwrite(db: &sled::Db, id: u64, bytes: &[u8]) {
    let tree = db.open_tree("taskmill").unwrap();
    let mut prefix = vec![b't'];
    prefix.extend_from_slice(&id.to_be_bytes());
    let (key, _) = tree
        .scan_prefix(prefix)
        .next()
        .expect("the record is where we expect")
        .unwrap();
    tree.insert(key, bytes).unwrap();
    db.flush().unwrap();
}

/// Opens the database with sled itself, to write behind the store's back.
fn raw(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if Instant::now() < deadline => {
                assert!(e.to_string().contains("lock"), "{e}");
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other.unwrap(),
        }
    }
}
const BAD: u64 = 17;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_goes_to_dead_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let ids = {
        let store = SledStore::open(&path).unwrap();
        let tasks = (0..TASKS)
            .map(|i| Task::new("t", &i).unwrap().unique_key(format!("k{i}")))
            .collect();
        let done = store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
        done.into_iter().map(|e| e.id()).collect::<Vec<_>>()
    };
    let bad_id = ids[BAD as usize];

    // Behind the store's back, as a disk error or a stray tool would.
    {
        overwrite(&raw(&path), bad_id.get(), b"\xff\x00garbage{");
    }

    let store = reopen(&path).unwrap();
    let err = store.get(bad_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(store.get(ids[0]).await.unwrap().is_some());

    let ran: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let manager = Manager::builder(store.clone())
        .poll_interval(Duration::from_millis(20))
        .stats_interval(None)
        .build();
    let seen = ran.clone();
    manager
        .register("t", move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                let n: u64 = ctx.args()?;
                seen.lock().unwrap().insert(n);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = store.stats().await.unwrap();
        if stats.total.counters.completed == TASKS - 1 && stats.total.sizes.dead == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained in time: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.close().await.unwrap();

    let ran = ran.lock().unwrap().clone();
    let expected: HashSet<u64> = (0..TASKS).filter(|i| *i != BAD).collect();
    assert_eq!(ran, expected, "every task but the corrupt one ran");

    let dead = store.list_all(Queue::Dead, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    let record = &dead[0];
    assert_eq!(record.id, bad_id);
    let error = record.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("corrupt"), "last error: {error:?}");
    // The bytes are kept for a human to look at, and the unique key was recovered.
    assert!(
        record.args.as_str().contains("garbage"),
        "{:?}",
        record.args
    );
    assert_eq!(
        record.unique_key.as_deref(),
        Some(format!("k{BAD}").as_str())
    );
    assert_eq!(store.get(bad_id).await.unwrap().unwrap().queue, Queue::Dead);

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.total.counters.started, TASKS);
    assert_eq!(stats.total.counters.failed, 1);
    assert_eq!(stats.total.sizes.total(), 1);

    // Deleting it frees its unique key like any task's.
    assert_eq!(store.delete(&[bad_id]).await.unwrap(), [true]);
    let again = store
        .enqueue_one(
            Task::new("t", &BAD).unwrap().unique_key(format!("k{BAD}")),
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    assert!(again.is_new());
}

/// A corrupt record still in INPUT can be deleted, and its index entries and counts go
/// with it.
#[tokio::test]
async fn a_corrupt_record_in_input_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let id = {
        let store = SledStore::open(&path).unwrap();
        let opts = EnqueueOptions::new(Timestamp::now());
        store
            .enqueue_one(Task::new("t", &1).unwrap(), &opts)
            .await
            .unwrap();
        let e = store
            .enqueue_one(Task::new("t", &2).unwrap().unique_key("u"), &opts)
            .await
            .unwrap();
        e.id()
    };
    {
        overwrite(&raw(&path), id.get(), b"nope");
    }
    let store = reopen(&path).unwrap();
    // Listing leaves it out rather than failing the whole page.
    assert_eq!(store.list_all(Queue::Input, None).await.unwrap().len(), 1);
    assert_eq!(store.delete(&[id]).await.unwrap(), [true]);
    assert_eq!(store.get(id).await.unwrap().map(|r| r.id), None);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.total.sizes.input, 1);
    let again = store
        .enqueue_one(
            Task::new("t", &3).unwrap().unique_key("u"),
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    assert!(again.is_new(), "the unique key was freed");
}

/// A database written by a newer layout is refused with a clear error, and left alone.
#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(SledStore::open(&path).unwrap());
    {
        let db = raw(&path);
        db.open_tree("taskmill")
            .unwrap()
            .insert("mschema", &99u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = reopen(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("99"), "{err}");
    assert!(err.message().contains(&path.display().to_string()), "{err}");
    // Refusing it did not rewrite the version.
    let db = raw(&path);
    let version = db
        .open_tree("taskmill")
        .unwrap()
        .get("mschema")
        .unwrap()
        .unwrap();
    assert_eq!(version.as_ref(), 99u64.to_be_bytes());
}

/// A database of layout 1 (eight trees, versioned in `meta`) is refused, and left alone.
#[test]
fn the_old_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema", &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("layout version 1"), "{err}");
    // Refusing it added nothing of the new layout.
    let db = raw(&path);
    assert!(!db.tree_names().iter().any(|n| n == b"taskmill".as_slice()));
}

/// Paging skips a corrupt record without ending early.
#[tokio::test]
async fn paging_goes_past_a_corrupt_record() {
    use taskmill_core::store::ListQuery;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let now = Timestamp::now();
    let ids: Vec<_> = {
        let store = SledStore::open(&path).unwrap();
        let tasks = (0..3).map(|i| Task::new("t", &i).unwrap()).collect();
        let done = store
            .enqueue(tasks, &EnqueueOptions::new(now))
            .await
            .unwrap();
        done.into_iter().map(|e| e.id()).collect()
    };
    overwrite(&raw(&path), ids[1].get(), b"{");
    let store = reopen(&path).unwrap();
    let mut seen = Vec::new();
    let mut query = ListQuery::new(Queue::Input).limit(1);
    for _ in 0..10 {
        let page = store.list(&query).await.unwrap();
        seen.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => query = query.after(next),
            None => break,
        }
    }
    assert_eq!(seen, [ids[0], ids[2]]);
}
