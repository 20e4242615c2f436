//! The store's operations as SQL, run on the connection thread.
//!
//! Each public function that writes is one `BEGIN IMMEDIATE` transaction over a whole
//! batch: the write lock it takes is what keeps processes sharing the file apart, and the
//! counters and queue sizes in `topics` are updated in the same transaction as the moves
//! they count. Whole records are read and moved through [`RecordExt`]'s transitions
//! (`claim`, `apply_outcome`, `recover`, `requeue`, `cancel`) and `is_owned_by`, then
//! written back. The hot paths that need nothing of the record are the equivalent SQL
//! instead, each rule of the transition a term of the statement:
//! - `renew`: `is_owned_by(token)` is `state = 2 AND lease_token = ?`, and a renewal
//!   extends only a lease without a cancel request (`cancelled_by IS NULL`); when it
//!   extends nothing, one lookup tells `Cancelled` (owned, cancel requested) from `Stale`;
//! - `progress`: the same ownership test, storing `progress`;
//! - a `Complete` outcome of a task without a cancel request: kept, one `UPDATE` to
//!   COMPLETED (`result`, `progress` if given, `finished_at`, the lease cleared), as
//!   `apply_outcome(Complete)` does; not kept, one `DELETE`. Either counts `completed`
//!   (and moves the sizes) when a row changed. Anything else (a stale lease, a cancel
//!   request) goes the general way, through the record;
//! - `prune`: deletes rows whose `finished_at` is at or before their topic's cutoff,
//!   `is_prunable` as a range of `tasks_pruning`.
//!
//! Schedules: `fire` is one transaction for the whole batch of ticks, like every other
//! write (for each tick: read the state, decide, enqueue through the same insertion as
//! `enqueue`, store the state), so a batch is all or nothing; the write lock
//! `BEGIN IMMEDIATE` takes before the first read is what lets only one of the processes
//! firing a tick enqueue it.
//!
//! Unique keys are freed by the index: `tasks_unique` holds exactly the rows that hold
//! their key (see `layout.rs`), so a row that finishes or goes leaves it in the same
//! statement.

use crate::codec::{
    decode, decode_schedule, encode_errors, encode_headers, queue_of, sql_u64, state_of, Decoded,
    Delta, COLUMNS, SCHEDULE_COLUMNS,
};
use crate::layout::{HOLDS_UNIQUE_KEY, IN_INPUT, READY, SCHEDULED};
use rusqlite::{params, CachedStatement, OptionalExtension, Transaction, TransactionBehavior};
use std::collections::HashMap;
use std::sync::Arc;
use taskmill_core::raw::{RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired,
    LeaseRef, ListOptions, Outcome, OutcomeKind, Page, Progress, PruneOptions, Recovered,
    ScheduleEntry, ScheduleState, Tick, TopicClaim, Waiting,
};
use taskmill_core::{
    Event, Lease, Payload, Queue, Stats, Task, TaskId, TaskRecord, Timestamp, TopicStats,
};

type R<T> = rusqlite::Result<T>;

/// Per-topic changes made by one transaction.
type Deltas = HashMap<Arc<str>, Delta>;

const INSERT: &str = "INSERT INTO tasks (id, state, topic, priority, run_at, args, external_id, \
     attempt, max_retries, enqueued_at, unique_key, unique_while_kept, headers) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// Writes back every column a lifecycle method may change. The others (topic, args,
/// priority, headers, …) are never rewritten, so a corrupt payload stays as it was found.
const WRITE_BACK: &str = "UPDATE tasks SET state = ?2, run_at = ?3, attempt = ?4, \
     max_retries = ?5, first_started_at = ?6, started_at = ?7, finished_at = ?8, errors = ?9, \
     result = ?10, progress = ?11, cancelled_by = ?12, lease_owner = ?13, lease_token = ?14, \
     lease_deadline = ?15 WHERE id = ?1";

/// Writes back what [`RecordExt::claim`] changes: the hot path of a claim.
const CLAIM_BACK: &str = "UPDATE tasks SET state = 2, attempt = ?2, max_retries = ?3, \
     first_started_at = ?4, started_at = ?5, lease_owner = ?6, lease_token = ?7, \
     lease_deadline = ?8 WHERE id = ?1";

/// `apply_outcome(Complete)` of a kept task that has no cancel request, when the token
/// owns it.
const COMPLETE_KEPT: &str = "UPDATE tasks SET state = 4, result = ?3, \
     progress = coalesce(?4, progress), finished_at = ?5, lease_owner = NULL, \
     lease_token = NULL, lease_deadline = NULL \
     WHERE id = ?1 AND state = 2 AND lease_token = ?2 AND cancelled_by IS NULL";

/// `apply_outcome(Complete)` of a task not kept that has no cancel request, when the token
/// owns it.
const COMPLETE_REMOVED: &str = "DELETE FROM tasks \
     WHERE id = ?1 AND state = 2 AND lease_token = ?2 AND cancelled_by IS NULL";

/// Scheduled tasks of topic `?1` that fell due by `?2` join the ready ones: the range
/// `(topic, 1, ..= now)` of `tasks_waiting`, whose condition it repeats. The equality
/// comes first: given `state <= 1` first, SQLite 3.40 takes that as the range instead
/// and reads every due task of the topic.
const PROMOTE: &str = "UPDATE tasks SET state = 0 \
     WHERE topic = ?1 AND state = 1 AND state <= 1 AND run_at <= ?2";

/// What a claim needs to know of topic `?1`.
const TOPIC_STATE: &str = "SELECT paused, work, input FROM topics WHERE topic = ?1";

/// A renewal: `is_owned_by`, and no cancel request.
const EXTEND: &str = "UPDATE tasks SET lease_deadline = ?3 \
     WHERE id = ?1 AND state = 2 AND lease_token = ?2 AND cancelled_by IS NULL";

/// `is_owned_by`.
const OWNED: &str = "SELECT 1 FROM tasks WHERE id = ?1 AND state = 2 AND lease_token = ?2";

/// A progress update of a run the token owns; says whether a cancel was requested.
const STORE_PROGRESS: &str = "UPDATE tasks SET progress = ?3 \
     WHERE id = ?1 AND state = 2 AND lease_token = ?2 RETURNING cancelled_by IS NOT NULL";

const FLUSH: &str = "INSERT INTO topics (topic, enqueued, started, retried, failed, completed, \
     recovered, released, requeued, cancelled, input, work, dead, kept_completed, \
     kept_cancelled) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT (topic) DO UPDATE SET \
     enqueued = enqueued + excluded.enqueued, started = started + excluded.started, \
     retried = retried + excluded.retried, failed = failed + excluded.failed, \
     completed = completed + excluded.completed, recovered = recovered + excluded.recovered, \
     released = released + excluded.released, requeued = requeued + excluded.requeued, \
     cancelled = cancelled + excluded.cancelled, \
     input = input + excluded.input, work = work + excluded.work, dead = dead + excluded.dead, \
     kept_completed = kept_completed + excluded.kept_completed, \
     kept_cancelled = kept_cancelled + excluded.kept_cancelled";

fn begin(conn: &mut rusqlite::Connection) -> R<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

fn meta_get(tx: &Transaction<'_>, key: &str) -> R<u64> {
    tx.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get::<_, i64>(0))
        .map(|v| v.max(0) as u64)
}

fn meta_set(tx: &Transaction<'_>, key: &str, value: u64) -> R<()> {
    tx.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")?
        .execute(params![key, sql_u64(value)])?;
    Ok(())
}

fn flush(tx: &Transaction<'_>, deltas: &Deltas) -> R<()> {
    let mut stmt = tx.prepare_cached(FLUSH)?;
    for (topic, d) in deltas {
        let c = &d.counters;
        stmt.execute(params![
            topic.as_ref(),
            sql_u64(c.enqueued),
            sql_u64(c.started),
            sql_u64(c.retried),
            sql_u64(c.failed),
            sql_u64(c.completed),
            sql_u64(c.recovered),
            sql_u64(c.released),
            sql_u64(c.requeued),
            sql_u64(c.cancelled),
            d.size(Queue::Input),
            d.size(Queue::Work),
            d.size(Queue::Dead),
            d.size(Queue::Completed),
            d.size(Queue::Cancelled),
        ])?;
    }
    Ok(())
}

fn millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

fn text(p: &Option<Payload>) -> Option<&str> {
    p.as_ref().map(Payload::as_str)
}

fn write_back(tx: &Transaction<'_>, record: &TaskRecord, now: Timestamp) -> R<()> {
    let lease = record.lease.as_ref();
    tx.prepare_cached(WRITE_BACK)?.execute(params![
        sql_u64(record.id.get()),
        state_of(record.queue, record.run_at, now),
        record.run_at.as_millis(),
        record.attempt,
        record.max_retries,
        millis(record.first_started_at),
        millis(record.started_at),
        millis(record.finished_at),
        encode_errors(&record.errors),
        text(&record.result),
        text(&record.progress),
        record.cancelled_by,
        lease.map(|l| l.owner.as_ref()),
        lease.map(|l| sql_u64(l.token)),
        lease.map(|l| l.deadline.as_millis()),
    ])?;
    Ok(())
}

