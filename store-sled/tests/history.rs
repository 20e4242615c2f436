//! Finished tasks kept by the sled store: COMPLETED and CANCELLED records, cancel requests
//! and the unique keys they hold survive a reopen exactly (the indexes are rebuilt from the
//! records), pruning takes each topic's oldest finished tasks by its own cutoff, and a
//! database written before history was kept (layout 3), before headers were (layout 4), or
//! before schedules were (layout 5), opens, reads and runs.

use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions,
    Enqueued, Fired, LeaseRef, ListOptions, Outcome, OutcomeKind, Progress, PruneOptions,
    RecoverOptions, RegisterOptions, RenewOptions, ScheduleEntry, Tick, TopicClaim,
};
use taskmill_core::{
    Overlap, Payload, Queue, Store, StoreExt, Task, TaskId, TaskRecord, Timestamp,
};
use taskmill_sled::SledStore;
use taskmill_testkit::at;

async fn enqueue(store: &SledStore, tasks: Vec<Task>) -> Vec<TaskId> {
    let done = store.enqueue(tasks, &EnqueueOptions::new(at(0))).await;
    done.unwrap().into_iter().map(|e| e.id()).collect()
}

async fn claim(store: &SledStore, topic: &str, limit: usize, now: Timestamp) -> Vec<TaskRecord> {
    let opts = ClaimOptions::new([TopicClaim::new(topic).max_retries(4)], limit, "m1", now);
    let claimed = store.claim(&opts).await.unwrap();
    claimed
        .into_iter()
        .map(|c| match c {
            Claimed::Ready(r) => r,
            Claimed::Corrupt { lease, error } => panic!("{lease:?}: {error}"),
        })
        .collect()
}

async fn apply(store: &SledStore, outcome: Outcome, now: Timestamp) -> Applied {
    let applied = store.apply(&[outcome], &ApplyOptions::new(now)).await;
    applied.unwrap()[0]
}

async fn ids_of(store: &SledStore, query: ListOptions) -> Vec<TaskId> {
    let mut seen = Vec::new();
    let mut query = query.limit(2);
    for _ in 0..100 {
        let page = store.list(&query).await.unwrap();
        seen.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => query = query.after(next),
            None => return seen,
        }
    }
    panic!("paging did not end: {seen:?}");
}

fn json(text: &str) -> Option<Payload> {
    Some(Payload::from_json(text).unwrap())
}

