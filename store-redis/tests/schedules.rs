//! Schedules in Redis: managers on many machines firing the same ticks, and schedule names
//! that hold every character a key or a JSON string would trip over.

mod common;

use common::Setup;
use futures_util::StreamExt;
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    EnqueueOptions, Enqueued, Fired, PruneSchedulesOptions, RegisterOptions, ScheduleEntry, Tick,
};
use taskmill_core::{Event, Overlap, Schedule, ScheduleTick, Store, Task, Timestamp};
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};

const PATIENCE: Duration = Duration::from_secs(10);

/// The tick `n` of a schedule ticking every minute from a round start.
fn tick_at(n: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_040_000 + n * 60_000)
}

/// A schedule ticking every minute, its task in `topic`, and what the tests take of it:
/// its entry as a manager registers it, and its ticks as a manager fires them.
struct Sched(Schedule);

impl Sched {
    fn new(name: &str, topic: &str, overlap: Overlap) -> Self {
        let task = Task::new(topic, &1).unwrap();
        let schedule = Schedule::every(name, Duration::from_secs(60), task).unwrap();
        Sched(schedule.overlap(overlap))
    }

    fn entry(&self) -> ScheduleEntry {
        let cadence = self.0.cadence();
        ScheduleEntry::new(
            self.0.name(),
            cadence.spec(),
            cadence.zone(),
            self.0.task().topic(),
        )
    }

    fn spec(&self) -> String {
        self.0.cadence().spec()
    }

    /// The tick at `at`: its task carries the schedule's name and the tick in its headers.
    fn tick(&self, at: Timestamp) -> Tick {
        let task = self.0.task_for(at).unwrap();
        Tick::new(self.0.name(), at, task, self.0.overlap_policy())
    }
}

/// Three handles, each with its own connections as three processes on three machines
/// would have, fire the same 300 ticks at once, in batches: every tick is enqueued exactly
/// once, and every other answer for it is `Stale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_handles_firing_the_same_ticks_enqueue_each_once() {
    const TICKS: i64 = 300;
    let server = RedisServer::start();
    let url = server.url(&fresh_namespace());
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(RedisStore::open(&url).await.unwrap());
    }
    let schedule = Arc::new(Sched::new("every-minute", "t", Overlap::Allow));
    let now = Timestamp::from_millis(1_700_000_000_000);
    for handle in &handles {
        handle
            .register_schedules(&[schedule.entry()], &RegisterOptions::new(now))
            .await
            .unwrap();
    }
    // Before each batch the three wait for one another, so that each batch's ticks are
    // fired by the three at once.
    let start = Arc::new(tokio::sync::Barrier::new(handles.len()));
    let mut firing = Vec::new();
    for handle in &handles {
        let (handle, schedule, start) = (handle.clone(), schedule.clone(), start.clone());
        firing.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            let mut batch = 0;
            while n < TICKS {
                // Batches of 1 to 4 ticks: one script call each, pipelined.
                let size = (1 + batch % 4).min(TICKS - n);
                let ticks = (n..n + size).map(|k| schedule.tick(tick_at(k))).collect();
                start.wait().await;
                let fired = handle
                    .fire(ticks, &EnqueueOptions::new(tick_at(n + size - 1)))
                    .await
                    .unwrap();
                assert_eq!(fired.len() as i64, size);
                answers.extend(fired);
                n += size;
                batch += 1;
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for f in firing {
        answers.push(f.await.unwrap());
    }
    // The id each tick enqueued. Ids follow the order in which handles reserved them,
    // not the ticks'.
    let mut ids = Vec::new();
    for k in 0..TICKS as usize {
        let mut enqueued = Vec::new();
        for (h, per_handle) in answers.iter().enumerate() {
            match &per_handle[k] {
                Fired::Enqueued(Enqueued::New(id)) => enqueued.push(*id),
                Fired::Stale { last } => assert!(*last >= tick_at(k as i64), "tick {k}"),
                other => panic!("handle {h}, tick {k}: {other:?}"),
            }
        }
        let all: Vec<&Fired> = answers.iter().map(|a| &a[k]).collect();
        assert_eq!(enqueued.len(), 1, "tick {k}: {all:?}");
        ids.push(enqueued[0]);
    }
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "an id was handed out twice"
    );
    let store = &handles[0];
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.topics["t"].counters.enqueued, TICKS as u64);
    assert_eq!(stats.topics["t"].sizes.input, TICKS as u64);
    // Each task carries its own tick.
    for (k, id) in ids.iter().enumerate() {
        let record = store.get(*id).await.unwrap().unwrap();
        let fired = record.schedule_tick().unwrap();
        assert_eq!(
            (&*fired.schedule, fired.tick),
            ("every-minute", tick_at(k as i64))
        );
    }
    let states = store.schedules().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].last_tick, Some(tick_at(TICKS - 1)));
    assert_eq!(states[0].last_task, ids.last().copied());
    assert_eq!(states[0].fired_at, Some(tick_at(TICKS - 1)));
}