fn delete_row(tx: &Transaction<'_>, id: TaskId) -> R<()> {
    tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
        .execute([sql_u64(id.get())])?;
    Ok(())
}

/// Reads one task by id; `topic` is the topic the caller already knows it has.
fn load(tx: &Transaction<'_>, id: TaskId, topic: Option<&Arc<str>>) -> R<Option<Decoded>> {
    tx.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([sql_u64(id.get())], |row| decode(row, topic, false))
        .optional()
}

fn delta<'d>(deltas: &'d mut Deltas, topic: &Arc<str>) -> &'d mut Delta {
    deltas.entry(topic.clone()).or_default()
}

/// The insertion of new tasks into INPUT inside a write transaction: the one code path of
/// [`enqueue`] and [`fire`], so a fired tick's task is enqueued exactly as `enqueue`
/// enqueues one (a fresh id, the unique key check, the counters, the event).
///
/// Ids are taken from `meta.last_id` as read in the transaction, and the ids and counters
/// are written back by [`finish`](Self::finish), in the same transaction, before it
/// commits. Both statements are prepared (from the cache) once per transaction, not once
/// per task.
struct Inserter<'tx> {
    find_unique: CachedStatement<'tx>,
    insert: CachedStatement<'tx>,
    /// The last id handed out, this transaction's included.
    last_id: u64,
    deltas: Deltas,
    /// The enqueue events, when someone listens.
    events: Option<Vec<Event>>,
}

impl<'tx> Inserter<'tx> {
    fn new(tx: &'tx Transaction<'_>, want_events: bool) -> R<Self> {
        Ok(Inserter {
            find_unique: tx.prepare_cached(&format!(
                "SELECT id FROM tasks WHERE topic = ?1 AND unique_key = ?2 AND {HOLDS_UNIQUE_KEY}"
            ))?,
            insert: tx.prepare_cached(INSERT)?,
            last_id: meta_get(tx, "last_id")?,
            deltas: Deltas::new(),
            events: want_events.then(Vec::new),
        })
    }

    /// Adds `task` to INPUT, unless its unique key is held (by a row already stored or
    /// one inserted before in this transaction, which the index shows alike).
    fn insert(&mut self, task: Task, opts: &EnqueueOptions) -> R<Enqueued> {
        if let Some(key) = task.unique_key_ref() {
            let existing = self
                .find_unique
                .query_row([task.topic(), key], |r| r.get::<_, i64>(0))
                .optional()?;
            if let Some(existing) = existing {
                return Ok(Enqueued::Duplicate(TaskId::new(existing as u64)));
            }
        }
        let id = TaskId::new(self.last_id + 1);
        // Every column not written here is NULL, as the new record's field is.
        let r = task.into_record(id, opts);
        self.insert.execute(params![
            sql_u64(id.get()),
            state_of(Queue::Input, r.run_at, opts.now),
            r.topic.as_ref(),
            r.priority,
            r.run_at.as_millis(),
            r.args.as_str(),
            r.external_id,
            r.attempt,
            r.max_retries,
            r.enqueued_at.as_millis(),
            r.unique_key,
            r.unique_while_kept,
            encode_headers(&r.headers),
        ])?;
        self.last_id = id.get();
        let d = delta(&mut self.deltas, &r.topic);
        d.counters.enqueued += 1;
        d.moved(None, Some(Queue::Input));
        if let Some(events) = &mut self.events {
            events.push(Event::enqueued(&r));
        }
        Ok(Enqueued::New(id))
    }

    /// Writes the last id and the counters of what was inserted; returns the events, for
    /// the caller to publish once the transaction has committed.
    fn finish(self, tx: &Transaction<'_>) -> R<Vec<Event>> {
        if !self.deltas.is_empty() {
            meta_set(tx, "last_id", self.last_id)?;
            flush(tx, &self.deltas)?;
        }
        Ok(self.events.unwrap_or_default())
    }
}

/// What an enqueue did, for the caller to publish once it is committed.
pub struct EnqueueDone {
    /// One result per task.
    pub results: Vec<Enqueued>,
    /// The enqueue events, when someone listens.
    pub events: Vec<Event>,
}

/// [`Store::enqueue`](taskmill_core::Store::enqueue).
pub fn enqueue(
    conn: &mut rusqlite::Connection,
    tasks: Vec<Task>,
    opts: &EnqueueOptions,
    want_events: bool,
) -> R<EnqueueDone> {
    let tx = begin(conn)?;
    let mut inserter = Inserter::new(&tx, want_events)?;
    let results = tasks
        .into_iter()
        .map(|task| inserter.insert(task, opts))
        .collect::<R<Vec<_>>>()?;
    let events = inserter.finish(&tx)?;
    tx.commit()?;
    Ok(EnqueueDone { results, events })
}

/// The ready tasks of topic `?1`, in claim order.
///
/// Without a `LIMIT`: SQLite marks a statement whose `LIMIT` is a bound parameter to be
/// prepared again at every new binding, which would parse and plan this statement at
/// every claim of every topic.
fn claimable() -> String {
    format!("SELECT {COLUMNS} FROM tasks WHERE topic = ?1 AND state = 0 ORDER BY priority, id")
}

/// The first topic at or after `?1` (in `BINARY` order) that has a task in INPUT: one
/// seek of `tasks_waiting`, whose condition it repeats, however many topics before it
/// have nothing waiting.
const NEXT_WAITING: &str = "SELECT topic FROM tasks WHERE state <= 1 AND topic >= ?1 \
     ORDER BY topic LIMIT 1";

/// What one claim transaction gathers as it visits topics.
struct Claiming<'a> {
    req: &'a ClaimOptions,
    deadline: Timestamp,
    token: u64,
    deltas: Deltas,
    claimed: Vec<Claimed>,
}

/// [`Store::claim`](taskmill_core::Store::claim).
///
/// Topics are visited in the claim's order from its first topic, stopping once the claim
/// is full. When the claim's topics are in name order (a manager's always are), the
/// visit steps only to the topics that have something in INPUT, each found by one seek
/// of `tasks_waiting` ([`NEXT_WAITING`]) from the next topic in turn: the topics with
/// nothing waiting between two that have are jumped over, not looked up one by one. A
/// claim in any other order looks up each topic's row in turn (an idle topic costs that
/// one lookup).
pub fn claim(conn: &mut rusqlite::Connection, req: &ClaimOptions) -> R<Vec<Claimed>> {
    if req.limit == 0 || req.topics.is_empty() {
        return Ok(Vec::new());
    }
    let claims = req.topics.iter().as_slice();
    // `str` order is byte order, which is how SQLite's `BINARY` collation orders `topic`.
    let by_name = claims.windows(2).all(|w| w[0].topic < w[1].topic);
    claim_in(conn, req, by_name)
}

/// [`claim`], seeking the waiting topics when `by_name` (the claim's topics are in name
/// order), looking each up in turn otherwise.
fn claim_in(conn: &mut rusqlite::Connection, req: &ClaimOptions, by_name: bool) -> R<Vec<Claimed>> {
    let tx = begin(conn)?;
    let first_token = meta_get(&tx, "last_token")?;
    let mut c = Claiming {
        req,
        deadline: req.deadline(),
        token: first_token,
        deltas: Deltas::new(),
        claimed: Vec::with_capacity(req.limit.min(1024)),
    };
    let claims = req.topics.iter().as_slice();
    if by_name {
        let first = req.first.checked_rem(claims.len()).unwrap_or(0);
        for (lo, hi) in [(first, claims.len()), (0, first)] {
            claim_waiting(&tx, &mut c, &claims[lo..hi])?;
        }
    } else {
        for wanted in req.in_order() {
            if c.claimed.len() == req.limit {
                break;
            }
            claim_from(&tx, &mut c, wanted)?;
        }
    }
    let Claiming {
        token,
        deltas,
        claimed,
        ..
    } = c;
    if token != first_token {
        meta_set(&tx, "last_token", token)?;
        flush(&tx, &deltas)?;
    }
    tx.commit()?;
    Ok(claimed)
}

/// Claims from the topics of `claims` (in name order) that have something in INPUT, in
/// that order, until the claim is full.
///
/// Each round seeks the first waiting topic at or after the next claim topic in turn,
/// then moves to the first claim topic at or after it: every round moves on by at least
/// one claim topic, so there are at most `claims.len()` rounds, and one per waiting
/// topic visited (or per run of claim topics with nothing waiting) in practice.
fn claim_waiting(tx: &Transaction<'_>, c: &mut Claiming<'_>, claims: &[TopicClaim]) -> R<()> {
    let mut next_waiting = tx.prepare_cached(NEXT_WAITING)?;
    let mut i = 0;
    while i < claims.len() && c.claimed.len() < c.req.limit {
        let found = next_waiting
            .query_row([claims[i].topic.as_ref()], |r| r.get::<_, String>(0))
            .optional()?;
        let Some(found) = found else {
            // Nothing waits at or after this topic.
            return Ok(());
        };
        i += claims[i..].partition_point(|t| *t.topic < *found);
        match claims.get(i) {
            Some(wanted) if *wanted.topic == *found => {
                claim_from(tx, c, wanted)?;
                i += 1;
            }
            // `found` is not claimed from here: go on from the next topic that is.
            _ => {}
        }
    }
    Ok(())
}

