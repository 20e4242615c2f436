//! The waiting-topic index (`ns:waiting`, a sorted set of topic tags scored by the earliest
//! due time of their INPUT): every script that moves a task into INPUT lists its topic, a
//! claim from many topics visits only the listed due ones and corrects the entries it finds
//! wrong, pause takes a topic out, and a namespace written before the index gets one built
//! at its first claim. Each test reads the index itself, so it fails if the entries are
//! not what the claim relies on.

use std::collections::BTreeMap;
use std::time::Duration;
use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef, Outcome, OutcomeKind,
    TopicClaim,
};
use taskmill_core::{Store, Task, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::T0;

mod common;

use common::Setup;

/// More topics than a claim visits without the index (ops.rs `FEW_TOPICS`).
const TOPICS: usize = 40;

fn topic(i: usize) -> String {
    format!("t{i:02}")
}

fn all_topics() -> Vec<TopicClaim> {
    (0..TOPICS).map(|i| TopicClaim::new(topic(i))).collect()
}

impl Setup {
    /// The index: topic → score (`f64::NEG_INFINITY` for due now).
    async fn waiting(&mut self) -> BTreeMap<String, f64> {
        let pairs: Vec<(String, String)> = redis::cmd("ZRANGE")
            .arg(format!("{}:waiting", self.namespace))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.raw)
            .await
            .unwrap();
        let prefix = format!("{{{}:", self.namespace);
        pairs
            .into_iter()
            .map(|(tag, score)| {
                let name = tag
                    .strip_prefix(&prefix)
                    .and_then(|t| t.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("a member of another form: {tag}"))
                    .to_owned();
                let score = match score.as_str() {
                    "-inf" => f64::NEG_INFINITY,
                    s => s.parse().unwrap(),
                };
                (name, score)
            })
            .collect()
    }

    async fn del(&mut self, key: String) {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.raw)
            .await
            .unwrap();
    }
}

/// One task per topic `i` for every `i` in `topics`, due at `run_at`, in one batch.
async fn enqueue(store: &RedisStore, topics: &[usize], run_at: Timestamp) -> Vec<Enqueued> {
    let tasks = topics
        .iter()
        .map(|&i| Task::new(topic(i).as_str(), &i).unwrap().run_at(run_at))
        .collect();
    store
        .enqueue(tasks, &EnqueueOptions::new(T0))
        .await
        .unwrap()
}

async fn claim(
    store: &RedisStore,
    topics: Vec<TopicClaim>,
    limit: usize,
    now: Timestamp,
) -> Vec<Claimed> {
    store
        .claim(&ClaimOptions::new(topics, limit, "w", now))
        .await
        .unwrap()
}

fn topics_of(claimed: &[Claimed]) -> Vec<String> {
    claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => r.topic.to_string(),
            Claimed::Corrupt { lease, .. } => lease.topic.to_string(),
        })
        .collect()
}

fn lease(c: &Claimed) -> LeaseRef {
    match c {
        Claimed::Ready(r) => LeaseRef::of(r),
        Claimed::Corrupt { lease, .. } => lease.clone(),
    }
}

#[tokio::test]
async fn enqueue_lists_topics_and_claims_clear_them() {
    let mut s = Setup::new().await;
    // One batch over many topics (the enqueue_many path), due now, and one topic whose
    // task is due later.
    let due: Vec<usize> = (0..TOPICS - 1).collect();
    enqueue(&s.store, &due, T0).await;
    let later = T0 + Duration::from_secs(60);
    enqueue(&s.store, &[TOPICS - 1], later).await;
    let index = s.waiting().await;
    assert_eq!(index.len(), TOPICS);
    for i in &due {
        assert!(index[&topic(*i)] <= T0.as_millis() as f64, "{i}: {index:?}");
    }
    assert_eq!(index[&topic(TOPICS - 1)], later.as_millis() as f64);

    // A claim from every topic, started at the tenth, takes them in claim order.
    let req = ClaimOptions::new(all_topics(), 5, "w", T0).first(10);
    let claimed = s.store.claim(&req).await.unwrap();
    assert_eq!(topics_of(&claimed), ["t10", "t11", "t12", "t13", "t14"]);
    // The rest, and nothing of the topic not yet due.
    let claimed = claim(&s.store, all_topics(), 100, T0).await;
    assert_eq!(claimed.len(), TOPICS - 6);
    assert!(!topics_of(&claimed).contains(&topic(TOPICS - 1)));
    // Every topic a claim ran dry is gone: the first claim's last topic (asked for one
    // task, it gave one, so it was not looked at) went when the second visited it.
    let index = s.waiting().await;
    assert_eq!(
        index.into_iter().collect::<Vec<_>>(),
        [(topic(TOPICS - 1), later.as_millis() as f64)]
    );
    assert!(claim(&s.store, all_topics(), 100, T0).await.is_empty());
    // Once due, the scheduled task is claimed, and its topic leaves the index.
    let claimed = claim(&s.store, all_topics(), 100, later).await;
    assert_eq!(topics_of(&claimed), [topic(TOPICS - 1)]);
    assert!(claim(&s.store, all_topics(), 100, later).await.is_empty());
    assert!(s.waiting().await.is_empty());
}

