//! The store's operations as SQL, run on the connection thread.
//!
//! Each public function is one `BEGIN IMMEDIATE` transaction over a whole batch: the
//! write lock it takes is what keeps processes sharing the file apart, and the counters
//! and queue sizes in `topics` are updated in the same transaction as the moves they
//! count. Whole records are read and moved through [`RecordExt`]'s transitions
//! (`claim`, `apply_outcome`, `recover`, `requeue`) and `is_owned_by`, then written back. Two hot
//! paths are the equivalent SQL instead, since they need nothing of the record:
//! - `renew`: `is_owned_by(token)` is `state = 2 AND lease_token = ?`, and the renewal
//!   sets `lease_deadline`;
//! - a `Complete` outcome: `DELETE … WHERE id = ? AND state = 2 AND lease_token = ?`,
//!   counting `completed` (and WORK − 1) when a row went, as `apply_outcome(Complete)` does.

use crate::codec::{decode, sql_u64, state_of, Decoded, Delta, COLUMNS, DEAD, READY, WORK};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use std::collections::HashMap;
use std::sync::Arc;
use taskmill_core::raw::{RecordExt, TaskExt};
use taskmill_core::store::{
    Applied, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListOptions, Outcome,
    OutcomeKind, Page, Recovered,
};
use taskmill_core::{Event, Lease, Queue, Stats, Task, TaskId, TaskRecord, Timestamp, TopicStats};

type R<T> = rusqlite::Result<T>;

/// Per-topic changes made by one transaction.
type Deltas = HashMap<Arc<str>, Delta>;

const INSERT: &str = "INSERT INTO tasks (id, state, topic, priority, run_at, args, external_id, \
     attempt, max_retries, enqueued_at, unique_key, last_error, failed_at, lease_owner, \
     lease_token, lease_deadline) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// Writes back every column a lifecycle method may change. The others (topic, args,
/// priority, …) are never rewritten, so a corrupt payload stays as it was found.
const WRITE_BACK: &str = "UPDATE tasks SET state = ?2, run_at = ?3, attempt = ?4, \
     last_error = ?5, failed_at = ?6, lease_owner = ?7, lease_token = ?8, lease_deadline = ?9 \
     WHERE id = ?1";

const FLUSH: &str = "INSERT INTO topics (topic, enqueued, started, retried, failed, completed, \
     recovered, released, requeued, input, work, dead) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (topic) DO UPDATE SET \
     enqueued = enqueued + excluded.enqueued, started = started + excluded.started, \
     retried = retried + excluded.retried, failed = failed + excluded.failed, \
     completed = completed + excluded.completed, recovered = recovered + excluded.recovered, \
     released = released + excluded.released, requeued = requeued + excluded.requeued, \
     input = input + excluded.input, work = work + excluded.work, dead = dead + excluded.dead";

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
            d.input,
            d.work,
            d.dead,
        ])?;
    }
    Ok(())
}

