//! Everything the store holds survives closing and reopening it: every queue, the leases,
//! stats, unique keys, pauses, and the id and token counters.

use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, Outcome, OutcomeKind,
    RecoverOptions, RenewOptions, TopicClaim,
};
use taskmill_core::{Queue, Store, StoreExt, Task};
use taskmill_sled::SledStore;
use taskmill_testkit::at;

fn lease(claimed: &Claimed) -> LeaseRef {
    match claimed {
        Claimed::Ready(record) => LeaseRef::of(record),
        Claimed::Corrupt { lease, error } => panic!("unexpected corrupt record {lease:?}: {error}"),
    }
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let opts = EnqueueOptions::new(at(0));
    let claim = |limit| ClaimOptions::new([TopicClaim::new("a")], limit, "m1", at(10));

    let (ids, working, before) = {
        let store = SledStore::open(&path).await.unwrap();
        let tasks = vec![
            Task::new("a", &0).unwrap().priority(-5),
            Task::new("a", &1).unwrap().unique_key("one"),
            Task::new("a", &2).unwrap(),
            Task::new("a", &3).unwrap().run_at(at(60_000)),
            Task::new("b", &4).unwrap(),
        ];
        let ids: Vec<_> = store
            .enqueue(tasks, &opts)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id())
            .collect();
        // Task 0 (priority -5) to DEAD, task 1 stays in WORK.
        let first = store.claim(&claim(2)).await.unwrap();
        assert_eq!(first.len(), 2);
        let dead = Outcome::new(lease(&first[0]), OutcomeKind::dead("no"));
        assert_eq!(
            store
                .apply(&[dead], &ApplyOptions::new(at(20)))
                .await
                .unwrap(),
            [Applied::Done]
        );
        let working = lease(&first[1]);
        assert_eq!(working.id, ids[1]);
        store.set_paused("b", true).await.unwrap();
        let before = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        (ids, working, before)
    };

    let store = SledStore::open(&path).await.unwrap();
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        before,
        "stats and sizes"
    );
    let queue = |q| {
        let store = store.clone();
        async move {
            store
                .list_all(q, None)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(queue(Queue::Dead).await, [ids[0]]);
    assert_eq!(queue(Queue::Work).await, [ids[1]]);
    assert_eq!(queue(Queue::Input).await, [ids[2], ids[3], ids[4]]);

    // The lease is still live and fenced: renewable by its token, recoverable once expired.
    let record = store.get(ids[1]).await.unwrap().unwrap();
    assert_eq!((record.queue, record.attempt), (Queue::Work, 1));
    assert_eq!(record.lease.as_ref().unwrap().token, working.token);
    assert_eq!(
        store
            .renew(
                std::slice::from_ref(&working),
                &RenewOptions::new(at(90_000))
            )
            .await
            .unwrap(),
        [Applied::Done]
    );
    // The unique key is still held.
    let dup = store
        .enqueue_one(Task::new("a", &9).unwrap().unique_key("one"), &opts)
        .await
        .unwrap();
    assert!(!dup.is_new());
    assert_eq!(dup.id(), ids[1]);
    // Ids and tokens keep growing: nothing handed out before is handed out again.
    let new = store
        .enqueue_one(Task::new("a", &5).unwrap(), &opts)
        .await
        .unwrap();
    assert!(new.id() > ids[4]);
    // The scheduled task is not due at 10 ms, though its due time is long past by the
    // wall clock: the claim's `now` decides, even for indexes rebuilt at open.
    let next = store.claim(&claim(10)).await.unwrap();
    let next: Vec<_> = next.iter().map(lease).collect();
    assert_eq!(
        next.iter().map(|l| l.id).collect::<Vec<_>>(),
        [ids[2], new.id()]
    );
    assert!(next[0].token > working.token);
    // Topic b is still paused; the scheduled task is due at its time.
    let b = ClaimOptions::new([TopicClaim::new("b")], 10, "m1", at(10));
    assert!(store.claim(&b).await.unwrap().is_empty());
    let later = ClaimOptions::new([TopicClaim::new("a")], 10, "m1", at(60_000));
    let due: Vec<_> = store
        .claim(&later)
        .await
        .unwrap()
        .iter()
        .map(|c| lease(c).id)
        .collect();
    assert_eq!(due, [ids[3]]);
    // The recovered lease's old token is stale.
    let recovered = store
        .recover(&RecoverOptions::new(at(90_000) + Duration::from_millis(1)).limit(10))
        .await
        .unwrap();
    assert!(recovered.iter().any(|r| r.id == ids[1]));
    let stale = Outcome::new(working, OutcomeKind::complete());
    assert_eq!(
        store
            .apply(&[stale], &ApplyOptions::new(at(100_000)))
            .await
            .unwrap(),
        [Applied::Stale]
    );
}
