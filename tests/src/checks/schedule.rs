//! Schedules: the store's atomic tick decision (register, fire, pause, list, prune), and
//! managers driving it on a manual clock: one task per tick however many managers run,
//! the missed-tick and overlap policies, pause, and daylight-saving transitions.

use crate::Harness;
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    EnqueueOptions, Enqueued, Fired, ListOptions, OutcomeKind, PruneSchedulesOptions,
    RegisterOptions, ScheduleEntry, ScheduleState, Tick,
};
use taskmill_core::{
    Client, Clock, ErrorKind, Event, Manager, ManagerBuilder, Missed, Overlap, Queue, Schedule,
    ScheduleTick, Store, TaskId, Timestamp, SCHEDULE_HEADER, SCHEDULE_RETENTION, TICK_HEADER,
};
use taskmill_testkit::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// A name with every character a store must keep safe in a key, a query or JSON.
const AWKWARD_NAME: &str = r#"report "q" \ {x}:*/é 日本 <b>"#;

fn entry(name: &str, spec: &str, topic: &str) -> ScheduleEntry {
    ScheduleEntry::new(name, spec, "UTC", topic)
}

/// The tick at `at` of a one-second schedule `name` enqueuing `task("t", n)`.
fn tick(name: &str, at: Timestamp, n: u64, overlap: Overlap) -> Tick {
    let schedule = Schedule::every(name, Duration::from_secs(1), task("t", n)).unwrap();
    Tick::new(name, at, schedule.task_for(at).unwrap(), overlap)
}

async fn fire_at(store: &dyn Store, ticks: Vec<Tick>, now: Timestamp) -> Vec<Fired> {
    store
        .fire(ticks, &EnqueueOptions::new(now))
        .await
        .expect("fire")
}

async fn fire_one(store: &dyn Store, tick: Tick) -> Fired {
    let now = tick.at;
    fire_at(store, vec![tick], now).await.remove(0)
}

fn enqueued(fired: &Fired) -> TaskId {
    match fired {
        Fired::Enqueued(Enqueued::New(id)) => *id,
        other => panic!("expected a new task, got {other:?}"),
    }
}

async fn state(store: &dyn Store, name: &str) -> Option<ScheduleState> {
    let all = store.schedules().await.unwrap();
    all.into_iter().find(|s| &*s.name == name)
}

/// Every task of `topic` in `queue`, paged through.
async fn all_in(store: &dyn Store, queue: Queue, topic: &str) -> Vec<taskmill_core::TaskRecord> {
    let mut out = Vec::new();
    let mut opts = ListOptions::new(queue).topic(topic).limit(500);
    for _ in 0..1000 {
        let page = store.list(&opts).await.unwrap();
        out.extend(page.tasks);
        match page.next {
            Some(next) => opts = opts.after(next),
            None => return out,
        }
    }
    panic!("more than 500 000 tasks listed");
}

/// The ticks of the tasks of `topic` in INPUT, from their headers.
async fn fired_ticks(store: &dyn Store, topic: &str) -> Vec<Timestamp> {
    let mut ticks: Vec<Timestamp> = all_in(store, Queue::Input, topic)
        .await
        .iter()
        .map(|r| r.schedule_tick().expect("a fired task names its tick").tick)
        .collect();
    ticks.sort();
    ticks
}

/// Waits until the store's last tick of `name` is `tick` or later.
async fn wait_for_tick(store: &dyn Store, name: &str, tick: Timestamp) {
    wait_until(
        &format!("{name} to reach tick {tick}"),
        PATIENCE,
        || async {
            state(store, name)
                .await
                .and_then(|s| s.last_tick)
                .is_some_and(|last| last >= tick)
        },
    )
    .await;
}

/// Waits until the store keeps a state of schedule `name` (a manager registered it).
async fn wait_for_state(store: &dyn Store, name: &str) {
    wait_until(&format!("{name} to be registered"), PATIENCE, || async {
        state(store, name).await.is_some()
    })
    .await;
}

/// A manager on `store` that runs `schedules` (and no processor) on `clock`.
async fn scheduler(store: &Arc<dyn Store>, clock: &Clock, schedules: Vec<Schedule>) -> Manager {
    scheduler_with(store, clock, schedules, |builder| builder).await
}

/// [`scheduler`], with `options` applied to its builder.
async fn scheduler_with(
    store: &Arc<dyn Store>,
    clock: &Clock,
    schedules: Vec<Schedule>,
    options: impl FnOnce(ManagerBuilder) -> ManagerBuilder,
) -> Manager {
    let manager = schedules.into_iter().fold(
        Manager::builder_shared(store.clone())
            .clock(clock.clone())
            .stats_interval(None),
        |builder, schedule| builder.schedule(schedule),
    );
    let manager = options(manager).build();
    manager.start().await.unwrap();
    manager
}