#[tokio::test]
async fn history_survives_a_reopen() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let (ids, running, before, records) = {
        let store = SledStore::open(&path).await.unwrap();
        let ids = enqueue(
            &store,
            vec![
                Task::new("a", &0)
                    .unwrap()
                    .unique_key("kept")
                    .unique_while_kept(),
                Task::new("a", &1).unwrap().unique_key("freed"),
                Task::new("a", &2).unwrap(),
                Task::new("a", &3).unwrap().unique_key("cancelled"),
                Task::new("b", &4)
                    .unwrap()
                    .unique_key("waiting")
                    .run_at(at(50)),
            ],
        )
        .await;
        let claimed = claim(&store, "a", 3, at(10)).await;
        assert_eq!(claimed.len(), 3);
        // 0 and 1 complete with a result and progress; 2 fails once and runs again.
        let done = |r: &TaskRecord, result| {
            Outcome::new(LeaseRef::of(r), OutcomeKind::complete_with(json(result)))
                .progress(json("[1,1]"))
        };
        assert_eq!(
            apply(&store, done(&claimed[0], "\"zero\""), at(20)).await,
            Applied::Done
        );
        assert_eq!(
            apply(&store, done(&claimed[1], "{\"one\":1}"), at(21)).await,
            Applied::Done
        );
        let retry = Outcome::new(
            LeaseRef::of(&claimed[2]),
            OutcomeKind::retry(at(22), "flaky"),
        );
        assert_eq!(apply(&store, retry, at(22)).await, Applied::Done);
        // 3 is cancelled waiting; 2 is cancelled running, its request stored.
        let by = CancelOptions::new(at(30), "ops");
        let cancelled = store.cancel(&[ids[3]], &by).await.unwrap();
        assert_eq!(cancelled, [Cancellation::Cancelled]);
        let again = claim(&store, "a", 1, at(30)).await;
        assert_eq!(again[0].id, ids[2]);
        let progress = Progress {
            lease: LeaseRef::of(&again[0]),
            value: Payload::from_json("0.5").unwrap(),
        };
        assert_eq!(store.progress(&[progress]).await.unwrap(), [Applied::Done]);
        let requested = store.cancel(&[ids[2]], &by).await.unwrap();
        assert_eq!(requested, [Cancellation::Requested]);
        let before = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let mut records = Vec::new();
        for id in &ids {
            records.push(store.get(*id).await.unwrap().unwrap());
        }
        (ids, LeaseRef::of(&again[0]), before, records)
    };

    let store = SledStore::open(&path).await.unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        before,
        "counters and sizes"
    );
    let sizes = before.topic("a").sizes;
    assert_eq!((sizes.completed, sizes.cancelled, sizes.work), (2, 1, 1));
    assert_eq!(before.topic("a").counters.cancelled, 1);
    for (id, record) in ids.iter().zip(&records) {
        assert_eq!(store.get(*id).await.unwrap().as_ref(), Some(record), "{id}");
    }
    let completed = &records[0];
    assert_eq!(completed.queue, Queue::Completed);
    assert_eq!(completed.result, json("\"zero\""));
    assert_eq!(completed.progress, json("[1,1]"));
    assert_eq!(
        (completed.first_started_at, completed.finished_at),
        (Some(at(10)), Some(at(20)))
    );
    assert_eq!(
        completed.max_retries,
        Some(4),
        "the claim's limit, written at the claim"
    );
    let running_record = &records[2];
    assert_eq!(running_record.errors.len(), 1);
    assert_eq!(running_record.errors[0].message.as_ref(), "flaky");
    assert_eq!(running_record.progress, json("0.5"));
    assert_eq!(running_record.cancelled_by.as_deref(), Some("ops"));
    assert_eq!(records[3].queue, Queue::Cancelled);
    assert_eq!(
        (records[3].cancelled_by.as_deref(), records[3].finished_at),
        (Some("ops"), Some(at(30)))
    );

    // Each finished queue lists its tasks, by topic too.
    let completed_ids = ids_of(&store, ListOptions::new(Queue::Completed)).await;
    assert_eq!(completed_ids, [ids[0], ids[1]]);
    let cancelled_ids = ids_of(&store, ListOptions::new(Queue::Cancelled).topic("a")).await;
    assert_eq!(cancelled_ids, [ids[3]]);
    assert!(
        ids_of(&store, ListOptions::new(Queue::Completed).topic("b"))
            .await
            .is_empty()
    );

    // Unique keys: held by the task kept with `unique_while_kept` and by the waiting one;
    // free once the others finished.
    for (key, held_by) in [("kept", Some(ids[0])), ("freed", None), ("cancelled", None)] {
        let task = Task::new("a", &9).unwrap().unique_key(key);
        let e = store
            .enqueue_one(task, &EnqueueOptions::new(at(40)))
            .await
            .unwrap();
        match held_by {
            Some(id) => assert_eq!((e.is_new(), e.id()), (false, id), "{key}"),
            None => assert!(e.is_new(), "{key} is free"),
        }
    }
    let waiting = Task::new("b", &9).unwrap().unique_key("waiting");
    let e = store
        .enqueue_one(waiting, &EnqueueOptions::new(at(40)))
        .await
        .unwrap();
    assert_eq!((e.is_new(), e.id()), (false, ids[4]));

    // The cancel request outlived the reopen: renewals are refused, and the reaper ends
    // the run CANCELLED.
    let renew = RenewOptions::new(at(100_000));
    let renewed = store
        .renew(std::slice::from_ref(&running), &renew)
        .await
        .unwrap();
    assert_eq!(renewed, [Applied::Cancelled]);
    let recovered = store
        .recover(&RecoverOptions::new(at(100_000)))
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        (recovered[0].id, recovered[0].queue),
        (ids[2], Queue::Cancelled)
    );
    let stats = store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .topic("a");
    assert_eq!((stats.sizes.cancelled, stats.counters.cancelled), (2, 2));
}

