//! The per-topic FIFO list (`{ns:T}:fresh`) that holds freshly enqueued due tasks beside
//! the `ready` sorted set: claims, `get`, `list`, `delete` and `stats` see both as one
//! INPUT, in (priority, id) order for claims and id order for listing. Each test also
//! looks at the keys themselves, so that it fails if the tasks it means to put in the list
//! went elsewhere.

use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, ListOptions, Outcome,
    OutcomeKind, TopicClaim,
};
use taskmill_core::{Queue, Store, Task, TaskId, Timestamp};
use taskmill_testkit::T0;

mod common;

use common::Setup;

impl Setup {
    /// (ids in the fresh list, ids in the ready set) of `topic`.
    async fn layout(&mut self, topic: &str) -> (Vec<u64>, Vec<u64>) {
        let fresh: Vec<u64> = redis::cmd("LRANGE")
            .arg(self.key(topic, "fresh"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.raw)
            .await
            .unwrap();
        let ready: Vec<u64> = redis::cmd("ZRANGE")
            .arg(self.key(topic, "ready"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.raw)
            .await
            .unwrap();
        (fresh, ready)
    }

    /// Sets the id counter, so that the next batch gets ids from `last + 1`: two batches
    /// then arrive in the opposite order of their ids, as with two enqueuers that reserved
    /// their ids in one order and sent their tasks in the other.
    async fn set_last_id(&mut self, last: u64) {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:ids", self.namespace))
            .arg(last)
            .query_async(&mut self.raw)
            .await
            .unwrap();
    }

    /// Enqueues `(priority, run_at)` tasks of `topic` at `T0`; their ids.
    async fn enqueue(&self, topic: &str, tasks: &[(i16, Timestamp)]) -> Vec<u64> {
        let tasks = tasks
            .iter()
            .enumerate()
            .map(|(i, &(priority, run_at))| {
                Task::new(topic, &i)
                    .unwrap()
                    .priority(priority)
                    .run_at(run_at)
            })
            .collect();
        let results = self
            .store
            .enqueue(tasks, &EnqueueOptions::new(T0))
            .await
            .unwrap();
        assert!(results.iter().all(|r| r.is_new()), "{results:?}");
        results.iter().map(|r| r.id().get()).collect()
    }

    /// Claims up to `limit` tasks of `topic` at `at` (a long lease); their ids, in order.
    async fn claim(&self, topic: &str, limit: usize, at: Timestamp) -> Vec<u64> {
        self.claim_records(topic, limit, at)
            .await
            .iter()
            .map(|r| r.id.get())
            .collect()
    }

    async fn claim_records(
        &self,
        topic: &str,
        limit: usize,
        at: Timestamp,
    ) -> Vec<taskmill_core::TaskRecord> {
        let req = ClaimOptions::new([TopicClaim::new(topic)], limit, "me", at)
            .lease(Duration::from_secs(600));
        self.store
            .claim(&req)
            .await
            .unwrap()
            .into_iter()
            .map(|c| match c {
                Claimed::Ready(r) => r,
                Claimed::Corrupt { error, .. } => panic!("{error}"),
            })
            .collect()
    }

    /// Claims `topic` `limit` at a time until nothing is left (at most 100 calls).
    async fn claim_all(&self, topic: &str, limit: usize, at: Timestamp) -> Vec<u64> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let got = self.claim(topic, limit, at).await;
            assert!(got.len() <= limit);
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
        panic!("claims did not run out");
    }

    /// Every INPUT id of `topic`, paged `limit` at a time (at most 1000 pages).
    async fn list_input(&self, topic: &str, limit: usize) -> Vec<u64> {
        let mut query = ListOptions::new(Queue::Input).topic(topic).limit(limit);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let page = self.store.list(&query).await.unwrap();
            assert!(page.tasks.len() <= limit);
            assert!(page.tasks.iter().all(|t| t.queue == Queue::Input));
            seen.extend(page.tasks.iter().map(|t| t.id.get()));
            match page.next {
                Some(next) => query.after = Some(next),
                None => return seen,
            }
        }
        panic!("paging did not end");
    }
}

/// `tasks` (id, priority) sorted the way claims must take them.
fn claim_order(mut tasks: Vec<(u64, i16)>) -> Vec<u64> {
    tasks.sort_by_key(|&(id, priority)| (priority, id));
    tasks.into_iter().map(|(id, _)| id).collect()
}