#[tokio::test]
async fn tasks_coming_back_to_input_list_their_topic_again() {
    let mut s = Setup::new().await;
    enqueue(&s.store, &[3, 7, 9], T0).await;
    let claimed = claim(&s.store, all_topics(), 10, T0).await;
    assert_eq!(claimed.len(), 3);
    assert!(claim(&s.store, all_topics(), 10, T0).await.is_empty());
    assert!(s.waiting().await.is_empty());
    // Released (due now), retried (due later) and one left running.
    let later = T0 + Duration::from_secs(30);
    let outcomes = [
        Outcome::new(lease(&claimed[0]), OutcomeKind::release()),
        Outcome::new(lease(&claimed[1]), OutcomeKind::retry(later, "again")),
    ];
    s.store
        .apply(&outcomes, &ApplyOptions::new(T0))
        .await
        .unwrap();
    let index = s.waiting().await;
    assert_eq!(index.keys().collect::<Vec<_>>(), ["t03", "t07"]);
    assert!(index["t03"] <= T0.as_millis() as f64);
    assert_eq!(index["t07"], later.as_millis() as f64);
    let again = claim(&s.store, all_topics(), 10, later).await;
    assert_eq!(topics_of(&again), ["t03", "t07"]);
}

#[tokio::test]
async fn a_paused_topic_leaves_the_index_and_comes_back_on_resume() {
    let mut s = Setup::new().await;
    let all: Vec<usize> = (0..TOPICS).collect();
    enqueue(&s.store, &all, T0).await;
    s.store.set_paused("t05", true).await.unwrap();
    assert!(!s.waiting().await.contains_key("t05"));
    let claimed = claim(&s.store, all_topics(), 100, T0).await;
    assert_eq!(claimed.len(), TOPICS - 1);
    assert!(!topics_of(&claimed).contains(&"t05".to_owned()));
    s.store.set_paused("t05", false).await.unwrap();
    assert!(s.waiting().await.contains_key("t05"));
    let claimed = claim(&s.store, all_topics(), 100, T0).await;
    assert_eq!(topics_of(&claimed), ["t05"]);
}

#[tokio::test]
async fn max_running_holds_across_many_topics() {
    let s = Setup::new().await;
    // Three tasks in each of the first two topics, one batch.
    enqueue(&s.store, &[0, 0, 0, 1, 1, 1], T0).await;
    let mut topics = all_topics();
    topics[0] = TopicClaim::new(topic(0)).max_running(1);
    let claimed = claim(&s.store, topics.clone(), 100, T0).await;
    assert_eq!(topics_of(&claimed), ["t00", "t01", "t01", "t01"]);
    // Held back by max_running, t00 still has due work: a later claim gets nothing more of
    // it until its running task ends, then the next one.
    assert!(claim(&s.store, topics.clone(), 100, T0).await.is_empty());
    let done = Outcome::new(lease(&claimed[0]), OutcomeKind::complete());
    s.store
        .apply(&[done], &ApplyOptions::new(T0))
        .await
        .unwrap();
    let claimed = claim(&s.store, topics, 100, T0).await;
    assert_eq!(topics_of(&claimed), ["t00"]);
}

#[tokio::test]
async fn deleting_the_last_waiting_task_unlists_its_topic() {
    let mut s = Setup::new().await;
    let ids = enqueue(&s.store, &[1, 2], T0).await;
    let Enqueued::New(id) = ids[0] else {
        panic!("{ids:?}")
    };
    assert_eq!(s.store.delete(&[id]).await.unwrap(), [true]);
    assert_eq!(s.waiting().await.keys().collect::<Vec<_>>(), ["t02"]);
}

