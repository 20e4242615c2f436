//! Manager settings and their builder.

use super::Manager;
use crate::backoff::Backoff;
use crate::middleware::Middleware;
use crate::observer::RunObserver;
use crate::schedule::Schedule;
use crate::store::{PruneOptions, Store, DEFAULT_MAX_RETRIES};
use crate::time::{Clock, Timestamp};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings of one topic, overriding the manager's defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TopicOptions {
    /// Retry limit for tasks of the topic that set none.
    pub retries: Option<u32>,
    /// How long one run may take before it fails as timed out.
    pub timeout: Option<Duration>,
    /// The backoff between attempts.
    pub backoff: Option<Backoff>,
    /// At most this many of the topic's tasks run at once across every manager sharing
    /// the store.
    pub max_running: Option<u32>,
    /// The topic's share of this manager's claims when several topics have work waiting
    /// (default 1): a topic of weight 3 gets about three times the workers of a topic of
    /// weight 1.
    pub weight: Option<u32>,
    /// How long the topic's finished tasks are kept (see [`ManagerBuilder::retention`]).
    pub retention: Option<Duration>,
    /// Middleware around the topic's runs, inside the manager's own
    /// ([`ManagerBuilder::middleware`]), outermost first.
    pub middleware: Vec<Arc<dyn Middleware>>,
    /// Observers of the topic's runs, told after the manager's own
    /// ([`ManagerBuilder::observer`]).
    pub observers: Vec<Arc<dyn RunObserver>>,
}

impl TopicOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the retry limit for tasks that set none.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Fails a run that takes longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Limits how many of the topic's tasks run at once, store-wide.
    pub fn max_running(mut self, max: u32) -> Self {
        self.max_running = Some(max);
        self
    }

    /// Sets the topic's share of claims among busy topics (at least 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight.max(1));
        self
    }

    /// Keeps the topic's completed and cancelled tasks for `retention` instead of the
    /// manager's default ([`ManagerBuilder::retention`]); zero keeps none.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Wraps the topic's runs in `middleware` ([`Middleware::run`]), inside the manager's
    /// middleware and any added to the topic before. Its enqueue side is not used: enqueues
    /// go through a client's middleware, whatever their topics.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Tells `observer` of the start and end of the topic's runs, after the manager's
    /// observers.
    pub fn observer(mut self, observer: impl RunObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }
}

/// How long finished tasks are kept unless the manager says otherwise: a day.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How often a manager registers its schedules again unless told otherwise.
const DEFAULT_SCHEDULE_REGISTER_INTERVAL: Duration = Duration::from_secs(60);

/// The largest result or progress value a run may set unless the manager says otherwise:
/// 64 KiB of JSON.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub renew_interval: Duration,
    pub reap_interval: Duration,
    pub stats_interval: Option<Duration>,
    pub default_retries: u32,
    pub retention: Duration,
    pub prune_interval: Duration,
    /// How often the scheduler registers its schedules again.
    pub schedule_register_interval: Duration,
    pub progress_interval: Duration,
    pub max_result_bytes: usize,
    pub backoff: Backoff,
    pub clock: Clock,
    pub topics: FxHashMap<Arc<str>, TopicOptions>,
    pub id: Option<String>,
    /// Around every run and every enqueue of the manager's client, outermost first.
    pub middleware: Vec<Arc<dyn Middleware>>,
    /// The schedules registered on the builder; the manager takes them when built.
    pub schedules: Vec<Schedule>,
    /// Told of every run's start and end, in the order added.
    pub observers: Vec<Arc<dyn RunObserver>>,
}

impl Config {
    pub fn topic(&self, topic: &str) -> Option<&TopicOptions> {
        self.topics.get(topic)
    }

    pub fn retries_for(&self, topic: &str) -> u32 {
        self.topic(topic)
            .and_then(|t| t.retries)
            .unwrap_or(self.default_retries)
    }

    /// How long finished tasks of `topic` are kept.
    pub fn retention_for(&self, topic: &str) -> Duration {
        self.topic(topic)
            .and_then(|t| t.retention)
            .unwrap_or(self.retention)
    }

