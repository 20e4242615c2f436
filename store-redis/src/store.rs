//! The [`Store`] implementation: each state change is one script call per topic.
//!
//! Calls that touch several topics send one script call per topic. Where the calls are
//! independent (renew, apply, stats, admin) they go out pipelined, in one round trip; an
//! enqueue sends each topic's calls as soon as they are encoded, so that Redis works while
//! the next topic is encoded; claims and the reaper go topic by topic, because each
//! topic's limit depends on what the topics before it gave. Nothing crosses a Cluster slot
//! within one script.

use crate::codec::{
    array, decode_claimed, decode_lenient, decode_stored, encode_record, int, record_bytes, string,
    StoredLease,
};
use crate::conn::Call;
use crate::keys::TopicKeys;
use crate::scripts::SCRIPTS;
use crate::RedisStore;
use redis::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::raw::{validate_topic, TaskExt};
use taskmill_core::store::{
    Applied, ApplyOptions, Capabilities, ClaimOptions, Claimed, EnqueueOptions, Enqueued, LeaseRef,
    ListOptions, Outcome, OutcomeKind, Page, RecoverOptions, Recovered, RenewOptions,
    RequeueOptions, WakeStream,
};
use taskmill_core::Queue;
use taskmill_core::{
    async_trait, Counters, Event, EventStream, Lease, Result, Stats, Store, Task, TaskId,
    TaskRecord, TopicStats, LEASE_EXPIRED_ERROR,
};
use tracing::warn;

/// The most tasks, outcomes or ids in one script call, so one call never holds Redis for
/// long; a larger batch becomes several calls in the same pipeline.
const CHUNK: usize = 1000;
/// How long the answer to "does another process listen to events?" is trusted.
const LISTENER_CHECK: Duration = Duration::from_secs(1);

/// One topic's items, each with its index in the caller's order.
type Group<T> = (Arc<str>, Vec<(usize, T)>);

/// Items grouped by topic, keeping each item's index in the caller's order.
fn group_by_topic<T>(items: impl IntoIterator<Item = (Arc<str>, T)>) -> Vec<Group<T>> {
    let mut groups: Vec<Group<T>> = Vec::new();
    for (i, (topic, item)) in items.into_iter().enumerate() {
        match groups.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, group)) => group.push((i, item)),
            None => groups.push((topic, vec![(i, item)])),
        }
    }
    groups
}

/// Claim order among due tasks: priority ascending, then id ascending. The i16 priority
/// shifted to 0..65535 takes 16 bits above the id's 37, so the score is below 2^53 and
/// exact in a double (the same formula as `ready_score` in `scripts/common.lua`).
fn ready_score(priority: i16, id: u64) -> u64 {
    ((i64::from(priority) + 32768) as u64) * (1 << 37) + id
}

/// The code of an outcome kind in the kinds string of `scripts/apply.lua`.
fn kind_code(kind: &OutcomeKind) -> Result<char> {
    match kind {
        OutcomeKind::Complete { .. } => Ok('c'),
        OutcomeKind::Retry { .. } => Ok('r'),
        OutcomeKind::Dead { .. } => Ok('d'),
        OutcomeKind::Release { .. } => Ok('l'),
        other => Err(taskmill_core::Error::unsupported(format!(
            "the Redis store cannot apply the outcome {other:?}"
        ))),
    }
}

/// The most common of `priorities` (the lowest value among equally common ones), or
/// `None` when there are none.
fn most_common_priority(priorities: impl Iterator<Item = i16> + Clone) -> Option<i16> {
    let mut all = priorities.clone();
    let first = all.next()?;
    if all.all(|p| p == first) {
        return Some(first);
    }
    let mut counts: BTreeMap<i16, usize> = BTreeMap::new();
    for p in priorities {
        *counts.entry(p).or_default() += 1;
    }
    // max_by_key keeps the last of equal counts: from the highest value down, a tie goes
    // to the lowest.
    counts
        .into_iter()
        .rev()
        .max_by_key(|&(_, n)| n)
        .map(|(priority, _)| priority)
}