/// The names of the schedules the store keeps, in order.
async fn schedule_names(store: &dyn Store) -> Vec<String> {
    let all = store.schedules().await.unwrap();
    all.iter().map(|s| s.name.to_string()).collect()
}

/// A whole-minute instant, so that every cadence's ticks fall on round numbers.
fn minute_aligned() -> Timestamp {
    Timestamp::from_millis(T0.as_millis() / 60_000 * 60_000)
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

checks!(
    mod schedule;

    /// Registering creates a schedule's state once; registering again updates what it
    /// shows and when it was seen, and keeps its ticks and paused flag. Listing is by name.
    pub async fn registering_creates_state_and_keeps_ticks(store: Arc<dyn Store>) {
        let states = store
            .register_schedules(
                &[entry("b", "@every 1m", "t"), entry("a", "@hourly", "t")],
                &RegisterOptions::new(at(0)),
            )
            .await
            .unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(&*states[0].name, "b");
        assert_eq!(&*states[0].spec, "@every 1m");
        assert_eq!(states[0].last_tick, None);
        assert_eq!(states[0].last_task, None);
        assert!(!states[0].paused);
        assert_eq!(states[0].seen_at, at(0));

        let id = enqueued(&fire_one(&*store, tick("a", at(1_000), 1, Overlap::Allow)).await);
        assert!(store.set_schedule_paused("b", true).await.unwrap());

        let again = store
            .register_schedules(
                &[entry("a", "@daily", "u"), entry("b", "@every 2m", "t")],
                &RegisterOptions::new(at(5_000)),
            )
            .await
            .unwrap();
        let (a, b) = (&again[0], &again[1]);
        assert_eq!((&*a.spec, &*a.topic, a.seen_at), ("@daily", "u", at(5_000)));
        assert_eq!(a.last_tick, Some(at(1_000)));
        assert_eq!(a.last_task, Some(id));
        assert_eq!(a.fired_at, Some(at(1_000)));
        assert!(b.paused, "registering must keep the paused flag");

        // A late registration never moves seen_at back.
        store
            .register_schedules(
                &[entry("a", "@daily", "u")],
                &RegisterOptions::new(at(2_000)),
            )
            .await
            .unwrap();
        let listed = store.schedules().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(listed[0].seen_at, at(5_000));
    }

    /// A tick fires once: its task is enqueued with the schedule's headers, and the same
    /// tick or an earlier one is stale afterwards.
    pub async fn a_tick_fires_once(store: Arc<dyn Store>) {
        store
            .register_schedules(
                &[entry("s", "@every 1s", "t")],
                &RegisterOptions::new(at(0)),
            )
            .await
            .unwrap();
        let fired = fire_at(
            &*store,
            vec![tick("s", at(1_000), 1, Overlap::Allow)],
            at(1_250),
        )
        .await;
        let id = enqueued(&fired[0]);
        let record = get(&*store, id).await;
        assert_eq!((record.queue, &*record.topic), (Queue::Input, "t"));
        assert_eq!(record.enqueued_at, at(1_250));
        assert_eq!(record.headers.get(SCHEDULE_HEADER), Some("s"));
        assert_eq!(
            record.headers.get(TICK_HEADER),
            Some(at(1_000).to_string().as_str())
        );
        assert_eq!(
            record.schedule_tick(),
            Some(ScheduleTick {
                schedule: "s".into(),
                tick: at(1_000)
            })
        );

        for stale in [at(1_000), at(500)] {
            assert_eq!(
                fire_one(&*store, tick("s", stale, 2, Overlap::Allow)).await,
                Fired::Stale { last: at(1_000) }
            );
        }
        let second = enqueued(&fire_one(&*store, tick("s", at(2_000), 3, Overlap::Allow)).await);
        assert!(second > id);
        let s = state(&*store, "s").await.unwrap();
        assert_eq!(s.last_tick, Some(at(2_000)));
        assert_eq!(s.last_task, Some(second));
        assert_eq!(s.fired_at, Some(at(2_000)));
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        assert_eq!(stats.topic("t").counters.enqueued, 2);
        assert_eq!(stats.topic("t").sizes.input, 2);
    }

    /// Many callers firing the same ticks at once enqueue one task per tick.
    pub async fn concurrent_fires_of_a_tick_enqueue_once(store: Arc<dyn Store>) {
        const TICKS: u64 = 50;
        const CALLERS: usize = 6;
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let store = store.clone();
            callers.spawn(async move {
                let mut enqueued = 0;
                for i in 1..=TICKS {
                    // Callers alternate between single ticks and pairs, so batches overlap.
                    let ticks = match (caller % 2, i % 2) {
                        (0, _) | (_, 0) => vec![tick("race", at(i * 1_000), i, Overlap::Allow)],
                        _ => vec![
                            tick("race", at(i * 1_000), i, Overlap::Allow),
                            tick("race", at((i + 1) * 1_000), i + 1, Overlap::Allow),
                        ],
                    };
                    let now = at(i * 1_000);
                    for fired in fire_at(&*store, ticks, now).await {
                        match fired {
                            Fired::Enqueued(Enqueued::New(_)) => enqueued += 1,
                            Fired::Stale { .. } => {}
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                enqueued
            });
        }
        let mut total = 0;
        while let Some(n) = callers.join_next().await {
            total += n.unwrap();
        }
        let ticks = fired_ticks(&*store, "t").await;
        let distinct: BTreeSet<Timestamp> = ticks.iter().copied().collect();
        assert_eq!(ticks.len(), distinct.len(), "a tick enqueued twice");
        assert_eq!(total, ticks.len());
        // Every tick 1..=TICKS fired (the pairs may add TICKS + 1).
        assert!((1..=TICKS).all(|i| distinct.contains(&at(i * 1_000))));
    }

    /// A paused schedule's ticks become its last tick without an enqueue, so resuming
    /// does not catch up. Pausing an unknown schedule creates nothing.
    pub async fn a_paused_schedule_skips_its_ticks(store: Arc<dyn Store>) {
        assert!(!store.set_schedule_paused("nobody", true).await.unwrap());
        assert!(store.schedules().await.unwrap().is_empty());

        store
            .register_schedules(
                &[entry("p", "@every 1s", "t")],
                &RegisterOptions::new(at(0)),
            )
            .await
            .unwrap();
        assert!(store.set_schedule_paused("p", true).await.unwrap());
        assert!(state(&*store, "p").await.unwrap().paused);
        for i in 1..=3 {
            assert_eq!(
                fire_one(&*store, tick("p", at(i * 1_000), i, Overlap::Allow)).await,
                Fired::Paused
            );
        }
        assert_eq!(
            state(&*store, "p").await.unwrap().last_tick,
            Some(at(3_000))
        );
        assert!(fired_ticks(&*store, "t").await.is_empty());

        assert!(store.set_schedule_paused("p", false).await.unwrap());
        assert_eq!(
            fire_one(&*store, tick("p", at(3_000), 3, Overlap::Allow)).await,
            Fired::Stale { last: at(3_000) }
        );
        enqueued(&fire_one(&*store, tick("p", at(4_000), 4, Overlap::Allow)).await);
        assert_eq!(fired_ticks(&*store, "t").await, [at(4_000)]);
    }

    /// With `Overlap::Skip` a tick is skipped while the previous tick's task waits or
    /// runs, and fires again once it completed or died; `Overlap::Allow` always fires.
    pub async fn overlap_skip_waits_for_the_previous_task(store: Arc<dyn Store>) {
        let first = enqueued(&fire_one(&*store, tick("o", at(1_000), 1, Overlap::Skip)).await);
        // Waiting in INPUT.
        assert_eq!(
            fire_one(&*store, tick("o", at(2_000), 2, Overlap::Skip)).await,
            Fired::Overlapped { running: first }
        );
        // Running in WORK.
        let claimed = claim_at(&*store, &["t"], 1, at(2_500)).await;
        assert_eq!(ids(&claimed), [first]);
        assert_eq!(
            fire_one(&*store, tick("o", at(3_000), 3, Overlap::Skip)).await,
            Fired::Overlapped { running: first }
        );
        assert_eq!(
            state(&*store, "o").await.unwrap().last_tick,
            Some(at(3_000))
        );
        // Allow fires whatever the previous task does.
        let allowed = enqueued(&fire_one(&*store, tick("o", at(4_000), 4, Overlap::Allow)).await);
        // The newest task is the one that blocks now; once it died, the next tick fires.
        let claimed = claim_at(&*store, &["t"], 1, at(4_500)).await;
        assert_eq!(ids(&claimed), [allowed]);
        apply_outcome_at(
            &*store,
            &claimed[0],
            OutcomeKind::dead("gave up"),
            at(4_600),
        )
        .await;
        let after_dead = enqueued(&fire_one(&*store, tick("o", at(5_000), 5, Overlap::Skip)).await);
        assert!(after_dead > allowed);
        assert_eq!(get(&*store, first).await.queue, Queue::Work);
    }

    /// A tick whose task meets a held unique key consumes the tick and names the holder.
    pub async fn a_tick_meeting_a_held_unique_key_is_a_duplicate(store: Arc<dyn Store>) {
        let schedule =
            Schedule::every("u", seconds(1), task("t", 0).unique_key("one-at-a-time")).unwrap();
        let tick_at = |ms| {
            Tick::new(
                "u",
                at(ms),
                schedule.task_for(at(ms)).unwrap(),
                Overlap::Allow,
            )
        };
        let first = enqueued(&fire_one(&*store, tick_at(1_000)).await);
        assert_eq!(
            fire_one(&*store, tick_at(2_000)).await,
            Fired::Enqueued(Enqueued::Duplicate(first))
        );
        let s = state(&*store, "u").await.unwrap();
        assert_eq!((s.last_tick, s.last_task), (Some(at(2_000)), Some(first)));
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("t")
                .counters
                .enqueued,
            1
        );
    }

    /// A fired task's enqueue event names its schedule and tick, even for a name full of
    /// quotes, backslashes and non-ASCII text; a plain enqueue's names none.
    pub async fn the_enqueue_event_names_the_tick(store: Arc<dyn Store>) {
        let mut events = store.subscribe().await.unwrap();
        let id =
            enqueued(&fire_one(&*store, tick(AWKWARD_NAME, at(7_000), 7, Overlap::Allow)).await);
        let plain = enqueue(&*store, vec![task("t", 8)]).await[0];
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let event = tokio::time::timeout(PATIENCE, events.next())
                .await
                .expect("an event within the patience")
                .expect("the stream goes on");
            if let Event::TaskEnqueue { id, tick, .. } = event {
                seen.push((id, tick));
            }
        }
        assert_eq!(
            seen,
            [
                (
                    id,
                    Some(ScheduleTick {
                        schedule: AWKWARD_NAME.into(),
                        tick: at(7_000)
                    })
                ),
                (plain, None),
            ]
        );
        let s = state(&*store, AWKWARD_NAME)
            .await
            .expect("the awkward name is listed");
        assert_eq!(s.last_task, Some(id));
    }

    /// A tick of a schedule the store does not know creates its state and fires.
    pub async fn an_unregistered_schedule_is_created_by_its_first_tick(store: Arc<dyn Store>) {
        let id = enqueued(&fire_one(&*store, tick("new", at(1_000), 1, Overlap::Allow)).await);
        let s = state(&*store, "new").await.expect("created by the tick");
        assert_eq!((&*s.topic, &*s.spec), ("t", ""));
        assert_eq!((s.last_tick, s.last_task), (Some(at(1_000)), Some(id)));
        assert!(!s.paused);
    }

    /// Pruning removes the schedules not registered since the cut, and nothing else.
    pub async fn prune_removes_only_unseen_schedules(store: Arc<dyn Store>) {
        store
            .register_schedules(
                &[entry("old", "@hourly", "t")],
                &RegisterOptions::new(at(0)),
            )
            .await
            .unwrap();
        store
            .register_schedules(
                &[entry("new", "@hourly", "t")],
                &RegisterOptions::new(at(5_000)),
            )
            .await
            .unwrap();
        let id = enqueued(&fire_one(&*store, tick("old", at(1_000), 1, Overlap::Allow)).await);
        let cut = PruneSchedulesOptions::new(at(5_000));
        assert_eq!(store.prune_schedules(&cut).await.unwrap(), 1);
        assert_eq!(store.prune_schedules(&cut).await.unwrap(), 0);
        let names: Vec<Arc<str>> = store
            .schedules()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, [Arc::from("new")]);
        assert_eq!(get(&*store, id).await.queue, Queue::Input, "its task stays");
    }

    /// A schedule no manager registers any more stops firing: once the manager that ran
    /// two schedules is gone and the next one runs only one of them, the other's ticks
    /// stop (no task, its last tick stays) while the one still registered goes on.
    pub async fn an_unregistered_schedule_stops_firing(store: Arc<dyn Store>) {
        let start = minute_aligned();
        let clock = Clock::manual(start);
        let every_second = |name: &str| Schedule::every(name, seconds(1), task(name, 0)).unwrap();
        let first = scheduler(&store, &clock, vec![every_second("a"), every_second("b")]).await;
        for i in 0..=2 {
            clock.set(start + seconds(i));
            wait_for_tick(&*store, "a", start + seconds(i)).await;
            wait_for_tick(&*store, "b", start + seconds(i)).await;
        }
        first.close().await.unwrap();
        let a_before = state(&*store, "a").await.unwrap();
        assert_eq!(a_before.last_tick, Some(start + seconds(2)));
        let a_ticks = fired_ticks(&*store, "a").await;
        assert_eq!(a_ticks.len(), 3);

        let second = scheduler(&store, &clock, vec![every_second("b")]).await;
        for i in 3..=8 {
            clock.set(start + seconds(i));
            wait_for_tick(&*store, "b", start + seconds(i)).await;
        }
        second.close().await.unwrap();
        let expected: Vec<Timestamp> = (0..=8).map(|i| start + seconds(i)).collect();
        assert_eq!(fired_ticks(&*store, "b").await, expected);
        assert_eq!(
            fired_ticks(&*store, "a").await,
            a_ticks,
            "a fired unregistered"
        );
        let a_after = state(&*store, "a")
            .await
            .expect("its state stays until pruned");
        assert_eq!(a_after.last_tick, a_before.last_tick);
        assert_eq!(a_after.last_task, a_before.last_task);
    }

    /// A manager's maintenance removes the state of a schedule no manager registered for
    /// `SCHEDULE_RETENTION`, and keeps one a running manager registers again meanwhile
    /// (its paused flag shows it was kept, not removed and registered anew).
    pub async fn a_manager_prunes_the_schedules_no_manager_registers(store: Arc<dyn Store>) {
        let start = minute_aligned();
        let clock = Clock::manual(start);
        let client = Client::shared(store.clone()).clock(clock.clone());
        let hourly = |name: &str| Schedule::new(name, "@hourly", task(name, 0)).unwrap();
        let gone = scheduler(&store, &clock, vec![hourly("gone")]).await;
        wait_for_state(&*store, "gone").await;
        gone.close().await.unwrap();
        assert_eq!(state(&*store, "gone").await.unwrap().seen_at, start);
        // It registers again every 20 ms; its own pruning is not what is looked at here.
        let keeper = scheduler_with(&store, &clock, vec![hourly("kept")], |b| {
            b.schedule_register_interval(Duration::from_millis(20))
                .prune_interval(seconds(3_600))
        })
        .await;
        wait_for_state(&*store, "kept").await;
        client.pause_schedule("kept").await.unwrap();

        // A week and a second later, "gone" has been unseen for longer than the retention.
        let later = start + SCHEDULE_RETENTION + seconds(1);
        clock.set(later);
        wait_until("the keeper registers again", PATIENCE, || async {
            state(&*store, "kept")
                .await
                .is_some_and(|s| s.seen_at >= later)
        })
        .await;
        let pruner = scheduler_with(&store, &clock, vec![hourly("new")], |b| {
            b.prune_interval(Duration::from_millis(20))
        })
        .await;
        wait_until(
            "only the registered schedules are left",
            PATIENCE,
            || async { schedule_names(&*store).await == ["kept", "new"] },
        )
        .await;
        let kept = state(&*store, "kept").await.unwrap();
        assert!(kept.paused, "the kept schedule was removed and made again");
        for manager in [keeper, pruner] {
            manager.close().await.unwrap();
        }
    }

    /// Registering a schedule whose name the manager has already, or after start, is a
    /// misuse error, and so is starting with one name twice from the builder.
    pub async fn schedule_registration_errors_are_misuse(store: Arc<dyn Store>) {
        let clock = Clock::manual(minute_aligned());
        let hourly = |name: &str| Schedule::new(name, "@hourly", task("t", 0)).unwrap();
        let manager = Manager::builder_shared(store.clone())
            .clock(clock.clone())
            .stats_interval(None)
            .build();
        manager.schedule(hourly("s")).unwrap();
        let twice = manager.schedule(hourly("s")).unwrap_err();
        assert_eq!(twice.kind(), ErrorKind::Misuse);
        assert!(twice.to_string().contains("already registered"), "{twice}");
        manager.start().await.unwrap();
        wait_for_state(&*store, "s").await;
        let late = manager.schedule(hourly("late")).unwrap_err();
        assert_eq!(late.kind(), ErrorKind::Misuse);
        assert!(late.to_string().contains("already started"), "{late}");
        manager.close().await.unwrap();
        assert_eq!(schedule_names(&*store).await, ["s"]);

        let from_builder = Manager::builder_shared(store.clone())
            .clock(clock)
            .stats_interval(None)
            .schedule(hourly("d"))
            .schedule(hourly("d"))
            .build();
        let e = from_builder.start().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(e.to_string().contains("registered twice"), "{e}");
        assert_eq!(schedule_names(&*store).await, ["s"], "nothing registered");
    }

    /// A schedule's state (ticks, task, paused flag, seen time) survives a reopen.
    #[needs(durable)]
    pub async fn schedule_state_survives_a_reopen(harness: &mut dyn Harness) {
        let store = harness.store();
        store
            .register_schedules(
                &[
                    entry("kept", "@every 1s", "t"),
                    entry("paused", "@daily", "t"),
                ],
                &RegisterOptions::new(at(0)),
            )
            .await
            .unwrap();
        enqueued(&fire_one(&*store, tick("kept", at(1_000), 1, Overlap::Allow)).await);
        assert!(store.set_schedule_paused("paused", true).await.unwrap());
        let before = store.schedules().await.unwrap();
        drop(store);
        let store = harness.reopen().await;
        assert_eq!(store.schedules().await.unwrap(), before);
        assert_eq!(
            fire_one(&*store, tick("kept", at(1_000), 1, Overlap::Allow)).await,
            Fired::Stale { last: at(1_000) }
        );
    }

    /// Three managers running one schedule enqueue exactly one task per tick over 1,000
    /// ticks of a manual clock, each tick raced by all three.
    pub async fn three_managers_fire_each_tick_once(store: Arc<dyn Store>) {
        const TICKS: u64 = 1_000;
        let start = minute_aligned();
        let clock = Clock::manual(start);
        let schedule = Schedule::every("each-second", seconds(1), task("t", 0)).unwrap();
        let mut managers = Vec::new();
        for _ in 0..3 {
            managers.push(scheduler(&store, &clock, vec![schedule.clone()]).await);
        }
        // The clock starts on a tick, which is on time: it fires at once.
        wait_for_tick(&*store, "each-second", start).await;
        for i in 1..=TICKS {
            clock.advance(seconds(1));
            wait_for_tick(&*store, "each-second", start + seconds(i)).await;
        }
        for manager in managers {
            manager.close().await.unwrap();
        }
        let expected: Vec<Timestamp> = (0..=TICKS).map(|i| start + seconds(i)).collect();
        assert_eq!(fired_ticks(&*store, "t").await, expected);
        assert_eq!(
            store
                .stats(&taskmill_testkit::all_due())
                .await
                .unwrap()
                .topic("t")
                .counters
                .enqueued,
            TICKS + 1
        );
    }

    /// Managers whose clocks are two seconds apart (one ahead, one behind) still enqueue
    /// each tick once and skip none: the ahead one fires a little early, the others find
    /// the tick fired, and one joining fires the on-time ticks since the last fired.
    pub async fn managers_with_skewed_clocks_fire_each_tick_once(store: Arc<dyn Store>) {
        const TICKS: u64 = 200;
        let start = minute_aligned();
        let clocks = [
            Clock::manual(start - seconds(2)),
            Clock::manual(start),
            Clock::manual(start + seconds(2)),
        ];
        let schedule = Schedule::every("skewed", seconds(1), task("t", 0)).unwrap();
        // The one behind starts first and fires the schedule's first tick; the others
        // join a schedule already fired, and take it from its last tick.
        let mut managers = vec![scheduler(&store, &clocks[0], vec![schedule.clone()]).await];
        wait_for_tick(&*store, "skewed", start - seconds(2)).await;
        for clock in &clocks[1..] {
            managers.push(scheduler(&store, clock, vec![schedule.clone()]).await);
        }
        for i in 1..=TICKS {
            for clock in &clocks {
                clock.advance(seconds(1));
            }
            // The clock that runs ahead reaches each tick first.
            wait_for_tick(&*store, "skewed", start + seconds(i + 2)).await;
        }
        for manager in managers {
            manager.close().await.unwrap();
        }
        let ticks = fired_ticks(&*store, "t").await;
        let distinct: BTreeSet<Timestamp> = ticks.iter().copied().collect();
        assert_eq!(distinct.len(), ticks.len(), "a tick was enqueued twice");
        let gaps: Vec<&[Timestamp]> = ticks
            .windows(2)
            .filter(|w| w[1].saturating_since(w[0]) != seconds(1))
            .collect();
        assert!(gaps.is_empty(), "ticks skipped between {gaps:?}");
        assert_eq!(ticks.first(), Some(&(start - seconds(2))));
        assert_eq!(ticks.last(), Some(&(start + seconds(TICKS + 2))));
    }

    /// A tick whose fire the store fails is tried again and fires once, while it is on
    /// time; one the store fails until past the grace is missed, and skipped.
    pub async fn a_failed_fire_is_tried_again_while_on_time(store: Arc<dyn Store>) {
        let faulty = FaultyStore::with_seed(store.clone(), FaultRates::NONE, 1);
        let faulty_store: Arc<dyn Store> = Arc::new(faulty.clone());
        // Half a minute past the tick: too late for it, so the first tick is minute 1.
        let start = minute_aligned();
        let clock = Clock::manual(start + seconds(30));
        let minute = |n: u64| start + seconds(60 * n);
        let schedule = Schedule::every("retried", seconds(60), task("t", 0)).unwrap();
        let manager = scheduler(&faulty_store, &clock, vec![schedule]).await;
        wait_until("the schedule is registered", PATIENCE, || async {
            state(&*store, "retried").await.is_some()
        })
        .await;
        let failed_fires = || faulty.counts().of_method("fire");

        // Minute 1: the store is down when it comes, and back within the grace.
        faulty.set_outage(true);
        clock.set(minute(1));
        wait_until("a fire failed", PATIENCE, || async { failed_fires() >= 1 }).await;
        clock.set(minute(1) + seconds(5));
        faulty.set_outage(false);
        wait_for_tick(&*store, "retried", minute(1)).await;

        // Minute 2: down until 15 s past it, beyond the grace: missed.
        let before = failed_fires();
        faulty.set_outage(true);
        clock.set(minute(2));
        wait_until("a fire failed again", PATIENCE, || async {
            failed_fires() > before
        })
        .await;
        clock.set(minute(2) + seconds(15));
        faulty.set_outage(false);
        clock.set(minute(3));
        wait_for_tick(&*store, "retried", minute(3)).await;
        manager.close().await.unwrap();
        assert_eq!(fired_ticks(&*store, "t").await, [minute(1), minute(3)]);
    }

    /// After downtime, `Missed::Skip` goes on at the next tick and `Missed::Latest` fires
    /// the most recent missed tick within its window, once.
    pub async fn missed_ticks_follow_the_policy(store: Arc<dyn Store>) {
        // Half a minute past the tick: too late for it, so the first tick is minute 1.
        let start = minute_aligned();
        let clock = Clock::manual(start + seconds(30));
        let make = |name: &str, topic: &str, missed: Missed| {
            Schedule::every(name, seconds(60), task(topic, 0))
                .unwrap()
                .missed(missed)
        };
        let schedules = || {
            vec![
                make("skip", "skip", Missed::Skip),
                make(
                    "latest",
                    "latest",
                    Missed::Latest {
                        within: seconds(300),
                    },
                ),
                make(
                    "too-old",
                    "too-old",
                    Missed::Latest {
                        within: seconds(20),
                    },
                ),
            ]
        };
        let minute = |n: u64| start + seconds(60 * n);
        let first = scheduler(&store, &clock, schedules()).await;
        for n in 1..=3 {
            clock.set(minute(n));
            for name in ["skip", "latest", "too-old"] {
                wait_for_tick(&*store, name, minute(n)).await;
            }
        }
        first.close().await.unwrap();

        // Down from minute 3 to 30 s past minute 10: ticks 4 to 10 are missed.
        clock.set(minute(10) + seconds(30));
        let second = scheduler(&store, &clock, schedules()).await;
        wait_for_tick(&*store, "latest", minute(10)).await;
        clock.set(minute(11));
        for name in ["skip", "latest", "too-old"] {
            wait_for_tick(&*store, name, minute(11)).await;
        }
        second.close().await.unwrap();

        let on_time: Vec<Timestamp> = [1, 2, 3, 11].map(minute).to_vec();
        assert_eq!(fired_ticks(&*store, "skip").await, on_time);
        assert_eq!(fired_ticks(&*store, "too-old").await, on_time);
        assert_eq!(
            fired_ticks(&*store, "latest").await,
            [1, 2, 3, 10, 11].map(minute).to_vec()
        );
    }

    /// A schedule paused through a client skips its ticks on every manager until resumed,
    /// and an unknown name is `NotFound`; `Overlap::Skip` on a manager skips while the
    /// previous task waits.
    pub async fn pause_and_overlap_on_a_manager(store: Arc<dyn Store>) {
        // Half a minute past the tick: too late for it, so the first tick is step 1.
        let start = minute_aligned();
        let clock = Clock::manual(start + seconds(30));
        let client = Client::shared(store.clone()).clock(clock.clone());
        let manager = scheduler(
            &store,
            &clock,
            vec![
                Schedule::every("paused", seconds(60), task("paused", 0)).unwrap(),
                Schedule::every("single", seconds(60), task("single", 0))
                    .unwrap()
                    .overlap(Overlap::Skip),
            ],
        )
        .await;
        let step = |n: u64| start + seconds(60 * n);
        clock.set(step(1));
        wait_for_tick(&*store, "paused", step(1)).await;
        wait_for_tick(&*store, "single", step(1)).await;
        client.pause_schedule("paused").await.unwrap();
        let e = client.pause_schedule("no-such-schedule").await.unwrap_err();
        assert_eq!(e.kind(), taskmill_core::ErrorKind::NotFound);
        for n in 2..=4 {
            clock.set(step(n));
            wait_for_tick(&*store, "paused", step(n)).await;
            wait_for_tick(&*store, "single", step(n)).await;
        }
        let listed = client.schedules().await.unwrap();
        let paused = listed.iter().find(|s| &*s.state.name == "paused").unwrap();
        assert!(paused.state.paused);
        assert_eq!(paused.next_tick, None);
        let single = listed.iter().find(|s| &*s.state.name == "single").unwrap();
        assert_eq!(single.next_tick, Some(step(5)));
        assert_eq!(&*single.state.spec, "@every 1m");

        client.resume_schedule("paused").await.unwrap();
        // The waiting task of "single" finishes; the next tick fires again.
        let waiting = all_in(&*store, Queue::Input, "single").await;
        assert_eq!(waiting.len(), 1, "overlapping ticks were skipped");
        store.delete(&[waiting[0].id]).await.unwrap();
        clock.set(step(5));
        wait_for_tick(&*store, "paused", step(5)).await;
        wait_for_tick(&*store, "single", step(5)).await;
        manager.close().await.unwrap();
        assert_eq!(fired_ticks(&*store, "paused").await, [step(1), step(5)]);
        assert_eq!(fired_ticks(&*store, "single").await, [step(5)]);
    }

    /// Across both daylight-saving transitions of Europe/Berlin, a daily 02:30 fires once
    /// a day (right after the gap in spring, at the first 02:30 in autumn) and an hourly
    /// one every real hour, with the manager's clock stepping a quarter-hour at a time.
    pub async fn daylight_saving_transitions_fire_once_per_local_time(store: Arc<dyn Store>) {
        let utc = |s: &str| -> Timestamp { humantime::parse_rfc3339(s).unwrap().into() };
        let start = utc("2026-03-28T00:00:00Z");
        let clock = Clock::manual(start);
        let catch_up = Missed::Latest {
            within: seconds(3_600),
        };
        let schedules = vec![
            Schedule::new("daily", "0 30 2 * * *", task("daily", 0))
                .unwrap()
                .zone("Europe/Berlin")
                .unwrap()
                .missed(catch_up),
            Schedule::new("hourly", "@hourly", task("hourly", 0))
                .unwrap()
                .zone("Europe/Berlin")
                .unwrap()
                .missed(catch_up),
        ];
        let manager = scheduler(&store, &clock, schedules).await;
        let quarter = seconds(15 * 60);
        let walk = |from: Timestamp, to: Timestamp| {
            let (store, clock) = (store.clone(), clock.clone());
            async move {
                let mut now = from;
                while now < to {
                    now = now + quarter;
                    clock.set(now);
                    // Each step past a whole hour fires the hourly tick; wait for it, so
                    // that the manager has seen every step.
                    let hour = Timestamp::from_millis(now.as_millis() / 3_600_000 * 3_600_000);
                    wait_for_tick(&*store, "hourly", hour).await;
                }
            }
        };
        walk(start, utc("2026-03-31T00:00:00Z")).await;
        // Months later, on the hour: that tick is on time, and the one an hour before is
        // the most recent missed one, just within the policy's hour.
        clock.set(utc("2026-10-24T00:00:00Z"));
        wait_for_tick(&*store, "hourly", utc("2026-10-24T00:00:00Z")).await;
        walk(utc("2026-10-24T00:00:00Z"), utc("2026-10-27T00:00:00Z")).await;
        manager.close().await.unwrap();

        let daily: Vec<String> = fired_ticks(&*store, "daily")
            .await
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            daily,
            [
                "2026-03-28T01:30:00.000Z", // 02:30 CET
                "2026-03-29T01:00:00.000Z", // 03:00 CEST, right after the gap
                "2026-03-30T00:30:00.000Z", // 02:30 CEST
                "2026-10-24T00:30:00.000Z",
                "2026-10-25T00:30:00.000Z", // 02:30 CEST; not again at 02:30 CET
                "2026-10-26T01:30:00.000Z", // 02:30 CET
            ]
        );
        // Hourly: every real hour of both walks, each starting on a tick that is on time,
        // and of the months between only the last hour, caught up.
        let hourly = fired_ticks(&*store, "hourly").await;
        let hours = |from: &str, to: &str| {
            let (from, to) = (utc(from).as_millis(), utc(to).as_millis());
            (from / 3_600_000..=to / 3_600_000).map(|h| Timestamp::from_millis(h * 3_600_000))
        };
        let expected: Vec<Timestamp> = hours("2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z")
            .chain([utc("2026-10-23T23:00:00Z")])
            .chain(hours("2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"))
            .collect();
        assert_eq!(hourly, expected);
    }
);