/// Fresh tasks of two priorities, tasks of other priorities and of a later batch in the
/// ready set, retried tasks and promoted scheduled tasks: claims take them exactly in
/// (priority, id) order, whatever structure holds them, a few at a time so that the
/// merge of list and set stops at every kind of boundary. Then the list, once empty,
/// takes another priority.
#[tokio::test]
async fn claims_merge_list_and_ready_set_by_priority_then_id() {
    let mut s = Setup::new().await;
    let now = T0;
    let later = T0 + Duration::from_secs(10);
    let claim_at = T0 + Duration::from_secs(20);
    let mut expected: Vec<(u64, i16)> = Vec::new();

    // Four fresh tasks; the first two are claimed and retried, due at once: they come
    // back to the ready set, below the list's remaining two.
    let first = s.enqueue("t", &[(0, now); 4]).await;
    assert_eq!(s.layout("t").await, (first.clone(), vec![]));
    let claimed = s.claim_records("t", 2, now).await;
    assert_eq!(
        claimed.iter().map(|r| r.id.get()).collect::<Vec<_>>(),
        first[..2]
    );
    let retries: Vec<Outcome> = claimed
        .iter()
        .map(|r| Outcome::new(LeaseRef::of(r), OutcomeKind::retry(now, "again")))
        .collect();
    assert_eq!(
        s.store
            .apply(&retries, &ApplyOptions::new(now))
            .await
            .unwrap(),
        vec![Applied::Done; 2]
    );
    expected.extend(first.iter().map(|&id| (id, 0)));

    // Mostly priority 0: those join the list, the others go to the ready set.
    let mixed = [0, 3, 0, -2, 0, 3, 0];
    let tasks: Vec<_> = mixed.iter().map(|&p| (p, now)).collect();
    let ids = s.enqueue("t", &tasks).await;
    expected.extend(ids.iter().copied().zip(mixed));
    // Mostly priority 3, while the list holds priority 0: all to the ready set.
    let threes = [3, 3, 0, 3];
    let tasks: Vec<_> = threes.iter().map(|&p| (p, now)).collect();
    let ids3 = s.enqueue("t", &tasks).await;
    expected.extend(ids3.iter().copied().zip(threes));
    // Scheduled: promoted into the ready set by the claim at `claim_at`.
    let scheduled = [0, -2, 5, 3];
    let tasks: Vec<_> = scheduled.iter().map(|&p| (p, later)).collect();
    let ids_s = s.enqueue("t", &tasks).await;
    expected.extend(ids_s.iter().copied().zip(scheduled));

    let (fresh, ready) = s.layout("t").await;
    let fresh_expected: Vec<u64> = first[2..]
        .iter()
        .copied()
        .chain(
            ids.iter()
                .zip(mixed)
                .filter(|&(_, p)| p == 0)
                .map(|(&id, _)| id),
        )
        .collect();
    assert_eq!(fresh, fresh_expected);
    assert_eq!(ready.len(), 2 + 3 + 4, "{ready:?}");

    assert_eq!(s.claim_all("t", 3, claim_at).await, claim_order(expected));
    assert_eq!(s.layout("t").await, (vec![], vec![]));

    // The list is empty: a batch of priority 5 takes it over; a later batch of priority 0
    // goes to the ready set and is claimed first all the same.
    let fives = s.enqueue("t", &[(5, now); 3]).await;
    let zero = s.enqueue("t", &[(0, now)]).await;
    assert_eq!(s.layout("t").await, (fives.clone(), zero.clone()));
    let mut order = zero;
    order.extend(fives);
    assert_eq!(s.claim_all("t", 2, claim_at).await, order);
}