#[tokio::test]
async fn a_namespace_without_the_index_gets_it_built_at_the_first_claim() {
    let mut s = Setup::new().await;
    let all: Vec<usize> = (0..TOPICS).collect();
    enqueue(&s.store, &all, T0).await;
    enqueue(&s.store, &[4], T0 + Duration::from_secs(60)).await;
    s.store.set_paused("t06", true).await.unwrap();
    // As written before the index existed: neither the index nor its marker.
    s.del(format!("{}:waiting", s.namespace)).await;
    s.del(format!("{}:waiting_built", s.namespace)).await;
    // A new process (a new handle) builds it before its first claim.
    let other = RedisStore::open(&s.url).await.unwrap();
    let index = s.waiting().await;
    assert!(index.is_empty(), "{index:?}");
    let claimed = claim(&other, all_topics(), 100, T0).await;
    assert_eq!(claimed.len(), TOPICS - 1);
    let index = s.waiting().await;
    assert_eq!(
        index.into_iter().collect::<Vec<_>>(),
        [(
            "t04".to_owned(),
            (T0 + Duration::from_secs(60)).as_millis() as f64
        )]
    );
    // The full pass by hand rebuilds it too, from the queues: the paused topic stays out.
    s.store.set_paused("t06", false).await.unwrap();
    s.del(format!("{}:waiting", s.namespace)).await;
    assert_eq!(other.rebuild_waiting_index().await.unwrap(), TOPICS as u64);
    assert_eq!(s.waiting().await.keys().collect::<Vec<_>>(), ["t04", "t06"]);
}

#[tokio::test]
async fn one_batch_mixes_the_short_and_the_full_form_over_many_topics() {
    let mut s = Setup::new().await;
    let later = T0 + Duration::from_secs(60);
    // Topics 0..30 get one plain due task each (enqueue_many's short form); 30 one with a
    // unique key, 31 one due later, 32 three tasks, the third a duplicate of the second's
    // key (the full form); 33 one plain task again after them.
    let mut tasks: Vec<Task> = (0..30)
        .map(|i| {
            Task::new(topic(i).as_str(), &i)
                .unwrap()
                .priority(i as i16 - 15)
        })
        .collect();
    tasks.push(Task::new("t30", &30).unwrap().unique_key("k"));
    tasks.push(Task::new("t31", &31).unwrap().run_at(later));
    tasks.push(Task::new("t32", &320).unwrap());
    tasks.push(Task::new("t32", &321).unwrap().unique_key("u"));
    tasks.push(Task::new("t32", &322).unwrap().unique_key("u"));
    tasks.push(Task::new("t33", &33).unwrap());
    let results = s
        .store
        .enqueue(tasks, &EnqueueOptions::new(T0))
        .await
        .unwrap();
    let new = |i: usize| match results[i] {
        Enqueued::New(id) => id.get(),
        ref other => panic!("task {i}: {other:?}"),
    };
    assert_eq!(
        results[34],
        Enqueued::Duplicate(taskmill_core::TaskId::new(new(33)))
    );
    // Each plain task went to its topic's fresh list, the unique one holds its key.
    for (topic, at) in [("t00", 0), ("t17", 17), ("t29", 29), ("t33", 35)] {
        let fresh: Vec<u64> = redis::cmd("LRANGE")
            .arg(s.key(topic, "fresh"))
            .arg(0)
            .arg(-1)
            .query_async(&mut s.raw)
            .await
            .unwrap();
        assert_eq!(fresh, [new(at)], "{topic}");
        let meta: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(s.key(topic, "meta"))
            .arg("fresh_priority")
            .arg("fresh_tail")
            .arg("enqueued")
            .query_async(&mut s.raw)
            .await
            .unwrap();
        let priority = if at < 30 { at as i16 - 15 } else { 0 };
        let want = [priority.to_string(), new(at).to_string(), "1".to_owned()];
        assert_eq!(meta, want.map(Some), "{topic}");
    }
    let holder: Option<u64> = redis::cmd("HGET")
        .arg(s.key("t30", "unique"))
        .arg("k")
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(holder, Some(new(30)));
    let index = s.waiting().await;
    assert_eq!(index.len(), 34);
    assert_eq!(index["t31"], later.as_millis() as f64);
    // Everything due is claimed, in claim order, with the records as enqueued.
    let claimed = claim(&s.store, all_topics(), 100, T0).await;
    let got: Vec<(String, String, i16)> = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => (r.topic.to_string(), r.args.as_str().to_owned(), r.priority),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut want: Vec<(String, String, i16)> = (0..30)
        .map(|i| (topic(i), i.to_string(), i as i16 - 15))
        .collect();
    want.push(("t30".into(), "30".into(), 0));
    want.push(("t32".into(), "320".into(), 0));
    want.push(("t32".into(), "321".into(), 0));
    want.push(("t33".into(), "33".into(), 0));
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_short_form_task_of_another_priority_goes_to_ready() {
    let mut s = Setup::new().await;
    // Twenty topics, one due plain task each, twice: the second batch's task of t00 has
    // another priority than the one its fresh list holds.
    let batch = |priority_of_t00: i16| -> Vec<Task> {
        (0..20)
            .map(|i| {
                let p = if i == 0 { priority_of_t00 } else { 0 };
                Task::new(topic(i).as_str(), &i).unwrap().priority(p)
            })
            .collect()
    };
    let opts = EnqueueOptions::new(T0);
    s.store.enqueue(batch(3), &opts).await.unwrap();
    let second = s.store.enqueue(batch(-2), &opts).await.unwrap();
    let Enqueued::New(id) = second[0] else {
        panic!("{second:?}")
    };
    let ready: Vec<u64> = redis::cmd("ZRANGE")
        .arg(s.key("t00", "ready"))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(ready, [id.get()]);
    let due: Vec<u64> = redis::cmd("ZRANGE")
        .arg(s.key("t00", "due"))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.raw)
        .await
        .unwrap();
    assert_eq!(due, [id.get()]);
    // Counted once per task, whether the counter moved with the list's fields (t05, whose
    // second task followed its list) or on its own (t00).
    for t in ["t00", "t05"] {
        let enqueued: u64 = redis::cmd("HGET")
            .arg(s.key(t, "meta"))
            .arg("enqueued")
            .query_async(&mut s.raw)
            .await
            .unwrap();
        assert_eq!(enqueued, 2, "{t}");
    }
    // Priority first: the later task of priority -2 before the earlier one of 3.
    let claimed = claim(&s.store, vec![TopicClaim::new("t00")], 2, T0).await;
    let priorities: Vec<i16> = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => r.priority,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(priorities, [-2, 3]);
}

