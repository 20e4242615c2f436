//! Schedules in the sled store: their states survive a reopen exactly (they are stored,
//! one `r` entry each, and read back into memory at open), a fire after a reopen decides
//! on the stored last tick and on the queue its last task is in now, a fired task is
//! stored beside enqueued ones, and a state that cannot be read is left out at open
//! rather than refusing the store.

use futures_util::StreamExt;
use std::path::Path;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired, LeaseRef,
    Outcome, OutcomeKind, PruneSchedulesOptions, RegisterOptions, ScheduleEntry, ScheduleState,
    Tick, TopicClaim,
};
use taskmill_core::{Event, Overlap, Queue, Store, StoreExt, TaskId};
use taskmill_sled::SledStore;
use taskmill_testkit::{at, task};

/// Names a key must carry as they are: separators, spaces, unicode, 128 bytes.
const NAMES: [&str; 4] = ["reports:nightly/eu", "a b", "ünïcödé ⏰", "x"];

fn long_name() -> String {
    "n".repeat(128)
}

fn entry(name: &str) -> ScheduleEntry {
    ScheduleEntry::new(name, "0 3 * * *", "Europe/Paris", "t")
}

fn tick(name: &str, ms: u64, overlap: Overlap) -> Tick {
    Tick::new(name, at(ms), task("t", ms), overlap)
}

async fn fire(store: &SledStore, ticks: Vec<Tick>, now: u64) -> Vec<Fired> {
    store
        .fire(ticks, &EnqueueOptions::new(at(now)))
        .await
        .unwrap()
}

fn new_id(fired: &Fired) -> TaskId {
    match fired {
        Fired::Enqueued(Enqueued::New(id)) => *id,
        other => panic!("not enqueued: {other:?}"),
    }
}

/// Opens the store at `path`, waiting while the previous one's lock is being released.
async fn reopen(path: &Path) -> SledStore {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match SledStore::open(path).await {
            Err(e) if e.kind() == taskmill_core::ErrorKind::Unavailable => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other.unwrap(),
        }
    }
}