/// Two batches whose ids arrive in descending order: the later ids are in the list, the
/// earlier ones in the ready set, and claims still take them in id order, with a limit
/// below the list's length (the merge reads only the ready tasks before the list's last)
/// and above it.
#[tokio::test]
async fn batches_arriving_out_of_id_order_are_claimed_in_id_order() {
    let mut s = Setup::new().await;
    s.set_last_id(100).await;
    let late_t = s.enqueue("t", &[(0, T0); 3]).await;
    let late_u = s.enqueue("u", &[(0, T0); 3]).await;
    s.set_last_id(0).await;
    let early_t = s.enqueue("t", &[(0, T0); 3]).await;
    let early_u = s.enqueue("u", &[(0, T0); 3]).await;
    s.set_last_id(1000).await;
    assert!(early_t.iter().chain(&early_u).all(|id| *id < 100));
    assert_eq!(s.layout("t").await, (late_t.clone(), early_t.clone()));
    assert_eq!(s.layout("u").await, (late_u.clone(), early_u.clone()));

    let pairs: Vec<Vec<u64>> = {
        let mut pairs = Vec::new();
        for _ in 0..10 {
            let got = s.claim("t", 2, T0).await;
            if got.is_empty() {
                break;
            }
            pairs.push(got);
        }
        pairs
    };
    let all_t: Vec<u64> = early_t.iter().chain(&late_t).copied().collect();
    assert_eq!(
        pairs,
        all_t.chunks(2).map(<[u64]>::to_vec).collect::<Vec<_>>()
    );
    let all_u: Vec<u64> = early_u.iter().chain(&late_u).copied().collect();
    assert_eq!(s.claim("u", 10, T0).await, all_u);
    assert_eq!(s.layout("t").await, (vec![], vec![]));
    assert_eq!(s.layout("u").await, (vec![], vec![]));
}

/// get, stats and delete on tasks in the list: found as INPUT with their fields, counted,
/// and removed from anywhere in the list (its head, middle and tail, alone and together,
/// an id twice in one call) without disturbing the rest.
#[tokio::test]
async fn get_stats_and_delete_see_listed_tasks() {
    let mut s = Setup::new().await;
    let mut tasks = vec![(0, T0); 10];
    tasks.push((-1, T0));
    tasks.push((0, T0 + Duration::from_secs(3600)));
    let ids = s.enqueue("t", &tasks).await;
    let (listed, urgent, scheduled) = (ids[..10].to_vec(), ids[10], ids[11]);
    assert_eq!(s.layout("t").await, (listed.clone(), vec![urgent]));

    for (i, &id) in listed.iter().enumerate() {
        let got = s.store.get(TaskId::new(id)).await.unwrap().unwrap();
        assert_eq!(
            (got.queue, got.topic.as_ref(), got.priority, got.attempt),
            (Queue::Input, "t", 0, 0)
        );
        assert_eq!(got.args.as_str(), i.to_string());
    }
    assert_eq!(
        s.store
            .get(TaskId::new(scheduled))
            .await
            .unwrap()
            .unwrap()
            .queue,
        Queue::Input
    );
    assert!(s.store.get(TaskId::new(1_000_000)).await.unwrap().is_none());
    let sizes = s
        .store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes;
    assert_eq!((sizes.input, sizes.work, sizes.dead), (12, 0, 0));

    let delete = |ids: Vec<u64>| {
        let store = s.store.clone();
        async move {
            let ids: Vec<TaskId> = ids.into_iter().map(TaskId::new).collect();
            store.delete(&ids).await.unwrap()
        }
    };
    // The head and one near it (removed from the head's end), then the tail alone (from
    // the tail's end), then one in the middle twice and one that does not exist.
    assert_eq!(delete(vec![listed[0], listed[2]]).await, vec![true, true]);
    assert_eq!(delete(vec![listed[9]]).await, vec![true]);
    assert_eq!(
        delete(vec![listed[5], listed[5], 1_000_000]).await,
        vec![true, false, false]
    );
    let left: Vec<u64> = [1, 3, 4, 6, 7, 8].iter().map(|&i| listed[i]).collect();
    assert_eq!(s.layout("t").await, (left.clone(), vec![urgent]));
    for i in [0, 2, 5, 9] {
        assert!(s.store.get(TaskId::new(listed[i])).await.unwrap().is_none());
    }
    let stats = s.store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.total.sizes.input, 8);
    assert_eq!(stats.topics["t"].sizes.input, 8);

    let mut all_input = left.clone();
    all_input.extend([urgent, scheduled]);
    all_input.sort_unstable();
    assert_eq!(s.list_input("t", 3).await, all_input);
    let mut order = vec![urgent];
    order.extend(&left);
    assert_eq!(s.claim_all("t", 4, T0).await, order);
    let sizes = s
        .store
        .stats(&taskmill_testkit::all_due())
        .await
        .unwrap()
        .total
        .sizes;
    assert_eq!((sizes.input, sizes.work), (1, 7));
}