#[tokio::test]
async fn priority_then_id_order_holds_within_a_topic_of_many() {
    let s = Setup::new().await;
    // t07 gets tasks of three priorities in two batches (fresh list, ready set and a
    // scheduled task now due), among one task in each of the other topics.
    let mut first: Vec<Task> = (0..TOPICS)
        .filter(|&i| i != 7)
        .map(|i| Task::new(topic(i).as_str(), &i).unwrap())
        .collect();
    for (n, p) in [(0, 5), (1, -1), (2, 5), (3, 0)] {
        first.push(Task::new("t07", &n).unwrap().priority(p));
    }
    first.push(
        Task::new("t07", &4)
            .unwrap()
            .priority(-1)
            .run_at(T0 + Duration::from_secs(1)),
    );
    s.store
        .enqueue(first, &EnqueueOptions::new(T0))
        .await
        .unwrap();
    let second = vec![
        Task::new("t07", &5).unwrap().priority(-1),
        Task::new("t07", &6).unwrap().priority(0),
    ];
    s.store
        .enqueue(second, &EnqueueOptions::new(T0))
        .await
        .unwrap();
    // From t07 on, a claim takes all of t07 first, in (priority, id) order.
    let now = T0 + Duration::from_secs(2);
    let req = ClaimOptions::new(all_topics(), 7, "w", now).first(7);
    let claimed = s.store.claim(&req).await.unwrap();
    let got: Vec<(String, String)> = claimed
        .iter()
        .map(|c| match c {
            Claimed::Ready(r) => (r.topic.to_string(), r.args.as_str().to_owned()),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<(String, String)> = ["1", "4", "5", "3", "6", "0", "2"]
        .iter()
        .map(|a| ("t07".to_owned(), a.to_string()))
        .collect();
    assert_eq!(got, want);
}