    /// Whether the outcomes of `topic`'s runs keep the finished task
    /// ([`Outcome::keep`](crate::store::Outcome::keep)).
    pub fn keeps(&self, topic: &str) -> bool {
        !self.retention_for(topic).is_zero()
    }

    /// What one round of pruning removes: the default retention, and each configured
    /// topic's own.
    pub fn prune_options(&self, now: Timestamp, limit: usize) -> PruneOptions {
        let mut opts = PruneOptions::new(now, self.retention).limit(limit);
        for (topic, options) in &self.topics {
            if let Some(retention) = options.retention {
                opts = opts.topic(topic.clone(), retention);
            }
        }
        opts
    }

    pub fn backoff_for(&self, topic: &str) -> &Backoff {
        self.topic(topic)
            .and_then(|t| t.backoff.as_ref())
            .unwrap_or(&self.backoff)
    }
}

/// Builds a [`Manager`]; from [`Manager::builder`].
pub struct ManagerBuilder {
    store: Arc<dyn Store>,
    config: Config,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        ManagerBuilder {
            store,
            config: Config {
                concurrency: 25,
                poll_interval: Duration::from_secs(1),
                lease: Duration::from_secs(30),
                renew_interval: Duration::from_secs(10),
                reap_interval: Duration::from_secs(15),
                stats_interval: Some(Duration::from_secs(10)),
                default_retries: DEFAULT_MAX_RETRIES,
                retention: DEFAULT_RETENTION,
                prune_interval: Duration::from_secs(30),
                schedule_register_interval: DEFAULT_SCHEDULE_REGISTER_INTERVAL,
                progress_interval: Duration::from_secs(1),
                max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
                backoff: Backoff::default(),
                clock: Clock::system(),
                topics: FxHashMap::default(),
                id: None,
                middleware: Vec::new(),
                schedules: Vec::new(),
                observers: Vec::new(),
            },
        }
    }

    /// How many tasks run at once (at least 1; default 25).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// How often an idle manager looks for due work when nothing wakes it (default 1 s).
    /// Enqueues through the store wake it at once; this catches scheduled tasks falling
    /// due and stores that cannot signal.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.config.poll_interval = d;
        self
    }

    /// How long a claim holds a task without renewal (default 30 s). Renewals run every
    /// third of it, and the reaper every half of it, unless set otherwise.
    pub fn lease(mut self, d: Duration) -> Self {
        self.config.lease = d;
        self.config.renew_interval = d / 3;
        self.config.reap_interval = d / 2;
        self
    }

    /// How often running tasks' leases are renewed (default a third of the lease).
    ///
    /// A renewal is also how a manager learns of a cancel of one of its running tasks made
    /// through another process on a store whose events stay in their process (SQLite: the
    /// store refuses the renewal): such a cancel reaches the run within this interval. In
    /// the same process, and across processes on Redis, it arrives at once.
    pub fn renew_interval(mut self, d: Duration) -> Self {
        self.config.renew_interval = d;
        self
    }

    /// How often the reaper looks for expired leases (default half the lease).
    pub fn reap_interval(mut self, d: Duration) -> Self {
        self.config.reap_interval = d;
        self
    }

    /// How often a [`Event::ManagerStats`](crate::Event::ManagerStats) is published
    /// (default 10 s; `None` for never).
    pub fn stats_interval(mut self, d: Option<Duration>) -> Self {
        self.config.stats_interval = d;
        self
    }

    /// The retry limit of tasks that set none (default 25), unless their topic sets one
    /// ([`TopicOptions::retries`]).
    ///
    /// It is written into a task at its first claim, by the manager that claims it: the
    /// process that enqueued the task (a bare [`Client`](crate::Client) or another
    /// manager) need not know it, and the limit a task's status shows from then on is the
    /// one it runs under.
    pub fn default_retries(mut self, retries: u32) -> Self {
        self.config.default_retries = retries;
        self
    }

    /// How long completed and cancelled tasks are kept, with their result, errors and
    /// progress, before pruning removes them (default [`DEFAULT_RETENTION`], a day), unless
    /// their topic sets its own ([`TopicOptions::retention`]). Zero keeps none: a task's
    /// record goes with its last outcome.
    ///
    /// A day answers "what became of the task I enqueued an hour ago" (or last night)
    /// from a status lookup, as River's default does, at the cost of one record per
    /// finished task of the last day; a high-volume topic whose results nobody looks at
    /// sets a short retention or zero.
    ///
    /// Retention belongs to the managers, not to whoever enqueues: a manager's outcomes keep
    /// its topics' tasks or not, and every manager prunes the finished tasks of every topic
    /// (by this default, or its topics' own) in its maintenance. Managers sharing a store
    /// should agree on it.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// How often the manager prunes finished tasks past their retention, and the state of
    /// the schedules no manager registers any more (default 30 s). A round removes up to
    /// 1000 records a store call and calls again while a call came back full, up to 100
    /// calls, between the maintenance loop's other work.
    pub fn prune_interval(mut self, d: Duration) -> Self {
        self.config.prune_interval = d;
        self
    }

    /// How often the manager registers its schedules again (default 60 s), so that the
    /// store knows they are still in use: the state of a schedule no manager registered
    /// for [`SCHEDULE_RETENTION`](crate::SCHEDULE_RETENTION) is pruned (by every manager's
    /// maintenance, every [`prune_interval`](Self::prune_interval)). It only has to be well
    /// under the retention. Like the other intervals it runs on tokio's time, not the
    /// manager's [`Clock`].
    pub fn schedule_register_interval(mut self, d: Duration) -> Self {
        self.config.schedule_register_interval = d;
        self
    }

    /// How often the latest [`TaskContext::progress`](crate::TaskContext::progress) value of
    /// each running task is written to its record (default 1 s): at most one store write
    /// per task per interval, however often it reports. The event goes out at every
    /// report, and a value not yet written goes with the run's outcome.
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.config.progress_interval = d;
        self
    }

    /// The largest value, in bytes of JSON, a run may store as its result
    /// ([`TaskContext::set_result`](crate::TaskContext::set_result)) or its progress
    /// ([`TaskContext::progress`](crate::TaskContext::progress)); default
    /// [`DEFAULT_MAX_RESULT_BYTES`] (64 KiB). Records are read whole by status lookups
    /// and lists: large outputs belong in a blob store, with their key as the result.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.config.max_result_bytes = bytes;
        self
    }

    /// The backoff between attempts (default [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The clock handed to the store (default [`Clock::system`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Options for one topic.
    pub fn topic(mut self, topic: impl Into<Arc<str>>, options: TopicOptions) -> Self {
        self.config.topics.insert(topic.into(), options);
        self
    }

    /// Wraps every run of every topic in `middleware` ([`Middleware::run`]), after (inside)
    /// the middleware added before it and outside each topic's own
    /// ([`TopicOptions::middleware`]); the manager's [client](Manager::client) sends its
    /// enqueues through it too ([`Middleware::enqueue`]). See
    /// [`Middleware`](crate::Middleware) for the order and the cost.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.config.middleware.push(Arc::new(middleware));
        self
    }

    /// Tells `observer` of the start and end of every run (see [`RunObserver`]: cheaper
    /// than a middleware for what only needs to count and time runs, such as metrics).
    pub fn observer(mut self, observer: impl RunObserver) -> Self {
        self.config.observers.push(Arc::new(observer));
        self
    }

    /// Registers a schedule, as [`Manager::schedule`] does (a name registered twice fails
    /// [`start`](Manager::start)).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.config.schedules.push(schedule);
        self
    }

    /// The manager's id, written as the owner of its leases (default: `pid-random`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.config.id = Some(id.into());
        self
    }

    /// Builds the manager. Register processors (and schedules), then
    /// [`start`](Manager::start) it.
    pub fn build(self) -> Manager {
        Manager::from_parts(self.store, self.config)
    }
}
