//! Events and wake-ups.

use crate::support::*;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::OutcomeKind;
use taskmill_core::{Event, EventStream, Store, TaskId};

const PATIENCE: Duration = Duration::from_secs(10);

async fn next_event(events: &mut EventStream) -> Event {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("no event within 10 s")
        .expect("the event stream ended")
}

/// Published events reach a subscriber, in order.
pub async fn published_events_reach_subscribers(store: Arc<dyn Store>) {
    let mut events = store.subscribe().await.unwrap();
    let sent: Vec<Event> = (1..=3)
        .map(|i| Event::TaskCancelled {
            id: TaskId::new(i),
            topic: "t".into(),
        })
        .collect();
    store.publish(&sent).await.unwrap();
    for expected in &sent {
        assert_eq!(&next_event(&mut events).await, expected);
    }
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
            } => {
                assert_eq!((id, &*topic, got), (result.id(), "t", run_at));
            }
            other => panic!("expected TASK_ENQUEUE, got {other:?}"),
        }
    }
    // The duplicate published nothing: the next event is the marker.
    let marker = Event::TaskCancelled {
        id: TaskId::new(0),
        topic: "marker".into(),
    };
    store.publish(std::slice::from_ref(&marker)).await.unwrap();
    assert_eq!(next_event(&mut events).await, marker);
}

async fn expect_wake(wakeups: &mut taskmill_core::store::WakeStream, what: &str) {
    tokio::time::timeout(PATIENCE, wakeups.next())
        .await
        .unwrap_or_else(|_| panic!("no wake-up within 10 s after {what}"))
        .expect("the wake-up stream ended");
}

/// Enqueue, a retry or release into INPUT, and a resume each wake managers.
pub async fn changes_that_add_due_work_wake_managers(store: Arc<dyn Store>) {
    let mut wakeups = store.wakeups().await.unwrap();
    enqueue_n(&*store, "t", 2).await;
    expect_wake(&mut wakeups, "an enqueue").await;
    let claimed = claim(&*store, &["t"], 2).await;
    finish(&*store, &claimed[0], OutcomeKind::release()).await;
    expect_wake(&mut wakeups, "a release").await;
    finish(&*store, &claimed[1], OutcomeKind::retry(T0, "e")).await;
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