#[tokio::test]
async fn schedule_states_survive_a_reopen() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    let long = long_name();
    let (states, fired_task, stats) = {
        let store = SledStore::open(&path).await.unwrap();
        let mut entries: Vec<_> = NAMES.iter().map(|n| entry(n)).collect();
        entries.push(entry(&long));
        let registered = store
            .register_schedules(&entries, &RegisterOptions::new(at(1)))
            .await
            .unwrap();
        assert_eq!(registered.len(), 5);
        assert!(store.set_schedule_paused("a b", true).await.unwrap());
        assert!(!store.set_schedule_paused("unknown", true).await.unwrap());
        let fired = fire(
            &store,
            vec![
                tick(NAMES[0], 100, Overlap::Skip),
                tick("a b", 100, Overlap::Allow),
                // Fired before any registration: created from the tick.
                tick("never registered", 100, Overlap::Allow),
                // The task of the first tick is in INPUT: skipped, in the same batch.
                tick(NAMES[0], 200, Overlap::Skip),
            ],
            150,
        )
        .await;
        let first = new_id(&fired[0]);
        assert_eq!(fired[1], Fired::Paused);
        new_id(&fired[2]);
        assert_eq!(fired[3], Fired::Overlapped { running: first });
        let states = store.schedules().await.unwrap();
        let mut names: Vec<_> = states.iter().map(|s| s.name.to_string()).collect();
        let sorted = {
            let mut sorted = names.clone();
            sorted.sort();
            sorted
        };
        assert_eq!(names, sorted, "listed by name");
        names.retain(|n| n == "never registered");
        assert_eq!(names.len(), 1);
        let s0 = states.iter().find(|s| &*s.name == NAMES[0]).unwrap();
        assert_eq!(
            (s0.last_tick, s0.last_task, s0.fired_at),
            (Some(at(200)), Some(first), Some(at(150)))
        );
        (
            states,
            first,
            store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        )
    };

    let store = reopen(&path).await;
    assert_eq!(store.schedules().await.unwrap(), states);
    assert_eq!(
        store.stats(&taskmill_testkit::all_due()).await.unwrap(),
        stats
    );
    let record = store.get(fired_task).await.unwrap().unwrap();
    assert_eq!((record.queue, &*record.topic), (Queue::Input, "t"));
    // The stored last tick: a tick no later is stale, whoever fires it.
    let stale = fire(&store, vec![tick(NAMES[0], 200, Overlap::Allow)], 300).await;
    assert_eq!(stale, [Fired::Stale { last: at(200) }]);
    // The last task, claimed, is in WORK: still an overlap; once completed, it fires.
    let claim = ClaimOptions::new([TopicClaim::new("t")], 10, "m1", at(300));
    let claimed = store.claim(&claim).await.unwrap();
    let Some(Claimed::Ready(running)) = claimed.iter().find(|c| match c {
        Claimed::Ready(r) => r.id == fired_task,
        _ => false,
    }) else {
        panic!("the fired task was not claimed: {claimed:?}");
    };
    let skipped = fire(&store, vec![tick(NAMES[0], 300, Overlap::Skip)], 300).await;
    assert_eq!(
        skipped,
        [Fired::Overlapped {
            running: fired_task
        }]
    );
    let done = Outcome::new(LeaseRef::of(running), OutcomeKind::complete());
    let applied = store.apply(&[done], &ApplyOptions::new(at(310))).await;
    assert_eq!(applied.unwrap(), [Applied::Done]);
    let next = fire(&store, vec![tick(NAMES[0], 400, Overlap::Skip)], 400).await;
    let next = new_id(&next[0]);
    assert!(next > fired_task);
    // Resumed, the paused schedule fires its next tick, not the ones of the pause.
    assert!(store.set_schedule_paused("a b", false).await.unwrap());
    new_id(&fire(&store, vec![tick("a b", 400, Overlap::Allow)], 400).await[0]);
    // A registration keeps the ticks and the pause, and replaces the rest.
    assert!(store.set_schedule_paused(&long, true).await.unwrap());
    let changed = ScheduleEntry::new(&*long, "@hourly", "UTC", "u");
    store
        .register_schedules(&[changed], &RegisterOptions::new(at(500)))
        .await
        .unwrap();
    let before = store.schedules().await.unwrap();
    let l = before.iter().find(|s| *s.name == *long).unwrap();
    assert_eq!(
        (&*l.spec, &*l.zone, &*l.topic, l.paused, l.seen_at),
        ("@hourly", "UTC", "u", true, at(500))
    );
    drop(store);

    let store = reopen(&path).await;
    assert_eq!(store.schedules().await.unwrap(), before);
    // Pruned: the states seen before 500 go, their tasks stay; and so after a reopen.
    let pruned = store
        .prune_schedules(&PruneSchedulesOptions::new(at(500)))
        .await
        .unwrap();
    assert_eq!(pruned, 5);
    let left: Vec<ScheduleState> = store.schedules().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(*left[0].name, *long);
    assert!(store.get(next).await.unwrap().is_some());
    drop(store);
    let store = reopen(&path).await;
    assert_eq!(store.schedules().await.unwrap(), left);
    assert!(store.get(next).await.unwrap().is_some());
}

