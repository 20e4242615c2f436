//! Garbage written straight into the `taskmill` tree. One task's record garbled: `get` says
//! `Corrupt`, a manager sends that one task to DEAD with a corrupt-data error and runs every
//! other task. A whole chunk garbled or cut short: what can be read of it runs, and the rest
//! is one DEAD placeholder naming the lost ids, which a human can see and delete.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::{EnqueueOptions, PruneOptions, RequeueOptions};
use taskmill_core::{
    ErrorKind, Manager, Queue, Stats, Store, StoreExt, Task, TaskContext, TaskError, Timestamp,
};
use taskmill_sled::SledStore;

const TASKS: u64 = 50;

/// Opens the store once the raw sled handle used to tamper with it has let go: sled's I/O
/// threads release the file lock a moment after the handle is dropped.
async fn reopen(path: &Path) -> taskmill_core::Result<SledStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(path).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => return other,
        }
    }
}

/// The key and value of the chunk holding id `id`: chunk keys are `c`, first id, last id,
/// big-endian (see the crate's README).
fn chunk_of(tree: &sled::Tree, id: u64) -> (sled::IVec, sled::IVec) {
    tree.scan_prefix("c")
        .map(|entry| entry.unwrap())
        .find(|(key, _)| {
            let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
            let last = u64::from_be_bytes(key[9..17].try_into().unwrap());
            (first..=last).contains(&id)
        })
        .expect("the chunk is where we expect")
}