/// Claims what `wanted` allows of its topic's due tasks, in `(priority, id)` order, after
/// promoting its scheduled tasks that fell due.
fn claim_from(tx: &Transaction<'_>, c: &mut Claiming<'_>, wanted: &TopicClaim) -> R<()> {
    let req = c.req;
    let remaining = req.limit - c.claimed.len();
    let topic = &wanted.topic;
    let row = tx
        .prepare_cached(TOPIC_STATE)?
        .query_row([topic.as_ref()], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    // No row: the topic never held a task. Nothing in INPUT: nothing to promote or take,
    // so an idle topic costs this one lookup.
    let Some((paused, work, input)) = row else {
        return Ok(());
    };
    if paused || input == 0 {
        return Ok(());
    }
    let allowed = match wanted.max_running {
        Some(max) => {
            let work = work + c.deltas.get(topic).map_or(0, |d| d.size(Queue::Work));
            (i64::from(max) - work).clamp(0, remaining as i64) as usize
        }
        None => remaining,
    };
    if allowed == 0 {
        return Ok(());
    }
    // Scheduled tasks that fell due join the ready index, where priority orders them.
    tx.prepare_cached(PROMOTE)?
        .execute(params![topic.as_ref(), req.now.as_millis()])?;
    // The index yields rows in order as they are stepped, so taking `allowed` of them
    // reads no more than a LIMIT would.
    let rows = tx
        .prepare_cached(&claimable())?
        .query_map([topic.as_ref()], |row| decode(row, Some(topic), true))?
        .take(allowed)
        .collect::<R<Vec<Decoded>>>()?;
    let d = delta(&mut c.deltas, topic);
    let mut claim_back = tx.prepare_cached(CLAIM_BACK)?;
    for Decoded {
        mut record,
        problem,
    } in rows
    {
        c.token += 1;
        let lease = Lease {
            owner: req.owner.clone(),
            token: c.token,
            deadline: c.deadline,
        };
        record.claim(lease, req.now, wanted.max_retries, &mut d.counters);
        d.moved(Some(Queue::Input), Some(Queue::Work));
        claim_back.execute(params![
            sql_u64(record.id.get()),
            record.attempt,
            record.max_retries,
            millis(record.first_started_at),
            millis(record.started_at),
            req.owner.as_ref(),
            sql_u64(c.token),
            c.deadline.as_millis(),
        ])?;
        c.claimed.push(match problem {
            None => Claimed::Ready(record),
            Some(error) => Claimed::Corrupt {
                lease: LeaseRef::of(&record),
                error,
            },
        });
    }
    Ok(())
}

/// [`Store::renew`](taskmill_core::Store::renew).
pub fn renew(
    conn: &mut rusqlite::Connection,
    leases: &[LeaseRef],
    deadline: Timestamp,
) -> R<Vec<Applied>> {
    let tx = begin(conn)?;
    let mut applied = Vec::with_capacity(leases.len());
    {
        let mut extend = tx.prepare_cached(EXTEND)?;
        let mut owned = tx.prepare_cached(OWNED)?;
        for l in leases {
            let (id, token) = (sql_u64(l.id.get()), sql_u64(l.token));
            applied.push(
                if extend.execute(params![id, token, deadline.as_millis()])? == 1 {
                    Applied::Done
                } else if owned.exists(params![id, token])? {
                    // Owned, so the cancel request is what held the deadline back.
                    Applied::Cancelled
                } else {
                    Applied::Stale
                },
            );
        }
    }
    tx.commit()?;
    Ok(applied)
}

/// [`Store::progress`](taskmill_core::Store::progress).
pub fn progress(conn: &mut rusqlite::Connection, updates: &[Progress]) -> R<Vec<Applied>> {
    let tx = begin(conn)?;
    let mut applied = Vec::with_capacity(updates.len());
    {
        let mut store = tx.prepare_cached(STORE_PROGRESS)?;
        for u in updates {
            let cancel_requested = store
                .query_row(
                    params![
                        sql_u64(u.lease.id.get()),
                        sql_u64(u.lease.token),
                        u.value.as_str()
                    ],
                    |r| r.get::<_, bool>(0),
                )
                .optional()?;
            applied.push(match cancel_requested {
                None => Applied::Stale,
                Some(false) => Applied::Done,
                Some(true) => Applied::Cancelled,
            });
        }
    }
    tx.commit()?;
    Ok(applied)
}

/// The statement `sql` held in `slot`, prepared (through the connection's cache) the first
/// time it is needed.
fn cached<'a, 'c>(
    tx: &'c Transaction<'_>,
    slot: &'a mut Option<CachedStatement<'c>>,
    sql: &str,
) -> R<&'a mut CachedStatement<'c>> {
    Ok(match slot {
        Some(stmt) => stmt,
        empty @ None => empty.insert(tx.prepare_cached(sql)?),
    })
}

/// [`Store::apply`](taskmill_core::Store::apply). Returns the results and whether any task
/// went back to INPUT.
pub fn apply(
    conn: &mut rusqlite::Connection,
    outcomes: &[Outcome],
    now: Timestamp,
) -> R<(Vec<Applied>, bool)> {
    let tx = begin(conn)?;
    let mut deltas = Deltas::new();
    let mut applied = Vec::with_capacity(outcomes.len());
    let mut to_input = false;
    // The hot statements, each looked up in the statement cache once per batch rather
    // than once per outcome: a lookup hashes the statement's whole text, which cost
    // about as much as binding its parameters.
    let mut complete_kept: Option<CachedStatement<'_>> = None;
    let mut complete_removed: Option<CachedStatement<'_>> = None;
    for outcome in outcomes {
        let lease = &outcome.lease;
        if let OutcomeKind::Complete { result, .. } = &outcome.kind {
            // The hot path, in one statement (see the module docs). It changes nothing
            // when the lease is stale or a cancel was requested; the general path below
            // tells those apart.
            let (id, token) = (sql_u64(lease.id.get()), sql_u64(lease.token));
            let changed = if outcome.keep {
                cached(&tx, &mut complete_kept, COMPLETE_KEPT)?.execute(params![
                    id,
                    token,
                    text(result),
                    text(&outcome.progress),
                    now.as_millis(),
                ])?
            } else {
                cached(&tx, &mut complete_removed, COMPLETE_REMOVED)?.execute(params![id, token])?
            };
            if changed == 1 {
                let d = delta(&mut deltas, &lease.topic);
                d.counters.completed += 1;
                d.moved(Some(Queue::Work), outcome.keep.then_some(Queue::Completed));
                applied.push(Applied::Done);
                continue;
            }
        }
        // The lease names the topic the claim found the task under; with the token
        // matching, it is the stored one, and a corrupt topic column cannot misfile counts.
        let record = load(&tx, lease.id, Some(&lease.topic))?
            .map(|d| d.record)
            .filter(|r| r.is_owned_by(lease.token));
        let Some(mut record) = record else {
            applied.push(Applied::Stale);
            continue;
        };
        let d = delta(&mut deltas, &lease.topic);
        let to = record.apply_outcome(outcome, now, &mut d.counters);
        d.moved(Some(Queue::Work), to);
        match to {
            None => delete_row(&tx, record.id)?,
            Some(queue) => {
                to_input |= queue == Queue::Input;
                write_back(&tx, &record, now)?;
            }
        }
        applied.push(if record.is_cancel_requested() {
            Applied::Cancelled
        } else {
            Applied::Done
        });
    }
    // The statements go back to the cache before the commit consumes the transaction.
    drop((complete_kept, complete_removed));
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok((applied, to_input))
}

/// [`Store::recover`](taskmill_core::Store::recover).
pub fn recover(conn: &mut rusqlite::Connection, now: Timestamp, limit: usize) -> R<Vec<Recovered>> {
    let tx = begin(conn)?;
    // No `LIMIT` parameter, for the reason given at `claimable`.
    let expired = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE state = 2 AND lease_deadline < ?1 \
             ORDER BY lease_deadline"
        ))?
        .query_map([now.as_millis()], |row| decode(row, None, false))?
        .take(limit)
        .collect::<R<Vec<Decoded>>>()?;
    let mut deltas = Deltas::new();
    let mut recovered = Vec::with_capacity(expired.len());
    for Decoded { mut record, .. } in expired {
        if !record.is_expired(now) {
            continue;
        }
        let d = delta(&mut deltas, &record.topic);
        let queue = record.recover(now, &mut d.counters);
        d.moved(Some(Queue::Work), Some(queue));
        write_back(&tx, &record, now)?;
        recovered.push(Recovered {
            id: record.id,
            topic: record.topic,
            queue,
        });
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(recovered)
}