/// INPUT pages in id order across the list, the ready set and scheduled tasks, starting
/// after every possible id (members of each structure and ids of no task), so that page
/// boundaries fall inside the list, at its ends and between structures.
#[tokio::test]
async fn list_pages_start_anywhere_in_the_list() {
    let mut s = Setup::new().await;
    let later = T0 + Duration::from_secs(3600);
    // Out of order first, so that ready ids lie below and between listed ones.
    s.set_last_id(10).await;
    let pattern = [
        (0, T0),
        (0, T0),
        (4, T0),
        (0, later),
        (0, T0),
        (0, T0),
        (-4, T0),
        (0, T0),
    ];
    let high = s.enqueue("t", &pattern).await;
    s.set_last_id(0).await;
    let low = s.enqueue("t", &[(0, T0), (0, T0), (0, later)]).await;
    s.set_last_id(100).await;
    let (fresh, ready) = s.layout("t").await;
    assert_eq!(fresh.len(), 5, "{fresh:?}");
    assert_eq!(ready.len(), 4, "{ready:?}");
    let mut all: Vec<u64> = low.iter().chain(&high).copied().collect();
    all.sort_unstable();
    let max = *all.last().unwrap();
    for limit in [1, 2, 3, 20] {
        assert_eq!(s.list_input("t", limit).await, all, "limit {limit}");
        for after in 0..=max + 1 {
            let query = ListOptions::new(Queue::Input)
                .topic("t")
                .limit(limit)
                .after(TaskId::new(after));
            let page = s.store.list(&query).await.unwrap();
            let got: Vec<u64> = page.tasks.iter().map(|t| t.id.get()).collect();
            let want: Vec<u64> = all
                .iter()
                .copied()
                .filter(|&id| id > after)
                .take(limit)
                .collect();
            assert_eq!(got, want, "after {after}, limit {limit}");
            let more = all.iter().filter(|&&id| id > after).count() > limit;
            assert_eq!(page.next.is_some(), more, "after {after}, limit {limit}");
        }
    }
    // Claimed once the scheduled ones are due: ready ids of the list's priority lie
    // below listed ones (1, 2, 3) and between them (the promoted high[3]). The limits
    // make the second claim's window of the list (high[1], high[4], high[5]) span
    // high[3], which must come out between them.
    let priority = |id: u64| match id {
        _ if id == high[2] => 4,
        _ if id == high[6] => -4,
        _ => 0,
    };
    let expected = claim_order(all.iter().map(|&id| (id, priority(id))).collect());
    assert_eq!(expected[..4], [high[6], low[0], low[1], low[2]]);
    let mut claimed = s.claim("t", 5, later).await;
    assert_eq!(claimed, expected[..5]);
    let second = s.claim("t", 3, later).await;
    assert_eq!(second, [high[1], high[3], high[4]]);
    claimed.extend(second);
    claimed.extend(s.claim_all("t", 2, later).await);
    assert_eq!(claimed, expected);
}

/// A namespace written before the list existed (due tasks only in the ready set) is read
/// as before, and new enqueues on top of it merge with it in claim order.
#[tokio::test]
async fn a_namespace_without_the_list_keeps_working() {
    let mut s = Setup::new().await;
    let old = s.enqueue("t", &[(0, T0), (2, T0), (0, T0), (0, T0)]).await;
    // Rewrite it as the layout before the list: each listed id scored in the ready set,
    // and neither the list nor its priority field.
    let (fresh, _) = s.layout("t").await;
    assert_eq!(fresh.len(), 3);
    let band = 32768u64 << 37;
    let mut pipe = redis::pipe();
    for id in &fresh {
        pipe.cmd("ZADD")
            .arg(s.key("t", "ready"))
            .arg(band + id)
            .arg(id);
    }
    pipe.cmd("DEL").arg(s.key("t", "fresh"));
    pipe.cmd("HDEL")
        .arg(s.key("t", "meta"))
        .arg("fresh_priority");
    let _: () = pipe.query_async(&mut s.raw).await.unwrap();
    assert_eq!(s.layout("t").await.0, Vec::<u64>::new());

    for &id in &old {
        let got = s.store.get(TaskId::new(id)).await.unwrap().unwrap();
        assert_eq!(got.queue, Queue::Input);
    }
    assert_eq!(s.list_input("t", 2).await, old);
    assert_eq!(
        s.store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        4
    );

    let new = s.enqueue("t", &[(0, T0), (1, T0), (0, T0)]).await;
    assert_eq!(s.layout("t").await.0, vec![new[0], new[2]]);
    let expected = claim_order(vec![
        (old[0], 0),
        (old[1], 2),
        (old[2], 0),
        (old[3], 0),
        (new[0], 0),
        (new[1], 1),
        (new[2], 0),
    ]);
    assert_eq!(s.claim_all("t", 2, T0).await, expected);
}