/// Garbles one byte of the record of task `id`, found by `marker` (bytes of its arguments)
/// in its chunk, as a disk error or a stray tool would: the chunk still splits into its
/// entries, but that record is not valid UTF-8 any more.
fn garble_record(db: &sled::Db, id: u64, marker: &[u8]) {
    let tree = db.open_tree("taskmill").unwrap();
    let (key, value) = chunk_of(&tree, id);
    let mut value = value.to_vec();
    let at = value
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker is in the chunk");
    value[at] = 0xff;
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

/// Replaces the whole value of the chunk holding task `id` with what `f` makes of it.
fn rewrite_chunk(db: &sled::Db, id: u64, f: impl FnOnce(&[u8]) -> Vec<u8>) {
    let tree = db.open_tree("taskmill").unwrap();
    let (key, value) = chunk_of(&tree, id);
    tree.insert(key, f(&value)).unwrap();
    db.flush().unwrap();
}

/// The arguments of task number `i`, which `garble_record` finds.
fn arg(i: u64) -> String {
    format!("task-{i:04}")
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

/// Runs topic `t` with a manager until the store's stats satisfy `drained`, then closes
/// it; returns the arguments of every run.
async fn run_until(store: &SledStore, drained: impl Fn(&Stats) -> bool) -> HashSet<String> {
    let ran: Arc<Mutex<HashSet<String>>> = Arc::default();
    let manager = Manager::builder(store.clone())
        .poll_interval(Duration::from_millis(20))
        .stats_interval(None)
        .build();
    let seen = ran.clone();
    manager
        .register("t", move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().insert(ctx.args::<String>()?);
                Ok::<_, TaskError>(())
            }
        })
        .unwrap();
    manager.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        if drained(&stats) {
            break;
        }
        assert!(Instant::now() < deadline, "not drained in time: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.close().await.unwrap();
    let ran = ran.lock().unwrap().clone();
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_goes_to_dead_and_the_rest_run() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let ids = {
        let store = SledStore::open(&path).await.unwrap();
        let tasks = (0..TASKS)
            .map(|i| Task::new("t", &arg(i)).unwrap().unique_key(format!("k{i}")))
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
        garble_record(&raw(&path), bad_id.get(), arg(BAD).as_bytes());
    }

    let store = reopen(&path).await.unwrap();
    let err = store.get(bad_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(store.get(ids[0]).await.unwrap().is_some());

    let ran = run_until(&store, |s| {
        s.total.counters.completed == TASKS - 1 && s.total.sizes.dead == 1
    })
    .await;
    let expected: HashSet<String> = (0..TASKS).filter(|i| *i != BAD).map(arg).collect();
    assert_eq!(ran, expected, "every task but the corrupt one ran");

    let dead = store.list_all(Queue::Dead, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    let record = &dead[0];
    assert_eq!(record.id, bad_id);
    let error = record.last_error().unwrap_or_default();
    assert!(error.contains("corrupt"), "last error: {error:?}");
    // The bytes are kept for a human to look at, and the unique key was recovered.
    let kept = &arg(BAD)[1..];
    assert!(record.args.as_str().contains(kept), "{:?}", record.args);
    assert_eq!(
        record.unique_key.as_deref(),
        Some(format!("k{BAD}").as_str())
    );
    assert_eq!(store.get(bad_id).await.unwrap().unwrap().queue, Queue::Dead);

    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.total.counters.started, TASKS);
    assert_eq!(stats.total.counters.failed, 1);
    assert_eq!(stats.total.sizes.active(), 1);
    // The manager keeps finished tasks: each is where it finished, its chunk rewritten.
    assert_eq!(stats.total.sizes.completed, TASKS - 1);

    // Deleting it frees its unique key like any task's.
    assert_eq!(store.delete(&[bad_id]).await.unwrap(), [true]);
    let again = store
        .enqueue_one(
            Task::new("t", &arg(BAD))
                .unwrap()
                .unique_key(format!("k{BAD}")),
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
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let id = {
        let store = SledStore::open(&path).await.unwrap();
        let opts = EnqueueOptions::new(Timestamp::now());
        store
            .enqueue_one(Task::new("t", &arg(1)).unwrap(), &opts)
            .await
            .unwrap();
        let e = store
            .enqueue_one(Task::new("t", &arg(2)).unwrap().unique_key("u"), &opts)
            .await
            .unwrap();
        e.id()
    };
    {
        garble_record(&raw(&path), id.get(), arg(2).as_bytes());
    }
    let store = reopen(&path).await.unwrap();
    // Listing leaves it out rather than failing the whole page.
    assert_eq!(store.list_all(Queue::Input, None).await.unwrap().len(), 1);
    assert_eq!(store.delete(&[id]).await.unwrap(), [true]);
    assert_eq!(store.get(id).await.unwrap().map(|r| r.id), None);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
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
#[tokio::test]
async fn a_newer_layout_is_refused() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    drop(SledStore::open(&path).await.unwrap());
    {
        let db = raw(&path);
        db.open_tree("taskmill")
            .unwrap()
            .insert("mschema", &99u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = reopen(&path).await.unwrap_err();
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
#[tokio::test]
async fn the_old_layout_is_refused() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema", &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("layout version 1"), "{err}");
    // Refusing it added nothing of the new layout.
    let db = raw(&path);
    assert!(!db.tree_names().iter().any(|n| n == b"taskmill".as_slice()));
}

/// Paging skips a corrupt record without ending early.
#[tokio::test]
async fn paging_goes_past_a_corrupt_record() {
    use taskmill_core::store::ListOptions;
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let now = Timestamp::now();
    let ids: Vec<_> = {
        let store = SledStore::open(&path).await.unwrap();
        let tasks = (0..3).map(|i| Task::new("t", &arg(i)).unwrap()).collect();
        let done = store
            .enqueue(tasks, &EnqueueOptions::new(now))
            .await
            .unwrap();
        done.into_iter().map(|e| e.id()).collect()
    };
    garble_record(&raw(&path), ids[1].get(), arg(1).as_bytes());
    let store = reopen(&path).await.unwrap();
    let mut seen = Vec::new();
    let mut query = ListOptions::new(Queue::Input).limit(1);
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

/// Enqueues `batches` calls of `per` tasks (so at least one chunk each), numbered from 0
/// with unique keys `k<n>`; their ids.
async fn fill(path: &Path, batches: u64, per: u64) -> Vec<taskmill_core::TaskId> {
    let store = SledStore::open(path).await.unwrap();
    let mut ids = Vec::new();
    for b in 0..batches {
        let tasks = (b * per..(b + 1) * per)
            .map(|i| Task::new("t", &arg(i)).unwrap().unique_key(format!("k{i}")))
            .collect();
        let done = store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
        ids.extend(done.into_iter().map(|e| e.id()));
    }
    ids
}

/// A chunk whose bytes are garbage throughout: its tasks are lost, one DEAD placeholder
/// (under the chunk's last id) names their ids, every other task runs, and deleting the placeholder removes the chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_chunk_becomes_one_dead_placeholder_and_the_rest_run() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let ids = fill(&path, 3, 10).await;
    let lost = &ids[10..20];
    rewrite_chunk(&raw(&path), lost[0].get(), |_| b"\xff\x00garbage{".to_vec());

    let store = reopen(&path).await.unwrap();
    let placeholder = store.get(lost[9]).await.unwrap().expect("a placeholder");
    assert_eq!(placeholder.queue, Queue::Dead);
    assert_eq!(&*placeholder.topic, "(corrupt)");
    let error = placeholder.last_error().unwrap();
    let range = format!("{}..={}", lost[0], lost[9]);
    assert!(
        error.contains("corrupt") && error.contains(&range),
        "{error}"
    );
    assert!(
        placeholder.args.as_str().contains("garbage"),
        "{:?}",
        placeholder.args
    );
    for id in &lost[..9] {
        assert!(store.get(*id).await.unwrap().is_none(), "{id}");
    }
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!((stats.total.sizes.input, stats.total.sizes.dead), (20, 1));

    let ran = run_until(&store, |s| s.total.counters.completed >= 20).await;
    let expected: HashSet<String> = (0..30).filter(|i| !(10..20).contains(i)).map(arg).collect();
    assert_eq!(ran, expected);

    // It cannot be requeued (nothing is known to run), only deleted; that frees nothing
    // more, and the chunk goes.
    assert_eq!(
        store
            .requeue(&[lost[9]], &RequeueOptions::new(Timestamp::now()))
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(store.delete(&[lost[9]]).await.unwrap(), [true]);
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .active(),
        0
    );
    // Once the kept tasks are pruned too, nothing is left of any chunk.
    let prune = PruneOptions::new(Timestamp::now() + Duration::from_secs(1), Duration::ZERO);
    assert_eq!(store.prune(&prune).await.unwrap(), 20);
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .total(),
        0
    );
    drop(store);
    let db = raw(&path);
    let chunks = db.open_tree("taskmill").unwrap().scan_prefix("c").count();
    assert_eq!(chunks, 0, "every chunk is gone");
    drop(db);
    let store = reopen(&path).await.unwrap();
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .total(),
        0
    );
}

/// A chunk cut short: the tasks before the cut are intact, the placeholder stands for the
/// rest, and when the chunk is next rewritten the placeholder is stored in it, readable, so
/// it outlives a reopen unchanged until a human deletes it.
#[tokio::test]
async fn a_chunk_cut_short_keeps_its_head_and_a_placeholder() {
    use taskmill_core::store::{ClaimOptions, Claimed, RequeueOptions, TopicClaim};
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let ids = fill(&path, 1, 10).await;
    rewrite_chunk(&raw(&path), ids[0].get(), |v| v[..v.len() / 2].to_vec());

    let store = reopen(&path).await.unwrap();
    let input = store.list_all(Queue::Input, None).await.unwrap();
    let kept = input.len();
    assert!((1..10).contains(&kept), "{kept} tasks survived");
    let kept_ids: Vec<_> = input.iter().map(|r| r.id).collect();
    assert_eq!(
        kept_ids,
        ids[..kept],
        "the head of the chunk survives, in order"
    );
    let dead = store.list_all(Queue::Dead, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    let placeholder = dead[0].clone();
    assert_eq!(
        placeholder.id, ids[9],
        "the placeholder takes the last id of the chunk"
    );
    let range = format!("{}..={}", ids[kept], ids[9]);
    let error = placeholder.last_error().unwrap();
    assert!(error.contains(&range), "{error}");

    // Claiming one task rewrites the chunk, with the placeholder in it.
    let claim = ClaimOptions::new([TopicClaim::new("t")], 1, "m", Timestamp::now());
    let claimed = store.claim(&claim).await.unwrap();
    assert!(matches!(&claimed[..], [Claimed::Ready(r)] if r.id == ids[0]));
    drop(store);
    let store = reopen(&path).await.unwrap();
    assert_eq!(
        store.get(placeholder.id).await.unwrap(),
        Some(placeholder.clone())
    );
    // Stored readable now, it is still not requeued: nothing is known to run.
    let requeued = store
        .requeue(&[placeholder.id], &RequeueOptions::new(Timestamp::now()))
        .await;
    assert_eq!(requeued.unwrap(), [false]);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.total.sizes.input as usize, kept - 1);
    assert_eq!((stats.total.sizes.work, stats.total.sizes.dead), (1, 1));
    assert_eq!(store.delete(&[placeholder.id]).await.unwrap(), [true]);
    drop(store);
    let store = reopen(&path).await.unwrap();
    assert_eq!(store.get(placeholder.id).await.unwrap(), None);
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .total() as usize,
        kept
    );
}

/// A database of layout 2 (one key per task) is refused, and left alone.
#[tokio::test]
async fn layout_2_is_refused() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    drop(SledStore::open(&path).await.unwrap());
    {
        let db = raw(&path);
        let tree = db.open_tree("taskmill").unwrap();
        tree.insert("mschema", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("layout version 2"), "{err}");
    let db = raw(&path);
    let tree = db.open_tree("taskmill").unwrap();
    let version = tree.get("mschema").unwrap().unwrap();
    assert_eq!(version.as_ref(), 2u64.to_be_bytes());
}