/// [`Store::prune`](taskmill_core::Store::prune): per topic that keeps finished tasks, the
/// oldest ones at or before its cutoff, until `limit`.
pub fn prune(conn: &mut rusqlite::Connection, opts: &PruneOptions) -> R<u64> {
    let tx = begin(conn)?;
    let topics = tx
        .prepare_cached("SELECT topic FROM topics WHERE kept_completed > 0 OR kept_cancelled > 0")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<R<Vec<String>>>()?;
    let mut deltas = Deltas::new();
    let mut removed = 0usize;
    {
        let mut prune = tx.prepare_cached(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
             WHERE topic = ?1 AND state >= 4 AND finished_at <= ?2 \
             ORDER BY finished_at LIMIT ?3) RETURNING state",
        )?;
        for topic in topics {
            let remaining = opts.limit.saturating_sub(removed);
            if remaining == 0 {
                break;
            }
            let cutoff = opts.cutoff_of(&topic);
            let states = prune
                .query_map(
                    params![
                        topic,
                        cutoff.as_millis(),
                        remaining.min(i64::MAX as usize) as i64
                    ],
                    |r| r.get::<_, i64>(0),
                )?
                .collect::<R<Vec<i64>>>()?;
            if states.is_empty() {
                continue;
            }
            removed += states.len();
            let d = delta(&mut deltas, &Arc::from(topic));
            for state in states {
                d.moved(queue_of(state), None);
            }
        }
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(removed as u64)
}

/// The smallest `run_at` of topic `topics.topic`'s tasks in `state` (due or scheduled):
/// the first entry of its range of `tasks_waiting`, one seek.
fn earliest_run_at(state: i64) -> String {
    format!(
        "(SELECT min(run_at) FROM tasks \
         WHERE tasks.topic = topics.topic AND state = {state} AND {IN_INPUT})"
    )
}

/// How many of topic `topics.topic`'s INPUT tasks are due after `?1` (and, with `filter`,
/// match it): a range of `tasks_waiting` per state from `?1` on, so no due task is visited.
/// Each state is its own equality (`state <= 1` too, which the partial index needs to be
/// chosen), so that `run_at` bounds the range. The count alone reads the index only; a
/// filter on another column reads each row of the range too.
fn not_yet_due(filter: &str) -> String {
    let count = |state: i64| {
        format!(
            "(SELECT count(*) FROM tasks \
             WHERE tasks.topic = topics.topic AND state = {state} AND {IN_INPUT} \
             AND run_at > ?1 {filter})"
        )
    };
    format!("({} + {})", count(READY), count(SCHEDULED))
}

/// Every topic's row, then the earliest `run_at` of its due tasks and of its scheduled
/// ones (the earlier of the two is the topic's), then how many of its INPUT tasks are not
/// yet due at `?1`, and how many of those ran before (retrying).
///
/// Only a retry, a recovery or a release puts a task that ran before into INPUT, so a
/// topic that never counted one has no retrying task: its count costs nothing, where
/// counting otherwise reads the row of each task not yet due (`attempt` is not in
/// `tasks_waiting`).
fn stats_query() -> String {
    format!(
        "SELECT topic, enqueued, started, retried, failed, completed, recovered, released, \
         requeued, cancelled, input, work, dead, kept_completed, kept_cancelled, paused, \
         {}, {}, {}, \
         CASE WHEN retried > 0 OR recovered > 0 OR released > 0 THEN {} ELSE 0 END \
         FROM topics",
        earliest_run_at(READY),
        earliest_run_at(SCHEDULED),
        not_yet_due(""),
        not_yet_due("AND attempt > 0"),
    )
}

/// [`Store::stats`](taskmill_core::Store::stats).
pub fn stats(conn: &mut rusqlite::Connection, now: Timestamp) -> R<Stats> {
    let mut stmt = conn.prepare_cached(&stats_query())?;
    let n = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    let topics = stmt
        .query_map([now.as_millis()], |r| {
            let mut t = TopicStats::default();
            let c = &mut t.counters;
            c.enqueued = n(r, 1)?;
            c.started = n(r, 2)?;
            c.retried = n(r, 3)?;
            c.failed = n(r, 4)?;
            c.completed = n(r, 5)?;
            c.recovered = n(r, 6)?;
            c.released = n(r, 7)?;
            c.requeued = n(r, 8)?;
            c.cancelled = n(r, 9)?;
            t.sizes.input = n(r, 10)?;
            t.sizes.work = n(r, 11)?;
            t.sizes.dead = n(r, 12)?;
            t.sizes.completed = n(r, 13)?;
            t.sizes.cancelled = n(r, 14)?;
            t.paused = r.get(15)?;
            let due = r.get::<_, Option<i64>>(16)?;
            let scheduled = r.get::<_, Option<i64>>(17)?;
            t.earliest_run_at = due
                .into_iter()
                .chain(scheduled)
                .min()
                .map(Timestamp::from_millis);
            let later = n(r, 18)?;
            t.sizes.retrying = n(r, 19)?;
            t.sizes.scheduled = later.saturating_sub(t.sizes.retrying);
            Ok((r.get::<_, String>(0)?, t))
        })?
        .collect::<R<_>>()?;
    Ok(Stats::from_topics(topics))
}

/// [`Store::get`](taskmill_core::Store::get), leniently decoded (the caller decides).
pub fn get(conn: &mut rusqlite::Connection, id: TaskId) -> R<Option<Decoded>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([sql_u64(id.get())], |row| decode(row, None, true))
        .optional()
}

/// The `WHERE` terms that select `queue` in a listing that walks the rowid.
///
/// No index of finished tasks by id is kept, because each one would cost every kept
/// completion an entry (see `layout.rs`); see [`list_sql`] for when a listing walks.
fn list_filter(queue: Queue) -> &'static str {
    match queue {
        Queue::Input => "state IN (0, 1)",
        Queue::Work => "state = 2",
        Queue::Dead => "state = 3",
        Queue::Completed => "state = 4",
        Queue::Cancelled => "state = 5",
        // A queue this layout does not know holds nothing here.
        _ => "0",
    }
}

/// Up to this many tasks of one topic in a queue are listed through that queue's index
/// by topic and sorted by id, instead of walking the rowid (see [`list`]).
const SORT_AT_MOST: i64 = 20_000;

/// The index range that holds `queue`'s tasks (of topic `?3` when `topic`), for
/// listings that read them all and sort them by id: for INPUT, COMPLETED and CANCELLED of
/// one topic, the topic's range of `tasks_waiting` or `tasks_pruning`; for WORK (small:
/// what is running), `tasks_leases`. `None` for DEAD, whose index is by id already, for
/// the others without a topic, and for queues this layout does not know.
fn sorted_range(queue: Queue, topic: bool) -> Option<&'static str> {
    match (queue, topic) {
        (Queue::Input, true) => Some("INDEXED BY tasks_waiting WHERE topic = ?3 AND state <= 1"),
        (Queue::Completed, true) => {
            Some("INDEXED BY tasks_pruning WHERE topic = ?3 AND state >= 4 AND state = 4")
        }
        (Queue::Cancelled, true) => {
            Some("INDEXED BY tasks_pruning WHERE topic = ?3 AND state >= 4 AND state = 5")
        }
        (Queue::Work, true) => Some("INDEXED BY tasks_leases WHERE state = 2 AND topic = ?3"),
        (Queue::Work, false) => Some("INDEXED BY tasks_leases WHERE state = 2"),
        _ => None,
    }
}

/// How many rows a [`sorted_range`] of `queue` reads, from the counters of `topics`:
/// the size of the queue in topic `?1`, or of WORK in every topic.
fn range_size(queue: Queue) -> Option<&'static str> {
    match queue {
        Queue::Input => Some("SELECT input FROM topics WHERE topic = ?1"),
        Queue::Completed => Some("SELECT kept_completed FROM topics WHERE topic = ?1"),
        Queue::Cancelled => Some("SELECT kept_cancelled FROM topics WHERE topic = ?1"),
        Queue::Work => Some("SELECT CAST(total(work) AS INTEGER) FROM topics"),
        _ => None,
    }
}

/// How many tasks are stored, from the counters of `topics`.
const STORED: &str = "SELECT CAST(total(input + work + dead + kept_completed + kept_cancelled) \
     AS INTEGER) FROM topics";

/// The statement of a listing page: `?1` the id after which it starts, `?2` how many rows
/// to fetch, `?3` the topic, if any.
///
/// A listing walks the rowid from `?1` (ascending id is the order asked for) and filters
/// on state and topic, unless `sorted`: then it reads the [`sorted_range`] and sorts it by
/// id (SQLite keeps only the first `?2` rows while sorting). The walk reads the rows
/// between a page's first and last match, which is quick for a queue or a topic with
/// many tasks and slow for a topic with few behind many others; the sorted read costs the
/// tasks in the range, whatever lies around them.
///
/// With `due`, only the tasks due at `?4` (INPUT's pending part): the same walk or range,
/// the tasks not yet due skipped (`run_at` is in `tasks_waiting`, so the sorted read stays
/// covering).
fn list_sql(queue: Queue, topic: bool, sorted: bool, due: bool) -> String {
    let due = if due { "AND run_at <= ?4" } else { "" };
    match sorted_range(queue, topic).filter(|_| sorted) {
        // The ids first, so only the page's rows are read whole (INPUT's range is a
        // covering read of `tasks_waiting`).
        Some(range) => format!(
            "SELECT {COLUMNS} FROM tasks WHERE id IN \
             (SELECT id FROM tasks {range} AND id > ?1 {due} ORDER BY id LIMIT ?2) ORDER BY id"
        ),
        None => format!(
            "SELECT {COLUMNS} FROM tasks WHERE {} AND id > ?1 {} {due} ORDER BY id LIMIT ?2",
            list_filter(queue),
            if topic { "AND topic = ?3" } else { "" }
        ),
    }
}

