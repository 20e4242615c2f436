//! The [`Store`] implementation: each state change is one script call per topic.
//!
//! Calls that touch several topics send one script call per topic. Where the calls are
//! independent (enqueue, renew, apply, stats, admin) they go out pipelined, in one round
//! trip; claims and the reaper go topic by topic, because each topic's limit depends on
//! what the topics before it gave. Nothing crosses a Cluster slot within one script.

use crate::codec::{array, int, string, Fields, StoredLease};
use crate::conn::Call;
use crate::keys::TopicKeys;
use crate::scripts::SCRIPTS;
use crate::RedisStore;
use redis::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill_core::store::{
    Applied, Capabilities, ClaimRequest, Claimed, EnqueueOptions, Enqueued, LeaseRef, ListQuery,
    Outcome, OutcomeKind, Page, Recovered, WakeStream,
};
use taskmill_core::{
    async_trait, validate_topic, Counters, Event, EventStream, Lease, QueueSizes, Result, Stats,
    Store, Task, TaskId, TaskRecord, Timestamp, TopicStats, LEASE_EXPIRED_ERROR,
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
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS").arg(&self.shared.keys.topics);
        let reply = self
            .shared
            .conn
            .query(&pipe, 1)
            .await?
            .pop()
            .unwrap_or(Value::Nil);
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
        if self.shared.bus.has_local_subscribers() {
            return Ok(true);
        }
        let cached = *self
            .shared
            .remote_listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((at, listening)) = cached {
            if at.elapsed() < LISTENER_CHECK {
                return Ok(listening);
            }
        }
        let mut pipe = redis::pipe();
        pipe.cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&self.shared.keys.events);
        let reply = self
            .shared
            .conn
            .query(&pipe, 1)
            .await?
            .pop()
            .unwrap_or(Value::Nil);
        let counts = array(reply, "PUBSUB NUMSUB")?;
        let listening = match counts.get(1) {
            Some(v) => int(v, "PUBSUB NUMSUB")? > 0,
            None => false,
        };
        self.note_listeners(listening);
        Ok(listening)
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
        let mut calls = Vec::new();
        let mut order: Vec<Vec<usize>> = Vec::new();
        for (topic, group) in &groups {
            let keys = self.topic_keys(topic);
            for chunk in group.chunks(CHUNK) {
                let mut call = self.call(&SCRIPTS.enqueue, &keys);
                call.arg(opts.now.as_millis()).arg(chunk.len());
                for (_, r) in chunk {
                    call.arg(r.id.get())
                        .arg(r.run_at.as_millis())
                        .arg(r.priority)
                        .arg(r.max_retries)
                        .arg(if r.unique_key.is_some() { "1" } else { "0" })
                        .arg(r.unique_key.as_deref().unwrap_or(""))
                        .arg(if r.external_id.is_some() { "1" } else { "0" })
                        .arg(r.external_id.as_deref().unwrap_or(""))
                        .arg(r.args.as_str());
                }
                calls.push(call);
                order.push(chunk.iter().map(|(i, _)| *i).collect());
            }
        }
        let replies = shared.conn.eval(&calls).await?;
        let mut results = vec![None; count];
        for (reply, indexes) in replies.into_iter().zip(order) {
            let entries = array(reply, "enqueue")?;
            if entries.len() != indexes.len() {
                return Err(taskmill_core::Error::storage(
                    "enqueue script returned a wrong count",
                ));
            }
            for (entry, i) in entries.into_iter().zip(indexes) {
                let pair = array(entry, "enqueue")?;
                let (Some(flag), Some(id)) = (pair.first(), pair.get(1)) else {
                    return Err(taskmill_core::Error::storage(
                        "enqueue script returned a bad entry",
                    ));
                };
                let id = task_id(id, "enqueue")?;
                results[i] = Some(if int(flag, "enqueue")? == 1 {
                    Enqueued::New(id)
                } else {
                    Enqueued::Duplicate(id)
                });
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

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claimed>> {
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
            for entry in array(reply, "claim")? {
                let mut items = array(entry, "claim")?.into_iter();
                let (Some(id), Some(token), Some(hash)) =
                    (items.next(), items.next(), items.next())
                else {
                    return Err(taskmill_core::Error::storage(
                        "claim script returned a bad entry",
                    ));
                };
                let id = task_id(&id, "claim")?;
                let token = u64::try_from(int(&token, "claim")?).unwrap_or(0);
                let fields = Fields::from_record_values(array(hash, "claim")?);
                let lease = Lease {
                    owner: req.owner.clone(),
                    token,
                    deadline: req.deadline(),
                };
                claimed.push(match fields.decode_claimed(id, &wanted.topic, lease) {
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

    async fn renew(&self, leases: &[LeaseRef], deadline: Timestamp) -> Result<Vec<Applied>> {
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

    async fn apply(&self, outcomes: &[Outcome], now: Timestamp) -> Result<Vec<Applied>> {
        let groups = group_by_topic(outcomes.iter().map(|o| (o.lease.topic.clone(), o)));
        let mut calls = Vec::new();
        let mut order = Vec::new();
        for (topic, group) in &groups {
            let keys = self.topic_keys(topic);
            for chunk in group.chunks(CHUNK) {
                let mut call = self.call(&SCRIPTS.apply, &keys);
                call.arg(now.as_millis());
                for (_, outcome) in chunk {
                    let (kind, at, error) = match &outcome.kind {
                        OutcomeKind::Complete => ("complete", 0, ""),
                        OutcomeKind::Retry { at, error } => {
                            ("retry", at.as_millis(), error.as_str())
                        }
                        OutcomeKind::Dead { error } => ("dead", 0, error.as_str()),
                        OutcomeKind::Release => ("release", 0, ""),
                    };
                    call.arg(outcome.lease.id.get())
                        .arg(outcome.lease.token)
                        .arg(kind)
                        .arg(at)
                        .arg(error);
                }
                calls.push(call);
                order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
            }
        }
        let replies = self.shared.conn.eval(&calls).await?;
        let mut applied = vec![Applied::Stale; outcomes.len()];
        let mut requeued = false;
        for (reply, indexes) in replies.into_iter().zip(order) {
            for (v, i) in array(reply, "apply")?.iter().zip(indexes) {
                if int(v, "apply")? == 1 {
                    applied[i] = Applied::Done;
                    requeued |= matches!(
                        outcomes[i].kind,
                        OutcomeKind::Retry { .. } | OutcomeKind::Release
                    );
                }
            }
        }
        if requeued {
            self.shared.bus.wake();
        }
        Ok(applied)
    }

    async fn recover(&self, now: Timestamp, limit: usize) -> Result<Vec<Recovered>> {
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
            stats.sizes = QueueSizes {
                input: sizes.first().copied().unwrap_or(0),
                work: sizes.get(1).copied().unwrap_or(0),
                dead: sizes.get(2).copied().unwrap_or(0),
            };
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
            let fields = Fields::from_values(array(items.next().unwrap_or(Value::Nil), "get")?);
            let lease = StoredLease::from_value(items.next().unwrap_or(Value::Nil));
            if !fields.is_empty() || !matches!(lease, Ok(None)) {
                return fields.decode_stored(id, topic, lease?.as_ref()).map(Some);
            }
        }
        Ok(None)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page> {
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
        let mut found: Vec<(TaskId, &Arc<str>, Fields, Option<StoredLease>)> = Vec::new();
        for (topic, reply) in topics.iter().zip(replies) {
            for entry in array(reply, "list")? {
                let mut items = array(entry, "list")?.into_iter();
                let Some(id) = items.next() else { continue };
                let fields =
                    Fields::from_values(array(items.next().unwrap_or(Value::Nil), "list")?);
                // A lease that cannot be read lists the task without it (see decode_lenient).
                let lease =
                    StoredLease::from_value(items.next().unwrap_or(Value::Nil)).unwrap_or(None);
                found.push((task_id(&id, "list")?, topic, fields, lease));
            }
        }
        found.sort_by_key(|(id, ..)| *id);
        let more = found.len() > limit;
        found.truncate(limit);
        let tasks: Vec<TaskRecord> = found
            .into_iter()
            .map(|(id, topic, fields, lease)| {
                fields.decode_lenient(id, topic, query.queue, lease.as_ref())
            })
            .collect();
        let next = if more {
            tasks.last().map(|t| t.id)
        } else {
            None
        };
        Ok(Page { tasks, next })
    }

    async fn requeue(&self, ids: &[TaskId], now: Timestamp) -> Result<Vec<bool>> {
        let moved = self
            .on_every_topic(&SCRIPTS.requeue, ids, &[now.as_millis().to_string()])
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
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(&self.shared.keys.topics).arg(&*topic);
        self.shared.conn.query(&pipe, 1).await?;
        let mut call = self.call(&SCRIPTS.pause, &self.topic_keys(&topic));
        call.arg(if paused { "1" } else { "0" });
        self.shared.conn.eval_one(call).await?;
        if !paused {
            self.shared.bus.wake();
        }
        Ok(())
    }

    async fn publish(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() || !self.anyone_listening().await? {
            return Ok(());
        }
        let json = serde_json::to_string(events)
            .map_err(|e| taskmill_core::Error::misuse("cannot serialize events").with_source(e))?;
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(&self.shared.keys.events).arg(json);
        let reply = self.shared.conn.query(&pipe, 1).await?;
        if let Some(receivers) = reply.first() {
            self.note_listeners(int(receivers, "PUBLISH")? > 0);
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream> {
        self.shared.bus.subscribe().await
    }

    async fn wakeups(&self) -> Result<WakeStream> {
        Ok(self.shared.bus.wakeups().await)
    }
}