#[tokio::test]
async fn pruning_takes_the_oldest_finished_tasks_by_each_topics_cutoff() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).await.unwrap();
    let mut tasks: Vec<Task> = (0..40).map(|i| Task::new("a", &i).unwrap()).collect();
    tasks.extend((0..40).map(|i| Task::new("b", &i).unwrap()));
    tasks.push(
        Task::new("a", &"held")
            .unwrap()
            .unique_key("k")
            .unique_while_kept(),
    );
    tasks.push(Task::new("a", &"dead").unwrap());
    let ids = enqueue(&store, tasks).await;
    // Topic a's 40 tasks finish at 1000 + i, b's at 2000 + i, in reverse id order: the
    // finish-time order is not the id order.
    for (topic, base) in [("a", 1000), ("b", 2000)] {
        let claimed = claim(&store, topic, 40, at(1)).await;
        assert_eq!(claimed.len(), 40);
        for (i, record) in claimed.iter().rev().enumerate() {
            let now = at(base + i as u64);
            let outcome = Outcome::new(LeaseRef::of(record), OutcomeKind::complete());
            assert_eq!(apply(&store, outcome, now).await, Applied::Done);
        }
    }
    let rest = claim(&store, "a", 2, at(1)).await;
    let done = Outcome::new(LeaseRef::of(&rest[0]), OutcomeKind::complete());
    assert_eq!(apply(&store, done, at(1005)).await, Applied::Done);
    let dead = Outcome::new(LeaseRef::of(&rest[1]), OutcomeKind::dead("no"));
    assert_eq!(apply(&store, dead, at(0)).await, Applied::Done);

    // At 2010 with a retention of 1 s for a and 5 ms for b: a's tasks finished at or
    // before 1010 (11, and the unique one at 1005) and b's at or before 2005 (6) are due.
    let prune = |limit| {
        PruneOptions::new(at(2010), Duration::from_millis(1000))
            .topic("b", Duration::from_millis(5))
            .limit(limit)
    };
    assert_eq!(store.prune(&prune(7)).await.unwrap(), 7);
    assert_eq!(store.prune(&prune(100)).await.unwrap(), 11);
    assert_eq!(
        store.prune(&prune(100)).await.unwrap(),
        0,
        "nothing else is due"
    );
    let left = |topic: &str| {
        let store = store.clone();
        let topic = topic.to_owned();
        async move { ids_of(&store, ListOptions::new(Queue::Completed).topic(topic)).await }
    };
    // a finished in reverse id order, so its 11 highest ids went, and the unique one.
    assert_eq!(left("a").await, ids[..29]);
    assert_eq!(left("b").await, ids[40..74]);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.topic("a").sizes.completed, 29);
    assert_eq!(stats.topic("a").sizes.dead, 1, "DEAD is never pruned");
    assert_eq!(stats.topic("b").sizes.completed, 34);
    // Pruning freed the key the kept task held.
    let again = Task::new("a", &"again").unwrap().unique_key("k");
    let e = store
        .enqueue_one(again, &EnqueueOptions::new(at(2010)))
        .await
        .unwrap();
    assert!(e.is_new());

    // The finish-time order is rebuilt at open.
    drop(store);
    let store = SledStore::open(&path).await.unwrap();
    let later = PruneOptions::new(at(2030), Duration::from_millis(1000))
        .topic("b", Duration::from_millis(5));
    assert_eq!(store.prune(&later).await.unwrap(), 20 + 20);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.topic("a").sizes.completed, 9);
    assert_eq!(stats.topic("b").sizes.completed, 14);
    assert_eq!(stats.total.counters.completed, 81, "pruning counts nothing");
}

