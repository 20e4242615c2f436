//! A model-based test of the Store contract: random sequences of every queue operation
//! (schedule fires and pauses among them) on synthetic time, each step checked against a reference model written here from the
//! `# Behavior` sections of [`Store`] (not from any backend).
//!
//! After every step the store must agree with the model on what the step returned, on
//! each topic's counters, queue sizes, paused flag and earliest `run_at`, and on every
//! task's queue, attempt, due time, retry limit, lease, cancel request, error count,
//! result and progress; a removed task must be gone. Every few steps, and at the end,
//! each queue of each topic is paged through three tasks at a time and must list exactly
//! the model's tasks in id order. A failure is shrunk by proptest to a short sequence, which
//! the panic prints.
//!
//! `cargo test` runs [`DEFAULT_CASES`] sequences per backend from a fixed seed. More:
//! `TASKMILL_MODEL_CASES=2000 TASKMILL_MODEL_SEED=7 cargo test -p taskmill-tests -- model`
//! (any seed; the failure message names the one it used). Each case adds two topics to
//! the store, and Redis's stats read every topic, so on Redis a long run slows as it goes
//! (300 cases: about 15 minutes, against 15 seconds on SQLite).
//!
//! Every case runs on the one store of its test, on topics of its own (`model-<case>-a`,
//! `-b`), and deletes its tasks when it passes. Prunes use per-topic cutoffs, so they never
//! reach another case's tasks; a failed case (while shrinking) may leave tasks behind,
//! which is why the reaper's answer is filtered to the case's own ids.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use taskmill_core::store::{
    Applied, ApplyOptions, CancelOptions, Cancellation, ClaimOptions, EnqueueOptions, Enqueued,
    Fired, LeaseRef, ListOptions, Outcome, OutcomeKind, Progress, PruneOptions, RecoverOptions,
    RenewOptions, RequeueOptions, Tick, TopicClaim, DEFAULT_MAX_RETRIES,
};
use taskmill_core::{
    Counters, Overlap, Payload, Queue, Schedule, Store, Task, TaskId, TaskRecord, Timestamp,
    TopicStats,
};
use taskmill_testkit::{ready, T0};

/// Sequences per backend in `cargo test`.
pub const DEFAULT_CASES: u32 = 24;

/// The lease of every claim.
const LEASE: Duration = Duration::from_secs(30);

/// Far longer than any case: the retention of every topic but the case's own, so prunes
/// never touch another case's tasks.
const FOREVER: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// One step of a case. Indices pick among what exists when the step runs (modulo its
/// count), so a sequence stays meaningful when shrinking removes steps before it.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(Vec<NewTask>),
    Claim {
        topics: Vec<usize>,
        limit: usize,
        max_running: Option<u32>,
        retries: u32,
    },
    Apply {
        lease: usize,
        kind: Kind,
        keep: bool,
    },
    Renew {
        lease: usize,
    },
    Progress {
        lease: usize,
        value: u8,
    },
    Recover,
    Advance {
        ms: u64,
    },
    Requeue {
        task: usize,
    },
    Delete {
        task: usize,
    },
    Cancel {
        task: usize,
    },
    Pause {
        topic: usize,
        paused: bool,
    },
    Prune {
        retention_ms: u64,
    },
    /// Fires tick `T0 + tick` seconds of the case's schedule `schedule`, whose task goes to
    /// topic `schedule` with unique key `key`.
    Fire {
        schedule: usize,
        tick: u8,
        skip_overlap: bool,
        key: Option<u8>,
    },
    PauseSchedule {
        schedule: usize,
        paused: bool,
    },
}

#[derive(Debug, Clone)]
struct NewTask {
    topic: usize,
    priority: i16,
    delay_ms: Option<u64>,
    key: Option<u8>,
    while_kept: bool,
    retries: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Complete { result: Option<u8> },
    Retry { delay_ms: u64 },
    Dead,
    Release,
}