fn write_back(tx: &Transaction<'_>, record: &TaskRecord, now: Timestamp) -> R<()> {
    let lease = record.lease.as_ref();
    tx.prepare_cached(WRITE_BACK)?.execute(params![
        sql_u64(record.id.get()),
        state_of(record.queue, record.run_at, now),
        record.run_at.as_millis(),
        record.attempt,
        record.last_error,
        record.failed_at.map(Timestamp::as_millis),
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
    let mut last_id = meta_get(&tx, "last_id")?;
    let mut deltas = Deltas::new();
    let mut results = Vec::with_capacity(tasks.len());
    let mut events = Vec::new();
    {
        let mut find_unique =
            tx.prepare_cached("SELECT id FROM tasks WHERE topic = ?1 AND unique_key = ?2")?;
        let mut insert = tx.prepare_cached(INSERT)?;
        for task in tasks {
            if let Some(key) = task.unique_key_ref() {
                let existing = find_unique
                    .query_row([task.topic(), key], |r| r.get::<_, i64>(0))
                    .optional()?;
                if let Some(existing) = existing {
                    results.push(Enqueued::Duplicate(TaskId::new(existing as u64)));
                    continue;
                }
            }
            last_id += 1;
            let id = TaskId::new(last_id);
            let r = task.into_record(id, opts);
            insert.execute(params![
                sql_u64(last_id),
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
                r.last_error,
                r.failed_at.map(Timestamp::as_millis),
                Option::<&str>::None,
                Option::<i64>::None,
                Option::<i64>::None,
            ])?;
            let d = delta(&mut deltas, &r.topic);
            d.counters.enqueued += 1;
            d.moved(None, Some(Queue::Input));
            if want_events {
                events.push(Event::TaskEnqueue {
                    id,
                    topic: r.topic,
                    run_at: r.run_at,
                });
            }
            results.push(Enqueued::New(id));
        }
    }
    if !deltas.is_empty() {
        meta_set(&tx, "last_id", last_id)?;
        flush(&tx, &deltas)?;
    }
    tx.commit()?;
    Ok(EnqueueDone { results, events })
}

/// [`Store::claim`](taskmill_core::Store::claim).
pub fn claim(conn: &mut rusqlite::Connection, req: &ClaimOptions) -> R<Vec<Claimed>> {
    if req.limit == 0 || req.topics.is_empty() {
        return Ok(Vec::new());
    }
    let tx = begin(conn)?;
    let first_token = meta_get(&tx, "last_token")?;
    let mut token = first_token;
    let deadline = req.deadline();
    let mut deltas = Deltas::new();
    let mut claimed = Vec::with_capacity(req.limit.min(1024));
    for wanted in &req.topics {
        let remaining = req.limit - claimed.len();
        if remaining == 0 {
            break;
        }
        let topic = &wanted.topic;
        let row = tx
            .prepare_cached("SELECT paused, work FROM topics WHERE topic = ?1")?
            .query_row([topic.as_ref()], |r| {
                Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        // No row: the topic never held a task.
        let Some((paused, work)) = row else { continue };
        if paused {
            continue;
        }
        let allowed = match wanted.max_running {
            Some(max) => {
                let work = work + deltas.get(topic).map_or(0, |d| d.work);
                (i64::from(max) - work).clamp(0, remaining as i64) as usize
            }
            None => remaining,
        };
        if allowed == 0 {
            continue;
        }
        // Scheduled tasks that fell due join the ready index, where priority orders them.
        tx.prepare_cached(
            "UPDATE tasks SET state = 0 WHERE topic = ?1 AND state = 1 AND run_at <= ?2",
        )?
        .execute(params![topic.as_ref(), req.now.as_millis()])?;
        let rows = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE topic = ?1 AND state = 0 \
                 ORDER BY priority, id LIMIT ?2"
            ))?
            .query_map(params![topic.as_ref(), allowed as i64], |row| {
                decode(row, Some(topic), true)
            })?
            .collect::<R<Vec<Decoded>>>()?;
        let d = delta(&mut deltas, topic);
        for Decoded {
            mut record,
            problem,
        } in rows
        {
            token += 1;
            let lease = Lease {
                owner: req.owner.clone(),
                token,
                deadline,
            };
            record.claim(lease, &mut d.counters);
            d.moved(Some(Queue::Input), Some(Queue::Work));
            write_back(&tx, &record, req.now)?;
            claimed.push(match problem {
                None => Claimed::Ready(record),
                Some(error) => Claimed::Corrupt {
                    lease: LeaseRef::of(&record),
                    error,
                },
            });
        }
    }
    if token != first_token {
        meta_set(&tx, "last_token", token)?;
        flush(&tx, &deltas)?;
    }
    tx.commit()?;
    Ok(claimed)
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
        let mut stmt = tx.prepare_cached(
            "UPDATE tasks SET lease_deadline = ?3 WHERE id = ?1 AND state = 2 AND lease_token = ?2",
        )?;
        for l in leases {
            let n = stmt.execute(params![
                sql_u64(l.id.get()),
                sql_u64(l.token),
                deadline.as_millis()
            ])?;
            applied.push(if n == 1 {
                Applied::Done
            } else {
                Applied::Stale
            });
        }
    }
    tx.commit()?;
    Ok(applied)
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
    for outcome in outcomes {
        let lease = &outcome.lease;
        if matches!(outcome.kind, OutcomeKind::Complete { .. }) {
            // The hot path, in one statement: `is_owned_by` is the WHERE clause, and
            // `apply_outcome(Complete)` removes the task and counts `completed`.
            let removed = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id = ?1 AND state = 2 AND lease_token = ?2",
                )?
                .execute(params![sql_u64(lease.id.get()), sql_u64(lease.token)])?;
            if removed == 1 {
                let d = delta(&mut deltas, &lease.topic);
                d.counters.completed += 1;
                d.moved(Some(Queue::Work), None);
                applied.push(Applied::Done);
            } else {
                applied.push(Applied::Stale);
            }
            continue;
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
        let to = record.apply_outcome(&outcome.kind, now, &mut d.counters);
        d.moved(Some(Queue::Work), to);
        match to {
            None => delete_row(&tx, record.id)?,
            Some(queue) => {
                to_input |= queue == Queue::Input;
                write_back(&tx, &record, now)?;
            }
        }
        applied.push(Applied::Done);
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok((applied, to_input))
}

/// [`Store::recover`](taskmill_core::Store::recover).
pub fn recover(conn: &mut rusqlite::Connection, now: Timestamp, limit: usize) -> R<Vec<Recovered>> {
    let tx = begin(conn)?;
    let expired = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE state = 2 AND lease_deadline < ?1 \
             ORDER BY lease_deadline LIMIT ?2"
        ))?
        .query_map(
            params![now.as_millis(), limit.min(i64::MAX as usize) as i64],
            |row| decode(row, None, false),
        )?
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
            dead: queue == Queue::Dead,
        });
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(recovered)
}

