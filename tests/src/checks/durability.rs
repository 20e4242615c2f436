//! What a durable store keeps when it is closed and opened again.

use crate::Harness;
use taskmill_core::store::{Applied, EnqueueOptions, Enqueued, OutcomeKind};
use taskmill_core::{Queue, TaskRecord};
use taskmill_testkit::*;

checks!(
    mod durability;

    /// Every task the store acknowledged is there after a reopen, unchanged: in INPUT (due
    /// and scheduled), in WORK under its lease, and in DEAD; stats, unique keys and pauses
    /// too. Ids given out afterwards are larger than every id before.
    #[needs(durable)]
    pub async fn acknowledged_tasks_survive_a_reopen(harness: &mut dyn Harness) {
        let store = harness.store();
        let id = enqueue(
            &*store,
            vec![
                task("t", 0).unique_key("k"),
                task("t", 1),
                task("t", 2),
                task("t", 3).run_at(at(60_000)),
                task("u", 4),
            ],
        )
        .await;
        let claimed = claim(&*store, &["t"], 2).await;
        assert_eq!(ids(&claimed), id[..2]);
        let dead = OutcomeKind::dead("no tries left");
        assert_eq!(
            apply_outcome(&*store, &claimed[1], dead).await,
            Applied::Done
        );
        store.set_paused("u", true).await.unwrap();
        let mut before: Vec<TaskRecord> = Vec::new();
        for each in &id {
            before.push(get(&*store, *each).await);
        }
        let queues: Vec<Queue> = before.iter().map(|r| r.queue).collect();
        assert_eq!(
            queues,
            [
                Queue::Work,
                Queue::Dead,
                Queue::Input,
                Queue::Input,
                Queue::Input
            ]
        );
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        drop(store);

        let store = harness.reopen().await;
        for record in &before {
            assert_eq!(&get(&*store, record.id).await, record, "after the reopen");
        }
        assert_eq!(
            store.stats(&taskmill_testkit::all_due()).await.unwrap(),
            stats,
            "stats after the reopen"
        );
        let results = store
            .enqueue(
                vec![task("t", 5).unique_key("k"), task("t", 6)],
                &EnqueueOptions::new(T0),
            )
            .await
            .unwrap();
        assert_eq!(
            results[0],
            Enqueued::Duplicate(id[0]),
            "the key is still held"
        );
        let newest = id.iter().max().unwrap();
        assert!(
            results[1].id() > *newest,
            "id {} given out again after the reopen (the last was {newest})",
            results[1].id()
        );
        // The lease survived: its holder completes the task.
        assert_eq!(
            apply_outcome(&*store, &claimed[0], OutcomeKind::complete()).await,
            Applied::Done
        );
        // The paused topic stays paused; the other due task is claimed.
        assert_eq!(
            ids(&claim(&*store, &["u", "t"], 1).await),
            [id[2]],
            "claimed after the reopen"
        );
    }
);
