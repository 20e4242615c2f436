//! Faults under a running manager: a manager on a [`FaultyStore`] over the store under test
//! runs a few thousand tasks while a few percent of its store calls fail, come back late,
//! lose their reply or are dropped in flight; then the faults stop, the store settles, and
//! an outage longer than the lease in the middle; then the faults stop, the store
//! settles, and an audit from the unfaulted store checks that every task ended where its processor's
//! outcome says, none lost or stuck, with counters that add up.
//!
//! `TASKMILL_FAULT_SEED` repeats a run's faults (the check prints its seed);
//! `TASKMILL_FAULT_TASKS` sets the number of tasks (default 2000), `TASKMILL_FAULT_RATE`
//! the share of faulty calls (default 0.04).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskmill_core::store::{Cancellation, ListOptions};
use taskmill_core::{
    Backoff, Client, Manager, Queue, Stats, Store, Task, TaskContext, TaskError, TaskId,
    TaskRecord, TopicOptions, LEASE_EXPIRED_ERROR,
};
use taskmill_testkit::{FaultRates, FaultyStore};
use tokio::time::Instant;

/// Short, so that the claims faults strand come back within the check's time.
const LEASE: Duration = Duration::from_secs(2);
/// The share of store calls that get a fault while faults are on, unless
/// `TASKMILL_FAULT_RATE` says otherwise.
const FAULT_RATE: f64 = 0.04;
/// Faults stay on until this share of the tasks has finished, or [`PROCESSING`] is over.
const PROCESSING_SHARE: f64 = 0.9;
const PROCESSING: Duration = Duration::from_secs(20);
/// How long the store may take to settle once faults are off: a few leases for the last
/// stranded claims to be reaped, and the rest of the work.
const SETTLE: Duration = Duration::from_secs(30);
const CONCURRENCY: usize = 16;
/// Once this share of the tasks has finished, the store is down for [`OUTAGE`].
const OUTAGE_SHARE: f64 = 0.25;
/// Longer than the lease: renewals fail until runs lose their leases, and the flusher
/// gives up on outcomes it cannot store, so the reaper brings those tasks back and they
/// run again (at least once).
const OUTAGE: Duration = Duration::from_millis(3000);

/// A flaky task fails its first runs, then succeeds.
const FLAKY_FAILURES: u32 = 2;
/// Retries of the topics whose tasks must complete: far more than their processors use,
/// so that faults (each stranded claim costs an attempt) cannot exhaust them.
const GENEROUS_RETRIES: u32 = 20;
/// A doomed task fails every run; it ends DEAD after its attempts.
const DOOMED_RETRIES: u32 = 2;
/// The slow topic's timeout; its tasks `n % 3 == 0` outrun it on their first run.
const SLOW_TIMEOUT: Duration = Duration::from_millis(100);
/// Held tasks wait for their cancel; at most this many run at once, so they never take all
/// the workers.
const HELD_RUNNING: u32 = 4;
/// Who cancels the held tasks.
const CANCELLER: &str = "fault-check";

/// What a task's processor does, and so where it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Succeeds at once, setting its argument as its result.
    Ok,
    /// Fails [`FLAKY_FAILURES`] runs, then succeeds.
    Flaky,
    /// Outruns its timeout on its first run when `n % 3 == 0`, then succeeds.
    Slow,
    /// Always fails: DEAD.
    Doomed,
    /// Waits until cancelled (through a client on the unfaulted store): CANCELLED.
    Held,
}

const KINDS: [Kind; 5] = [Kind::Ok, Kind::Flaky, Kind::Slow, Kind::Doomed, Kind::Held];

impl Kind {
    fn of(i: u64) -> Kind {
        if i % 50 == 49 {
            return Kind::Held;
        }
        match i % 10 {
            0..=3 => Kind::Ok,
            4 | 5 => Kind::Flaky,
            6 | 7 => Kind::Slow,
            _ => Kind::Doomed,
        }
    }