/// A fired task is enqueued as `enqueue` does it: beside the tasks of an enqueue, with
/// its unique key checked against theirs, its event carrying the tick.
#[tokio::test]
async fn a_fired_task_is_an_enqueued_one() {
    let dir = taskmill_testkit::temp_dir();
    let store = SledStore::open(dir.path().join("db")).await.unwrap();
    let mut events = store.subscribe().await.unwrap();
    let held = store
        .enqueue_one(task("t", 0).unique_key("k"), &EnqueueOptions::new(at(0)))
        .await
        .unwrap();
    let with_key = Tick::new("s", at(1_000), task("t", 1).unique_key("k"), Overlap::Allow);
    let fired = fire(&store, vec![with_key], 1_000).await;
    // A duplicate is fired all the same: it is the schedule's last task.
    assert_eq!(fired, [Fired::Enqueued(Enqueued::Duplicate(held.id()))]);
    let state = &store.schedules().await.unwrap()[0];
    assert_eq!(
        (state.last_tick, state.last_task),
        (Some(at(1_000)), Some(held.id()))
    );
    // The headers `Schedule::task_for` gives a fired task.
    let fired_task = task("t", 2)
        .header(taskmill_core::SCHEDULE_HEADER, "s")
        .and_then(|t| t.header(taskmill_core::TICK_HEADER, at(2_000).to_string()))
        .unwrap();
    let tick = Tick::new("s", at(2_000), fired_task, Overlap::Allow);
    let id = new_id(&fire(&store, vec![tick], 2_000).await[0]);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(
        (stats.total.counters.enqueued, stats.total.sizes.input),
        (2, 2)
    );
    let first = events.next().await.unwrap();
    assert!(matches!(first, Event::TaskEnqueue { id, tick: None, .. } if id == held.id()));
    match events.next().await.unwrap() {
        Event::TaskEnqueue {
            id: event_id,
            tick: Some(t),
            ..
        } => {
            assert_eq!(event_id, id);
            assert_eq!((&*t.schedule, t.tick), ("s", at(2_000)));
        }
        other => panic!("not the fired task's enqueue: {other:?}"),
    }
}

/// A state whose bytes cannot be read is left out at open (with a warning), the other
/// schedules and the tasks read as usual, and the next registration stores it anew.
#[tokio::test]
async fn a_corrupt_schedule_state_is_left_out_at_open() {
    let dir = taskmill_testkit::temp_dir();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).await.unwrap();
        let entries = [entry("good"), entry("bad")];
        let opts = RegisterOptions::new(at(1));
        store.register_schedules(&entries, &opts).await.unwrap();
        fire(&store, vec![tick("bad", 10, Overlap::Allow)], 10).await;
    }
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("taskmill").unwrap();
        let value = tree.get(b"rbad").unwrap().expect("stored under r + name");
        tree.insert(b"rbad", &value[..value.len() / 2]).unwrap();
        db.flush().unwrap();
    }
    let store = reopen(&path).await;
    let states = store.schedules().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(&*states[0].name, "good");
    assert_eq!(
        store
            .stats(&taskmill_testkit::all_due())
            .await
            .unwrap()
            .total
            .sizes
            .input,
        1
    );
    let again = store
        .register_schedules(&[entry("bad")], &RegisterOptions::new(at(20)))
        .await
        .unwrap();
    assert_eq!(again[0].last_tick, None);
    drop(store);
    let store = reopen(&path).await;
    let names: Vec<_> = store
        .schedules()
        .await
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, ["bad", "good"]);
}

/// Clones firing the same ticks at once (the managers of one process): each tick is
/// enqueued once, whichever clone's command the writer thread runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_firing_the_same_tick_enqueue_it_once() {
    let dir = taskmill_testkit::temp_dir();
    let store = SledStore::open(dir.path().join("db")).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut fired = Vec::new();
            for ms in 1..=20 {
                fired.extend(fire(&store, vec![tick("s", ms, Overlap::Allow)], ms).await);
            }
            fired
        }));
    }
    let mut enqueued = 0;
    for handle in handles {
        for fired in handle.await.unwrap() {
            match fired {
                Fired::Enqueued(Enqueued::New(_)) => enqueued += 1,
                Fired::Stale { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(enqueued, 20);
    let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
    assert_eq!(stats.total.sizes.input, 20);
    let state = &store.schedules().await.unwrap()[0];
    assert_eq!(state.last_tick, Some(at(20)));
}
