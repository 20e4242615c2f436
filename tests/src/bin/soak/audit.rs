//! The audit at the end of a soak: every acknowledged task against its plan, the run
//! records and the store's final records and counters.

use crate::plan::{Plan, PLANNED_FAILURE, TIMEOUT};
use crate::record::{Ended, Log, TaskLog};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use taskmill::store::ListOptions;
use taskmill::{Queue, Store, TaskRecord};

/// What the audit counted, and every violation it found.
#[derive(Debug, Default)]
pub struct Audit {
    /// Acknowledged tasks.
    pub tasks: u64,
    /// Tasks the store holds whose enqueue was never acknowledged (a kill mid-enqueue).
    pub unacked: u64,
    /// Runs that began (`start` lines).
    pub runs: u64,
    /// Acknowledged tasks COMPLETED, DEAD and CANCELLED.
    pub completed: u64,
    /// DEAD.
    pub dead: u64,
    /// CANCELLED.
    pub cancelled: u64,
    /// Cancels that found the task waiting, running, or finished (refused).
    pub cancels: (u64, u64, u64),
    /// Runs that timed out, from the records' errors.
    pub timeouts: u64,
    /// Retries, from the store's counter.
    pub retried: u64,
    /// Recoveries of expired leases, from the store's counter.
    pub recovered: u64,
    /// Tasks that succeeded more than once.
    pub duplicates: u64,
    /// … of which every earlier success ran in a process killed later.
    pub explained_by_kills: u64,
    /// … of which an earlier success outlived the timeout (its end was written, then the
    /// manager timed it out).
    pub explained_by_timeouts: u64,
    /// Acknowledged tasks not in the final state their plan and records require.
    pub lost: u64,
    /// Every violation, by kind (at most 20 examples each).
    pub violations: BTreeMap<&'static str, (u64, Vec<String>)>,
}

impl Audit {
    fn violation(&mut self, kind: &'static str, example: String) {
        let entry = self.violations.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < 20 {
            entry.1.push(example);
        }
    }

    fn lost(&mut self, kind: &'static str, example: String) {
        self.lost += 1;
        self.violation(kind, example);
    }

