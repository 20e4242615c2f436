//! Which tasks a claim returns, and in what order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{ClaimOptions, OutcomeKind, TopicClaim};
use taskmill_core::{Store, TaskId};
use taskmill_testkit::*;

checks!(
    mod ordering;

    /// Among due tasks, a lower priority value is claimed first.
    pub async fn priority_orders_claims(store: Arc<dyn Store>) {
        let tasks = [5i16, -3, 0, 10, -3]
            .iter()
            .enumerate()
            .map(|(i, p)| task("t", i as u64).priority(*p))
            .collect();
        let id = enqueue(&*store, tasks).await;
        let order = ids(&claim(&*store, &["t"], 10).await);
        assert_eq!(order, vec![id[1], id[4], id[2], id[0], id[3]]);
    }

    /// Equal priorities are claimed in enqueue order, across batches and claims.
    pub async fn equal_priorities_are_fifo(store: Arc<dyn Store>) {
        let mut expected = enqueue_n(&*store, "t", 4).await;
        expected.extend(enqueue_n(&*store, "t", 4).await);
        let mut got = ids(&claim(&*store, &["t"], 3).await);
        got.extend(ids(&claim(&*store, &["t"], 10).await));
        assert_eq!(got, expected);
    }

    /// A task is not claimed before its run_at, and is claimed from then on.
    pub async fn run_at_is_not_claimed_early(store: Arc<dyn Store>) {
        let later = enqueue(&*store, vec![task("t", 1).run_at(at(60_000))]).await[0];
        let delayed = enqueue(&*store, vec![task("t", 2).delay(Duration::from_secs(30))]).await[0];
        assert!(claim_at(&*store, &["t"], 10, at(29_999)).await.is_empty());
        assert_eq!(
            ids(&claim_at(&*store, &["t"], 10, at(30_000)).await),
            vec![delayed]
        );
        assert!(claim_at(&*store, &["t"], 10, at(59_999)).await.is_empty());
        assert_eq!(
            ids(&claim_at(&*store, &["t"], 10, at(60_000)).await),
            vec![later]
        );
    }

    /// Once due, scheduled tasks take their place by priority, not by due time.
    pub async fn due_tasks_order_by_priority_not_due_time(store: Arc<dyn Store>) {
        let early_low = enqueue(&*store, vec![task("t", 1).priority(5).run_at(at(10))]).await[0];
        let late_high = enqueue(&*store, vec![task("t", 2).priority(-5).run_at(at(20))]).await[0];
        let now_mid = enqueue(&*store, vec![task("t", 3)]).await[0];
        assert_eq!(
            ids(&claim_at(&*store, &["t"], 10, at(30)).await),
            vec![late_high, now_mid, early_low]
        );
    }

    /// A claim returns at most its limit; the rest stay in INPUT.
    pub async fn claim_respects_limit(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 10).await;
        assert_eq!(claim(&*store, &["t"], 4).await.len(), 4);
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .sizes
                .input,
            6
        );
        assert!(
            claim(&*store, &["t"], 0).await.is_empty(),
            "a zero-limit claim took tasks"
        );
    }

    /// Only the topics asked for are claimed, tried in the order given.
    pub async fn claim_takes_only_requested_topics_in_order(store: Arc<dyn Store>) {
        let a = enqueue_n(&*store, "a", 2).await;
        let b = enqueue_n(&*store, "b", 2).await;
        enqueue_n(&*store, "c", 2).await;
        let got = ids(&claim(&*store, &["b", "a", "missing"], 3).await);
        assert_eq!(got, vec![b[0], b[1], a[0]]);
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.topic("c").sizes.input, 2);
    }

    /// A claim starts from its first topic and wraps round; among many topics of which
    /// few have work (the case a store's index of waiting topics serves), the order holds.
    pub async fn claim_starts_from_its_first_topic_and_wraps(store: Arc<dyn Store>) {
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        let mut by_topic = std::collections::HashMap::new();
        for topic in ["t30", "t05", "t12", "t39"] {
            by_topic.insert(topic, enqueue_n(&*store, topic, 2).await);
        }
        let request = |first: usize, limit: usize| {
            ClaimOptions::new(
                names.iter().map(|t| TopicClaim::new(t.as_str())),
                limit,
                "m",
                T0,
            )
            .first(first)
        };
        let got = ids(&ready(store.claim(&request(13, 5)).await.unwrap()));
        let want: Vec<TaskId> = ["t30", "t39", "t05"]
            .iter()
            .flat_map(|t| by_topic[t].clone())
            .take(5)
            .collect();
        assert_eq!(got, want, "from t13: t30, t39, then round to t05");
        // What is left: t05's second task and t12's two; from t06, t12 comes first.
        let got = ids(&ready(store.claim(&request(6, 10)).await.unwrap()));
        let mut want = by_topic["t12"].clone();
        want.push(by_topic["t05"][1]);
        assert_eq!(got, want);
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .sizes
                .input,
            0
        );
    }

    /// A paused topic is not claimed; once resumed it is.
    pub async fn paused_topic_is_not_claimed_until_resumed(store: Arc<dyn Store>) {
        let paused = enqueue_n(&*store, "paused", 2).await;
        let open = enqueue_n(&*store, "open", 1).await;
        store.set_paused("paused", true).await.unwrap();
        assert_eq!(ids(&claim(&*store, &["paused", "open"], 10).await), open);
        assert!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("paused")
                .paused
        );
        store.set_paused("paused", false).await.unwrap();
        assert!(
            !store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("paused")
                .paused
        );
        assert_eq!(ids(&claim(&*store, &["paused"], 10).await), paused);
    }

    /// Tasks already running when a topic is paused still finish normally.
    pub async fn pausing_does_not_affect_running_tasks(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 1).await;
        let r = claim(&*store, &["t"], 1).await.remove(0);
        store.set_paused("t", true).await.unwrap();
        assert_eq!(
            apply_outcome(&*store, &r, OutcomeKind::complete()).await,
            taskmill_core::store::Applied::Done
        );
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("t")
                .counters
                .completed,
            1
        );
    }

    /// max_running caps how many tasks of a topic are in WORK at once, store-wide.
    pub async fn max_running_caps_claims(store: Arc<dyn Store>) {
        enqueue_n(&*store, "t", 5).await;
        let capped = |limit| {
            ClaimOptions::new([TopicClaim::new("t").max_running(2)], limit, "owner-b", T0)
                .lease(LEASE)
        };
        let first = ready(store.claim(&capped(10)).await.unwrap());
        assert_eq!(first.len(), 2);
        assert!(ready(store.claim(&capped(10)).await.unwrap()).is_empty());
        apply_outcome(&*store, &first[0], OutcomeKind::complete()).await;
        assert_eq!(ready(store.claim(&capped(10)).await.unwrap()).len(), 1);
    }

    /// Many concurrent claimers on one store: every task is claimed exactly once.
    pub async fn concurrent_claims_never_share_a_task(store: Arc<dyn Store>) {
        let enqueued: HashSet<TaskId> = enqueue_n(&*store, "t", 400).await.into_iter().collect();
        let mut claimers = Vec::new();
        for c in 0..8 {
            let store = store.clone();
            claimers.push(tokio::spawn(async move {
                let owner = format!("claimer-{c}");
                let mut mine = Vec::new();
                // Bounded: 400 tasks cannot take more than 400 non-empty claims.
                for _ in 0..400 {
                    let got = claim_as(&*store, &owner, &["t"], 7, T0).await;
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(ids(&got));
                }
                mine
            }));
        }
        let mut seen = HashSet::new();
        for claimer in claimers {
            for id in claimer.await.unwrap() {
                assert!(seen.insert(id), "task {id} was claimed twice");
            }
        }
        assert_eq!(seen, enqueued);
    }
);