    fn topic(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Flaky => "flaky",
            Kind::Slow => "slow",
            Kind::Doomed => "doomed",
            Kind::Held => "held",
        }
    }

    fn end(self) -> Queue {
        match self {
            Kind::Ok | Kind::Flaky | Kind::Slow => Queue::Completed,
            Kind::Doomed => Queue::Dead,
            Kind::Held => Queue::Cancelled,
        }
    }

    /// The runs task `n` needs to reach its end (held tasks: none, they may be cancelled
    /// before they run).
    fn runs_needed(self, n: u64) -> u32 {
        match self {
            Kind::Ok => 1,
            Kind::Flaky => FLAKY_FAILURES + 1,
            Kind::Slow if n % 3 == 0 => 2,
            Kind::Slow => 1,
            Kind::Doomed => DOOMED_RETRIES + 1,
            Kind::Held => 0,
        }
    }

    fn options(self) -> TopicOptions {
        match self {
            Kind::Ok | Kind::Flaky => TopicOptions::new().retries(GENEROUS_RETRIES),
            Kind::Slow => TopicOptions::new()
                .retries(GENEROUS_RETRIES)
                .timeout(SLOW_TIMEOUT),
            Kind::Doomed => TopicOptions::new().retries(DOOMED_RETRIES),
            Kind::Held => TopicOptions::new()
                .retries(GENEROUS_RETRIES)
                .max_running(HELD_RUNNING),
        }
    }
}

/// The runs each task's processor saw (a run is a call of the processor).
type Runs = Arc<Mutex<HashMap<TaskId, u32>>>;

/// Counts a run of `id`; its number, from 1.
fn count_run(runs: &Runs, id: TaskId) -> u32 {
    let mut runs = runs.lock().unwrap();
    let n = runs.entry(id).or_default();
    *n += 1;
    *n
}

fn register(manager: &Manager, kind: Kind, runs: Runs, held_started: Arc<AtomicU32>) {
    manager
        .register(kind.topic(), move |ctx: TaskContext| {
            let run = count_run(&runs, ctx.id());
            let held_started = held_started.clone();
            async move {
                let n: u64 = ctx.args()?;
                match kind {
                    Kind::Ok => {
                        ctx.set_result(&n)?;
                        Ok(())
                    }
                    Kind::Flaky if run <= FLAKY_FAILURES => {
                        // Progress goes out on the faulty bus: its failure is not the run's.
                        let _ = ctx.progress(&run).await;
                        Err(TaskError::msg(format!("flaky run {run}")))
                    }
                    Kind::Flaky => Ok(()),
                    Kind::Slow => {
                        let outrun = n % 3 == 0 && run == 1;
                        let took = match outrun {
                            true => SLOW_TIMEOUT * 3,
                            false => SLOW_TIMEOUT / 10,
                        };
                        tokio::time::sleep(took).await;
                        Ok(())
                    }
                    Kind::Doomed => Err(TaskError::msg(format!("doomed run {run}"))),
                    Kind::Held => {
                        held_started.fetch_add(1, Ordering::SeqCst);
                        ctx.cancelled().await;
                        Ok(())
                    }
                }
            }
        })
        .unwrap();
}

/// The value of the environment variable `var`, or `default` when it is unset.
fn from_env<T: std::str::FromStr>(var: &str, default: T) -> T {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={s:?} does not parse")),
        Err(_) => default,
    }
}

/// Every record in `queue`, paging through the unfaulted store.
async fn list_all(store: &dyn Store, queue: Queue) -> Vec<TaskRecord> {
    let mut all = Vec::new();
    let mut opts = ListOptions::new(queue).limit(500);
    loop {
        let page = store.list(&opts).await.expect("list");
        all.extend(page.tasks);
        match page.next {
            Some(next) => opts = ListOptions::new(queue).limit(500).after(next),
            None => return all,
        }
    }
}

/// Tasks at their end (COMPLETED, DEAD, CANCELLED), and those still waiting or running.
fn finished_and_active(stats: &Stats) -> (u64, u64) {
    let s = &stats.total.sizes;
    (s.completed + s.dead + s.cancelled, s.input + s.work)
}