/// A completion not kept removes the task at once, as before history: nothing of it is
/// left on disk, and its unique key is free.
#[tokio::test]
async fn an_outcome_not_kept_leaves_nothing() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).await.unwrap();
    let ids = enqueue(
        &store,
        vec![
            Task::new("a", &0)
                .unwrap()
                .unique_key("k")
                .unique_while_kept(),
            Task::new("a", &1).unwrap(),
        ],
    )
    .await;
    let claimed = claim(&store, "a", 2, at(1)).await;
    let by = CancelOptions::new(at(2), "ops");
    assert_eq!(
        store.cancel(&[ids[1]], &by).await.unwrap(),
        [Cancellation::Requested]
    );
    for (record, want) in claimed.iter().zip([Applied::Done, Applied::Cancelled]) {
        let outcome = Outcome::new(LeaseRef::of(record), OutcomeKind::complete()).keep(false);
        assert_eq!(apply(&store, outcome, at(3)).await, want);
    }
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.total.sizes.total(), 0);
    let c = stats.total.counters;
    assert_eq!((c.completed, c.cancelled), (1, 1));
    let again = Task::new("a", &2).unwrap().unique_key("k");
    assert!(store
        .enqueue_one(again, &EnqueueOptions::new(at(4)))
        .await
        .unwrap()
        .is_new());
    drop(store);
    let store = SledStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .total(),
        1
    );
    assert!(store.get(ids[0]).await.unwrap().is_none());
}

/// The bytes of a layout-3 database, as the codec before history wrote them (see the
/// crate's README): chunk entries with records of format 1, stats rows of eight counters.
mod layout_3 {
    fn str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// What one old record holds.
    pub struct Old<'a> {
        pub id: u64,
        pub topic: &'a str,
        pub unique: Option<&'a str>,
        /// 0 INPUT, 1 WORK, 2 DEAD.
        pub queue: u8,
        pub attempt: u32,
        pub max_retries: u32,
        pub lease: Option<(u64, i64, &'a str)>,
        pub last_error: Option<&'a str>,
        pub failed_at: Option<i64>,
        pub args: &'a str,
    }

    /// The entry of a task: its length, id, priority, topic, unique key, then the record.
    pub fn entry(old: &Old<'_>, out: &mut Vec<u8>) {
        let mut e = Vec::new();
        e.extend_from_slice(&old.id.to_le_bytes());
        e.extend_from_slice(&0i16.to_le_bytes());
        str(&mut e, old.topic);
        match old.unique {
            None => e.push(0),
            Some(u) => {
                e.push(1);
                str(&mut e, u);
            }
        }
        let flags = u8::from(old.lease.is_some())
            | u8::from(old.last_error.is_some()) << 2
            | u8::from(old.failed_at.is_some()) << 3;
        e.extend_from_slice(&[1, old.queue, flags]);
        e.extend_from_slice(&old.attempt.to_le_bytes());
        e.extend_from_slice(&old.max_retries.to_le_bytes());
        e.extend_from_slice(&7i64.to_le_bytes()); // enqueued at
        e.extend_from_slice(&7i64.to_le_bytes()); // run at
        if let Some((token, deadline, owner)) = old.lease {
            e.extend_from_slice(&token.to_le_bytes());
            e.extend_from_slice(&deadline.to_le_bytes());
            str(&mut e, owner);
        }
        if let Some(error) = old.last_error {
            str(&mut e, error);
        }
        if let Some(t) = old.failed_at {
            e.extend_from_slice(&t.to_le_bytes());
        }
        e.extend_from_slice(old.args.as_bytes());
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(&e);
    }