/// A name with quotes, a backslash, braces (a hash tag, in a key), `:` and `*` (a key
/// separator and a glob) and non-ASCII text round-trips through register, list, fire,
/// pause and prune, and the enqueue event, built as JSON inside the script, names it
/// exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_name_round_trips_through_every_call_and_the_event() {
    let setup = Setup::new().await;
    let store = &setup.store;
    let name = r#"we"ird\ {tag}:* ünï ✓ "\{}:*"#;
    let schedule = Sched::new(name, "t", Overlap::Skip);
    let plain = Sched::new("plain", "t", Overlap::Allow);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let registered = store
        .register_schedules(
            &[schedule.entry(), plain.entry()],
            &RegisterOptions::new(now),
        )
        .await
        .unwrap();
    assert_eq!(&*registered[0].name, name);
    assert_eq!(*registered[0].spec, *schedule.spec());
    let listed = store.schedules().await.unwrap();
    assert_eq!(listed.len(), 2);
    // By name in byte order: '"' < 'p' < 'w'.
    assert_eq!(&*listed[0].name, "plain");
    assert_eq!(listed[1], registered[0]);
    // The name is a field of the one schedules hash, never part of a key.
    let mut raw = setup.raw.clone();
    let fields: Vec<String> = raw
        .hkeys(format!("{}:schedules", setup.namespace))
        .await
        .unwrap();
    assert_eq!(fields.len(), 2);
    assert!(fields.iter().any(|f| f == name));

    let mut events = store.subscribe().await.unwrap();
    let at = tick_at(1);
    let fired = store
        .fire(vec![schedule.tick(at)], &EnqueueOptions::new(at))
        .await
        .unwrap();
    let Fired::Enqueued(Enqueued::New(id)) = fired[0] else {
        panic!("{fired:?}");
    };
    let event = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("no event")
        .expect("the event stream ended");
    let expected = ScheduleTick {
        schedule: name.into(),
        tick: at,
    };
    match &event {
        Event::TaskEnqueue {
            id: got,
            tick: got_tick,
            ..
        } => {
            assert_eq!(*got, id);
            assert_eq!(got_tick.as_ref(), Some(&expected));
        }
        other => panic!("{other:?}"),
    }
    // The JSON on the channel reads back as what serde writes.
    let json = serde_json::to_string(&event).unwrap();
    let back: Event = serde_json::from_str(&json).unwrap();
    assert!(matches!(back, Event::TaskEnqueue { tick: Some(t), .. } if t == expected));

    // Skip while the task waits: overlapped, and the tick is the last one.
    let next = tick_at(2);
    let fired = store
        .fire(vec![schedule.tick(next)], &EnqueueOptions::new(next))
        .await
        .unwrap();
    assert_eq!(fired, vec![Fired::Overlapped { running: id }]);
    assert!(store.set_schedule_paused(name, true).await.unwrap());
    assert!(!store.set_schedule_paused("we\"ird", true).await.unwrap());
    let paused = tick_at(3);
    let fired = store
        .fire(
            vec![schedule.tick(paused), schedule.tick(paused)],
            &EnqueueOptions::new(paused),
        )
        .await
        .unwrap();
    assert_eq!(
        fired,
        vec![Fired::Paused, Fired::Stale { last: paused }],
        "the second of one tick in one call is stale"
    );
    let listed = store.schedules().await.unwrap();
    let state = listed.iter().find(|s| &*s.name == name).unwrap();
    assert!(state.paused);
    assert_eq!(
        (state.last_tick, state.last_task, state.fired_at),
        (Some(paused), Some(id), Some(at))
    );
    assert_eq!(
        names(store).await,
        vec!["plain".to_owned(), name.to_owned()]
    );

    // Registered again later, the plain one stays; the hostile one is pruned.
    store
        .register_schedules(&[plain.entry()], &RegisterOptions::new(paused))
        .await
        .unwrap();
    let pruned = store
        .prune_schedules(&PruneSchedulesOptions::new(paused))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(names(store).await, vec!["plain".to_owned()]);
    // Its task stays.
    assert!(store.get(id).await.unwrap().is_some());
}

