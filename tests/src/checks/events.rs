//! Events and wake-ups.

use crate::Harness;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::OutcomeKind;
use taskmill_core::{Event, EventStream, Store, TaskId};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(10);

async fn next_event(events: &mut EventStream) -> Event {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("no event within 10 s")
        .expect("the event stream ended")
}

/// Publishes three events through `store` and expects them on `events`, in order.
async fn publish_and_receive(store: &dyn Store, events: &mut EventStream) {
    let sent: Vec<Event> = (1..=3)
        .map(|i| Event::TaskReleased {
            id: TaskId::new(i),
            topic: "t".into(),
        })
        .collect();
    store.publish(&sent).await.unwrap();
    for expected in &sent {
        assert_eq!(&next_event(events).await, expected);
    }
}

async fn expect_wake(wakeups: &mut taskmill_core::store::WakeStream, what: &str) {
    tokio::time::timeout(PATIENCE, wakeups.next())
        .await
        .unwrap_or_else(|_| panic!("no wake-up within 10 s after {what}"))
        .expect("the wake-up stream ended");
}

checks!(
    mod events;

    /// Published events reach a subscriber, in order.
    pub async fn published_events_reach_subscribers(store: Arc<dyn Store>) {
        let mut events = store.subscribe().await.unwrap();
        publish_and_receive(&*store, &mut events).await;
    }

    /// Enqueue publishes a TaskEnqueue per new task (none for a duplicate).
    pub async fn enqueue_publishes_task_enqueue_events(store: Arc<dyn Store>) {
        let mut events = store.subscribe().await.unwrap();
        let batch = vec![
            task("t", 1).unique_key("k"),
            task("t", 2).run_at(at(500)),
            task("t", 3).unique_key("k"),
        ];
        let results = store
            .enqueue(batch, &taskmill_core::store::EnqueueOptions::new(T0))
            .await
            .unwrap();
        for (result, run_at) in results.iter().take(2).zip([T0, at(500)]) {
            match next_event(&mut events).await {
                Event::TaskEnqueue {
                    id,
                    topic,
                    run_at: got,
                    tick,
                } => {
                    assert_eq!((id, &*topic, got, tick), (result.id(), "t", run_at, None));
                }
                other => panic!("expected TASK_ENQUEUE, got {other:?}"),
            }
        }
        // The duplicate published nothing: the next event is the marker.
        let marker = Event::TaskReleased {
            id: TaskId::new(0),
            topic: "marker".into(),
        };
        store.publish(std::slice::from_ref(&marker)).await.unwrap();
        assert_eq!(next_event(&mut events).await, marker);
    }

    /// Enqueue, a retry or release into INPUT, and a resume each wake managers.
    pub async fn changes_that_add_due_work_wake_managers(store: Arc<dyn Store>) {
        let mut wakeups = store.wakeups().await.unwrap();
        enqueue_n(&*store, "t", 2).await;
        expect_wake(&mut wakeups, "an enqueue").await;
        let claimed = claim(&*store, &["t"], 2).await;
        apply_outcome(&*store, &claimed[0], OutcomeKind::release()).await;
        expect_wake(&mut wakeups, "a release").await;
        apply_outcome(&*store, &claimed[1], OutcomeKind::retry(T0, "e")).await;
        expect_wake(&mut wakeups, "a retry").await;
        store.set_paused("t", true).await.unwrap();
        store.set_paused("t", false).await.unwrap();
        expect_wake(&mut wakeups, "a resume").await;
    }

    /// A store never claims to have no subscribers while one is subscribed.
    pub async fn has_subscribers_while_someone_listens(store: Arc<dyn Store>) {
        let events = store.subscribe().await.unwrap();
        assert!(
            store.has_subscribers(),
            "a subscriber exists but publishers would skip events"
        );
        drop(events);
    }

    /// Events published through one handle reach a subscriber on another handle of the
    /// same store, opened as another process would open it, in order.
    #[needs(cross_process_events)]
    pub async fn events_reach_subscribers_on_another_handle(harness: &mut dyn Harness) {
        let here = harness.store();
        let there = harness.open_another().await;
        let mut events = there.subscribe().await.unwrap();
        publish_and_receive(&*here, &mut events).await;
    }

    /// An enqueue through one handle wakes managers waiting on another handle.
    #[needs(cross_process_events)]
    pub async fn enqueue_wakes_managers_on_another_handle(harness: &mut dyn Harness) {
        let here = harness.store();
        let there = harness.open_another().await;
        let mut wakeups = there.wakeups().await.unwrap();
        enqueue_n(&*here, "t", 1).await;
        expect_wake(&mut wakeups, "an enqueue on another handle").await;
    }
);