    /// A chunk: format 3, the entry count, the entries.
    pub fn chunk(entries: &[Old<'_>]) -> Vec<u8> {
        let mut out = vec![3];
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for old in entries {
            entry(old, &mut out);
        }
        out
    }

    pub fn chunk_key(first: u64, last: u64) -> Vec<u8> {
        let mut key = vec![b'c'];
        key.extend_from_slice(&first.to_be_bytes());
        key.extend_from_slice(&last.to_be_bytes());
        key
    }

    /// A stats row of eight counters (big-endian) and the paused flag.
    pub fn row(counters: [u64; 8], paused: bool) -> Vec<u8> {
        let mut out: Vec<u8> = counters.iter().flat_map(|c| c.to_be_bytes()).collect();
        out.push(u8::from(paused));
        out
    }
}

#[tokio::test]
async fn a_layout_3_database_opens_and_runs() {
    use layout_3::Old;
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("taskmill").unwrap();
        tree.insert("mschema", &3u64.to_be_bytes()).unwrap();
        tree.insert("mlast_id", &4u64.to_be_bytes()).unwrap();
        tree.insert("mlast_token", &9u64.to_be_bytes()).unwrap();
        let base = Old {
            id: 1,
            topic: "t",
            unique: None,
            queue: 0,
            attempt: 0,
            max_retries: 3,
            lease: None,
            last_error: None,
            failed_at: None,
            args: "\"one\"",
        };
        let chunk = layout_3::chunk(&[
            Old { ..base },
            Old {
                id: 2,
                unique: Some("k2"),
                queue: 2,
                attempt: 4,
                last_error: Some("gave up"),
                failed_at: Some(50),
                args: "\"two\"",
                ..base
            },
            Old {
                id: 3,
                queue: 1,
                attempt: 1,
                lease: Some((9, 60_000, "m0")),
                args: "\"three\"",
                ..base
            },
            Old {
                id: 4,
                unique: Some("k4"),
                attempt: 2,
                last_error: Some("flaky"),
                args: "\"four\"",
                ..base
            },
        ]);
        tree.insert(layout_3::chunk_key(1, 4), chunk).unwrap();
        let row = layout_3::row([4, 6, 2, 1, 1, 0, 0, 0], false);
        tree.insert("st", row).unwrap();
        db.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match SledStore::open(&path).await {
            Err(e) if e.kind() == taskmill_core::ErrorKind::Unavailable => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other.unwrap(),
        }
    };
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    let (c, s) = (stats.total.counters, stats.total.sizes);
    assert_eq!(
        (c.enqueued, c.started, c.retried, c.cancelled),
        (4, 6, 2, 0)
    );
    assert_eq!((s.input, s.work, s.dead, s.completed), (2, 1, 1, 0));
    let dead = store.get(TaskId::new(2)).await.unwrap().unwrap();
    assert_eq!((dead.queue, dead.max_retries), (Queue::Dead, Some(3)));
    assert_eq!(dead.finished_at, Some(Timestamp::from_millis(50)));
    assert_eq!(dead.errors.len(), 1);
    let error = &dead.errors[0];
    assert_eq!(
        (error.attempt, error.at, &*error.message),
        (4, Timestamp::from_millis(50), "gave up")
    );
    let retried = store.get(TaskId::new(4)).await.unwrap().unwrap();
    assert_eq!(
        retried.errors[0].at,
        Timestamp::from_millis(7),
        "the enqueue time"
    );
    assert_eq!(retried.finished_at, None);
    // The old unique keys are held, the old lease is fenced.
    for (key, id) in [("k2", 2), ("k4", 4)] {
        let task = Task::new("t", &0).unwrap().unique_key(key);
        let e = store
            .enqueue_one(task, &EnqueueOptions::new(at(1)))
            .await
            .unwrap();
        assert_eq!((e.is_new(), e.id()), (false, TaskId::new(id)));
    }
    let old_lease = LeaseRef {
        id: TaskId::new(3),
        topic: "t".into(),
        token: 9,
    };
    let done = Outcome::new(old_lease, OutcomeKind::complete());
    assert_eq!(apply(&store, done, at(100)).await, Applied::Done);
    // The old tasks run with the new ones, and end kept like any.
    let claimed = claim(&store, "t", 10, at(100)).await;
    assert_eq!(
        claimed.iter().map(|r| r.id.get()).collect::<Vec<_>>(),
        [1, 4]
    );
    for record in &claimed {
        let outcome = Outcome::new(LeaseRef::of(record), OutcomeKind::complete());
        assert_eq!(apply(&store, outcome, at(200)).await, Applied::Done);
    }
    let before = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(before.total.sizes.completed, 3);
    drop(store);

    // Marked the current layout now, and everything reads back the same.
    let store = SledStore::open(&path).await.unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        before
    );
    assert_eq!(store.get(TaskId::new(2)).await.unwrap(), Some(dead));
    let completed = ids_of(&store, ListOptions::new(Queue::Completed)).await;
    assert_eq!(completed, [1, 3, 4].map(TaskId::new));
    drop(store);
    let db = sled::open(&path).unwrap();
    let version = db.open_tree("taskmill").unwrap().get("mschema").unwrap();
    assert_eq!(
        version.unwrap().as_ref(),
        u64::from(taskmill_sled::LAYOUT_VERSION).to_be_bytes()
    );
}