checks!(
    mod faults;

    /// A manager on a store with a few percent of faulty calls (failures, late answers,
    /// lost replies, calls dropped in flight) and an outage longer than its lease runs every task to the end its processor
    /// gives it: completed, dead or cancelled, none lost or left in INPUT or WORK, with
    /// counters that match the queues, and extra runs only where a lost lease explains them.
    pub async fn manager_survives_store_faults(store: Arc<dyn Store>) {
        let total: u64 = from_env("TASKMILL_FAULT_TASKS", 2000);
        let rate: f64 = from_env("TASKMILL_FAULT_RATE", FAULT_RATE);
        let faulty = FaultyStore::new(store.clone(), FaultRates::total(rate));
        let seed = faulty.seed();
        println!(
            "fault seed {seed} (TASKMILL_FAULT_SEED={seed} repeats it), {total} tasks, \
             {rate} of calls faulty"
        );
        let on_faulty: Arc<dyn Store> = Arc::new(faulty.clone());
        let mut builder = Manager::builder_shared(on_faulty)
            .concurrency(CONCURRENCY)
            .poll_interval(Duration::from_millis(50))
            .lease(LEASE)
            .renew_interval(Duration::from_millis(200))
            .reap_interval(Duration::from_millis(100))
            .progress_interval(Duration::from_millis(100))
            .stats_interval(Some(Duration::from_millis(500)))
            .backoff(Backoff::constant(Duration::from_millis(10)));
        for kind in KINDS {
            builder = builder.topic(kind.topic(), kind.options());
        }
        let manager = builder.build();
        let runs: Runs = Arc::default();
        let held_started = Arc::new(AtomicU32::new(0));
        for kind in KINDS {
            register(&manager, kind, runs.clone(), held_started.clone());
        }

        // Enqueued through the faulty store: enqueue only fails before it adds anything,
        // so a failed batch is sent again whole.
        let mut kinds: BTreeMap<TaskId, (Kind, u64)> = BTreeMap::new();
        let all: Vec<(Kind, u64)> = (0..total).map(|i| (Kind::of(i), i)).collect();
        for batch in all.chunks(200) {
            let tasks = || -> Vec<Task> {
                batch
                    .iter()
                    .map(|(kind, n)| Task::new(kind.topic(), n).unwrap())
                    .collect()
            };
            let mut tries = 0;
            let enqueued = loop {
                match manager.enqueue_batch(tasks()).await {
                    Ok(enqueued) => break enqueued,
                    Err(e) => {
                        tries += 1;
                        assert!(tries < 20, "enqueue keeps failing: {e}");
                    }
                }
            };
            for (e, (kind, n)) in enqueued.iter().zip(batch) {
                assert!(e.is_new(), "task {n} was enqueued twice");
                kinds.insert(e.id(), (*kind, *n));
            }
        }
        assert_eq!(kinds.len() as u64, total, "two tasks got the same id");
        let held: Vec<TaskId> = kinds
            .iter()
            .filter(|(_, (kind, _))| *kind == Kind::Held)
            .map(|(id, _)| *id)
            .collect();

        let started_at = Instant::now();
        manager.start().await.unwrap();

        // Processing, faults on. The held tasks are cancelled, through a client on the
        // unfaulted store, once a few of them run: those end CANCELLED from WORK, the rest
        // from INPUT.
        let phase_end = started_at + PROCESSING;
        let first_held = (held.len() as u32).min(HELD_RUNNING);
        while held_started.load(Ordering::SeqCst) < first_held && Instant::now() < phase_end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let canceller = Client::shared(store.clone()).by(CANCELLER);
        let mut requested = 0;
        for c in canceller.cancel(&held).await.unwrap() {
            match c {
                Cancellation::Cancelled => {}
                Cancellation::Requested => requested += 1,
                // A held task only finishes by its cancel.
                other => panic!("a held task could not be cancelled: {other:?}"),
            }
        }
        let finished_share = |share: f64| {
            let store = store.clone();
            async move {
                let (finished, _) =
                    finished_and_active(&store.stats(&taskmill_testkit::all_due()).await.unwrap());
                finished >= (total as f64 * share) as u64
            }
        };
        while !finished_share(OUTAGE_SHARE).await && Instant::now() < phase_end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The outage's length is the fault itself, not a wait for something to happen.
        faulty.set_outage(true);
        tokio::time::sleep(OUTAGE).await;
        faulty.set_outage(false);
        let enough = (total as f64 * PROCESSING_SHARE) as u64;
        loop {
            let (finished, _) =
                finished_and_active(&store.stats(&taskmill_testkit::all_due()).await.unwrap());
            if finished >= enough || Instant::now() >= phase_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        faulty.set_enabled(false);
        let processed_in = started_at.elapsed();
        let counts = faulty.counts();
        println!("faults on for {processed_in:?}: {counts}");

        // Settling, faults off: claims stranded by the faults come back when their leases
        // expire, and the manager finishes them.
        let settle_end = Instant::now() + SETTLE;
        loop {
            let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
            let (finished, active) = finished_and_active(&stats);
            if finished == total && active == 0 {
                break;
            }
            if Instant::now() >= settle_end {
                let mut stuck = list_all(&*store, Queue::Input).await;
                stuck.extend(list_all(&*store, Queue::Work).await);
                stuck.truncate(10);
                panic!(
                    "seed {seed}: the store did not settle within {SETTLE:?} of the faults \
                     ending: {finished} of {total} tasks finished, {active} active.\n\
                     faults: {counts}\nstats: {:?}\nfirst stuck tasks: {stuck:#?}",
                    stats.total
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let settled_in = started_at.elapsed();
        manager
            .close()
            .await
            .expect("the manager's loops ended cleanly (none panicked)");

        // The audit, from the unfaulted store.
        let mut records: HashMap<TaskId, TaskRecord> = HashMap::new();
        for queue in [
            Queue::Input,
            Queue::Work,
            Queue::Dead,
            Queue::Completed,
            Queue::Cancelled,
        ] {
            for r in list_all(&*store, queue).await {
                assert!(
                    records.insert(r.id, r).is_none(),
                    "a task is listed in two queues"
                );
            }
        }
        let runs = runs.lock().unwrap().clone();
        let stats = store.stats(&taskmill_testkit::all_due()).await.unwrap();
        let mut report = Vec::new();
        for kind in KINDS {
            let topic = kind.topic();
            let ids: Vec<(TaskId, u64)> = kinds
                .iter()
                .filter(|(_, (k, _))| *k == kind)
                .map(|(id, (_, n))| (*id, *n))
                .collect();
            let count = ids.len() as u64;
            // Per topic: claims (attempts) and runs beyond what the outcomes need.
            let (mut attempts, mut runs_total, mut needed, mut unrun_claims) = (0u64, 0, 0, 0);
            for (id, n) in &ids {
                let r = records
                    .get(id)
                    .unwrap_or_else(|| panic!("seed {seed}: {topic} task {id} is lost"));
                let ran = runs.get(id).copied().unwrap_or(0);
                assert_eq!(
                    r.queue,
                    kind.end(),
                    "seed {seed}: {topic} task {id} ended in the wrong queue: {r:#?}"
                );
                // Every run is a claim, and each claim raised the attempt by one.
                assert!(
                    ran <= r.attempt,
                    "seed {seed}: {topic} task {id} ran {ran} times in {} attempts",
                    r.attempt
                );
                match kind {
                    Kind::Ok | Kind::Flaky | Kind::Slow => {
                        assert!(
                            ran >= kind.runs_needed(*n),
                            "seed {seed}: {topic} task {id} completed after {ran} runs"
                        );
                    }
                    Kind::Doomed => {
                        // Dead once its attempts ran out: by its processor's error, or by
                        // the reaper when the last claim was stranded by a fault.
                        assert_eq!(r.attempt, DOOMED_RETRIES + 1, "seed {seed}: {r:#?}");
                        let last = r.last_error().unwrap_or_default();
                        assert!(
                            last.starts_with("doomed run") || last == LEASE_EXPIRED_ERROR,
                            "seed {seed}: doomed task {id} died of {last:?}"
                        );
                    }
                    Kind::Held => {
                        assert_eq!(
                            r.cancelled_by.as_deref(),
                            Some(CANCELLER),
                            "seed {seed}: {r:#?}"
                        );
                    }
                }
                if kind == Kind::Ok {
                    let result = r.result.as_ref().map(|p| p.decode::<u64>().unwrap());
                    assert_eq!(result, Some(*n), "seed {seed}: task {id}'s result");
                }
                attempts += u64::from(r.attempt);
                runs_total += u64::from(ran);
                needed += u64::from(kind.runs_needed(*n));
                unrun_claims += u64::from(r.attempt - ran);
            }
            let t = stats.topic(topic);
            let (c, s) = (t.counters, t.sizes);
            assert_eq!(
                (s.input, s.work, s.of(kind.end())),
                (0, 0, count),
                "seed {seed}: {topic} sizes {s:?}"
            );
            assert_eq!(c.enqueued, count, "seed {seed}: {topic} {c:?}");
            // Nothing was released: the manager closed with nothing running, and a run
            // stopped by its cancel ends CANCELLED, not released.
            assert_eq!(c.released, 0, "seed {seed}: {topic} {c:?}");
            // Each claim counts `started` and raises the attempt by one; only a release
            // lowers it again, and there were none.
            assert_eq!(c.started, attempts, "seed {seed}: {topic} {c:?}");
            // Each task reached its end once: a second end needs a second lease, and an
            // ended task is never claimed again.
            let ends = |q: Queue| if kind.end() == q { count } else { 0 };
            assert_eq!(
                (c.completed, c.failed, c.cancelled),
                (
                    ends(Queue::Completed),
                    ends(Queue::Dead),
                    ends(Queue::Cancelled)
                ),
                "seed {seed}: {topic} {c:?}"
            );
            match kind {
                Kind::Ok | Kind::Flaky | Kind::Slow => {
                    // Every claim ended in exactly one counted move: completed, retried, or
                    // recovered by the reaper (a stale outcome counts nothing).
                    assert_eq!(
                        c.started,
                        c.completed + c.retried + c.recovered,
                        "seed {seed}: {topic} {c:?}"
                    );
                    // A claim no processor ran (its reply lost or dropped) ends only by the
                    // reaper; so does a run whose successful outcome was never stored,
                    // which is the only cause of a run beyond those needed. Both are
                    // distinct claims, each recovered once.
                    assert!(
                        c.recovered >= unrun_claims + (runs_total - needed),
                        "seed {seed}: {topic}: {unrun_claims} claims never ran and \
                         {} extra runs, but only {} recoveries",
                        runs_total - needed,
                        c.recovered
                    );
                    // Retries come from failing runs only, one per run at most.
                    let failing_runs: u64 = ids
                        .iter()
                        .map(|(_, n)| u64::from(kind.runs_needed(*n) - 1))
                        .sum();
                    assert!(
                        c.retried <= failing_runs,
                        "seed {seed}: {topic}: {} retries of {failing_runs} failing runs",
                        c.retried
                    );
                }
                Kind::Doomed => {
                    // Every claim ended in one move, except that a recovery into DEAD
                    // counts both `recovered` and `failed`: the excess is those, at most
                    // one per task and never more than the recoveries.
                    let excess = (c.retried + c.failed + c.recovered)
                        .checked_sub(c.started)
                        .unwrap_or_else(|| {
                            panic!("seed {seed}: {topic}: a claim ended uncounted: {c:?}")
                        });
                    assert!(
                        excess <= c.recovered.min(c.failed),
                        "seed {seed}: {topic} {c:?}"
                    );
                }
                Kind::Held => {
                    // Held runs never complete or retry: each claim ended cancelled (its
                    // run stopped, or the reaper) or recovered back to INPUT.
                    assert_eq!((c.completed, c.retried), (0, 0), "seed {seed}: {c:?}");
                    assert!(
                        c.started <= c.recovered + c.cancelled,
                        "seed {seed}: {topic} {c:?}"
                    );
                }
            }
            // Held tasks need no run: any they had is "beyond the needed".
            report.push(format!(
                "{topic}: {count} tasks, started {}, retried {}, recovered {}, runs {runs_total} \
                 ({} beyond the needed), {unrun_claims} claims never ran",
                c.started,
                c.retried,
                c.recovered,
                runs_total.saturating_sub(needed)
            ));
        }
        // Nothing else in the store.
        assert_eq!(
            records.len() as u64,
            total,
            "seed {seed}: tasks nobody enqueued"
        );
        assert_eq!(stats.total.counters.enqueued, total);
        // The reaper only has leases to recover if a fault cost one: a lost or dropped
        // claim, or renewals and outcomes that failed (the outage) until the lease ran out.
        let lease_faults: u64 = ["claim", "renew", "apply", "progress"]
            .iter()
            .map(|m| counts.of_method(m))
            .sum();
        assert!(
            stats.total.counters.recovered == 0 || lease_faults > 0,
            "seed {seed}: {} recoveries without a fault to explain them",
            stats.total.counters.recovered
        );
        println!(
            "settled in {settled_in:?}; {requested} held tasks cancelled while running\n{}",
            report.join("\n")
        );
    }
);