fn task_id(value: &Value, what: &str) -> Result<TaskId> {
    let n = int(value, what)?;
    u64::try_from(n)
        .map(TaskId::new)
        .map_err(|_| crate::codec::unexpected(what, value))
}

impl RedisStore {
    fn topic_keys(&self, topic: &Arc<str>) -> Arc<TopicKeys> {
        self.shared.keys.topic(topic)
    }

    fn call<'a>(&self, script: &'a crate::scripts::Script, topic: &TopicKeys) -> Call<'a> {
        Call::new(script, &self.shared.keys, topic)
    }

    /// Every topic of the namespace, sorted.
    async fn topics(&self) -> Result<Vec<Arc<str>>> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(&self.shared.keys.topics);
        let reply = self.shared.conn.command(&cmd).await?;
        let mut topics = array(reply, "topic set")?
            .into_iter()
            .map(|v| string(v, "topic name").map(Arc::from))
            .collect::<Result<Vec<Arc<str>>>>()?;
        topics.sort();
        Ok(topics)
    }

    /// Runs a per-topic script over ids whose topic is unknown (admin calls): every topic
    /// is asked about every id, and an id counts as found where any topic says so.
    async fn on_every_topic(
        &self,
        script: &crate::scripts::Script,
        ids: &[TaskId],
        leading: &[String],
    ) -> Result<Vec<bool>> {
        let mut found = vec![false; ids.len()];
        if ids.is_empty() {
            return Ok(found);
        }
        let topics = self.topics().await?;
        let mut calls = Vec::new();
        let mut spans = Vec::new();
        for topic in &topics {
            let keys = self.topic_keys(topic);
            for (c, chunk) in ids.chunks(CHUNK).enumerate() {
                let mut call = self.call(script, &keys);
                for arg in leading {
                    call.arg(arg);
                }
                for id in chunk {
                    call.arg(id.get());
                }
                calls.push(call);
                spans.push(c * CHUNK);
            }
        }
        let replies = self.shared.conn.eval(&calls).await?;
        for (reply, start) in replies.into_iter().zip(spans) {
            for (i, v) in array(reply, script.name)?.iter().enumerate() {
                if int(v, script.name)? == 1 {
                    if let Some(slot) = found.get_mut(start + i) {
                        *slot = true;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether an event published now may reach anyone: someone in this process
    /// subscribed, or another process did when last asked (at most a second ago).
    async fn anyone_listening(&self) -> Result<bool> {
        if let Some(listening) = self.listening_as_known() {
            return Ok(listening);
        }
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB").arg(&self.shared.keys.events);
        let reply = self.shared.conn.command(&cmd).await?;
        let counts = array(reply, "PUBSUB NUMSUB")?;
        let listening = match counts.get(1) {
            Some(v) => int(v, "PUBSUB NUMSUB")? > 0,
            None => false,
        };
        self.note_listeners(listening);
        Ok(listening)
    }

    /// Whether an event published now may reach anyone, if that is known without asking
    /// Redis: yes with a subscriber in this process, else the last check while it is fresh.
    fn listening_as_known(&self) -> Option<bool> {
        if self.shared.bus.has_local_subscribers() {
            return Some(true);
        }
        let cached = *self
            .shared
            .remote_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cached
            .filter(|(at, _)| at.elapsed() < LISTENER_CHECK)
            .map(|(_, listening)| listening)
    }

    fn note_listeners(&self, listening: bool) {
        *self
            .shared
            .remote_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), listening));
    }
}

#[async_trait]
impl Store for RedisStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::SHARED
    }

    async fn enqueue(&self, tasks: Vec<Task>, opts: &EnqueueOptions) -> Result<Vec<Enqueued>> {
        let count = tasks.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        // One INCRBY reserves the whole batch's ids; the topic set learns the topics in the
        // same round trip.
        let mut topics: Vec<&str> = Vec::new();
        for task in &tasks {
            if !topics.contains(&task.topic()) {
                topics.push(task.topic());
            }
        }
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY").arg(&shared.keys.ids).arg(count);
        pipe.cmd("SADD").arg(&shared.keys.topics).arg(&topics);
        let replies = shared.conn.query(&pipe, 2).await?;
        let last = task_id(&replies[0], "id counter")?.get();
        let first = (last + 1).checked_sub(count as u64).ok_or_else(|| {
            taskmill_core::Error::corrupt(format!(
                "the id counter {} went backwards (reads {last})",
                shared.keys.ids
            ))
        })?;
        let records = tasks
            .into_iter()
            .enumerate()
            .map(|(i, task)| task.into_record(TaskId::new(first + i as u64), opts))
            .map(|record| (record.topic.clone(), record));
        let groups = group_by_topic(records);
        let now = opts.now.as_millis();
        let mut sent = Vec::new();
        let mut order: Vec<Vec<(usize, u64)>> = Vec::new();
        let mut record = Vec::new();
        for (topic, group) in &groups {
            let keys = self.topic_keys(topic);
            let mut calls = Vec::new();
            for chunk in group.chunks(CHUNK) {
                // The script takes each block as its command does (see enqueue.lua).
                let (ready, scheduled): (Vec<_>, Vec<_>) =
                    chunk.iter().partition(|(_, r)| r.run_at.as_millis() <= now);
                // The due tasks of the chunk's most common priority may go to the topic's
                // FIFO list (the script decides: see enqueue.lua); the others are scored
                // for the ready set.
                let fresh_priority = most_common_priority(ready.iter().map(|(_, r)| r.priority));
                let (fresh, ready): (Vec<_>, Vec<_>) = ready
                    .into_iter()
                    .partition(|(_, r)| Some(r.priority) == fresh_priority);
                let unique: Vec<_> = chunk
                    .iter()
                    .filter_map(|(_, r)| r.unique_key.as_deref().map(|k| (r.id.get(), k)))
                    .collect();
                // Scores are computed here: a Lua number handed to redis.call is formatted
                // with 17 digits, which costs Redis more than reading one more argument.
                let mut call = self.call(&SCRIPTS.enqueue, &keys);
                call.arg(chunk.len())
                    .arg(fresh.len())
                    .arg(fresh_priority.unwrap_or(0))
                    .arg(ready.len())
                    .arg(scheduled.len())
                    .arg(unique.len());
                for (_, r) in chunk {
                    record.clear();
                    encode_record(r, &mut record);
                    call.arg(r.id.get()).arg(&record[..]);
                }
                for (_, r) in &fresh {
                    call.arg(r.id.get());
                }
                for (_, r) in &ready {
                    call.arg(ready_score(r.priority, r.id.get()))
                        .arg(r.id.get());
                }
                for (_, r) in &scheduled {
                    call.arg(r.run_at.as_millis()).arg(r.id.get());
                }
                for (id, key) in unique {
                    call.arg(id).arg(key);
                }
                calls.push(call);
                order.push(chunk.iter().map(|(i, r)| (*i, r.id.get())).collect());
            }
            // Each topic's calls are sent as soon as they are encoded: redis-server runs
            // them while the next topic's are encoded, where one pipeline sent at the end
            // left the server idle for the quarter of the time this side spends encoding.
            // A topic's own calls stay one pipeline, in order: an earlier task of the batch
            // must win its unique key.
            let shared = self.shared.clone();
            sent.push(tokio::spawn(async move { shared.conn.eval(&calls).await }));
        }
        // Every topic's calls are waited for, so that none is still in flight when an error
        // returns (a caller that retries must not race its own first attempt).
        let mut replies = Vec::with_capacity(order.len());
        let mut failure = None;
        for topic in sent {
            match topic.await {
                Ok(Ok(topic_replies)) => replies.extend(topic_replies),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(panic) => {
                    let e = taskmill_core::Error::storage("an enqueue script call panicked");
                    failure = failure.or(Some(e.with_source(panic)));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut results = vec![None; count];
        for (reply, tasks) in replies.into_iter().zip(order) {
            for (i, id) in &tasks {
                results[*i] = Some(Enqueued::New(TaskId::new(*id)));
            }
            // Only the duplicates come back, as (id, existing id) pairs.
            let mut pairs = array(reply, "enqueue")?.into_iter();
            while let (Some(id), Some(existing)) = (pairs.next(), pairs.next()) {
                let id = task_id(&id, "enqueue")?.get();
                let existing = task_id(&existing, "enqueue")?;
                let at = tasks
                    .binary_search_by_key(&id, |(_, id)| *id)
                    .map_err(|_| {
                        taskmill_core::Error::storage("enqueue script named a task not sent")
                    })?;
                results[tasks[at].0] = Some(Enqueued::Duplicate(existing));
            }
        }
        let results: Vec<Enqueued> = results
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| taskmill_core::Error::storage("enqueue script skipped a task"))?;
        if results.iter().any(|r| r.is_new()) {
            shared.bus.wake();
        }
        Ok(results)
    }

    async fn claim(&self, opts: &ClaimOptions) -> Result<Vec<Claimed>> {
        let req = opts;
        let mut claimed = Vec::new();
        let deadline = req.deadline().as_millis();
        for wanted in &req.topics {
            let remaining = req.limit.saturating_sub(claimed.len());
            if remaining == 0 {
                break;
            }
            let keys = self.topic_keys(&wanted.topic);
            let mut call = self.call(&SCRIPTS.claim, &keys);
            call.arg(req.now.as_millis())
                .arg(remaining)
                .arg(
                    wanted
                        .max_running
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
                .arg(&*req.owner)
                .arg(deadline)
                .arg(self.shared.options.promote_limit.max(1));
            let reply = match self.shared.conn.eval_one(call).await {
                Ok(reply) => reply,
                // Tasks already claimed from earlier topics are returned, not stranded
                // until their leases expire.
                Err(e) if !claimed.is_empty() => {
                    warn!(error = %e, topic = %wanted.topic, "claim failed for a topic; returning what was claimed");
                    break;
                }
                Err(e) => return Err(e),
            };
            let mut items = array(reply, "claim")?.into_iter();
            let (Some(last), Some(ids), Some(records)) = (items.next(), items.next(), items.next())
            else {
                // A paused topic, or nothing due.
                continue;
            };
            let ids = array(ids, "claim")?;
            let records = array(records, "claim")?;
            let last = u64::try_from(int(&last, "claim")?).unwrap_or(0);
            if ids.len() != records.len() || (ids.len() as u64) > last {
                return Err(taskmill_core::Error::storage(
                    "claim script returned a bad reply",
                ));
            }
            let first = last - ids.len() as u64;
            for (i, (id, record)) in ids.into_iter().zip(records).enumerate() {
                let id = task_id(&id, "claim")?;
                let token = first + 1 + i as u64;
                let lease = Lease {
                    owner: req.owner.clone(),
                    token,
                    deadline: req.deadline(),
                };
                let decoded = record_bytes(record)
                    .and_then(|bytes| decode_claimed(bytes.as_deref(), id, &wanted.topic, lease));
                claimed.push(match decoded {
                    Ok(record) => Claimed::Ready(record),
                    Err(error) => Claimed::Corrupt {
                        lease: LeaseRef {
                            id,
                            topic: wanted.topic.clone(),
                            token,
                        },
                        error,
                    },
                });
            }
        }
        Ok(claimed)
    }

    async fn renew(&self, leases: &[LeaseRef], opts: &RenewOptions) -> Result<Vec<Applied>> {
        let deadline = opts.deadline;
        let groups = group_by_topic(leases.iter().map(|l| (l.topic.clone(), l)));
        let mut calls = Vec::new();
        let mut order = Vec::new();
        for (topic, group) in &groups {
            let keys = self.topic_keys(topic);
            for chunk in group.chunks(CHUNK) {
                let mut call = self.call(&SCRIPTS.renew, &keys);
                call.arg(deadline.as_millis());
                for (_, lease) in chunk {
                    call.arg(lease.id.get()).arg(lease.token);
                }
                calls.push(call);
                order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
            }
        }
        let replies = self.shared.conn.eval(&calls).await?;
        let mut applied = vec![Applied::Stale; leases.len()];
        for (reply, indexes) in replies.into_iter().zip(order) {
            for (v, i) in array(reply, "renew")?.iter().zip(indexes) {
                if int(v, "renew")? == 1 {
                    applied[i] = Applied::Done;
                }
            }
        }
        Ok(applied)
    }

    async fn apply(&self, outcomes: &[Outcome], opts: &ApplyOptions) -> Result<Vec<Applied>> {
        let now = opts.now;
        let groups = group_by_topic(outcomes.iter().map(|o| (o.lease.topic.clone(), o)));
        let mut calls = Vec::new();
        let mut order = Vec::new();
        for (topic, group) in &groups {
            let keys = self.topic_keys(topic);
            for chunk in group.chunks(CHUNK) {
                let mut call = self.call(&SCRIPTS.apply, &keys);
                let kinds: String = chunk
                    .iter()
                    .map(|(_, outcome)| kind_code(&outcome.kind))
                    .collect::<Result<_>>()?;
                call.arg(now.as_millis()).arg(chunk.len()).arg(kinds);
                for (_, outcome) in chunk {
                    call.arg(outcome.lease.id.get());
                }
                for (_, outcome) in chunk {
                    call.arg(outcome.lease.token);
                }
                for (_, outcome) in chunk {
                    match &outcome.kind {
                        OutcomeKind::Retry { at, error, .. } => {
                            call.arg(at.as_millis()).arg(error.as_str());
                        }
                        OutcomeKind::Dead { error, .. } => {
                            call.arg(0).arg(error.as_str());
                        }
                        OutcomeKind::Release { .. } => {
                            call.arg(0).arg("");
                        }
                        // Complete takes no arguments; `kind_code` refused any other kind.
                        _ => {}
                    }
                }
                calls.push(call);
                order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
            }
        }
        let replies = self.shared.conn.eval(&calls).await?;
        let mut applied = vec![Applied::Done; outcomes.len()];
        for (reply, indexes) in replies.into_iter().zip(order) {
            // Only the stale outcomes come back, by 1-based position in the call.
            for v in array(reply, "apply")? {
                let at = usize::try_from(int(&v, "apply")?)
                    .ok()
                    .and_then(|k| k.checked_sub(1))
                    .and_then(|k| indexes.get(k))
                    .ok_or_else(|| {
                        taskmill_core::Error::storage("apply script named an outcome not sent")
                    })?;
                applied[*at] = Applied::Stale;
            }
        }
        let requeued = outcomes.iter().zip(&applied).any(|(o, a)| {
            *a == Applied::Done
                && matches!(
                    o.kind,
                    OutcomeKind::Retry { .. } | OutcomeKind::Release { .. }
                )
        });
        if requeued {
            self.shared.bus.wake();
        }
        Ok(applied)
    }

    async fn recover(&self, opts: &RecoverOptions) -> Result<Vec<Recovered>> {
        let (now, limit) = (opts.now, opts.limit);
        let mut recovered = Vec::new();
        for topic in self.topics().await? {
            let remaining = limit.saturating_sub(recovered.len());
            if remaining == 0 {
                break;
            }
            let keys = self.topic_keys(&topic);
            let mut call = self.call(&SCRIPTS.recover, &keys);
            call.arg(now.as_millis())
                .arg(remaining)
                .arg(LEASE_EXPIRED_ERROR);
            let reply = match self.shared.conn.eval_one(call).await {
                Ok(reply) => reply,
                Err(e) if !recovered.is_empty() => {
                    warn!(error = %e, topic = %topic, "reaper failed for a topic; returning what it moved");
                    break;
                }
                Err(e) => return Err(e),
            };
            for entry in array(reply, "recover")? {
                let pair = array(entry, "recover")?;
                let (Some(id), Some(dead)) = (pair.first(), pair.get(1)) else {
                    return Err(taskmill_core::Error::storage(
                        "recover script returned a bad entry",
                    ));
                };
                recovered.push(Recovered {
                    id: task_id(id, "recover")?,
                    topic: topic.clone(),
                    dead: int(dead, "recover")? == 1,
                });
            }
        }
        if recovered.iter().any(|r| !r.dead) {
            self.shared.bus.wake();
        }
        Ok(recovered)
    }

    async fn stats(&self) -> Result<Stats> {
        let topics = self.topics().await?;
        let calls: Vec<Call<'_>> = topics
            .iter()
            .map(|t| self.call(&SCRIPTS.stats, &self.topic_keys(t)))
            .collect();
        let replies = self.shared.conn.eval(&calls).await?;
        let mut per_topic = BTreeMap::new();
        for (topic, reply) in topics.iter().zip(replies) {
            let mut items = array(reply, "stats")?.into_iter();
            let meta = array(items.next().unwrap_or(Value::Nil), "stats")?;
            let sizes: Vec<u64> = items
                .map(|v| int(&v, "stats").map(|n| n.max(0) as u64))
                .collect::<Result<_>>()?;
            let mut stats = TopicStats::default();
            let mut meta = meta.into_iter();
            while let (Some(k), Some(v)) = (meta.next(), meta.next()) {
                let field = string(k, "stats field")?;
                let n = int(&v, "stats value").unwrap_or(0);
                let c: &mut Counters = &mut stats.counters;
                let n_u = n.max(0) as u64;
                match field.as_str() {
                    "enqueued" => c.enqueued = n_u,
                    "started" => c.started = n_u,
                    "retried" => c.retried = n_u,
                    "failed" => c.failed = n_u,
                    "completed" => c.completed = n_u,
                    "recovered" => c.recovered = n_u,
                    "released" => c.released = n_u,
                    "requeued" => c.requeued = n_u,
                    "paused" => stats.paused = n == 1,
                    _ => {}
                }
            }
            stats.sizes.input = sizes.first().copied().unwrap_or(0);
            stats.sizes.work = sizes.get(1).copied().unwrap_or(0);
            stats.sizes.dead = sizes.get(2).copied().unwrap_or(0);
            per_topic.insert(topic.to_string(), stats);
        }
        Ok(Stats::from_topics(per_topic))
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        let topics = self.topics().await?;
        let calls: Vec<Call<'_>> = topics
            .iter()
            .map(|t| {
                let mut call = self.call(&SCRIPTS.get, &self.topic_keys(t));
                call.arg(id.get());
                call
            })
            .collect();
        let replies = self.shared.conn.eval(&calls).await?;
        for (topic, reply) in topics.iter().zip(replies) {
            let mut items = array(reply, "get")?.into_iter();
            let record = record_bytes(items.next().unwrap_or(Value::Nil))?;
            let lease = StoredLease::from_value(items.next().unwrap_or(Value::Nil))?;
            let queue = string(items.next().unwrap_or(Value::Nil), "get")?;
            let queue = match queue.as_str() {
                "input" => Queue::Input,
                "dead" => Queue::Dead,
                "work" => Queue::Work,
                _ if record.is_some() => {
                    return Err(taskmill_core::Error::corrupt(format!(
                        "task {id} of topic {topic:?} has a record but is in no queue"
                    )))
                }
                _ => continue,
            };
            return decode_stored(record.as_deref(), id, topic, queue, lease.as_ref()).map(Some);
        }
        Ok(None)
    }

    async fn list(&self, query: &ListOptions) -> Result<Page> {
        let topics = match &query.topic {
            Some(topic) => vec![topic.clone()],
            None => self.topics().await?,
        };
        let limit = query.limit.max(1);
        let after = query.after.map_or(0, TaskId::get);
        let calls: Vec<Call<'_>> = topics
            .iter()
            .map(|t| {
                let mut call = self.call(&SCRIPTS.list, &self.topic_keys(t));
                call.arg(query.queue.as_str()).arg(after).arg(limit + 1);
                call
            })
            .collect();
        let replies = self.shared.conn.eval(&calls).await?;
        type Found<'t> = (TaskId, &'t Arc<str>, Option<Vec<u8>>, Option<StoredLease>);
        let mut found: Vec<Found<'_>> = Vec::new();
        for (topic, reply) in topics.iter().zip(replies) {
            let mut items = array(reply, "list")?.into_iter();
            let ids = array(items.next().unwrap_or(Value::Nil), "list")?;
            let records = array(items.next().unwrap_or(Value::Nil), "list")?;
            let leases = array(items.next().unwrap_or(Value::Nil), "list")?;
            if records.len() != ids.len() || leases.len() != ids.len() {
                return Err(taskmill_core::Error::storage(
                    "list script returned a bad reply",
                ));
            }
            for ((id, record), lease) in ids.into_iter().zip(records).zip(leases) {
                let record = record_bytes(record)?;
                // A lease that cannot be read lists the task without it (see decode_lenient).
                let lease = StoredLease::from_value(lease).unwrap_or(None);
                found.push((task_id(&id, "list")?, topic, record, lease));
            }
        }
        found.sort_by_key(|(id, ..)| *id);
        let more = found.len() > limit;
        found.truncate(limit);
        let tasks: Vec<TaskRecord> = found
            .into_iter()
            .map(|(id, topic, record, lease)| {
                decode_lenient(record.as_deref(), id, topic, query.queue, lease.as_ref())
            })
            .collect();
        let next = if more {
            tasks.last().map(|t| t.id)
        } else {
            None
        };
        Ok(Page { tasks, next })
    }

    async fn requeue(&self, ids: &[TaskId], opts: &RequeueOptions) -> Result<Vec<bool>> {
        let moved = self
            .on_every_topic(&SCRIPTS.requeue, ids, &[opts.now.as_millis().to_string()])
            .await?;
        if moved.contains(&true) {
            self.shared.bus.wake();
        }
        Ok(moved)
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<bool>> {
        self.on_every_topic(&SCRIPTS.delete, ids, &[]).await
    }

    async fn set_paused(&self, topic: &str, paused: bool) -> Result<()> {
        validate_topic(topic)?;
        let topic: Arc<str> = Arc::from(topic);
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&self.shared.keys.topics).arg(&*topic);
        self.shared.conn.command(&cmd).await?;
        let mut call = self.call(&SCRIPTS.pause, &self.topic_keys(&topic));
        call.arg(if paused { "1" } else { "0" });
        self.shared.conn.eval_one(call).await?;
        if !paused {
            self.shared.bus.wake();
        }
        Ok(())
    }

    /// What `publish` would decide without asking Redis; unknown (no check yet, or one a
    /// second old) is yes, so that the next `publish` asks again. A manager then builds no
    /// events, and takes no event-order lock, while nobody anywhere watches.
    fn has_subscribers(&self) -> bool {
        self.listening_as_known().unwrap_or(true)
    }

    async fn publish(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() || !self.anyone_listening().await? {
            return Ok(());
        }
        let json = serde_json::to_string(events)
            .map_err(|e| taskmill_core::Error::misuse("cannot serialize events").with_source(e))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.shared.keys.events).arg(json);
        let receivers = self.shared.conn.command(&cmd).await?;
        self.note_listeners(int(&receivers, "PUBLISH")? > 0);
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream> {
        self.shared.bus.subscribe().await
    }

    async fn wakeups(&self) -> Result<WakeStream> {
        Ok(self.shared.bus.wakeups().await)
    }
}

#[cfg(test)]
mod tests {
    use super::most_common_priority;

    #[test]
    fn the_most_common_priority_ties_to_the_lowest() {
        let of = |p: &[i16]| most_common_priority(p.iter().copied());
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[3, 3, 3]), Some(3));
        assert_eq!(of(&[0, 3, 3, -1]), Some(3));
        assert_eq!(of(&[5, 0, 5, 0, 7]), Some(0));
        assert_eq!(of(&[i16::MAX, i16::MIN]), Some(i16::MIN));
    }
}