fn new_task() -> impl Strategy<Value = NewTask> {
    (
        0usize..2,
        -1i16..=1,
        prop::option::weighted(0.3, 0u64..3_000),
        prop::option::weighted(0.4, 0u8..3),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.3, 0u32..3),
    )
        .prop_map(
            |(topic, priority, delay_ms, key, while_kept, retries)| NewTask {
                topic,
                priority,
                delay_ms,
                key,
                while_kept,
                retries,
            },
        )
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => prop::option::weighted(0.3, any::<u8>()).prop_map(|result| Kind::Complete { result }),
        2 => (0u64..2_000).prop_map(|delay_ms| Kind::Retry { delay_ms }),
        1 => Just(Kind::Dead),
        1 => Just(Kind::Release),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let topics = prop_oneof![
        Just(vec![0]),
        Just(vec![1]),
        Just(vec![0, 1]),
        Just(vec![1, 0])
    ];
    prop_oneof![
        4 => vec(new_task(), 1..4).prop_map(Op::Enqueue),
        4 => (topics, 1usize..4, prop::option::weighted(0.3, 1u32..3), 0u32..3).prop_map(
            |(topics, limit, max_running, retries)| Op::Claim { topics, limit, max_running, retries }
        ),
        4 => (any::<usize>(), kind(), prop::bool::weighted(0.8))
            .prop_map(|(lease, kind, keep)| Op::Apply { lease, kind, keep }),
        1 => any::<usize>().prop_map(|lease| Op::Renew { lease }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(lease, value)| Op::Progress { lease, value }),
        1 => Just(Op::Recover),
        2 => prop_oneof![0u64..1_500, 20_000u64..40_000].prop_map(|ms| Op::Advance { ms }),
        1 => any::<usize>().prop_map(|task| Op::Requeue { task }),
        1 => any::<usize>().prop_map(|task| Op::Delete { task }),
        2 => any::<usize>().prop_map(|task| Op::Cancel { task }),
        1 => (0usize..2, any::<bool>()).prop_map(|(topic, paused)| Op::Pause { topic, paused }),
        1 => (0u64..5_000).prop_map(|retention_ms| Op::Prune { retention_ms }),
        2 => (0usize..2, 0u8..6, any::<bool>(), prop::option::weighted(0.3, 0u8..3)).prop_map(
            |(schedule, tick, skip_overlap, key)| Op::Fire { schedule, tick, skip_overlap, key }
        ),
        1 => (0usize..2, any::<bool>())
            .prop_map(|(schedule, paused)| Op::PauseSchedule { schedule, paused }),
    ]
}

/// What the model knows of a schedule.
#[derive(Debug, Clone, Default)]
struct ScheduleModel {
    /// Whether the store holds its state (a tick created it).
    known: bool,
    paused: bool,
    last_tick: Option<Timestamp>,
    last_task: Option<TaskId>,
}

/// What the model knows of a task.
#[derive(Debug, Clone)]
struct Model {
    topic: usize,
    priority: i16,
    run_at: Timestamp,
    queue: Queue,
    attempt: u32,
    max_retries: Option<u32>,
    key: Option<u8>,
    while_kept: bool,
    /// Fencing token and deadline of the lease, while in WORK.
    lease: Option<(u64, Timestamp)>,
    cancel_requested: bool,
    finished_at: Option<Timestamp>,
    errors: usize,
    result: Option<String>,
    progress: Option<String>,
}

impl Model {
    /// Whether the task holds its unique key (the trait docs' rule).
    fn holds_key(&self) -> bool {
        self.key.is_some()
            && match self.queue {
                Queue::Input | Queue::Work | Queue::Dead => true,
                _ => self.while_kept,
            }
    }

    fn owns(&self, token: u64) -> bool {
        self.queue == Queue::Work && self.lease.is_some_and(|(t, _)| t == token)
    }

