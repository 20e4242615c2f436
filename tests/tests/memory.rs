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
    taskmill_tests::conformance_suite!(
        super::MemoryHarness,
        taskmill_tests::Capabilities::IN_PROCESS
    );
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
            .clock(clock.clone())
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
            if store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .total
                .counters
                .completed
                == 1
            {
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
        let options = taskmill_memory::MemoryOptions::default().event_buffer(16);
        let store = MemoryStore::open_with(options).await.unwrap();
        let mut slow = store.subscribe().await.unwrap();
        let events: Vec<Event> = (0..100)
            .map(|i| Event::TaskReleased {
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

    #[tokio::test]
    async fn urls_other_than_memory_are_misuse() {
        assert!(MemoryStore::from_url("memory://").await.is_ok());
        for url in ["memory://x", "sqlite://a.db", "memory:"] {
            assert_eq!(
                MemoryStore::from_url(url).await.unwrap_err().kind(),
                ErrorKind::Misuse,
                "{url}"
            );
        }
    }
}

/// The manager's start and close, and its handling of bad arguments, on the memory store
/// under tokio's paused clock.
mod manager_lifecycle {
    use futures_util::StreamExt;
    use std::time::Duration;
    use taskmill_core::{
        ErrorKind, EventStream, Manager, Queue, Store, Task, TaskContext, TaskError, TaskId,
    };
    use taskmill_memory::MemoryStore;
    use taskmill_testkit::wait_until;

    /// A manager with one topic whose runs wait for their cancel, one task of it running.
    async fn running_one_task(store: &MemoryStore) -> (Manager, TaskId, EventStream) {
        let manager = Manager::builder(store.clone()).stats_interval(None).build();
        manager
            .register("t", |ctx: TaskContext| async move {
                ctx.cancelled().await;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        let mut events = manager.watch().await.unwrap();
        manager.start().await.unwrap();
        let id = manager
            .enqueue(Task::new("t", &()).unwrap())
            .await
            .unwrap()
            .id();
        next_event(&mut events, "TASK_START").await;
        (manager, id, events)
    }

    /// Reads `events` until one named `name`, failing after a minute of (virtual) time.
    async fn next_event(events: &mut EventStream, name: &str) {
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(event) = events.next().await {
                if event.name() == name {
                    return;
                }
            }
            panic!("the event stream ended before {name}");
        })
        .await;
        assert!(found.is_ok(), "no {name} within a minute");
    }

    async fn assert_released(store: &MemoryStore, id: TaskId) {
        let record = store.get(id).await.unwrap().expect("the task is kept");
        assert_eq!(
            (record.queue, record.attempt),
            (Queue::Input, 0),
            "the task is back in INPUT, its attempt not counted"
        );
    }

    /// A close future dropped after its first poll still stops the manager: every loop ends
    /// (`MANAGER_STOP` is out), the running task is released, and a later close is `Ok`.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_close_still_stops_the_manager() {
        let store = MemoryStore::new();
        let (manager, id, mut events) = running_one_task(&store).await;
        let dropped = tokio::time::timeout(Duration::ZERO, manager.close()).await;
        assert!(dropped.is_err(), "the close was dropped midway");
        next_event(&mut events, "MANAGER_STOP").await;
        assert_released(&store, id).await;
        manager.close().await.unwrap();
    }

    /// A later close finishes what a dropped one started, and its own timeout cuts the
    /// dropped one's grace period short.
    #[tokio::test(start_paused = true)]
    async fn a_later_close_finishes_a_dropped_one() {
        let store = MemoryStore::new();
        let (manager, id, _events) = running_one_task(&store).await;
        let hour = Duration::from_secs(3600);
        let dropped = tokio::time::timeout(Duration::ZERO, manager.close_with_timeout(hour)).await;
        assert!(dropped.is_err(), "the close was dropped midway");
        let closed = tokio::time::timeout(Duration::from_secs(60), manager.close()).await;
        closed
            .expect("close() ends the grace period at once")
            .unwrap();
        assert_released(&store, id).await;
        assert_eq!(
            manager.start().await.unwrap_err().kind(),
            ErrorKind::Misuse,
            "a closed manager does not start again"
        );
    }

    /// Closes that overlap wait for one shutdown, and both see it succeed.
    #[tokio::test(start_paused = true)]
    async fn overlapping_closes_share_one_shutdown() {
        let store = MemoryStore::new();
        let (manager, id, _events) = running_one_task(&store).await;
        let (first, second) = tokio::join!(
            manager.close_with_timeout(Duration::from_secs(1)),
            manager.close()
        );
        first.unwrap();
        second.unwrap();
        assert_released(&store, id).await;
    }

    /// `ctx.args()?` in a plain processor: arguments that do not decode send the task to
    /// DEAD on its first attempt, retries left or not.
    #[tokio::test(start_paused = true)]
    async fn undecodable_arguments_skip_the_retries_of_a_plain_processor() {
        let store = MemoryStore::new();
        let manager = Manager::builder(store.clone())
            .stats_interval(None)
            .default_retries(5)
            .build();
        manager
            .register("t", |ctx: TaskContext| async move {
                let _n: u64 = ctx.args()?;
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager.start().await.unwrap();
        let id = manager
            .enqueue(Task::new("t", &"not a number").unwrap())
            .await
            .unwrap()
            .id();
        wait_until("the task to fail", Duration::from_secs(3600), || async {
            let record = store.get(id).await.unwrap().unwrap();
            record.queue == Queue::Dead || record.attempt > 1
        })
        .await;
        manager.close().await.unwrap();
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!((record.queue, record.attempt), (Queue::Dead, 1));
        let error = record.last_error().unwrap_or_default();
        assert!(error.contains("decode"), "{error}");
    }
}

/// Stores that misbehave on purpose: one that hands out tasks of topics nobody asked for, as
/// a faulty backend might, and ones whose events of one kind are slow to go out.
mod faulty_store {
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use taskmill_core::store::{ClaimOptions, Claimed, EnqueueOptions, TopicClaim};
    use taskmill_core::{
        Backoff, Event, Manager, Result, Store, Task, TaskContext, TaskError, Timestamp,
    };
    use taskmill_memory::MemoryStore;
    use taskmill_testkit::wait_until;

    /// The memory store, with faults.
    #[derive(Default)]
    struct Faulty {
        inner: MemoryStore,
        /// Every claim also asks for the topic `stray`.
        claims_strays: bool,
        /// Publishing a batch with an event of this name in it takes `slow_for`.
        slow_event: &'static str,
        slow_for: Duration,
    }

    impl Faulty {
        /// A store whose batches with an `event` in them take 200 ms to publish.
        fn slow(event: &'static str) -> Self {
            Faulty {
                slow_event: event,
                slow_for: Duration::from_millis(200),
                ..Faulty::default()
            }
        }
    }

    taskmill_testkit::forward_store! {
        impl Store for Faulty {
            forward |s| &s.inner;
            async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
                let mut opts = opts.clone();
                if self.claims_strays {
                    // The stray topic comes first, whichever topic the claim starts from.
                    let ordered: Vec<TopicClaim> = opts.in_order().cloned().collect();
                    opts.topics = std::iter::once(TopicClaim::new("stray"))
                        .chain(ordered)
                        .collect();
                    opts.first = 0;
                }
                self.inner.claim(&opts).await
            }
            async fn publish(&self, events: &[Event]) -> Result<()> {
                if events.iter().any(|e| e.name() == self.slow_event) {
                    tokio::time::sleep(self.slow_for).await;
                }
                self.inner.publish(events).await
            }
        }
    }

    /// A task of a topic the manager has no processor for is released untouched (a manager
    /// that has the topic can run it), and the manager goes on with its own topics.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_of_an_unknown_topic_is_released_and_the_manager_goes_on() {
        let memory = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(Faulty {
            inner: memory.clone(),
            claims_strays: true,
            ..Faulty::default()
        });
        let manager = Manager::builder_shared(store.clone())
            .poll_interval(Duration::from_millis(20))
            .stats_interval(None)
            .build();
        manager
            .register("known", |_ctx: TaskContext| async {
                Ok::<_, TaskError>(())
            })
            .unwrap();
        manager.start().await.unwrap();
        let stray = manager
            .enqueue(Task::new("stray", &1).unwrap())
            .await
            .unwrap()
            .id();
        manager
            .enqueue(Task::new("known", &2).unwrap())
            .await
            .unwrap();
        wait_until(
            "the known task to complete and the stray to be released",
            Duration::from_secs(30),
            || async {
                let s = memory.stats(&taskmill_testkit::all_due()).await.unwrap();
                s.topic("known").counters.completed == 1 && s.topic("stray").counters.released >= 1
            },
        )
        .await;
        manager.close().await.unwrap();
        let record = memory
            .get(stray)
            .await
            .unwrap()
            .expect("the stray task is kept");
        assert_eq!(
            (record.queue, record.attempt),
            (taskmill_core::Queue::Input, 0)
        );
        assert!(record.errors.is_empty());
    }

    /// A retried task may be claimed again the moment its outcome is applied, before the
    /// manager has published that outcome's event; its next `TASK_START` still comes after
    /// its `TASK_RETRY`, however slow that one is to go out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_event_is_not_overtaken_by_the_next_start() {
        let store: Arc<dyn Store> = Arc::new(Faulty::slow("TASK_RETRY"));
        let manager = Manager::builder_shared(store.clone())
            .poll_interval(Duration::from_millis(20))
            .backoff(Backoff::constant(Duration::ZERO))
            .stats_interval(None)
            .build();
        manager
            .register("t", |ctx: TaskContext| async move {
                match ctx.attempt() {
                    1 => Err(TaskError::msg("first try fails")),
                    _ => Ok(()),
                }
            })
            .unwrap();
        let names = task_event_names(&manager).await;
        manager.start().await.unwrap();
        manager.enqueue(Task::new("t", &1).unwrap()).await.unwrap();
        wait_for_completion(&names).await;
        manager.close().await.unwrap();
        assert_eq!(
            *names.lock().unwrap(),
            [
                "TASK_ENQUEUE",
                "TASK_START",
                "TASK_RETRY",
                "TASK_START",
                "TASK_COMPLETION"
            ]
        );
    }

    /// The same for a task whose lease expired (its manager died): the reaper's
    /// `TASK_RECOVERED` comes before the task's next `TASK_START`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovery_event_is_not_overtaken_by_the_next_start() {
        let store: Arc<dyn Store> = Arc::new(Faulty::slow("TASK_RECOVERED"));
        let now = Timestamp::now();
        let task = vec![Task::new("t", &1).unwrap()];
        assert!(store
            .enqueue(task, &EnqueueOptions::new(now))
            .await
            .unwrap()[0]
            .is_new());
        // A manager that died holding the task: its lease is over at once.
        let req = ClaimOptions::new([TopicClaim::new("t")], 1, Arc::from("dead"), now)
            .lease(Duration::ZERO);
        assert_eq!(store.claim(&req).await.unwrap().len(), 1);
        let manager = Manager::builder_shared(store.clone())
            .poll_interval(Duration::from_millis(20))
            .reap_interval(Duration::from_millis(20))
            .stats_interval(None)
            .build();
        manager
            .register("t", |_ctx: TaskContext| async { Ok::<_, TaskError>(()) })
            .unwrap();
        let names = task_event_names(&manager).await;
        manager.start().await.unwrap();
        wait_for_completion(&names).await;
        manager.close().await.unwrap();
        assert_eq!(
            *names.lock().unwrap(),
            ["TASK_RECOVERED", "TASK_START", "TASK_COMPLETION"]
        );
    }

    /// A close while `start` is under way (here: while its `MANAGER_START` is slow to go
    /// out) is ordered with it: once both returned, the manager is closed and claims
    /// nothing, whichever came first.
    #[tokio::test(start_paused = true)]
    async fn a_close_during_start_leaves_the_manager_closed() {
        let memory = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(Faulty {
            inner: memory.clone(),
            ..Faulty::slow("MANAGER_START")
        });
        let manager = Manager::builder_shared(store)
            .poll_interval(Duration::from_millis(20))
            .stats_interval(None)
            .build();
        manager
            .register("t", |_ctx: TaskContext| async { Ok::<_, TaskError>(()) })
            .unwrap();
        let starting = tokio::spawn({
            let manager = manager.clone();
            async move { manager.start().await }
        });
        // On this one-thread runtime the spawned `start` runs now, up to its first await.
        tokio::task::yield_now().await;
        manager.close().await.unwrap();
        if let Err(e) = starting.await.unwrap() {
            assert_eq!(e.kind(), taskmill_core::ErrorKind::Misuse, "{e}");
        }
        let enqueued = manager.enqueue(Task::new("t", &1).unwrap()).await;
        assert_eq!(
            enqueued.map(|e| e.id()).unwrap_err().kind(),
            taskmill_core::ErrorKind::Misuse,
            "the manager took work after close returned"
        );
        let id = memory
            .enqueue(
                vec![Task::new("t", &2).unwrap()],
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .unwrap()[0]
            .id();
        // A running manager would claim it within a poll interval of virtual time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let record = memory.get(id).await.unwrap().unwrap();
        assert_eq!(
            record.queue,
            taskmill_core::Queue::Input,
            "a closed manager claimed"
        );
    }

    /// The names of the task events `manager` reports, as they arrive.
    async fn task_event_names(manager: &Manager) -> Arc<Mutex<Vec<&'static str>>> {
        let names: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let mut events = manager.watch().await.unwrap();
        let seen = names.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if event.task_id().is_some() {
                    seen.lock().unwrap().push(event.name());
                }
            }
        });
        names
    }

    async fn wait_for_completion(names: &Mutex<Vec<&'static str>>) {
        wait_until(
            "the task's completion event",
            Duration::from_secs(30),
            || async { names.lock().unwrap().contains(&"TASK_COMPLETION") },
        )
        .await;
    }
}