/// The statement of a page of INPUT's tasks not yet due at `?1` (scheduled with
/// `retrying == false`, retrying otherwise), after id `?2`, `?3` rows at most, of topic
/// `?4` if `topic` (else of every topic in `topics`).
///
/// It reads the ranges `(topic, state, run_at > ?1)` of `tasks_waiting` (both states:
/// a task filed due may be not yet due at an earlier `now`), as stats count them, and the
/// row of each entry for its `attempt`, then sorts the ids: O(tasks not yet due), never a
/// due task visited.
fn not_yet_due_sql(topic: bool, retrying: bool) -> String {
    let topic = if topic {
        "topic = ?4"
    } else {
        "topic IN (SELECT topic FROM topics)"
    };
    let attempt = if retrying {
        "attempt > 0"
    } else {
        "attempt = 0"
    };
    format!(
        "SELECT {COLUMNS} FROM tasks WHERE id IN \
         (SELECT id FROM tasks INDEXED BY tasks_waiting WHERE {topic} AND {IN_INPUT} \
         AND state IN ({READY}, {SCHEDULED}) AND run_at > ?1 AND {attempt} AND id > ?2 \
         ORDER BY id LIMIT ?3) ORDER BY id"
    )
}

/// A page of INPUT's tasks not yet due (see [`not_yet_due_sql`]).
fn list_not_yet_due(
    conn: &mut rusqlite::Connection,
    query: &ListOptions,
    retrying: bool,
    now: Timestamp,
) -> R<Page> {
    let after = query.after.map_or(0, |a| sql_u64(a.get()));
    let limit = query.limit.clamp(1, i64::MAX as usize - 1);
    let fetch = (limit + 1) as i64;
    let mut stmt = conn.prepare_cached(&not_yet_due_sql(query.topic.is_some(), retrying))?;
    let now = now.as_millis();
    let rows = match &query.topic {
        Some(t) => stmt
            .query_map(params![now, after, fetch, t.as_ref()], |row| {
                decode(row, Some(t), false)
            })?
            .collect::<R<Vec<_>>>()?,
        None => stmt
            .query_map(params![now, after, fetch], |row| decode(row, None, false))?
            .collect::<R<Vec<_>>>()?,
    };
    let mut tasks: Vec<TaskRecord> = rows.into_iter().map(|d| d.record).collect();
    let next = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Page { tasks, next })
}

/// [`Store::list`](taskmill_core::Store::list).
///
/// A listing whose [`sorted_range`] holds at most [`SORT_AT_MOST`] tasks (by the
/// counters of `topics`), and few enough that reading them all costs less than walking
/// to a page of them would if they were spread evenly, reads that range and sorts it; any
/// other walks the rowid (see [`list_sql`]). Neither costs any write an index entry.
pub fn list(conn: &mut rusqlite::Connection, query: &ListOptions) -> R<Page> {
    let due = match query.waiting {
        Some((Waiting::Pending, now)) => Some(now.as_millis()),
        Some((kind, now)) => return list_not_yet_due(conn, query, kind == Waiting::Retrying, now),
        None => None,
    };
    let topic = query.topic.as_deref();
    let size = match (
        sorted_range(query.queue, topic.is_some()),
        range_size(query.queue),
    ) {
        (Some(_), Some(sql)) => {
            let mut stmt = conn.prepare_cached(sql)?;
            let size = match topic {
                Some(t) if query.queue != Queue::Work => stmt.query_row([t], |r| r.get(0)),
                _ => stmt.query_row([], |r| r.get(0)),
            };
            // A topic without a row holds nothing.
            size.optional()?.unwrap_or(0)
        }
        _ => i64::MAX,
    };
    // Sorting reads `size` entries; the walk reads about `limit * rows / size` rows when
    // the range's tasks are spread evenly through the table (and all that lie in front
    // when they are not, which is the case sorting is for).
    let sorted = size <= SORT_AT_MOST && {
        let rows: i64 = conn.prepare_cached(STORED)?.query_row([], |r| r.get(0))?;
        let limit = query.limit.min(SORT_AT_MOST as usize) as i64;
        size * size <= 4 * limit * rows
    };
    let sql = list_sql(query.queue, topic.is_some(), sorted, due.is_some());
    let after = query.after.map_or(0, |a| sql_u64(a.get()));
    let limit = query.limit.clamp(1, i64::MAX as usize - 1);
    let mut stmt = conn.prepare_cached(&sql)?;
    let fetch = (limit + 1) as i64;
    let rows = match (&query.topic, due) {
        // `?3` is bound unused when there is no topic: `?4` numbers past it.
        (t, Some(now)) => {
            let name = t.as_deref().unwrap_or("");
            stmt.query_map(params![after, fetch, name, now], |row| {
                decode(row, t.as_ref(), false)
            })?
            .collect::<R<Vec<_>>>()?
        }
        (Some(t), None) => stmt
            .query_map(params![after, fetch, t.as_ref()], |row| {
                decode(row, Some(t), false)
            })?
            .collect::<R<Vec<_>>>()?,
        (None, None) => stmt
            .query_map(params![after, fetch], |row| decode(row, None, false))?
            .collect::<R<Vec<_>>>()?,
    };
    // Listing is for people and admin tools: a corrupt record is shown with what could be
    // read (its raw payload included) so it can be found, requeued or deleted.
    let mut tasks: Vec<TaskRecord> = rows.into_iter().map(|d| d.record).collect();
    let next = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Page { tasks, next })
}

/// [`Store::requeue`](taskmill_core::Store::requeue).
pub fn requeue(conn: &mut rusqlite::Connection, ids: &[TaskId], now: Timestamp) -> R<Vec<bool>> {
    let tx = begin(conn)?;
    let mut deltas = Deltas::new();
    let mut moved = Vec::with_capacity(ids.len());
    for &id in ids {
        let record = load(&tx, id, None)?
            .map(|d| d.record)
            .filter(|r| r.queue == Queue::Dead);
        let Some(mut record) = record else {
            moved.push(false);
            continue;
        };
        let d = delta(&mut deltas, &record.topic);
        record.requeue(now, &mut d.counters);
        d.moved(Some(Queue::Dead), Some(Queue::Input));
        write_back(&tx, &record, now)?;
        moved.push(true);
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(moved)
}

/// [`Store::delete`](taskmill_core::Store::delete).
pub fn delete(conn: &mut rusqlite::Connection, ids: &[TaskId]) -> R<Vec<bool>> {
    let tx = begin(conn)?;
    let mut deltas = Deltas::new();
    let mut existed = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = tx
            .prepare_cached("SELECT topic, state FROM tasks WHERE id = ?1")?
            .query_row([sql_u64(id.get())], |r| {
                Ok((r.get::<_, String>(0).ok(), r.get::<_, i64>(1).ok()))
            })
            .optional()?;
        let Some((topic, state)) = row else {
            existed.push(false);
            continue;
        };
        delete_row(&tx, id)?;
        // A row too corrupt to say where it was counted is removed without a count.
        if let (Some(topic), Some(queue)) = (topic, state.and_then(queue_of)) {
            delta(&mut deltas, &Arc::from(topic)).moved(Some(queue), None);
        }
        existed.push(true);
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(existed)
}

/// What a cancel did, for the caller to publish once it is committed.
pub struct CancelDone {
    /// One result per id.
    pub results: Vec<Cancellation>,
    /// The `TaskCancelled` events of the tasks cancelled at once, when someone listens.
    pub events: Vec<Event>,
    /// The running tasks whose cancel was requested, for the cancellation streams.
    pub requested: Vec<TaskId>,
}

/// [`Store::cancel`](taskmill_core::Store::cancel).
pub fn cancel(
    conn: &mut rusqlite::Connection,
    ids: &[TaskId],
    opts: &CancelOptions,
    want_events: bool,
) -> R<CancelDone> {
    let tx = begin(conn)?;
    let mut deltas = Deltas::new();
    let mut done = CancelDone {
        results: Vec::with_capacity(ids.len()),
        events: Vec::new(),
        requested: Vec::new(),
    };
    for &id in ids {
        let Some(Decoded { mut record, .. }) = load(&tx, id, None)? else {
            done.results.push(Cancellation::NotFound);
            continue;
        };
        let requested_before = record.is_cancel_requested();
        let d = delta(&mut deltas, &record.topic);
        let result = record.cancel(opts.now, &opts.by, &mut d.counters);
        match result {
            Cancellation::Cancelled => {
                d.moved(Some(Queue::Input), Some(Queue::Cancelled));
                write_back(&tx, &record, opts.now)?;
                if want_events {
                    done.events.push(Event::TaskCancelled {
                        id,
                        topic: record.topic.clone(),
                        by: Some(opts.by.clone()),
                        was_running: false,
                    });
                }
            }
            Cancellation::Requested => {
                if !requested_before {
                    tx.prepare_cached("UPDATE tasks SET cancelled_by = ?2 WHERE id = ?1")?
                        .execute(params![sql_u64(id.get()), record.cancelled_by])?;
                }
                done.requested.push(id);
            }
            _ => {}
        }
        done.results.push(result);
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(done)
}

/// [`Store::set_paused`](taskmill_core::Store::set_paused).
pub fn set_paused(conn: &mut rusqlite::Connection, topic: &str, paused: bool) -> R<()> {
    conn.prepare_cached(
        "INSERT INTO topics (topic, paused) VALUES (?1, ?2) \
         ON CONFLICT (topic) DO UPDATE SET paused = excluded.paused",
    )?
    .execute(params![topic, paused])?;
    Ok(())
}

/// A schedule's state by name.
fn load_schedule(tx: &Transaction<'_>, name: &str) -> R<Option<ScheduleState>> {
    tx.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"
    ))?
    .query_row([name], decode_schedule)
    .optional()
}