    fn retry_limit(&self) -> u32 {
        self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    fn finish(&mut self, queue: Queue, now: Timestamp) {
        self.queue = queue;
        self.lease = None;
        self.finished_at = Some(now);
    }
}

/// A case: the store, the case's topics, and the model of everything it did.
struct Case {
    store: Arc<dyn Store>,
    topics: [Arc<str>; 2],
    now: Timestamp,
    tasks: BTreeMap<TaskId, Model>,
    /// Every id the case was given, removed or not.
    ids: Vec<TaskId>,
    /// Every lease handed out, current or stale.
    leases: Vec<LeaseRef>,
    counters: [Counters; 2],
    paused: [bool; 2],
    /// The case's schedules, by name; schedule `i` enqueues into topic `i`.
    schedule_names: [Arc<str>; 2],
    schedules: [ScheduleModel; 2],
}

/// `prop_assert_eq!` with the step in the message.
macro_rules! agree {
    ($store:expr, $model:expr, $($what:tt)+) => {{
        let (store, model) = (&$store, &$model);
        if store != model {
            return Err(TestCaseError::fail(format!(
                "{}: the store says {store:?}, the model {model:?}",
                format!($($what)+)
            )));
        }
    }};
}

/// Fails the case on a store error.
fn ok<T>(result: taskmill_core::Result<T>, what: &str) -> Result<T, TestCaseError> {
    result.map_err(|e| TestCaseError::fail(format!("{what} failed: {e}")))
}

impl Case {
    fn new(store: Arc<dyn Store>) -> Self {
        static CASES: AtomicU64 = AtomicU64::new(0);
        let n = CASES.fetch_add(1, Ordering::Relaxed);
        Case {
            store,
            topics: [format!("model-{n}-a").into(), format!("model-{n}-b").into()],
            now: T0,
            tasks: BTreeMap::new(),
            ids: Vec::new(),
            leases: Vec::new(),
            counters: [Counters::default(); 2],
            paused: [false; 2],
            schedule_names: [
                format!("model-{n}-s0").into(),
                format!("model-{n}-s1").into(),
            ],
            schedules: Default::default(),
        }
    }