/// An entry of a layout-4 database (see the crate's README): a record of format 2, which
/// format 3 extends with headers.
fn layout_4_entry(id: u64, record: &[u8], args: &str, out: &mut Vec<u8>) {
    let mut e = Vec::new();
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&0i16.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes());
    e.push(b't');
    e.push(0); // no unique key
    e.extend_from_slice(record);
    e.extend_from_slice(args.as_bytes());
    out.extend_from_slice(&(e.len() as u32).to_le_bytes());
    out.extend_from_slice(&e);
}

/// A database written before headers were kept (layout 4, records of format 2) opens as it
/// is: its tasks read with no headers and run beside new ones that carry them, and the
/// database is marked with the current layout.
#[tokio::test]
async fn a_layout_4_database_opens_and_runs() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let le = |v: i64| v.to_le_bytes();
    let ms = Timestamp::from_millis;
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("taskmill").unwrap();
        tree.insert("mschema", &4u64.to_be_bytes()).unwrap();
        tree.insert("mlast_id", &2u64.to_be_bytes()).unwrap();
        // Task 1 in INPUT, due at 7, 3 retries; task 2 COMPLETED at 20 after a run from 10.
        let mut waiting = vec![2, 0];
        waiting.extend_from_slice(&8u16.to_le_bytes()); // max retries
        waiting.extend_from_slice(&0u32.to_le_bytes()); // attempt
        waiting.extend_from_slice(&le(5)); // enqueued at
        waiting.extend_from_slice(&le(7)); // run at
        waiting.extend_from_slice(&3u32.to_le_bytes());
        let mut done = vec![2, 3];
        done.extend_from_slice(&(4u16 | 8 | 16 | 32).to_le_bytes());
        done.extend_from_slice(&1u32.to_le_bytes());
        done.extend_from_slice(&le(5));
        done.extend_from_slice(&le(7));
        done.extend_from_slice(&le(20)); // finished at
        done.extend_from_slice(&3u32.to_le_bytes());
        done.extend_from_slice(&le(10)); // first started at
        done.extend_from_slice(&le(10)); // started at
        let mut chunk = vec![3];
        chunk.extend_from_slice(&2u32.to_le_bytes());
        layout_4_entry(1, &waiting, "\"one\"", &mut chunk);
        layout_4_entry(2, &done, "\"two\"", &mut chunk);
        tree.insert(layout_3::chunk_key(1, 2), chunk).unwrap();
        db.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match SledStore::open(&path).await {
            Err(e) if e.kind() == taskmill_core::ErrorKind::Unavailable => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other.unwrap(),
        }
    };
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(
        (stats.total.sizes.input, stats.total.sizes.completed),
        (1, 1)
    );
    assert_eq!(stats.topic("t").earliest_run_at, Some(ms(7)));
    let old = store.get(TaskId::new(1)).await.unwrap().unwrap();
    assert_eq!(
        (old.queue, old.run_at, old.max_retries, old.args.as_str()),
        (Queue::Input, ms(7), Some(3), "\"one\"")
    );
    assert!(old.headers.is_empty());
    let completed = store.get(TaskId::new(2)).await.unwrap().unwrap();
    assert_eq!(
        (completed.queue, completed.finished_at, completed.started_at),
        (Queue::Completed, Some(ms(20)), Some(ms(10)))
    );
    assert!(completed.headers.is_empty());
    let new = Task::new("t", &3).unwrap().header("x-id", "3").unwrap();
    let new = enqueue(&store, vec![new]).await[0];
    let claimed = claim(&store, "t", 10, at(100)).await;
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [TaskId::new(1), new]
    );
    assert!(claimed[0].headers.is_empty());
    assert_eq!(claimed[1].headers.get("x-id"), Some("3"));
    for record in &claimed {
        let outcome = Outcome::new(LeaseRef::of(record), OutcomeKind::complete());
        assert_eq!(apply(&store, outcome, at(200)).await, Applied::Done);
    }
    let mut before = Vec::new();
    for id in [TaskId::new(1), TaskId::new(2), new] {
        before.push(store.get(id).await.unwrap().unwrap());
    }
    assert!(before.iter().all(|r| r.queue == Queue::Completed));
    drop(store);
    let store = SledStore::open(&path).await.unwrap();
    for record in &before {
        assert_eq!(store.get(record.id).await.unwrap().as_ref(), Some(record));
    }
    drop(store);
    let db = sled::open(&path).unwrap();
    let version = db.open_tree("taskmill").unwrap().get("mschema").unwrap();
    assert_eq!(
        version.unwrap().as_ref(),
        u64::from(taskmill_sled::LAYOUT_VERSION).to_be_bytes()
    );
}