/// [`Store::stats`](taskmill_core::Store::stats).
pub fn stats(conn: &mut rusqlite::Connection) -> R<Stats> {
    let mut stmt = conn.prepare_cached(
        "SELECT topic, enqueued, started, retried, failed, completed, recovered, released, \
         requeued, input, work, dead, paused FROM topics",
    )?;
    let n = |r: &rusqlite::Row<'_>, i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    let topics = stmt
        .query_map([], |r| {
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
            t.sizes.input = n(r, 9)?;
            t.sizes.work = n(r, 10)?;
            t.sizes.dead = n(r, 11)?;
            t.paused = r.get(12)?;
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

/// [`Store::list`](taskmill_core::Store::list).
pub fn list(conn: &mut rusqlite::Connection, query: &ListOptions) -> R<Page> {
    let states = match query.queue {
        Queue::Input => "state IN (0, 1)",
        Queue::Work => "state = 2",
        Queue::Dead => "state = 3",
    };
    let topic = if query.topic.is_some() {
        "AND topic = ?3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE {states} AND id > ?1 {topic} ORDER BY id LIMIT ?2"
    );
    let after = query.after.map_or(0, |a| sql_u64(a.get()));
    let limit = query.limit.clamp(1, i64::MAX as usize - 1);
    let mut stmt = conn.prepare_cached(&sql)?;
    let fetch = (limit + 1) as i64;
    let rows = match &query.topic {
        Some(t) => stmt
            .query_map(params![after, fetch, t.as_ref()], |row| {
                decode(row, Some(t), false)
            })?
            .collect::<R<Vec<_>>>()?,
        None => stmt
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
        if let (Some(topic), Some(state)) = (topic, state) {
            let queue = match state {
                READY | crate::codec::SCHEDULED => Some(Queue::Input),
                WORK => Some(Queue::Work),
                DEAD => Some(Queue::Dead),
                _ => None,
            };
            if queue.is_some() {
                delta(&mut deltas, &Arc::from(topic)).moved(queue, None);
            }
        }
        existed.push(true);
    }
    flush(&tx, &deltas)?;
    tx.commit()?;
    Ok(existed)
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
        crate::schema::migrate(&mut conn, Path::new(":memory:"), false).unwrap();
        let cases = [
            (
                format!(
                    "SELECT {COLUMNS} FROM tasks WHERE topic = ?1 AND state = 0 \
                     ORDER BY priority, id LIMIT ?2"
                ),
                "tasks_ready",
            ),
            (
                "UPDATE tasks SET state = 0 WHERE topic = ?1 AND state = 1 AND run_at <= ?2"
                    .to_owned(),
                "tasks_scheduled",
            ),
            (
                format!(
                    "SELECT {COLUMNS} FROM tasks WHERE state = 2 AND lease_deadline < ?1 \
                     ORDER BY lease_deadline LIMIT ?2"
                ),
                "tasks_leases",
            ),
            (
                "SELECT id FROM tasks WHERE topic = ?1 AND unique_key = ?2".to_owned(),
                "tasks_unique",
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
    }
}