/// Writes a schedule's whole state, creating its row if it has none.
fn save_schedule(tx: &Transaction<'_>, state: &ScheduleState) -> R<()> {
    tx.prepare_cached(
        "INSERT INTO schedules (name, spec, zone, topic, paused, last_tick, last_task, \
         fired_at, seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, zone = excluded.zone, \
         topic = excluded.topic, paused = excluded.paused, last_tick = excluded.last_tick, \
         last_task = excluded.last_task, fired_at = excluded.fired_at, \
         seen_at = excluded.seen_at",
    )?
    .execute(params![
        state.name.as_ref(),
        state.spec.as_ref(),
        state.zone.as_ref(),
        state.topic.as_ref(),
        state.paused,
        millis(state.last_tick),
        state.last_task.map(|id| sql_u64(id.get())),
        millis(state.fired_at),
        state.seen_at.as_millis(),
    ])?;
    Ok(())
}

/// [`Store::register_schedules`](taskmill_core::Store::register_schedules): one
/// transaction for the batch, each entry through [`ScheduleState::new`] or
/// [`ScheduleState::register`], so the rules are the core's.
pub fn register_schedules(
    conn: &mut rusqlite::Connection,
    entries: &[ScheduleEntry],
    now: Timestamp,
) -> R<Vec<ScheduleState>> {
    let tx = begin(conn)?;
    let mut states = Vec::with_capacity(entries.len());
    for entry in entries {
        let state = match load_schedule(&tx, &entry.name)? {
            Some(mut state) => {
                state.register(entry, now);
                state
            }
            None => ScheduleState::new(entry, now),
        };
        save_schedule(&tx, &state)?;
        states.push(state);
    }
    tx.commit()?;
    Ok(states)
}

/// Whether task `id` is in INPUT or WORK (an unfinished previous tick, for
/// [`Overlap::Skip`](taskmill_core::Overlap::Skip)); a task gone is finished.
fn is_unfinished(tx: &Transaction<'_>, id: TaskId) -> R<bool> {
    tx.prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND state <= 2")?
        .exists([sql_u64(id.get())])
}

/// [`Store::fire`](taskmill_core::Store::fire): the whole batch in one `BEGIN IMMEDIATE`
/// transaction, which per tick reads the schedule's state, decides
/// ([`ScheduleState::decide`]), enqueues the tick's task through the [`Inserter`] of
/// [`enqueue`] and stores the new state ([`ScheduleState::fired`]); then commits.
///
/// The write lock is taken by `BEGIN`, before any state is read: two processes firing the
/// same tick run these transactions one after the other, and the second reads the first
/// one's `last_tick` and answers `Stale`. So of any number of calls with one tick, one
/// enqueues. One transaction for the batch (rather than one per tick) makes the batch
/// atomic as a whole, and costs one commit however many schedules tick at once.
pub fn fire(
    conn: &mut rusqlite::Connection,
    ticks: Vec<Tick>,
    opts: &EnqueueOptions,
    want_events: bool,
) -> R<(Vec<Fired>, Vec<Event>)> {
    let tx = begin(conn)?;
    let mut answers = Vec::with_capacity(ticks.len());
    let mut inserter = Inserter::new(&tx, want_events)?;
    for tick in ticks {
        let known = load_schedule(&tx, &tick.schedule)?;
        let mut state = known
            .clone()
            .unwrap_or_else(|| ScheduleState::unregistered(&tick, opts.now));
        // `decide` asks about the previous task through a plain `bool`: a failed lookup is
        // kept here and fails the call.
        let mut lookup = Ok(false);
        let decided = state.decide(&tick, |id| {
            lookup = is_unfinished(&tx, id);
            *lookup.as_ref().unwrap_or(&false)
        });
        lookup?;
        let answer = match decided {
            Some(answer) => answer,
            None => {
                let enqueued = inserter.insert(tick.task.clone(), opts)?;
                state.fired(&tick, enqueued, opts.now);
                Fired::Enqueued(enqueued)
            }
        };
        // `Stale` changed nothing; every other answer moved `last_tick` (or created the
        // state of a schedule fired before it was registered).
        if known.as_ref() != Some(&state) {
            save_schedule(&tx, &state)?;
        }
        answers.push(answer);
    }
    let events = inserter.finish(&tx)?;
    tx.commit()?;
    Ok((answers, events))
}

/// [`Store::schedules`](taskmill_core::Store::schedules): by name, in byte order (the
/// `BINARY` collation of `name`).
pub fn schedules(conn: &mut rusqlite::Connection) -> R<Vec<ScheduleState>> {
    conn.prepare_cached(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
    ))?
    .query_map([], decode_schedule)?
    .collect()
}

/// [`Store::set_schedule_paused`](taskmill_core::Store::set_schedule_paused): one
/// statement, so one transaction; an unknown name changes no row.
pub fn set_schedule_paused(conn: &mut rusqlite::Connection, name: &str, paused: bool) -> R<bool> {
    let changed = conn
        .prepare_cached("UPDATE schedules SET paused = ?2 WHERE name = ?1")?
        .execute(params![name, paused])?;
    Ok(changed == 1)
}