    fn topic_of(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| &**t == name)
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match op {
            Op::Enqueue(batch) => self.enqueue(batch).await?,
            Op::Claim {
                topics,
                limit,
                max_running,
                retries,
            } => self.claim(topics, *limit, *max_running, *retries).await?,
            Op::Apply { lease, kind, keep } => {
                let Some(lease) = self.pick_lease(*lease) else {
                    return Ok(());
                };
                let kind = match *kind {
                    Kind::Complete { result } => {
                        OutcomeKind::complete_with(result.map(|r| Payload::new(&r).unwrap()))
                    }
                    Kind::Retry { delay_ms } => {
                        OutcomeKind::retry(now + Duration::from_millis(delay_ms), "again")
                    }
                    Kind::Dead => OutcomeKind::dead("no"),
                    Kind::Release => OutcomeKind::release(),
                };
                let expected = self.apply_model(&lease, &kind, *keep);
                let outcome = Outcome::new(lease.clone(), kind).keep(*keep);
                let got = ok(
                    self.store.apply(&[outcome], &ApplyOptions::new(now)).await,
                    "apply",
                )?;
                agree!(got, vec![expected], "apply to task {}", lease.id);
            }
            Op::Renew { lease } => {
                let Some(lease) = self.pick_lease(*lease) else {
                    return Ok(());
                };
                let deadline = now + LEASE;
                let expected = match self.tasks.get_mut(&lease.id) {
                    Some(t) if t.owns(lease.token) && t.cancel_requested => Applied::Cancelled,
                    Some(t) if t.owns(lease.token) => {
                        t.lease = Some((lease.token, deadline));
                        Applied::Done
                    }
                    _ => Applied::Stale,
                };
                let got = ok(
                    self.store
                        .renew(std::slice::from_ref(&lease), &RenewOptions::new(deadline))
                        .await,
                    "renew",
                )?;
                agree!(got, vec![expected], "renew of task {}", lease.id);
            }
            Op::Progress { lease, value } => {
                let Some(lease) = self.pick_lease(*lease) else {
                    return Ok(());
                };
                let value = Payload::new(value).unwrap();
                let expected = match self.tasks.get_mut(&lease.id) {
                    Some(t) if t.owns(lease.token) => {
                        t.progress = Some(value.as_str().to_owned());
                        match t.cancel_requested {
                            true => Applied::Cancelled,
                            false => Applied::Done,
                        }
                    }
                    _ => Applied::Stale,
                };
                let update = Progress {
                    lease: lease.clone(),
                    value,
                };
                let got = ok(self.store.progress(&[update]).await, "progress")?;
                agree!(got, vec![expected], "progress of task {}", lease.id);
            }
            Op::Recover => self.recover().await?,
            Op::Advance { ms } => self.now = now + Duration::from_millis(*ms),
            Op::Requeue { task } => {
                let Some(id) = self.pick_id(*task) else {
                    return Ok(());
                };
                let expected = match self.tasks.get_mut(&id) {
                    Some(t) if t.queue == Queue::Dead => {
                        t.queue = Queue::Input;
                        t.run_at = now;
                        t.attempt = 0;
                        t.finished_at = None;
                        self.counters[t.topic].requeued += 1;
                        true
                    }
                    _ => false,
                };
                let got = ok(
                    self.store.requeue(&[id], &RequeueOptions::new(now)).await,
                    "requeue",
                )?;
                agree!(got, vec![expected], "requeue of task {id}");
            }
            Op::Delete { task } => {
                let Some(id) = self.pick_id(*task) else {
                    return Ok(());
                };
                let expected = self.tasks.remove(&id).is_some();
                let got = ok(self.store.delete(&[id]).await, "delete")?;
                agree!(got, vec![expected], "delete of task {id}");
            }
            Op::Cancel { task } => {
                let Some(id) = self.pick_id(*task) else {
                    return Ok(());
                };
                let expected = match self.tasks.get_mut(&id) {
                    None => Cancellation::NotFound,
                    Some(t) => match t.queue {
                        Queue::Input => {
                            t.cancel_requested = true;
                            t.finish(Queue::Cancelled, now);
                            self.counters[t.topic].cancelled += 1;
                            Cancellation::Cancelled
                        }
                        Queue::Work => {
                            t.cancel_requested = true;
                            Cancellation::Requested
                        }
                        queue => Cancellation::Refused(queue),
                    },
                };
                let got = ok(
                    self.store
                        .cancel(&[id], &CancelOptions::new(now, "model"))
                        .await,
                    "cancel",
                )?;
                agree!(got, vec![expected], "cancel of task {id}");
            }
            Op::Pause { topic, paused } => {
                self.paused[*topic] = *paused;
                ok(
                    self.store.set_paused(&self.topics[*topic], *paused).await,
                    "set_paused",
                )?;
            }
            Op::Prune { retention_ms } => {
                let retention = Duration::from_millis(*retention_ms);
                let cutoff = now - retention;
                let due: Vec<TaskId> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.queue.is_finished() && t.finished_at <= Some(cutoff))
                    .map(|(id, _)| *id)
                    .collect();
                for id in &due {
                    self.tasks.remove(id);
                }
                let opts = PruneOptions::new(now, FOREVER)
                    .topic(self.topics[0].clone(), retention)
                    .topic(self.topics[1].clone(), retention)
                    .limit(1_000);
                let got = ok(self.store.prune(&opts).await, "prune")?;
                agree!(got, due.len() as u64, "prune with retention {retention:?}");
            }
            Op::Fire {
                schedule,
                tick,
                skip_overlap,
                key,
            } => self.fire(*schedule, *tick, *skip_overlap, *key).await?,
            Op::PauseSchedule { schedule, paused } => {
                let model = &mut self.schedules[*schedule];
                if model.known {
                    model.paused = *paused;
                }
                let name = &self.schedule_names[*schedule];
                let got = ok(
                    self.store.set_schedule_paused(name, *paused).await,
                    "set_schedule_paused",
                )?;
                agree!(got, model.known, "pause of schedule {name}");
            }
        }
        self.compare().await
    }

    fn pick_lease(&self, n: usize) -> Option<LeaseRef> {
        let len = self.leases.len();
        // Recent leases are the likely-current ones: count from the newest.
        (len > 0).then(|| self.leases[len - 1 - n % len].clone())
    }

    fn pick_id(&self, n: usize) -> Option<TaskId> {
        (!self.ids.is_empty()).then(|| self.ids[n % self.ids.len()])
    }

    async fn enqueue(&mut self, batch: &[NewTask]) -> Result<(), TestCaseError> {
        let now = self.now;
        let tasks: Vec<Task> = batch
            .iter()
            .map(|n| {
                let mut task = Task::new(self.topics[n.topic].clone(), &0).expect("a valid task");
                task = task.priority(n.priority);
                if let Some(ms) = n.delay_ms {
                    task = task.delay(Duration::from_millis(ms));
                }
                if let Some(key) = n.key {
                    task = task.unique_key(format!("key-{key}"));
                }
                if n.while_kept {
                    task = task.unique_while_kept();
                }
                if let Some(retries) = n.retries {
                    task = task.max_retries(retries);
                }
                task
            })
            .collect();
        let got = ok(
            self.store.enqueue(tasks, &EnqueueOptions::new(now)).await,
            "enqueue",
        )?;
        agree!(got.len(), batch.len(), "enqueue's answers");
        for (n, answer) in batch.iter().zip(got) {
            self.admit(n, answer)?;
        }
        Ok(())
    }

    /// Checks the store's answer to the enqueue of `n` at `now` against the unique keys the
    /// model holds, and models a new task.
    fn admit(&mut self, n: &NewTask, answer: Enqueued) -> Result<(), TestCaseError> {
        let now = self.now;
        {
            let holder = n.key.and_then(|key| {
                self.tasks
                    .iter()
                    .find(|(_, t)| t.topic == n.topic && t.key == Some(key) && t.holds_key())
                    .map(|(id, _)| *id)
            });
            match (holder, answer) {
                (Some(holder), answer) => {
                    agree!(answer, Enqueued::Duplicate(holder), "enqueue of a held key");
                }
                (None, Enqueued::New(id)) => {
                    if let Some(last) = self.ids.iter().max() {
                        if id <= *last {
                            return Err(TestCaseError::fail(format!(
                                "new id {id} is not above the last one, {last}"
                            )));
                        }
                    }
                    self.ids.push(id);
                    self.counters[n.topic].enqueued += 1;
                    self.tasks.insert(
                        id,
                        Model {
                            topic: n.topic,
                            priority: n.priority,
                            run_at: now + Duration::from_millis(n.delay_ms.unwrap_or(0)),
                            queue: Queue::Input,
                            attempt: 0,
                            max_retries: n.retries,
                            key: n.key,
                            while_kept: n.while_kept,
                            lease: None,
                            cancel_requested: false,
                            finished_at: None,
                            errors: 0,
                            result: None,
                            progress: None,
                        },
                    );
                }
                (None, answer) => {
                    return Err(TestCaseError::fail(format!(
                        "enqueue of a free key answered {answer:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Fires a tick of schedule `i` and checks the answer and the stored state.
    async fn fire(
        &mut self,
        i: usize,
        tick: u8,
        skip_overlap: bool,
        key: Option<u8>,
    ) -> Result<(), TestCaseError> {
        let (now, name) = (self.now, self.schedule_names[i].clone());
        let at = T0 + Duration::from_secs(u64::from(tick));
        let mut template = Task::new(self.topics[i].clone(), &0).expect("a valid task");
        if let Some(key) = key {
            template = template.unique_key(format!("key-{key}"));
        }
        let schedule = Schedule::every(name.clone(), Duration::from_secs(1), template)
            .expect("a valid schedule");
        let overlap = match skip_overlap {
            true => Overlap::Skip,
            false => Overlap::Allow,
        };
        let ticks = vec![Tick::new(
            name.clone(),
            at,
            schedule.task_for(at).unwrap(),
            overlap,
        )];
        let got = ok(
            self.store.fire(ticks, &EnqueueOptions::new(now)).await,
            "fire",
        )?;
        agree!(got.len(), 1, "fire's answers");
        let model = &self.schedules[i];
        let running = model
            .last_task
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| matches!(t.queue, Queue::Input | Queue::Work))
            })
            .filter(|_| skip_overlap);
        let expected = match (model.last_tick.filter(|last| *last >= at), model.paused) {
            (Some(last), _) => Some(Fired::Stale { last }),
            (None, true) => Some(Fired::Paused),
            (None, false) => running.map(|running| Fired::Overlapped { running }),
        };
        let model = &mut self.schedules[i];
        model.known = true;
        match expected {
            Some(expected) => {
                if !matches!(expected, Fired::Stale { .. }) {
                    model.last_tick = Some(at);
                }
                agree!(got[0], expected, "fire of {name} at {at}");
            }
            None => {
                let Fired::Enqueued(answer) = got[0] else {
                    return Err(TestCaseError::fail(format!(
                        "fire of {name} at {at} answered {:?}, not an enqueue",
                        got[0]
                    )));
                };
                model.last_tick = Some(at);
                model.last_task = Some(answer.id());
                let task = NewTask {
                    topic: i,
                    priority: 0,
                    delay_ms: None,
                    key,
                    while_kept: false,
                    retries: None,
                };
                self.admit(&task, answer)?;
            }
        }
        let listed = ok(self.store.schedules().await, "schedules")?;
        let Some(state) = listed.iter().find(|s| s.name == name) else {
            return Err(TestCaseError::fail(format!(
                "schedule {name} is not listed"
            )));
        };
        let model = &self.schedules[i];
        agree!(
            (state.paused, state.last_tick, state.last_task),
            (model.paused, model.last_tick, model.last_task),
            "the state of schedule {name}"
        );
        Ok(())
    }

    async fn claim(
        &mut self,
        topics: &[usize],
        limit: usize,
        max_running: Option<u32>,
        retries: u32,
    ) -> Result<(), TestCaseError> {
        let now = self.now;
        let mut expected = Vec::new();
        for &topic in topics {
            if self.paused[topic] {
                continue;
            }
            let mut room = limit - expected.len();
            if let Some(max) = max_running {
                let running = self
                    .tasks
                    .values()
                    .filter(|t| t.topic == topic && t.queue == Queue::Work)
                    .count();
                room = room.min((max as usize).saturating_sub(running));
            }
            let mut due: Vec<(i16, TaskId)> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.topic == topic && t.queue == Queue::Input && t.run_at <= now)
                .map(|(id, t)| (t.priority, *id))
                .collect();
            due.sort();
            expected.extend(due.into_iter().take(room).map(|(_, id)| id));
        }
        let claims = topics.iter().map(|&t| {
            let claim = TopicClaim::new(self.topics[t].clone()).max_retries(retries);
            match max_running {
                Some(max) => claim.max_running(max),
                None => claim,
            }
        });
        let opts = ClaimOptions::new(claims, limit, "model", now).lease(LEASE);
        let claimed = ready(ok(self.store.claim(&opts).await, "claim")?);
        let mut got: Vec<TaskId> = claimed.iter().map(|r| r.id).collect();
        got.sort();
        expected.sort();
        agree!(
            got,
            expected,
            "claim of {topics:?} (limit {limit}, max_running {max_running:?})"
        );
        for record in &claimed {
            let Some(lease) = &record.lease else {
                return Err(TestCaseError::fail(format!(
                    "task {} claimed without a lease",
                    record.id
                )));
            };
            let t = self
                .tasks
                .get_mut(&record.id)
                .expect("a claimed task is modelled");
            t.queue = Queue::Work;
            t.attempt += 1;
            t.max_retries.get_or_insert(retries);
            t.lease = Some((lease.token, now + LEASE));
            self.counters[t.topic].started += 1;
            self.leases.push(LeaseRef::of(record));
        }
        Ok(())
    }

    /// What applying `kind` under `lease` does to the model, and what the store answers.
    fn apply_model(&mut self, lease: &LeaseRef, kind: &OutcomeKind, keep: bool) -> Applied {
        let now = self.now;
        let Some(t) = self
            .tasks
            .get_mut(&lease.id)
            .filter(|t| t.owns(lease.token))
        else {
            return Applied::Stale;
        };
        let counters = &mut self.counters[t.topic];
        let result = match kind {
            OutcomeKind::Complete { result, .. } => result.as_ref().map(|r| r.as_str().to_owned()),
            _ => None,
        };
        let answer = if t.cancel_requested {
            if result.is_some() {
                t.result = result;
            }
            t.finish(Queue::Cancelled, now);
            counters.cancelled += 1;
            Applied::Cancelled
        } else {
            match kind {
                OutcomeKind::Complete { .. } => {
                    t.result = result;
                    t.finish(Queue::Completed, now);
                    counters.completed += 1;
                }
                OutcomeKind::Retry { at, .. } => {
                    t.queue = Queue::Input;
                    t.lease = None;
                    t.run_at = *at;
                    t.errors += 1;
                    counters.retried += 1;
                }
                OutcomeKind::Dead { .. } => {
                    t.finish(Queue::Dead, now);
                    t.errors += 1;
                    counters.failed += 1;
                }
                _ => {
                    t.queue = Queue::Input;
                    t.lease = None;
                    t.run_at = now;
                    t.attempt -= 1;
                    counters.released += 1;
                }
            }
            Applied::Done
        };
        if t.queue.is_finished() && !keep {
            self.tasks.remove(&lease.id);
        }
        answer
    }

    async fn recover(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        let mut expected = Vec::new();
        for (id, t) in self.tasks.iter_mut() {
            if !(t.queue == Queue::Work && t.lease.is_some_and(|(_, deadline)| deadline < now)) {
                continue;
            }
            let counters = &mut self.counters[t.topic];
            counters.recovered += 1;
            if t.cancel_requested {
                t.finish(Queue::Cancelled, now);
                counters.cancelled += 1;
            } else if t.attempt <= t.retry_limit() {
                t.queue = Queue::Input;
                t.lease = None;
                t.run_at = now;
            } else {
                t.finish(Queue::Dead, now);
                t.errors += 1;
                counters.failed += 1;
            }
            expected.push((*id, t.queue));
        }
        let recovered = ok(
            self.store
                .recover(&RecoverOptions::new(now).limit(10_000))
                .await,
            "recover",
        )?;
        let mut got: Vec<(TaskId, Queue)> = recovered
            .into_iter()
            .filter(|r| self.topic_of(&r.topic).is_some())
            .map(|r| (r.id, r.queue))
            .collect();
        got.sort_by_key(|(id, _)| *id);
        agree!(got, expected, "recover at {now}");
        Ok(())
    }

    /// Compares the store with the model: each topic's stats, then every task.
    async fn compare(&self) -> Result<(), TestCaseError> {
        let stats = ok(
            self.store.stats(&taskmill_testkit::all_due()).await,
            "stats",
        )?;
        for (n, name) in self.topics.iter().enumerate() {
            let mut want = TopicStats::default();
            want.counters = self.counters[n];
            want.paused = self.paused[n];
            let of_topic = self.tasks.values().filter(|t| t.topic == n);
            for t in of_topic.clone() {
                *want.sizes.of_mut(t.queue) += 1;
            }
            want.earliest_run_at = of_topic
                .filter(|t| t.queue == Queue::Input)
                .map(|t| t.run_at)
                .min();
            agree!(stats.topic(name), want, "stats of {name}");
        }
        for &id in &self.ids {
            let got = ok(self.store.get(id).await, "get")?.map(|r| view(&r));
            let want = self.tasks.get(&id).map(|t| View {
                queue: t.queue,
                attempt: t.attempt,
                run_at: t.run_at,
                priority: t.priority,
                max_retries: t.max_retries,
                token: t.lease.map(|(token, _)| token),
                deadline: t.lease.map(|(_, deadline)| deadline),
                cancel_requested: t.cancel_requested,
                finished_at: t.finished_at,
                errors: t.errors,
                result: t.result.clone(),
                progress: t.progress.clone(),
            });
            agree!(got, want, "task {id}");
        }
        Ok(())
    }

    /// Pages through every queue of each topic, three tasks a page: each holds exactly
    /// the model's tasks, in ascending id order.
    async fn compare_lists(&self) -> Result<(), TestCaseError> {
        for (n, name) in self.topics.iter().enumerate() {
            for queue in Queue::ALL {
                let want: Vec<TaskId> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.topic == n && t.queue == queue)
                    .map(|(id, _)| *id)
                    .collect();
                let mut got = Vec::new();
                let mut opts = ListOptions::new(queue).topic(name.clone()).limit(3);
                // Bounded: a store whose cursor never ends still fails.
                for _ in 0..=want.len() + 1 {
                    let page = ok(self.store.list(&opts).await, "list")?;
                    got.extend(page.tasks.iter().map(|r| r.id));
                    match page.next {
                        Some(next) => opts = opts.after(next),
                        None => break,
                    }
                }
                agree!(got, want, "list of {queue} in {name}");
            }
        }
        Ok(())
    }

    /// Deletes the case's tasks, so the next case starts on an empty store.
    async fn clean(&self) -> Result<(), TestCaseError> {
        ok(self.store.delete(&self.ids).await, "delete at the end")?;
        Ok(())
    }
}

/// The fields of a record the model predicts.
#[derive(Debug, PartialEq, Eq)]
struct View {
    queue: Queue,
    attempt: u32,
    run_at: Timestamp,
    priority: i16,
    max_retries: Option<u32>,
    token: Option<u64>,
    deadline: Option<Timestamp>,
    cancel_requested: bool,
    finished_at: Option<Timestamp>,
    errors: usize,
    result: Option<String>,
    progress: Option<String>,
}

fn view(r: &TaskRecord) -> View {
    View {
        queue: r.queue,
        attempt: r.attempt,
        run_at: r.run_at,
        priority: r.priority,
        max_retries: r.max_retries,
        token: r.lease.as_ref().map(|l| l.token),
        deadline: r.lease.as_ref().map(|l| l.deadline),
        cancel_requested: r.is_cancel_requested(),
        finished_at: r.finished_at,
        errors: r.errors.len(),
        result: r.result.as_ref().map(|p| p.as_str().to_owned()),
        progress: r.progress.as_ref().map(|p| p.as_str().to_owned()),
    }
}

async fn run_case(store: Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut case = Case::new(store);
    case.compare().await?;
    for (n, op) in ops.iter().enumerate() {
        case.step(op)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {n} ({op:?}): {e}")))?;
        if n % 8 == 7 {
            case.compare_lists()
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {n}: {e}")))?;
        }
    }
    case.compare_lists().await?;
    case.clean().await
}

/// Runs [`DEFAULT_CASES`] (or `TASKMILL_MODEL_CASES`) random sequences of up to 40 steps
/// on `store`, from seed `TASKMILL_MODEL_SEED` (default 1), and panics with the shrunk
/// sequence if one breaks the contract.
pub async fn check_against_the_model(store: Arc<dyn Store>) {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let cases = env("TASKMILL_MODEL_CASES", u64::from(DEFAULT_CASES)) as u32;
    let seed = env("TASKMILL_MODEL_SEED", 1);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        max_shrink_iters: 4_000,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&vec(op(), 1..40), |ops| {
            handle.block_on(run_case(store.clone(), ops))
        })
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "the store broke the contract (TASKMILL_MODEL_SEED={seed}): {reason}\n\
             shortest failing sequence found:\n{ops:#?}"
        ),
        Err(e) => panic!("the model test did not run: {e}"),
    }
}

checks!(
    mod model;

    /// Random sequences of every queue operation agree with the reference model, step by
    /// step (see the module docs).
    pub async fn random_operation_sequences_match_the_model(store: Arc<dyn Store>) {
        check_against_the_model(store).await;
    }
);
