//! The conformance suite on the memory store, plus what only the memory store can show.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_memory::MemoryStore;
use taskmill_tests::Harness;

struct MemoryHarness(MemoryStore);

#[async_trait::async_trait]
impl Harness for MemoryHarness {
    async fn setup() -> Self {
        MemoryHarness(MemoryStore::new())
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.0.clone())
    }
}

mod memory {
    taskmill_tests::conformance_suite!(super::MemoryHarness);
}

/// What only the memory store (no I/O, so tokio's paused clock drives everything) can show.
mod memory_only {
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use taskmill_core::{
        Backoff, Clock, ErrorKind, Event, Manager, Store, Task, TaskContext, TaskError, Timestamp,
    };
    use taskmill_memory::MemoryStore;

    /// Retries wait out their exponential backoff exactly, measured on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_backoff_schedule() {
        let store = MemoryStore::new();
        let clock = Clock::tokio();
        let starts: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
        let manager = Manager::builder(store.clone())
            .clock(clock)
            .poll_interval(Duration::from_millis(100))
            .backoff(Backoff::exponential(
                Duration::from_secs(1),
                2.0,
                Duration::from_secs(60),
                0.0,
            ))
            .stats_interval(None)
            .build();
        let seen = starts.clone();
        manager
            .register("t", move |ctx: TaskContext| {
                seen.lock().unwrap().push(clock.now());
                async move {
                    if ctx.attempt() <= 3 {
                        return Err(TaskError::msg("not yet"));
                    }
                    Ok(())
                }
            })
            .unwrap();
        manager.start().await.unwrap();
        manager.enqueue(Task::new("t", &()).unwrap()).await.unwrap();
        // Virtual time: bounded at ten minutes of it, however the schedule goes.
        for _ in 0..6000 {
            if store.stats().await.unwrap().total.counters.completed == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        manager.close().await.unwrap();
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), 4, "three failures then a success");
        for (i, expected) in [1000i64, 2000, 4000].iter().enumerate() {
            let gap = starts[i + 1].as_millis() - starts[i].as_millis();
            // The retry is due after the backoff; the manager notices within one poll interval.
            assert!(
                (*expected..=*expected + 150).contains(&gap),
                "gap {i}: {gap} ms, backoff {expected} ms"
            );
        }
    }

    /// A watcher that does not read falls behind and is told how much it missed; the
    /// publisher never waits for it.
    #[tokio::test]
    async fn a_slow_watcher_lags_instead_of_blocking() {
        let store = MemoryStore::with_event_buffer(16);
        let mut slow = store.subscribe().await.unwrap();
        let events: Vec<Event> = (0..100)
            .map(|i| Event::TaskCancelled {
                id: taskmill_core::TaskId::new(i),
                topic: "t".into(),
            })
            .collect();
        store.publish(&events).await.unwrap();
        match slow.next().await.unwrap() {
            Event::Lagged { missed } => assert_eq!(missed, 84),
            other => panic!("expected LAGGED, got {other:?}"),
        }
        assert_eq!(slow.next().await.unwrap(), events[84]);
    }

    /// With nobody subscribed, publishers are told they may skip building events.
    #[tokio::test]
    async fn no_subscribers_means_events_can_be_skipped() {
        let store = MemoryStore::new();
        assert!(!store.has_subscribers());
        let events = store.subscribe().await.unwrap();
        assert!(store.has_subscribers());
        drop(events);
        assert!(!store.has_subscribers());
    }

    #[test]
    fn urls_other_than_memory_are_misuse() {
        assert!(MemoryStore::from_url("memory://").is_ok());
        for url in ["memory://x", "sqlite://a.db", "memory:"] {
            assert_eq!(
                MemoryStore::from_url(url).unwrap_err().kind(),
                ErrorKind::Misuse,
                "{url}"
            );
        }
    }
}
