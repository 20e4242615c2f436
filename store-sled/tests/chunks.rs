//! Tasks of several topics enqueued together go into one chunk per topic, whose id ranges
//! overlap: listing still gives every task once, in id order, page after page; the kept
//! finished tasks too, whether their queue is most of the records or a small part.

use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, ListOptions, Outcome,
    OutcomeKind, TopicClaim,
};
use taskmill_core::{Queue, Store, Task, TaskId, Timestamp};
use taskmill_sled::SledStore;

/// Fails at the first id where `got` and `want` differ (rather than printing thousands).
fn same(got: &[TaskId], want: &[TaskId], what: &str) {
    let at = got.iter().zip(want).position(|(g, w)| g != w);
    let at = at.unwrap_or(got.len().min(want.len()));
    assert!(
        got == want,
        "{what}: {} ids for {}, first difference at {at}: {:?} for {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    );
}

/// Every page of INPUT, `limit` at a time.
async fn pages(store: &SledStore, limit: usize) -> Vec<TaskId> {
    pages_of(store, ListOptions::new(Queue::Input).limit(limit)).await
}

/// Every page of `query`.
async fn pages_of(store: &SledStore, mut query: ListOptions) -> Vec<TaskId> {
    let mut seen = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap();
        seen.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => query = query.after(next),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn lists_merge_overlapping_chunks_in_id_order() {
    let dir = taskmill_testkit::temp_dir();
    let store = SledStore::open(dir.path().join("db")).await.unwrap();
    let opts = EnqueueOptions::new(Timestamp::now());
    // Three topics interleaved one by one; then one task of `x`, 3,000 of `y` and one more
    // of `x`, whose chunk would span 3,000 ids if chunks had no span limit.
    let mut tasks: Vec<Task> = (0..900)
        .map(|i| Task::new(["a", "b", "c"][i % 3], &i).unwrap())
        .collect();
    tasks.push(Task::new("x", &0).unwrap());
    tasks.extend((0..3000).map(|i| Task::new("y", &i).unwrap()));
    tasks.push(Task::new("x", &1).unwrap());
    let mut ids: Vec<TaskId> = store
        .enqueue(tasks, &opts)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    let more = store
        .enqueue(vec![Task::new("a", &-1).unwrap()], &opts)
        .await
        .unwrap();
    ids.push(more[0].id());
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids grow in batch order"
    );

    for limit in [1, 7, 100, 10_000] {
        same(
            &pages(&store, limit).await,
            &ids,
            &format!("pages of {limit}"),
        );
    }
    // By topic, from the middle of the range.
    let query = ListOptions::new(Queue::Input).topic("x").after(ids[500]);
    let page = store.list(&query).await.unwrap();
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ids[900], ids[3901]]
    );

    // Claims of one topic, and their completions, leave the other topics' tasks listed in
    // order, and the stats exact.
    let claim = ClaimOptions::new([TopicClaim::new("b")], 250, "m", Timestamp::now());
    let claimed = store.claim(&claim).await.unwrap();
    assert_eq!(claimed.len(), 250);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => Outcome::new(LeaseRef::of(r), OutcomeKind::complete()),
            Claimed::Corrupt { error, .. } => panic!("{error}"),
        })
        .collect();
    store
        .apply(&outcomes, &ApplyOptions::new(Timestamp::now()))
        .await
        .unwrap();
    let gone: Vec<TaskId> = outcomes.iter().map(|o| o.lease.id).collect();
    let left: Vec<TaskId> = ids
        .iter()
        .copied()
        .filter(|id| !gone.contains(id))
        .collect();
    same(&pages(&store, 33).await, &left, "pages after the claims");
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input as usize,
        left.len()
    );
    drop(store);
    let store = SledStore::open(dir.path().join("db")).await.unwrap();
    same(&pages(&store, 1000).await, &left, "after a reopen");
}

/// COMPLETED and CANCELLED list in id order, by topic too, without deleted tasks, both when
/// they are most of the records (paged from the records) and when they are few beside a
/// large INPUT (gathered from the finish orders), though tasks finished out of id order
/// and of time order.
#[tokio::test]
async fn finished_queues_list_in_id_order() {
    let dir = taskmill_testkit::temp_dir();
    let store = SledStore::open(dir.path().join("db")).await.unwrap();
    let t0 = Timestamp::from_millis(1_000_000);
    let tasks: Vec<Task> = (0..300)
        .map(|i| Task::new(["a", "b", "c"][i % 3], &i).unwrap())
        .collect();
    let ids: Vec<TaskId> = store
        .enqueue(tasks, &EnqueueOptions::new(t0))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    let of = |topic: usize| -> Vec<TaskId> { ids.iter().copied().skip(topic).step_by(3).collect() };
    let claim = ClaimOptions::new([TopicClaim::new("a"), TopicClaim::new("b")], 200, "m", t0);
    let claimed = store.claim(&claim).await.unwrap();
    assert_eq!(claimed.len(), 200);
    let mut leases: Vec<LeaseRef> = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => LeaseRef::of(r),
            Claimed::Corrupt { error, .. } => panic!("{error}"),
        })
        .collect();
    // Completed in an order neither by id nor by time: reversed, in calls whose times go
    // back and forth.
    leases.reverse();
    for (i, chunk) in leases.chunks(30).enumerate() {
        let outcomes: Vec<Outcome> = chunk
            .iter()
            .map(|l| Outcome::new(l.clone(), OutcomeKind::complete()))
            .collect();
        let now = Timestamp::from_millis(t0.as_millis() + [50, 10, 70, 20][i % 4]);
        store
            .apply(&outcomes, &ApplyOptions::new(now))
            .await
            .unwrap();
    }
    let cancelled: Vec<TaskId> = of(2).into_iter().step_by(4).collect();
    let opts = taskmill_core::store::CancelOptions::new(t0, "tester");
    store.cancel(&cancelled, &opts).await.unwrap();
    let deleted = [of(0)[5], of(1)[17], cancelled[3]];
    assert_eq!(store.delete(&deleted).await.unwrap(), [true; 3]);
    let mut completed: Vec<TaskId> = of(0).into_iter().chain(of(1)).collect();
    completed.sort();
    completed.retain(|id| !deleted.contains(id));
    let cancelled: Vec<TaskId> = cancelled
        .into_iter()
        .filter(|id| !deleted.contains(id))
        .collect();
    let only_a: Vec<TaskId> = of(0)
        .into_iter()
        .filter(|id| !deleted.contains(id))
        .collect();
    for (regime, extra) in [("most of the records", 0), ("beside a large INPUT", 2_000)] {
        let more = (0..extra).map(|i| Task::new("d", &i).unwrap()).collect();
        store.enqueue(more, &EnqueueOptions::new(t0)).await.unwrap();
        for limit in [1, 7, 1000] {
            let what = format!("{regime}, pages of {limit}");
            let query = ListOptions::new(Queue::Completed).limit(limit);
            same(&pages_of(&store, query).await, &completed, &what);
            let query = ListOptions::new(Queue::Completed).topic("a").limit(limit);
            same(&pages_of(&store, query).await, &only_a, &what);
            let query = ListOptions::new(Queue::Cancelled).limit(limit);
            same(&pages_of(&store, query).await, &cancelled, &what);
        }
        let query = ListOptions::new(Queue::Completed)
            .after(completed[100])
            .limit(3);
        let page = store.list(&query).await.unwrap();
        let page: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
        assert_eq!(page, completed[101..104], "{regime}");
    }
}