/// [`Store::prune_schedules`](taskmill_core::Store::prune_schedules): one statement.
/// Their tasks stay.
pub fn prune_schedules(conn: &mut rusqlite::Connection, seen_before: Timestamp) -> R<u64> {
    let removed = conn
        .prepare_cached("DELETE FROM schedules WHERE seen_at < ?1")?
        .execute([seen_before.as_millis()])?;
    Ok(removed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The plan SQLite picks for `sql`, one step per line.
    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let steps: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<R<_>>()
            .unwrap();
        steps.join("\n")
    }

    /// Each hot query is a range scan of its partial index (O(log n) to find the first
    /// row), never a scan of the table or a sort of the backlog.
    #[test]
    fn hot_queries_use_their_indexes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let cases = [
            (claimable(), "tasks_ready"),
            (PROMOTE.to_owned(), "tasks_waiting"),
            (NEXT_WAITING.to_owned(), "tasks_waiting"),
            (
                format!(
                    "SELECT {COLUMNS} FROM tasks WHERE state = 2 AND lease_deadline < ?1 \
                     ORDER BY lease_deadline"
                ),
                "tasks_leases",
            ),
            (
                format!(
                    "SELECT id FROM tasks WHERE topic = ?1 AND unique_key = ?2 \
                     AND {HOLDS_UNIQUE_KEY}"
                ),
                "tasks_unique",
            ),
            (
                "SELECT id FROM tasks WHERE topic = ?1 AND state >= 4 AND finished_at <= ?2 \
                 ORDER BY finished_at LIMIT ?3"
                    .to_owned(),
                "tasks_pruning",
            ),
            (
                format!(
                    "SELECT {COLUMNS} FROM tasks WHERE state = 3 AND id > ?1 ORDER BY id LIMIT ?2"
                ),
                "tasks_dead",
            ),
        ];
        for (sql, index) in cases {
            let plan = plan(&conn, &sql);
            assert!(
                plan.starts_with(&format!("SEARCH tasks USING INDEX {index} ("))
                    || plan.starts_with(&format!("SEARCH tasks USING COVERING INDEX {index} (")),
                "{sql}\nshould search {index}, plan:\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts:\n{plan}");
        }
        // A promotion seeks the scheduled entries that fell due, not the due ones too (an
        // older planner took `state <= 1` as the range, which reads every due task).
        let promote = plan(&conn, PROMOTE);
        assert!(
            promote.contains("tasks_waiting (topic=? AND state=? AND run_at<?)"),
            "{promote}"
        );
        // Each topic's earliest run_at is two seeks of tasks_waiting, never a scan.
        let stats = plan(&conn, &stats_query());
        let seek = "SEARCH tasks USING COVERING INDEX tasks_waiting (topic=? AND state=?)";
        assert_eq!(stats.matches(seek).count(), 2, "{stats}");
        assert!(!stats.contains("SCAN tasks"), "{stats}");
        // Finished tasks, of one topic or all, are listed in rowid order, without a sort.
        for (queue, topic) in [Queue::Completed, Queue::Cancelled]
            .into_iter()
            .flat_map(|q| [(q, ""), (q, "AND topic = ?3")])
        {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks WHERE {} AND id > ?1 {topic} ORDER BY id LIMIT ?2",
                list_filter(queue)
            );
            let plan = plan(&conn, &sql);
            assert!(
                plan.starts_with("SEARCH tasks USING INTEGER PRIMARY KEY (rowid>?)"),
                "{sql}\nshould search the rowid, plan:\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts:\n{plan}");
        }
        // A sorted listing reads its range of the queue's index (for WORK, all of
        // `tasks_leases`), never the table.
        for (queue, topic, index) in [
            (Queue::Input, true, "tasks_waiting"),
            (Queue::Completed, true, "tasks_pruning"),
            (Queue::Cancelled, true, "tasks_pruning"),
            (Queue::Work, true, "tasks_leases"),
            (Queue::Work, false, "tasks_leases"),
        ] {
            let sql = list_sql(queue, topic, true, false);
            let plan = plan(&conn, &sql);
            let search = if queue == Queue::Work {
                "SCAN"
            } else {
                "SEARCH"
            };
            assert!(
                plan.starts_with("SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)")
                    && (plan.contains(&format!("{search} tasks USING INDEX {index}"))
                        || plan.contains(&format!("{search} tasks USING COVERING INDEX {index}"))),
                "{sql}\nshould read {index}, plan:\n{plan}"
            );
            assert_eq!(plan.matches("TEMP B-TREE").count(), 1, "one sort:\n{plan}");
        }
        // A listing of INPUT's tasks not yet due reads the ranges after `now` of
        // `tasks_waiting` (per topic, both states), never a due task or the table.
        for (topic, retrying) in [(true, false), (true, true), (false, false), (false, true)] {
            let sql = not_yet_due_sql(topic, retrying);
            let plan = plan(&conn, &sql);
            assert!(
                plan.contains("USING INDEX tasks_waiting (topic=? AND state=? AND run_at>?)"),
                "{sql}\nshould seek run_at > now in tasks_waiting, plan:\n{plan}"
            );
            assert!(!plan.contains("SCAN tasks"), "{sql} scans:\n{plan}");
        }
        // A listing of the due ones is the walk (or range) of INPUT's listing, no other.
        for (topic, sorted) in [(false, false), (true, false), (true, true)] {
            let due = plan(&conn, &list_sql(Queue::Input, topic, sorted, true));
            let unfiltered = plan(&conn, &list_sql(Queue::Input, topic, sorted, false));
            assert_eq!(due, unfiltered, "topic {topic}, sorted {sorted}");
        }
        // The pruning statement deletes through that index, not a scan.
        let prune = plan(
            &conn,
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
             WHERE topic = ?1 AND state >= 4 AND finished_at <= ?2 \
             ORDER BY finished_at LIMIT ?3) RETURNING state",
        );
        assert!(
            prune.contains("tasks_pruning") && !prune.contains("SCAN tasks"),
            "{prune}"
        );
    }

    fn ids(claimed: &[Claimed]) -> Vec<u64> {
        claimed
            .iter()
            .map(|c| match c {
                Claimed::Ready(r) => r.id.get(),
                Claimed::Corrupt { lease, .. } => lease.id.get(),
            })
            .collect()
    }

    /// A database with 40 claim topics `c00`..`c39` (some with ready tasks of mixed
    /// priorities, some scheduled, some drained, one paused, one at its `max_running`)
    /// and tasks of topics no claim names between them.
    fn mixed_topics() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(10_000);
        let mut tasks = Vec::new();
        for t in 0..40u32 {
            let name = format!("c{t:02}");
            // Topics 0, 3, 6, ... have nothing; the others 1 to 4 tasks.
            let n = if t % 3 == 0 { 0 } else { t % 4 + 1 };
            for i in 0..n {
                let task = Task::new(name.clone(), &i)
                    .unwrap()
                    .priority((i % 3) as i16);
                tasks.push(match (t + i) % 5 {
                    // Fell due by the claim's time: promoted first.
                    0 => task.run_at(Timestamp::from_millis(20_000)),
                    // Not due yet.
                    1 => task.run_at(Timestamp::from_millis(1_000_000)),
                    _ => task,
                });
            }
            // Tasks of a topic between two claim topics that no claim names.
            tasks.push(Task::new(format!("c{t:02}x"), &t).unwrap());
        }
        // Topics 0 and 3 held tasks once: they have rows, with nothing in INPUT.
        tasks.push(Task::new("c00", &0).unwrap());
        tasks.push(Task::new("c03", &0).unwrap());
        enqueue(&mut conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        let drain = [TopicClaim::new("c00"), TopicClaim::new("c03")];
        let taken = claim(&mut conn, &ClaimOptions::new(drain, 10, "m", now)).unwrap();
        assert_eq!(taken.len(), 2);
        set_paused(&mut conn, "c05", true).unwrap();
        conn
    }

    fn mixed_claim(first: usize, limit: usize) -> ClaimOptions {
        let topics = (0..40u32).map(|t| {
            let claim = TopicClaim::new(format!("c{t:02}"));
            if t == 7 {
                claim.max_running(1)
            } else {
                claim
            }
        });
        ClaimOptions::new(topics, limit, "m", Timestamp::from_millis(30_000)).first(first)
    }

    /// Seeking the waiting topics claims exactly what looking up every topic in turn
    /// claims, in the same order, from every first topic, for claims that fill up on the
    /// way and claims that wrap round.
    #[test]
    fn seeking_waiting_topics_claims_what_the_walk_claims() {
        for first in 0..40 {
            for limit in [1, 3, 8, 200] {
                let (mut seek, mut walk) = (mixed_topics(), mixed_topics());
                let req = mixed_claim(first, limit);
                let sought = claim_in(&mut seek, &req, true).unwrap();
                let walked = claim_in(&mut walk, &req, false).unwrap();
                assert_eq!(ids(&sought), ids(&walked), "first {first}, limit {limit}");
                assert!(!sought.is_empty());
            }
        }
        // Everything claimable (not paused, within max_running, due) in one claim.
        let mut conn = mixed_topics();
        let all = claim(&mut conn, &mixed_claim(0, 1_000)).unwrap();
        assert_eq!(all.len(), 48, "{:?}", ids(&all));
    }

    /// How many times topic rows were looked up on `conn` so far.
    fn topic_lookups(conn: &rusqlite::Connection) -> i32 {
        conn.prepare_cached(TOPIC_STATE)
            .unwrap()
            .get_status(rusqlite::StatementStatus::Run)
    }

    /// A claim over 2,000 topics of which 3 have tasks waiting looks up those 3, not
    /// the 1,997 that once held tasks and hold none now.
    #[test]
    fn a_claim_looks_up_only_the_topics_that_have_tasks_waiting() {
        use taskmill_core::store::ClaimTopics;
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(1_000);
        let names: Vec<String> = (0..2_000).map(|t| format!("t{t:04}")).collect();
        let topics: ClaimTopics = names.iter().map(|n| TopicClaim::new(n.as_str())).collect();
        let tasks = names
            .iter()
            .map(|n| Task::new(n.as_str(), &0).unwrap())
            .collect();
        enqueue(&mut conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        let req = ClaimOptions::with_topics(topics.clone(), 5_000, "m", now);
        assert_eq!(claim(&mut conn, &req).unwrap().len(), 2_000);
        let tasks = ["t0100", "t1500", "t1999"]
            .map(|n| Task::new(n, &1).unwrap())
            .to_vec();
        enqueue(&mut conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        let before = topic_lookups(&conn);
        let req = ClaimOptions::with_topics(topics, 10, "m", now).first(1_000);
        let claimed = claim(&mut conn, &req).unwrap();
        assert_eq!(
            ids(&claimed),
            [2_002, 2_003, 2_001],
            "from t1000, wrapping round"
        );
        assert_eq!(topic_lookups(&conn) - before, 3);
    }

    /// The ids of a listing page read by [`list_sql`], walking the rowid or sorting a
    /// range, and how many virtual machine steps it took.
    fn page(
        conn: &rusqlite::Connection,
        queue: Queue,
        topic: Option<&str>,
        sorted: bool,
        after: i64,
        limit: i64,
    ) -> (Vec<i64>, i32) {
        let mut stmt = conn
            .prepare(&list_sql(queue, topic.is_some(), sorted, false))
            .unwrap();
        let id = |r: &rusqlite::Row<'_>| r.get::<_, i64>(0);
        let ids: R<Vec<i64>> = match topic {
            Some(t) => stmt
                .query_map(params![after, limit, t], id)
                .unwrap()
                .collect(),
            None => stmt.query_map(params![after, limit], id).unwrap().collect(),
        };
        let ids = ids.unwrap();
        (ids, stmt.get_status(rusqlite::StatementStatus::VmStep))
    }

    /// 3,000 tasks of `big` then 30 of `rare`, a third of each topic's claimed, and of
    /// those a third completed (kept) and a third cancelled while running.
    fn listed_tasks() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(1_000);
        let tasks = (0..3_000)
            .map(|i| Task::new("big", &i).unwrap())
            .chain((0..30).map(|i| Task::new("rare", &i).unwrap()))
            .collect();
        enqueue(&mut conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        for (topic, n) in [("big", 1_000), ("rare", 10)] {
            let req = ClaimOptions::new([TopicClaim::new(topic)], n, "m", now);
            let claimed = claim(&mut conn, &req).unwrap();
            let leases: Vec<LeaseRef> = ids(&claimed)
                .into_iter()
                .zip(&claimed)
                .map(|(_, c)| match c {
                    Claimed::Ready(r) => LeaseRef::of(r),
                    Claimed::Corrupt { lease, .. } => lease.clone(),
                })
                .collect();
            let third = leases.len() / 3;
            let done: Vec<Outcome> = leases[..third]
                .iter()
                .map(|l| Outcome::new(l.clone(), OutcomeKind::complete()))
                .collect();
            apply(&mut conn, &done, now).unwrap();
            let cancelled: Vec<TaskId> = leases[third..2 * third].iter().map(|l| l.id).collect();
            cancel(
                &mut conn,
                &cancelled,
                &CancelOptions::new(now, "admin"),
                false,
            )
            .unwrap();
            let stopped: Vec<Outcome> = leases[third..2 * third]
                .iter()
                .map(|l| Outcome::new(l.clone(), OutcomeKind::complete()))
                .collect();
            apply(&mut conn, &stopped, now).unwrap();
        }
        conn
    }

    /// Reading a topic's range and sorting it lists exactly what walking the rowid lists,
    /// page after page, for every queue with a range; and a page of a topic with few tasks
    /// behind many takes a small part of the steps of the walk.
    #[test]
    fn sorted_ranges_list_what_the_walk_lists() {
        let conn = listed_tasks();
        let queues = [
            Queue::Input,
            Queue::Work,
            Queue::Completed,
            Queue::Cancelled,
        ];
        let mut seen = 0;
        for queue in queues {
            for topic in [Some("big"), Some("rare"), None] {
                if sorted_range(queue, topic.is_some()).is_none() {
                    continue;
                }
                let (mut after, mut pages) = (0, 0);
                loop {
                    let (walked, _) = page(&conn, queue, topic, false, after, 7);
                    let (sorted, _) = page(&conn, queue, topic, true, after, 7);
                    assert_eq!(sorted, walked, "{queue:?} {topic:?} after {after}");
                    seen += sorted.len();
                    match sorted.last() {
                        Some(&last) if pages < 1_000 => (after, pages) = (last, pages + 1),
                        _ => break,
                    }
                }
            }
        }
        // Both topics' tasks, each once per listing that names it and once in WORK's.
        assert!(seen > 3_000, "{seen}");
        let (walked, walk_steps) = page(&conn, Queue::Input, Some("rare"), false, 0, 10);
        let (sorted, sorted_steps) = page(&conn, Queue::Input, Some("rare"), true, 0, 10);
        assert_eq!(sorted, walked);
        assert_eq!(sorted.len(), 10);
        assert!(
            sorted_steps * 10 < walk_steps,
            "sorted {sorted_steps} steps, walk {walk_steps}"
        );
    }

    /// How many virtual machine steps reading the stats at `now` takes.
    fn stats_steps(conn: &rusqlite::Connection, now: Timestamp) -> i32 {
        let mut stmt = conn.prepare(&stats_query()).unwrap();
        let rows = stmt
            .query_map([now.as_millis()], |_| Ok(()))
            .unwrap()
            .count();
        assert_eq!(rows, 1, "one topic");
        stmt.get_status(rusqlite::StatementStatus::VmStep)
    }

    /// The earliest run_at costs the same with 10 tasks waiting as with 5,000 (due and
    /// scheduled alike): it is read from the index, not found by a scan.
    #[test]
    fn stats_cost_does_not_grow_with_the_tasks_waiting() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(1_000_000);
        let fill = |conn: &mut rusqlite::Connection, n: i64| {
            let tasks = (0..n)
                .map(|i| {
                    // Half due at scattered past times, half scheduled at scattered ones.
                    let offset = std::time::Duration::from_millis((i * 7_919 % 10_000) as u64);
                    let task = Task::new("t", &i).unwrap();
                    match i % 2 {
                        0 => task.run_at(Timestamp::from_millis(1_000) + offset),
                        _ => task.delay(offset + std::time::Duration::from_millis(1)),
                    }
                })
                .collect();
            enqueue(conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        };
        // Read when every task is due, so the split by time has nothing to count.
        let later = Timestamp::from_millis(2_000_000);
        fill(&mut conn, 10);
        let few = stats_steps(&conn, later);
        fill(&mut conn, 5_000);
        let many = stats_steps(&conn, later);
        assert_eq!(few, many, "steps with 10 tasks waiting vs 5,010");
        let topic = stats(&mut conn, later).unwrap().topic("t");
        assert_eq!(topic.sizes.input, 5_010);
        assert_eq!((topic.sizes.scheduled, topic.sizes.retrying), (0, 0));
        let topic = stats(&mut conn, now).unwrap().topic("t");
        assert_eq!(topic.sizes.scheduled, 2_505, "the odd tasks are scheduled");
        assert_eq!(topic.sizes.pending(), 2_505);
        let expected: i64 = conn
            .query_row("SELECT min(run_at) FROM tasks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            topic.earliest_run_at,
            Some(Timestamp::from_millis(expected))
        );
    }

    /// Splitting INPUT by time visits the tasks not yet due only: 5,000 more due tasks
    /// cost the stats no step, and each subquery is a search of `tasks_waiting`.
    #[test]
    fn the_split_by_time_visits_no_due_task() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(1_000_000);
        let scheduled = (0..10)
            .map(|i| {
                Task::new("t", &i)
                    .unwrap()
                    .delay(std::time::Duration::from_secs(60))
            })
            .collect();
        enqueue(&mut conn, scheduled, &EnqueueOptions::new(now), false).unwrap();
        let few = stats_steps(&conn, now);
        let due = (0..5_000).map(|i| Task::new("t", &i).unwrap()).collect();
        enqueue(&mut conn, due, &EnqueueOptions::new(now), false).unwrap();
        let many = stats_steps(&conn, now);
        // A few steps more (each index seek lands among more entries), where a visit per
        // due task would cost thousands.
        assert!(
            (many - few).abs() < 50,
            "steps with 0 due tasks: {few}, with 5,000: {many}"
        );
        let sizes = stats(&mut conn, now).unwrap().topic("t").sizes;
        assert_eq!(
            (sizes.pending(), sizes.scheduled, sizes.retrying),
            (5_000, 10, 0)
        );
        for filter in ["", "AND attempt > 0"] {
            let query = plan(
                &conn,
                &format!("SELECT {} FROM topics", not_yet_due(filter)),
            );
            assert!(
                query.contains("tasks_waiting (topic=? AND state=? AND run_at>?)")
                    && !query.contains("SCAN tasks"),
                "{query}"
            );
        }
    }

    /// The statements every claim, renewal and completion runs are prepared once and
    /// reused: none is marked to be prepared again when a parameter changes (as a bound
    /// `LIMIT` would be), whatever topics and tasks they are run for.
    #[test]
    fn hot_statements_are_never_prepared_again() {
        use rusqlite::StatementStatus;
        use taskmill_core::store::{RenewOptions, TopicClaim};
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::layout::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let now = Timestamp::from_millis(1_000);
        let tasks = (0..30)
            .map(|n| Task::new(format!("t{}", n % 3), &n).unwrap())
            .collect();
        enqueue(&mut conn, tasks, &EnqueueOptions::new(now), false).unwrap();
        for (round, order) in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]]
            .iter()
            .enumerate()
        {
            let topics = order.map(|t| TopicClaim::new(format!("t{t}")));
            let claimed =
                claim(&mut conn, &ClaimOptions::new(topics, 2 + round, "m", now)).unwrap();
            let leases: Vec<LeaseRef> = claimed
                .iter()
                .map(|c| match c {
                    Claimed::Ready(r) => LeaseRef::of(r),
                    Claimed::Corrupt { lease, .. } => lease.clone(),
                })
                .collect();
            let deadline = RenewOptions::new(now + std::time::Duration::from_secs(60)).deadline;
            renew(&mut conn, &leases, deadline).unwrap();
            let reports: Vec<Progress> = leases
                .iter()
                .map(|l| Progress {
                    lease: l.clone(),
                    value: Payload::new(&round).unwrap(),
                })
                .collect();
            progress(&mut conn, &reports).unwrap();
            let outcomes: Vec<Outcome> = leases
                .into_iter()
                .enumerate()
                .map(|(i, l)| Outcome::new(l, OutcomeKind::complete()).keep(i % 2 == 0))
                .collect();
            apply(&mut conn, &outcomes, now).unwrap();
        }
        let hot = [
            claimable(),
            PROMOTE.to_owned(),
            NEXT_WAITING.to_owned(),
            TOPIC_STATE.to_owned(),
            CLAIM_BACK.to_owned(),
            EXTEND.to_owned(),
            STORE_PROGRESS.to_owned(),
            COMPLETE_KEPT.to_owned(),
            COMPLETE_REMOVED.to_owned(),
            FLUSH.to_owned(),
        ];
        for sql in hot {
            let stmt = conn.prepare_cached(&sql).unwrap();
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "prepared again: {sql}"
            );
        }
    }
}