/// A database written before schedules were kept (layout 5: records of format 3, no `r`
/// entries) opens as it is, with no schedule: its tasks read and run, schedules register
/// and fire beside them (the fired task after its last id, its unique key checked against
/// theirs), everything reads back the same after a reopen, and the database is marked 6.
#[tokio::test]
async fn a_layout_5_database_opens_and_keeps_schedules() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let le = |v: i64| v.to_le_bytes();
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("taskmill").unwrap();
        tree.insert("mschema", &5u64.to_be_bytes()).unwrap();
        tree.insert("mlast_id", &1u64.to_be_bytes()).unwrap();
        // Task 1 in INPUT, due at 7, 3 retries, one header, unique key "k".
        let mut record = vec![3, 0];
        record.extend_from_slice(&(8u16 | 1 << 11).to_le_bytes()); // max retries, headers
        record.extend_from_slice(&0u32.to_le_bytes()); // attempt
        record.extend_from_slice(&le(5)); // enqueued at
        record.extend_from_slice(&le(7)); // run at
        record.extend_from_slice(&3u32.to_le_bytes());
        record.extend_from_slice(&1u32.to_le_bytes()); // one header
        for s in ["x-id", "1"] {
            record.extend_from_slice(&(s.len() as u32).to_le_bytes());
            record.extend_from_slice(s.as_bytes());
        }
        let mut e = Vec::new();
        e.extend_from_slice(&1u64.to_le_bytes());
        e.extend_from_slice(&0i16.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.push(b't');
        e.push(1); // a unique key
        e.extend_from_slice(&1u32.to_le_bytes());
        e.push(b'k');
        e.extend_from_slice(&record);
        e.extend_from_slice(b"\"one\"");
        let mut chunk = vec![3];
        chunk.extend_from_slice(&1u32.to_le_bytes());
        chunk.extend_from_slice(&(e.len() as u32).to_le_bytes());
        chunk.extend_from_slice(&e);
        tree.insert(layout_3::chunk_key(1, 1), chunk).unwrap();
        db.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let store = loop {
        match SledStore::open(&path).await {
            Err(e) if e.kind() == taskmill_core::ErrorKind::Unavailable => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other.unwrap(),
        }
    };
    let old = store.get(TaskId::new(1)).await.unwrap().unwrap();
    assert_eq!(
        (
            old.queue,
            old.unique_key.as_deref(),
            old.headers.get("x-id")
        ),
        (Queue::Input, Some("k"), Some("1"))
    );
    assert!(store.schedules().await.unwrap().is_empty());
    let entry = ScheduleEntry::new("s", "@hourly", "UTC", "t");
    store
        .register_schedules(&[entry], &RegisterOptions::new(at(0)))
        .await
        .unwrap();
    let opts = EnqueueOptions::new(at(10));
    let ticks = vec![
        Tick::new(
            "s",
            at(1),
            Task::new("t", &2).unwrap().unique_key("k"),
            Overlap::Allow,
        ),
        Tick::new("s", at(2), Task::new("t", &3).unwrap(), Overlap::Allow),
    ];
    let fired = store.fire(ticks, &opts).await.unwrap();
    assert_eq!(
        fired,
        [
            Fired::Enqueued(Enqueued::Duplicate(TaskId::new(1))),
            Fired::Enqueued(Enqueued::New(TaskId::new(2))),
        ]
    );
    let claimed = claim(&store, "t", 10, at(100)).await;
    assert_eq!(
        claimed.iter().map(|r| r.id.get()).collect::<Vec<_>>(),
        [1, 2]
    );
    let (states, stats) = (
        store.schedules().await.unwrap(),
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
    );
    assert_eq!(states[0].last_task, Some(TaskId::new(2)));
    drop(store);
    let store = SledStore::open(&path).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), states);
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        stats
    );
    drop(store);
    let db = sled::open(&path).unwrap();
    let version = db.open_tree("taskmill").unwrap().get("mschema").unwrap();
    assert_eq!(version.unwrap().as_ref(), 6u64.to_be_bytes());
}