    /// Whether nothing was violated.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Every record the store holds, by id.
async fn all_records(store: &dyn Store) -> HashMap<u64, TaskRecord> {
    let mut all = HashMap::new();
    for queue in Queue::ALL {
        let mut opts = ListOptions::new(queue).limit(1000);
        loop {
            let page = store.list(&opts).await.expect("list the store");
            for record in page.tasks {
                all.insert(record.id.get(), record);
            }
            match page.next {
                Some(next) => opts = opts.after(next),
                None => break,
            }
        }
    }
    all
}

/// Whether an earlier success of a task is accounted for: it ran in a process killed after
/// it started, or it outlived the timeout (the manager timed it out after its `end` line).
fn explained(run: &Ended, killed: &HashMap<u32, u128>) -> (bool, bool) {
    let by_kill = killed.get(&run.pid).is_some_and(|at| run.start_us < *at);
    let by_timeout = run.end_us - run.start_us >= TIMEOUT.as_micros();
    (by_kill, by_timeout)
}

/// Audits the store after a soak seeded with `seed`, against `log`, with `killed` the pid
/// and time of every kill.
pub async fn audit(
    store: &Arc<dyn Store>,
    log: &Log,
    killed: &HashMap<u32, u128>,
    seed: u64,
) -> Audit {
    let mut audit = Audit::default();
    let records = all_records(&**store).await;
    // Every stored task by its number: a number stored twice is a double enqueue.
    let mut by_number: HashMap<u64, &TaskRecord> = HashMap::new();
    for record in records.values() {
        let Ok(n) = record.args.decode::<u64>() else {
            audit.violation("undecodable args", format!("{record:?}"));
            continue;
        };
        if let Some(other) = by_number.insert(n, record) {
            audit.violation(
                "number stored twice",
                format!("task {n}: ids {} and {}", other.id, record.id),
            );
        }
        if matches!(record.queue, Queue::Input | Queue::Work) {
            audit.violation(
                "left in input or work",
                format!("task {n} id {} in {}", record.id, record.queue),
            );
        }
    }
    for (n, task) in &log.tasks {
        audit.runs += task.starts.len() as u64;
        match task.acked {
            Some(id) => {
                audit.tasks += 1;
                check_task(&mut audit, seed, *n, id, task, records.get(&id), killed);
            }
            None if by_number.contains_key(n) => audit.unacked += 1,
            None if !task.starts.is_empty() => {
                audit.violation("a run of a task not in the store", format!("task {n}"))
            }
            None => {}
        }
    }
    // Numbers in the store that no record file mentions at all: their enqueuer was killed
    // before it wrote anything about them.
    audit.unacked += by_number
        .keys()
        .filter(|n| !log.tasks.contains_key(n))
        .count() as u64;
    check_stats(&mut audit, store, records.len() as u64).await;
    audit
}

fn check_task(
    audit: &mut Audit,
    seed: u64,
    n: u64,
    id: u64,
    task: &TaskLog,
    record: Option<&TaskRecord>,
    killed: &HashMap<u32, u128>,
) {
    let plan = Plan::of(seed, n);
    let Some(record) = record else {
        return audit.lost(
            "acknowledged but not in the store",
            format!("task {n} id {id}"),
        );
    };
    if record.args.decode::<u64>().ok() != Some(n) {
        return audit.lost(
            "acknowledged id holds another task",
            format!("task {n} id {id}: {record:?}"),
        );
    }
    let queue = record.queue;
    match queue {
        Queue::Completed => audit.completed += 1,
        Queue::Dead => audit.dead += 1,
        Queue::Cancelled => audit.cancelled += 1,
        Queue::Input | Queue::Work => {
            return audit.lost(
                "stuck in input or work",
                format!("task {n} {plan:?} {queue}"),
            )
        }
        _ => return audit.lost("unknown queue", format!("task {n} {queue}")),
    }
    audit.timeouts += record
        .errors
        .iter()
        .filter(|e| e.message.starts_with("timed out"))
        .count() as u64;
    // What the final queue must be.
    let expected: &[Queue] = match (&plan, &task.cancel) {
        (Plan::Cancel { .. }, Some(call)) => match call.result.as_str() {
            "cancelled" | "requested" => &[Queue::Cancelled],
            "refused-completed" => &[Queue::Completed],
            "refused-cancelled" => &[Queue::Cancelled],
            "error" => &[Queue::Completed, Queue::Cancelled],
            other => {
                return audit.lost(
                    "cancel result not possible for an acknowledged task",
                    format!("task {n}: {other}"),
                )
            }
        },
        // Its enqueuer was killed before the cancel returned (or before it was recorded).
        (Plan::Cancel { .. }, None) => &[Queue::Completed, Queue::Cancelled],
        (p, _) if p.dies() => &[Queue::Dead],
        _ => &[Queue::Completed],
    };
    if !expected.contains(&queue) {
        return audit.lost(
            "wrong final queue",
            format!(
                "task {n} {plan:?} cancel {:?}: {queue}, expected {expected:?}; errors {:?}",
                task.cancel, record.errors
            ),
        );
    }
    if let Some(call) = &task.cancel {
        match call.result.as_str() {
            "cancelled" => audit.cancels.0 += 1,
            "requested" => audit.cancels.1 += 1,
            _ => audit.cancels.2 += 1,
        }
        // Cancelled while waiting: nothing may start after the cancel returned.
        if call.result == "cancelled" {
            if let Some(start) = task.starts.iter().find(|s| s.2 > call.after_us) {
                audit.violation(
                    "ran after a cancel of a waiting task",
                    format!("task {n}: start {start:?} after {call:?}"),
                );
            }
        }
    }
    if queue == Queue::Completed && task.ends.is_empty() {
        audit.violation(
            "completed with no recorded success",
            format!("task {n} {plan:?}: {record:?}"),
        );
    }
    if queue == Queue::Dead {
        if record.attempt != plan.retries() + 1 {
            audit.violation(
                "dead with attempts left",
                format!(
                    "task {n}: attempt {} of {}",
                    record.attempt,
                    plan.retries() + 1
                ),
            );
        }
        if !task.ends.is_empty() {
            audit.violation("dead after a success", format!("task {n}: {:?}", task.ends));
        }
        if record.errors.is_empty() {
            audit.violation("dead with no error", format!("task {n}"));
        }
    }
    if let Plan::Flaky { fails } = plan {
        let planned = record
            .errors
            .iter()
            .filter(|e| &*e.message == PLANNED_FAILURE)
            .count() as u32;
        if planned > fails {
            audit.violation(
                "more planned failures than planned",
                format!("task {n}: {planned} > {fails}"),
            );
        }
    }
    if task.ends.len() > 1 {
        audit.duplicates += 1;
        let mut ends = task.ends.clone();
        ends.sort_by_key(|e| e.end_us);
        let earlier = &ends[..ends.len() - 1];
        let why: Vec<(bool, bool)> = earlier.iter().map(|e| explained(e, killed)).collect();
        if why.iter().all(|(kill, _)| *kill) {
            audit.explained_by_kills += 1;
        } else if why.iter().all(|(kill, timeout)| *kill || *timeout) {
            audit.explained_by_timeouts += 1;
        } else {
            audit.violation(
                "duplicate not explained by a kill",
                format!("task {n}: successes {ends:?}"),
            );
        }
    }
}

/// The store's counters and queue sizes against its records: nothing was pruned, deleted
/// or requeued, so every task enqueued is in one finished queue, counted once.
async fn check_stats(audit: &mut Audit, store: &Arc<dyn Store>, records: u64) {
    let stats = store
        .stats(&taskmill_testkit::all_due())
        .await
        .expect("stats");
    let (c, s) = (stats.total.counters, stats.total.sizes);
    audit.retried = c.retried;
    audit.recovered = c.recovered;
    let mut check = |ok: bool, what: &str| {
        if !ok {
            audit.violation("stats inconsistent", format!("{what}: {c:?} {s:?}"));
        }
    };
    check(s.input == 0 && s.work == 0, "input and work empty");
    check(s.total() == records, "sizes add up to the records listed");
    check(c.enqueued == records, "enqueued = records");
    check(c.completed == s.completed, "completed counter = COMPLETED");
    check(c.failed == s.dead, "failed counter = DEAD");
    check(c.cancelled == s.cancelled, "cancelled counter = CANCELLED");
    // Every claim ended once: completed, retried, released or recovered, or failed or
    // cancelled from WORK (those two also count tasks that never ran, or were recovered).
    let ended = c.completed + c.retried + c.released + c.recovered;
    check(
        ended <= c.started && c.started <= ended + c.failed + c.cancelled,
        "every claim ended once",
    );
}