/// The overlap check reads the last task in the topic it went to, also after the schedule
/// was registered to another topic: the script asks for that topic's keys and is sent
/// again with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlap_check_follows_the_last_task_to_its_topic() {
    let setup = Setup::new().await;
    let store = &setup.store;
    let old = Sched::new("moves", "a", Overlap::Skip);
    let new = Sched::new("moves", "b", Overlap::Skip);
    let now = Timestamp::from_millis(1_700_000_000_000);
    store
        .register_schedules(&[old.entry()], &RegisterOptions::new(now))
        .await
        .unwrap();
    let fired = store
        .fire(vec![old.tick(tick_at(1))], &EnqueueOptions::new(tick_at(1)))
        .await
        .unwrap();
    let Fired::Enqueued(Enqueued::New(first)) = fired[0] else {
        panic!("{fired:?}");
    };
    store
        .register_schedules(&[new.entry()], &RegisterOptions::new(tick_at(1)))
        .await
        .unwrap();
    // Two ticks of the schedule in one call: the first needs topic a's keys (sent again),
    // the second runs after it all the same.
    let fired = store
        .fire(
            vec![new.tick(tick_at(2)), new.tick(tick_at(3))],
            &EnqueueOptions::new(tick_at(3)),
        )
        .await
        .unwrap();
    assert_eq!(
        fired,
        vec![
            Fired::Overlapped { running: first },
            Fired::Overlapped { running: first }
        ]
    );
    // Once the task in topic a is gone, the next tick fires into b.
    assert_eq!(store.delete(&[first]).await.unwrap(), vec![true]);
    let fired = store
        .fire(vec![new.tick(tick_at(4))], &EnqueueOptions::new(tick_at(4)))
        .await
        .unwrap();
    let Fired::Enqueued(Enqueued::New(second)) = fired[0] else {
        panic!("{fired:?}");
    };
    assert_eq!(&*store.get(second).await.unwrap().unwrap().topic, "b");
    let state = &store.schedules().await.unwrap()[0];
    assert_eq!((&*state.topic, state.last_task), ("b", Some(second)));
    // And the check now reads topic b.
    let fired = store
        .fire(vec![new.tick(tick_at(5))], &EnqueueOptions::new(tick_at(5)))
        .await
        .unwrap();
    assert_eq!(fired, vec![Fired::Overlapped { running: second }]);
}

/// The names of the schedules listed, in order.
async fn names(store: &RedisStore) -> Vec<String> {
    store
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect()
}

/// Ticks, `now` and `seen_at` are compared as the integers they are, never as doubles:
/// ticks 1 ms apart beyond 2^53 ms are two ticks, and negative times order right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_compare_exactly_beyond_doubles_and_below_zero() {
    let setup = Setup::new().await;
    let store = &setup.store;
    // Plain tasks: the tick headers are RFC 3339, which ends with year 9999.
    let tick = |name: &str, at: i64| {
        Tick::new(
            name,
            Timestamp::from_millis(at),
            Task::new("t", &1).unwrap(),
            Overlap::Allow,
        )
    };
    let far = i64::MAX / 2;
    let opts = EnqueueOptions::new(Timestamp::from_millis(1));
    let fired = store
        .fire(
            vec![tick("far", far), tick("far", far + 1), tick("far", far)],
            &opts,
        )
        .await
        .unwrap();
    assert!(
        matches!(fired[0], Fired::Enqueued(Enqueued::New(_))),
        "{fired:?}"
    );
    assert!(
        matches!(fired[1], Fired::Enqueued(Enqueued::New(_))),
        "{fired:?}"
    );
    assert_eq!(
        fired[2],
        Fired::Stale {
            last: Timestamp::from_millis(far + 1)
        }
    );
    let fired = store
        .fire(
            vec![tick("old", -10), tick("old", -9), tick("old", -10)],
            &opts,
        )
        .await
        .unwrap();
    assert!(
        matches!(fired[1], Fired::Enqueued(Enqueued::New(_))),
        "{fired:?}"
    );
    assert_eq!(
        fired[2],
        Fired::Stale {
            last: Timestamp::from_millis(-9)
        }
    );
    // seen_at: a registration never moves it back; pruning compares it exactly.
    let entry = ScheduleEntry::new("far", "every 60s", "UTC", "t");
    for at in [far + 1, far] {
        store
            .register_schedules(
                std::slice::from_ref(&entry),
                &RegisterOptions::new(Timestamp::from_millis(at)),
            )
            .await
            .unwrap();
    }
    let pruned = store
        .prune_schedules(&PruneSchedulesOptions::new(Timestamp::from_millis(far + 1)))
        .await
        .unwrap();
    // "old" was seen at 1 (its first fire's now); "far" at far + 1 stays.
    assert_eq!(pruned, 1);
    let listed = store.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].seen_at, Timestamp::from_millis(far + 1));
}
