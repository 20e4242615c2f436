//! The operations, one per [`Store`](taskmill_core::Store) call: each state change is one
//! script call per topic.
//!
//! Calls that touch several topics send one script call per topic. Where the calls are
//! independent (renew, apply, stats, admin) they go out pipelined, in one round trip; an
//! enqueue sends its calls as soon as they are encoded, so that Redis works while the next
//! are encoded, and puts the batch's small topics together in `enqueue_many` calls; a
//! claim visits the due topics of the waiting-topic index (all its topics when they are
//! few) in `claim_many` calls, each topic asked for what the ones before it left; the
//! reaper goes topic by topic. Only the `_many` scripts and `reindex` touch the keys of
//! more than one topic (standalone Redis only).
//!
//! On a Redis Cluster every script call touches the keys of one slot: the enqueue sends
//! one `enqueue` call per topic (no `enqueue_many`), the claim asks its topics one by one
//! in claim order (no waiting-topic index, which would span slots), a fire takes three
//! steps (see [`fire`]), and what spans topics (the id counter, the topic set, the schedule
//! hash) sits in a slot of its own, reached by plain commands beside the topic scripts.

use crate::codec::{
    array, decode_claimed, decode_lenient, decode_schedule, decode_stored, encode_record, int,
    optional_string, record_bytes, string, with_end, Run,
};
use crate::conn::{Call, Cluster, Conn};
use crate::layout::TopicKeys;
use crate::scripts::{Script, SCRIPTS};
use crate::RedisStore;
use redis::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use taskmill_core::raw::TaskExt;
use taskmill_core::store::{
    Applied, CancelOptions, Cancellation, ClaimOptions, Claimed, EnqueueOptions, Enqueued, Fired,
    LeaseRef, ListOptions, Outcome, OutcomeKind, Page, Progress, PruneOptions,
    PruneSchedulesOptions, Recovered, RegisterOptions, ScheduleEntry, ScheduleState, Tick,
    TopicClaim,
};
use taskmill_core::{
    Counters, Event, Lease, Overlap, Queue, Result, Stats, Task, TaskId, TaskRecord, Timestamp,
    TopicStats, LEASE_EXPIRED_ERROR,
};
use tracing::warn;

/// The most tasks, outcomes or ids in one script call, so one call never holds Redis for
/// long; a larger batch becomes several calls in the same pipeline.
const CHUNK: usize = 1000;

/// A topic with fewer tasks than this in an enqueue batch shares one `enqueue_many` call
/// with the batch's other small topics; one with more gets its own `enqueue` calls (a
/// script call costs Redis about as much as enqueueing tens of tasks).
const MANY_BELOW: usize = 64;

/// The most tasks in one `enqueue_many` call. Smaller than a batch, so that Redis runs one
/// call while the next is encoded.
const MANY_CALL_TASKS: usize = 250;

/// One topic's items, each with its index in the caller's order.
type Group<T> = (Arc<str>, Vec<(usize, T)>);

/// Items grouped by topic, keeping each item's index in the caller's order.
///
/// Groups come in the order of their topics' first items. A map finds each item's group:
/// a batch spread over a thousand topics made a linear search of the groups per item
/// (half a million name comparisons per batch) the largest cost of an enqueue.
fn group_by_topic<T>(items: impl IntoIterator<Item = (Arc<str>, T)>) -> Vec<Group<T>> {
    let mut groups: Vec<Group<T>> = Vec::new();
    let mut places: std::collections::HashMap<Arc<str>, usize> = std::collections::HashMap::new();
    for (i, (topic, item)) in items.into_iter().enumerate() {
        match places.get(&topic) {
            Some(&at) => groups[at].1.push((i, item)),
            None => {
                places.insert(topic.clone(), groups.len());
                groups.push((topic, vec![(i, item)]));
            }
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

/// The code of an outcome in the codes string of `scripts/apply.lua`: its kind's letter and
/// a digit saying what follows its kind's own arguments (1: a finished task is kept, 2: a
/// result follows, 4: a progress value follows).
fn outcome_code(outcome: &Outcome, codes: &mut String) -> Result<()> {
    let (kind, result) = match &outcome.kind {
        OutcomeKind::Complete { result, .. } => ('c', result.is_some()),
        OutcomeKind::Retry { .. } => ('r', false),
        OutcomeKind::Dead { .. } => ('d', false),
        OutcomeKind::Release { .. } => ('l', false),
        other => {
            return Err(taskmill_core::Error::unsupported(format!(
                "the Redis store cannot apply the outcome {other:?}"
            )))
        }
    };
    let digit =
        u8::from(outcome.keep) + 2 * u8::from(result) + 4 * u8::from(outcome.progress.is_some());
    codes.push(kind);
    codes.push(char::from(b'0' + digit));
    Ok(())
}

/// A string as JSON, as the scripts put it into the JSON they build (a record's errors,
/// an event).
fn json_string(message: &str) -> String {
    serde_json::to_string(message).unwrap_or_else(|_| "\"\"".to_owned())
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

fn topic_keys(store: &RedisStore, topic: &Arc<str>) -> Arc<TopicKeys> {
    store.shared.keys.topic(topic)
}

fn call<'a>(store: &RedisStore, script: &'a Script, topic: &TopicKeys) -> Call<'a> {
    Call::new(script, &store.shared.keys, topic)
}

/// Every topic of the namespace, sorted.
pub(crate) async fn topics(store: &RedisStore) -> Result<Vec<Arc<str>>> {
    let mut cmd = redis::cmd("SMEMBERS");
    cmd.arg(&store.shared.keys.topics);
    let reply = store.shared.conn.command(&cmd).await?;
    let mut topics = array(reply, "topic set")?
        .into_iter()
        .map(|v| string(v, "topic name").map(Arc::from))
        .collect::<Result<Vec<Arc<str>>>>()?;
    topics.sort();
    Ok(topics)
}

/// Runs a per-topic script over ids whose topic is unknown (admin calls): every topic
/// is asked about every id, and each id gets the largest code any topic answered (0 from
/// the topics that do not hold it), with the topic that answered it.
async fn on_every_topic(
    store: &RedisStore,
    script: &Script,
    ids: &[TaskId],
    leading: &[String],
) -> Result<Vec<(i64, Option<Arc<str>>)>> {
    let mut codes = vec![(0, None); ids.len()];
    if ids.is_empty() {
        return Ok(codes);
    }
    let topics = topics(store).await?;
    let mut calls = Vec::new();
    let mut spans = Vec::new();
    for topic in &topics {
        let keys = topic_keys(store, topic);
        for (c, chunk) in ids.chunks(CHUNK).enumerate() {
            let mut call = call(store, script, &keys);
            for arg in leading {
                call.arg(arg);
            }
            for id in chunk {
                call.arg(id.get());
            }
            calls.push(call);
            spans.push((topic, c * CHUNK));
        }
    }
    let replies = store.shared.conn.eval(&calls).await?;
    for (reply, (topic, start)) in replies.into_iter().zip(spans) {
        for (i, v) in array(reply, script.name)?.iter().enumerate() {
            let code = int(v, script.name)?;
            if let Some(slot) = codes.get_mut(start + i) {
                if code > slot.0 {
                    *slot = (code, Some(topic.clone()));
                }
            }
        }
    }
    Ok(codes)
}

/// Appends the arguments of `enqueue_tasks` (`scripts/enqueue_body.lua`) for `chunk`, one
/// topic's tasks in batch order with their ids, due or not at `now`: the script takes each
/// block as its command does. `record` is a buffer to encode into. With `prefix` (for
/// `scripts/enqueue_many.lua`), the topic's tag, its name as JSON and the number of
/// arguments that follow come first.
fn enqueue_args(
    call: &mut Call<'_>,
    chunk: &[(usize, TaskRecord)],
    now: i64,
    record: &mut Vec<u8>,
    prefix: Option<&TopicKeys>,
) {
    if let (Some(keys), [(_, r)]) = (prefix, chunk) {
        // The short form of `enqueue_many` for one due task without a unique key or a
        // tick: four arguments instead of thirteen.
        if r.run_at.as_millis() <= now
            && r.unique_key.is_none()
            && (r.headers.is_empty() || r.schedule_tick().is_none())
        {
            record.clear();
            encode_record(r, record);
            call.arg(&keys.tag)
                .arg(&keys.topic_json)
                .arg(0)
                .arg(r.id.get())
                .arg(&record[..])
                .arg(r.priority)
                .arg(r.run_at.as_millis());
            return;
        }
    }
    let (ready, scheduled): (Vec<_>, Vec<_>) =
        chunk.iter().partition(|(_, r)| r.run_at.as_millis() <= now);
    // The due tasks of the chunk's most common priority may go to the topic's
    // FIFO list (the script decides: see enqueue_body.lua); the others are scored
    // for the ready set.
    let fresh_priority = most_common_priority(ready.iter().map(|(_, r)| r.priority));
    let (fresh, mut ready): (Vec<_>, Vec<_>) = ready
        .into_iter()
        .partition(|(_, r)| Some(r.priority) == fresh_priority);
    // The list's run_ats never decrease (its head has the earliest, for stats): a
    // task due before one ahead of it in the chunk is scored for the ready set.
    let mut latest = i64::MIN;
    let (fresh, behind): (Vec<_>, Vec<_>) = fresh.into_iter().partition(|(_, r)| {
        let at = r.run_at.as_millis();
        let in_order = at >= latest;
        latest = latest.max(at);
        in_order
    });
    if !behind.is_empty() {
        ready.extend(behind);
        ready.sort_by_key(|(i, _)| *i);
    }
    let fresh_run_ats = match (fresh.first(), fresh.last()) {
        (Some((_, first)), Some((_, last))) => (
            first.run_at.as_millis().to_string(),
            last.run_at.as_millis().to_string(),
        ),
        _ => Default::default(),
    };
    let unique: Vec<_> = chunk
        .iter()
        .filter_map(|(_, r)| r.unique_key.as_deref().map(|k| (r.id.get(), k)))
        .collect();
    // The ticks of the tasks a schedule fired, for their events: read from the headers as
    // `Event::enqueued` reads them, and written as serde writes a `ScheduleTick` (so the
    // schedule's name is escaped as JSON needs, whatever it holds). A task without headers
    // costs nothing here.
    let ticks: Vec<(u64, String)> = chunk
        .iter()
        .filter(|(_, r)| !r.headers.is_empty())
        .filter_map(|(_, r)| {
            let tick = serde_json::to_string(&r.schedule_tick()?).ok()?;
            Some((r.id.get(), tick))
        })
        .collect();
    if let Some(keys) = prefix {
        let count = 9
            + 2 * chunk.len()
            + fresh.len()
            + 4 * ready.len()
            + 2 * scheduled.len()
            + 2 * unique.len()
            + 2 * ticks.len();
        call.arg(&keys.tag).arg(&keys.topic_json).arg(count);
    }
    // Scores are computed here: a Lua number handed to redis.call is formatted
    // with 17 digits, which costs Redis more than reading one more argument.
    call.arg(chunk.len())
        .arg(fresh.len())
        .arg(fresh_priority.unwrap_or(0))
        .arg(ready.len())
        .arg(scheduled.len())
        .arg(unique.len())
        .arg(&fresh_run_ats.0)
        .arg(&fresh_run_ats.1)
        .arg(ticks.len());
    for (_, r) in chunk {
        record.clear();
        encode_record(r, record);
        call.arg(r.id.get()).arg(&record[..]);
    }
    for (_, r) in &fresh {
        call.arg(r.id.get());
    }
    for (_, r) in &ready {
        call.arg(ready_score(r.priority, r.id.get()))
            .arg(r.id.get());
    }
    for (_, r) in &ready {
        call.arg(r.run_at.as_millis()).arg(r.id.get());
    }
    for (_, r) in &scheduled {
        call.arg(r.run_at.as_millis()).arg(r.id.get());
    }
    for (id, key) in unique {
        call.arg(id).arg(key);
    }
    for (id, tick) in ticks {
        call.arg(id).arg(tick);
    }
}

/// The tasks of one topic's chunk in an enqueue call: (index in the batch, id), ids
/// ascending.
type ChunkIds = Vec<(usize, u64)>;

/// [`Store::enqueue`](taskmill_core::Store::enqueue).
pub(crate) async fn enqueue(
    store: &RedisStore,
    tasks: Vec<Task>,
    opts: &EnqueueOptions,
) -> Result<Vec<Enqueued>> {
    let count = tasks.len();
    let shared = &store.shared;
    // One INCRBY reserves the whole batch's ids; the topic set learns the topics in the
    // same round trip.
    let mut seen = std::collections::HashSet::new();
    let topics: Vec<&str> = tasks
        .iter()
        .map(|task| task.topic())
        .filter(|topic| seen.insert(*topic))
        .collect();
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
    // Each call with the chunks it holds (one for `enqueue`, one per topic for
    // `enqueue_many`), and each pipeline with how many calls it sent.
    let mut order: Vec<(bool, Vec<ChunkIds>)> = Vec::new();
    let mut sent = Vec::new();
    let mut record = Vec::new();
    let mut pipeline: Vec<Call<'_>> = Vec::new();
    // The open `enqueue_many` call of the small topics, and how many tasks it holds.
    let mut many: Option<(Call<'_>, Vec<ChunkIds>, usize)> = None;
    let ids_of = |chunk: &[(usize, TaskRecord)]| -> ChunkIds {
        chunk.iter().map(|(i, r)| (*i, r.id.get())).collect()
    };
    // Sends the calls gathered so far as one pipeline. A topic's calls are always in one
    // pipeline, in order (an earlier task of the batch must win its unique key); pipelines
    // go as soon as they are full, so redis-server runs one while the next is encoded
    // (one pipeline sent at the end left the server idle for the quarter of the time this
    // side spends encoding).
    let flush = |pipeline: &mut Vec<Call<'static>>, sent: &mut Vec<_>| {
        if pipeline.is_empty() {
            return;
        }
        let calls = std::mem::take(pipeline);
        let shared = store.shared.clone();
        sent.push(tokio::spawn(async move { shared.conn.eval(&calls).await }));
    };
    let cluster = shared.conn.is_cluster();
    for (topic, group) in &groups {
        let keys = topic_keys(store, topic);
        if group.len() < MANY_BELOW && !cluster {
            // A small topic joins the open `enqueue_many` call: with many topics in a
            // batch, one script call for all of them instead of one each.
            let (open, chunks, tasks) = many
                .get_or_insert_with(|| (call(store, &SCRIPTS.enqueue_many, &keys), Vec::new(), 0));
            enqueue_args(open, group, now, &mut record, Some(&keys));
            chunks.push(ids_of(group));
            *tasks += group.len();
            if *tasks >= MANY_CALL_TASKS {
                if let Some((open, chunks, _)) = many.take() {
                    pipeline.push(open);
                    order.push((true, chunks));
                }
                flush(&mut pipeline, &mut sent);
            }
            continue;
        }
        for chunk in group.chunks(CHUNK) {
            let mut call = call(store, &SCRIPTS.enqueue, &keys);
            enqueue_args(&mut call, chunk, now, &mut record, None);
            pipeline.push(call);
            order.push((false, vec![ids_of(chunk)]));
        }
        // On a cluster, the calls go together at the end: one pipeline per node.
        if !cluster {
            flush(&mut pipeline, &mut sent);
        }
    }
    if let Some((open, chunks, _)) = many.take() {
        pipeline.push(open);
        order.push((true, chunks));
    }
    flush(&mut pipeline, &mut sent);
    // Every pipeline is waited for, so that none is still in flight when an error
    // returns (a caller that retries must not race its own first attempt).
    let mut replies = Vec::with_capacity(order.len());
    let mut failure = None;
    for pipeline in sent {
        match pipeline.await {
            Ok(Ok(pipeline_replies)) => replies.extend(pipeline_replies),
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
    for (reply, (many, chunks)) in replies.into_iter().zip(order) {
        // `enqueue` answers for its one chunk, `enqueue_many` with one answer per chunk.
        let answers = if many {
            array(reply, "enqueue")?
        } else {
            vec![reply]
        };
        if answers.len() != chunks.len() {
            return Err(taskmill_core::Error::storage(
                "enqueue script answered for another number of topics",
            ));
        }
        for (answer, tasks) in answers.into_iter().zip(chunks) {
            for (i, id) in &tasks {
                results[*i] = Some(Enqueued::New(TaskId::new(*id)));
            }
            // Only the duplicates come back, as (id, existing id) pairs.
            let mut pairs = array(answer, "enqueue")?.into_iter();
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
    }
    let results: Vec<Enqueued> = results
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| taskmill_core::Error::storage("enqueue script skipped a task"))?;
    let replicated: Vec<Arc<TopicKeys>> = groups
        .iter()
        .map(|(topic, _)| store.shared.keys.topic(topic))
        .collect();
    // The id counter too: on a cluster it is on another shard, whose failover could
    // otherwise hand out these ids again.
    let mut replicated: Vec<&str> = replicated.iter().map(|k| &*k.keys[0]).collect();
    replicated.push(&shared.keys.ids);
    wait_for_replicas(store, &replicated).await?;
    store
        .publish_for_scripts(|| {
            groups
                .iter()
                .flat_map(|(_, group)| group)
                .filter(|(i, _)| results[*i].is_new())
                .map(|(_, record)| Event::enqueued(record))
                .collect()
        })
        .await;
    Ok(results)
}

/// A claim from at most this many topics visits each of them in one `claim_many` call
/// without reading the waiting-topic index (one round trip, as before the index); a claim
/// from more reads the index first and visits only the topics it lists as due.
const FEW_TOPICS: usize = 16;

/// The most topics one `claim_many` call is given.
const TOPICS_PER_CLAIM: usize = 128;

/// Builds the waiting-topic index if this process has not seen it built: a namespace
/// written before the index has none, and a claim reads it (see `scripts/reindex.lua`).
async fn ensure_indexed(store: &RedisStore) -> Result<()> {
    use std::sync::atomic::Ordering;
    if store.shared.indexed.load(Ordering::Relaxed) {
        return Ok(());
    }
    reindex(store, false).await?;
    store.shared.indexed.store(true, Ordering::Relaxed);
    Ok(())
}

/// Builds the waiting-topic index from every topic's queues, unless it was built before
/// and `force` is false; returns the number of topics looked at.
pub(crate) async fn reindex(store: &RedisStore, force: bool) -> Result<u64> {
    if store.shared.conn.is_cluster() {
        return Err(taskmill_core::Error::unsupported(
            "a namespace on a Redis Cluster has no waiting-topic index (it would span slots): \
             a claim asks each of its topics",
        ));
    }
    let keys = &store.shared.keys;
    let mut call = Call::of_namespace(
        &SCRIPTS.reindex,
        &[&keys.waiting, &keys.topics, &keys.waiting_built],
    );
    call.arg(keys.namespace())
        .arg(if force { "1" } else { "0" });
    let reply = store.shared.conn.eval_one(call).await?;
    Ok(u64::try_from(int(&reply, "reindex")?).unwrap_or(0))
}

/// The tags (`{ns:T}`) of the topics the waiting-topic index lists as due at `now`.
async fn due_tags(store: &RedisStore, now: i64) -> Result<Vec<String>> {
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(&store.shared.keys.waiting).arg("-inf").arg(now);
    array(store.shared.conn.command(&cmd).await?, "waiting topics")?
        .into_iter()
        .map(|v| string(v, "waiting topic"))
        .collect()
}

/// [`Store::claim`](taskmill_core::Store::claim).
///
/// The topics to visit, in claim order: all of them when they are few, else those the
/// waiting-topic index lists as due. They are visited in `claim_many` calls, each asking
/// its topics in turn for what the topics before them left of the limit.
///
/// On a cluster, every topic in claim order, each in a `claim` call of its own.
pub(crate) async fn claim(store: &RedisStore, req: &ClaimOptions) -> Result<Vec<Claimed>> {
    let cluster = store.shared.conn.is_cluster();
    if !cluster {
        ensure_indexed(store).await?;
    }
    let tags;
    let candidates: Vec<&TopicClaim> = if req.topics.len() <= FEW_TOPICS || cluster {
        req.in_order().collect()
    } else {
        tags = due_tags(store, req.now.as_millis()).await?;
        let keys = &store.shared.keys;
        req.due_in_order(tags.iter().filter_map(|tag| keys.topic_of_tag(tag)))
    };
    let mut claimed = Vec::new();
    let deadline = req.deadline().as_millis();
    let mut rest = &candidates[..];
    while !rest.is_empty() && claimed.len() < req.limit {
        let remaining = req.limit - claimed.len();
        // A listed topic gives at least one task unless its entry is stale: a call is given
        // no more topics than tasks are wanted.
        let per_call = if cluster { 1 } else { TOPICS_PER_CLAIM };
        let (batch, after) = rest.split_at(rest.len().min(remaining).min(per_call));
        rest = after;
        // One topic goes to the per-topic script, whose keys are all declared; several
        // to `claim_many`, which builds theirs.
        let single = batch.len() == 1;
        let first = topic_keys(store, &batch[0].topic);
        let call = if single {
            let wanted = batch[0];
            let mut call = call(store, &SCRIPTS.claim, &first);
            call.arg(req.now.as_millis())
                .arg(remaining)
                .arg(max_running(wanted))
                .arg(&*req.owner)
                .arg(deadline)
                .arg(store.shared.options.promote_limit.max(1))
                .arg(wanted.max_retries);
            call
        } else {
            let mut call = call(store, &SCRIPTS.claim_many, &first);
            call.arg(req.now.as_millis())
                .arg(remaining)
                .arg(&*req.owner)
                .arg(deadline)
                .arg(store.shared.options.promote_limit.max(1));
            for wanted in batch {
                let keys = topic_keys(store, &wanted.topic);
                call.arg(&keys.tag)
                    .arg(&keys.topic_json)
                    .arg(max_running(wanted))
                    .arg(wanted.max_retries);
            }
            call
        };
        let reply = match store.shared.conn.eval_one(call).await {
            Ok(reply) => reply,
            // Tasks already claimed by earlier calls are returned, not stranded until
            // their leases expire.
            Err(e) if !claimed.is_empty() => {
                warn!(error = %e, "claim failed for some topics; returning what was claimed");
                break;
            }
            Err(e) => return Err(e),
        };
        if single {
            let mut items = array(reply, "claim")?.into_iter();
            // Nothing for a paused topic, or one with nothing due.
            if let (Some(last), Some(ids), Some(records)) =
                (items.next(), items.next(), items.next())
            {
                push_claimed(&mut claimed, req, batch[0], last, ids, records)?;
            }
            continue;
        }
        let mut items = array(reply, "claim")?.into_iter();
        while let (Some(place), Some(last), Some(ids), Some(records)) =
            (items.next(), items.next(), items.next(), items.next())
        {
            let wanted = usize::try_from(int(&place, "claim")?)
                .ok()
                .and_then(|p| p.checked_sub(1))
                .and_then(|p| batch.get(p))
                .ok_or_else(|| taskmill_core::Error::storage("claim script named no topic"))?;
            push_claimed(&mut claimed, req, wanted, last, ids, records)?;
        }
    }
    Ok(claimed)
}

/// A topic's `max_running` as the claim scripts take it ('' for none).
fn max_running(wanted: &TopicClaim) -> String {
    wanted
        .max_running
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// Adds what a claim script returned for the topic of `wanted` (its last token, the ids
/// and the records) to `claimed`.
fn push_claimed(
    claimed: &mut Vec<Claimed>,
    req: &ClaimOptions,
    wanted: &TopicClaim,
    last: Value,
    ids: Value,
    records: Value,
) -> Result<()> {
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
        let decoded = record_bytes(record).and_then(|bytes| {
            let (now, retries) = (req.now, wanted.max_retries);
            decode_claimed(bytes.as_deref(), id, &wanted.topic, lease, now, retries)
        });
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
    Ok(())
}

/// [`Store::renew`](taskmill_core::Store::renew).
pub(crate) async fn renew(
    store: &RedisStore,
    leases: &[LeaseRef],
    deadline: Timestamp,
) -> Result<Vec<Applied>> {
    let groups = group_by_topic(leases.iter().map(|l| (l.topic.clone(), l)));
    let mut calls = Vec::new();
    let mut order = Vec::new();
    for (topic, group) in &groups {
        let keys = topic_keys(store, topic);
        for chunk in group.chunks(CHUNK) {
            let mut call = call(store, &SCRIPTS.renew, &keys);
            call.arg(deadline.as_millis());
            for (_, lease) in chunk {
                call.arg(lease.id.get()).arg(lease.token);
            }
            calls.push(call);
            order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        }
    }
    let replies = store.shared.conn.eval(&calls).await?;
    let mut applied = vec![Applied::Stale; leases.len()];
    for (reply, indexes) in replies.into_iter().zip(order) {
        for (v, i) in array(reply, "renew")?.iter().zip(indexes) {
            applied[i] = applied_code(int(v, "renew")?);
        }
    }
    Ok(applied)
}

/// What a renew or progress script's code per item means: 1 done, 2 done but a cancel
/// was requested, anything else stale.
fn applied_code(code: i64) -> Applied {
    match code {
        1 => Applied::Done,
        2 => Applied::Cancelled,
        _ => Applied::Stale,
    }
}

/// [`Store::progress`](taskmill_core::Store::progress).
pub(crate) async fn progress(store: &RedisStore, updates: &[Progress]) -> Result<Vec<Applied>> {
    let groups = group_by_topic(updates.iter().map(|u| (u.lease.topic.clone(), u)));
    let mut calls = Vec::new();
    let mut order = Vec::new();
    for (topic, group) in &groups {
        let keys = topic_keys(store, topic);
        for chunk in group.chunks(CHUNK) {
            let mut call = call(store, &SCRIPTS.progress, &keys);
            for (_, update) in chunk {
                call.arg(update.lease.id.get())
                    .arg(update.lease.token)
                    .arg(update.value.as_str());
            }
            calls.push(call);
            order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        }
    }
    let replies = store.shared.conn.eval(&calls).await?;
    let mut applied = vec![Applied::Stale; updates.len()];
    for (reply, indexes) in replies.into_iter().zip(order) {
        for (v, i) in array(reply, "progress")?.iter().zip(indexes) {
            applied[i] = applied_code(int(v, "progress")?);
        }
    }
    Ok(applied)
}

/// [`Store::apply`](taskmill_core::Store::apply).
pub(crate) async fn apply(
    store: &RedisStore,
    outcomes: &[Outcome],
    now: Timestamp,
) -> Result<Vec<Applied>> {
    let groups = group_by_topic(outcomes.iter().map(|o| (o.lease.topic.clone(), o)));
    let mut calls = Vec::new();
    let mut order = Vec::new();
    for (topic, group) in &groups {
        let keys = topic_keys(store, topic);
        for chunk in group.chunks(CHUNK) {
            let mut call = call(store, &SCRIPTS.apply, &keys);
            let mut codes = String::with_capacity(2 * chunk.len());
            for (_, outcome) in chunk {
                outcome_code(outcome, &mut codes)?;
            }
            call.arg(now.as_millis()).arg(chunk.len()).arg(codes);
            for (_, outcome) in chunk {
                call.arg(outcome.lease.id.get());
            }
            for (_, outcome) in chunk {
                call.arg(outcome.lease.token);
            }
            for (_, outcome) in chunk {
                match &outcome.kind {
                    OutcomeKind::Retry { at, error, .. } => {
                        call.arg(at.as_millis()).arg(json_string(error));
                    }
                    OutcomeKind::Dead { error, .. } => {
                        call.arg(json_string(error));
                    }
                    OutcomeKind::Complete {
                        result: Some(result),
                        ..
                    } => {
                        call.arg(result.as_str());
                    }
                    // Release and a completion without a result take no arguments;
                    // `outcome_code` refused any other kind.
                    _ => {}
                }
                if let Some(progress) = &outcome.progress {
                    call.arg(progress.as_str());
                }
            }
            calls.push(call);
            order.push(chunk.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        }
    }
    let replies = store.shared.conn.eval(&calls).await?;
    let mut applied = vec![Applied::Done; outcomes.len()];
    for (reply, indexes) in replies.into_iter().zip(order) {
        // Only the exceptions come back, by 1-based position in the call: the stale
        // outcomes, then those that ended their task cancelled.
        let mut lists = array(reply, "apply")?.into_iter();
        for marked in [Applied::Stale, Applied::Cancelled] {
            for v in array(lists.next().unwrap_or(Value::Nil), "apply")? {
                let at = usize::try_from(int(&v, "apply")?)
                    .ok()
                    .and_then(|k| k.checked_sub(1))
                    .and_then(|k| indexes.get(k))
                    .ok_or_else(|| {
                        taskmill_core::Error::storage("apply script named an outcome not sent")
                    })?;
                applied[*at] = marked;
            }
        }
    }
    Ok(applied)
}

/// [`Store::recover`](taskmill_core::Store::recover).
pub(crate) async fn recover(
    store: &RedisStore,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Recovered>> {
    let mut recovered = Vec::new();
    // Only a topic with leases can have expired ones: one pipelined `HLEN` per topic finds
    // them, so a pass over many topics costs two round trips plus one per topic in WORK,
    // not one per topic.
    let all = topics(store).await?;
    let mut pipe = redis::pipe();
    for topic in &all {
        pipe.cmd("HLEN").arg(topic_keys(store, topic).leases());
    }
    let counts = if all.is_empty() {
        Vec::new()
    } else {
        store.shared.conn.query(&pipe, all.len()).await?
    };
    let working = all
        .into_iter()
        .zip(counts)
        .filter(|(_, n)| !matches!(n, Value::Int(0)))
        .map(|(topic, _)| topic);
    for topic in working {
        let remaining = limit.saturating_sub(recovered.len());
        if remaining == 0 {
            break;
        }
        let keys = topic_keys(store, &topic);
        let mut call = call(store, &SCRIPTS.recover, &keys);
        call.arg(now.as_millis())
            .arg(remaining)
            .arg(json_string(LEASE_EXPIRED_ERROR));
        let reply = match store.shared.conn.eval_one(call).await {
            Ok(reply) => reply,
            Err(e) if !recovered.is_empty() => {
                warn!(error = %e, topic = %topic, "reaper failed for a topic; returning what it moved");
                break;
            }
            Err(e) => return Err(e),
        };
        for entry in array(reply, "recover")? {
            let pair = array(entry, "recover")?;
            let mut pair = pair.into_iter();
            let (Some(id), Some(queue)) = (pair.next(), pair.next()) else {
                return Err(taskmill_core::Error::storage(
                    "recover script returned a bad entry",
                ));
            };
            let queue = match string(queue, "recover")?.as_str() {
                "i" => Queue::Input,
                "d" => Queue::Dead,
                "c" => Queue::Cancelled,
                other => {
                    return Err(taskmill_core::Error::storage(format!(
                        "recover script returned the queue {other:?}"
                    )))
                }
            };
            recovered.push(Recovered {
                id: task_id(&id, "recover")?,
                topic: topic.clone(),
                queue,
            });
        }
    }
    Ok(recovered)
}

/// [`Store::prune`](taskmill_core::Store::prune): per topic, one `ZCOUNT` of `finished`
/// and one `LINDEX` of the head of `finish_log` (pipelined, a logarithmic lookup and a
/// constant one) tell which topics have records due; only those get script calls, one
/// chunk at a time, each told how many are still wanted, so that the limit holds across
/// topics without knowing in advance how many each has due.
pub(crate) async fn prune(store: &RedisStore, opts: &PruneOptions) -> Result<u64> {
    if opts.limit == 0 {
        return Ok(0);
    }
    let topics = topics(store).await?;
    if topics.is_empty() {
        return Ok(0);
    }
    let cutoffs: Vec<i64> = topics
        .iter()
        .map(|t| opts.cutoff_of(t).as_millis())
        .collect();
    let mut pipe = redis::pipe();
    for (topic, cutoff) in topics.iter().zip(&cutoffs) {
        let keys = topic_keys(store, topic);
        pipe.cmd("ZCOUNT")
            .arg(keys.finished())
            .arg("-inf")
            .arg(*cutoff);
        pipe.cmd("LINDEX").arg(keys.finish_log()).arg(0);
    }
    let heads = store.shared.conn.query(&pipe, 2 * topics.len()).await?;
    let mut remaining = opts.limit;
    let mut pruned = 0;
    for ((topic, cutoff), head) in topics.iter().zip(&cutoffs).zip(heads.chunks(2)) {
        if remaining == 0 {
            break;
        }
        let in_set = int(&head[0], "ZCOUNT")? > 0;
        // A log entry is `finished_at:id`; one that cannot be read is due (pruning drops it).
        let in_log = match optional_string(head[1].clone(), "finish_log head")? {
            Some(entry) => entry
                .split_once(':')
                .and_then(|(at, _)| at.parse::<i64>().ok())
                .is_none_or(|at| at <= *cutoff),
            None => false,
        };
        if !(in_set || in_log) {
            continue;
        }
        let keys = topic_keys(store, topic);
        while remaining > 0 {
            let chunk = remaining.min(CHUNK);
            let mut call = call(store, &SCRIPTS.prune, &keys);
            call.arg(*cutoff).arg(chunk);
            let removed = usize::try_from(int(&store.shared.conn.eval_one(call).await?, "prune")?)
                .unwrap_or(0)
                .min(chunk);
            pruned += removed as u64;
            remaining -= removed;
            if removed < chunk {
                break;
            }
        }
    }
    Ok(pruned)
}

/// [`Store::stats`](taskmill_core::Store::stats).
pub(crate) async fn stats(store: &RedisStore, now: Timestamp) -> Result<Stats> {
    let topics = topics(store).await?;
    let calls: Vec<Call<'_>> = topics
        .iter()
        .map(|t| {
            let mut call = call(store, &SCRIPTS.stats, &topic_keys(store, t));
            call.arg(now.as_millis());
            call
        })
        .collect();
    let replies = store.shared.conn.eval(&calls).await?;
    let mut per_topic = BTreeMap::new();
    for (topic, reply) in topics.iter().zip(replies) {
        let mut items = array(reply, "stats")?.into_iter();
        let meta = array(items.next().unwrap_or(Value::Nil), "stats")?;
        // Seven sizes (the five queues, then INPUT's tasks not yet due and how many of
        // those are retrying), then the earliest run_at (nil, false in Lua, for none).
        let mut rest: Vec<Value> = items.collect();
        let earliest = if rest.len() > 7 {
            rest.pop().unwrap_or(Value::Nil)
        } else {
            Value::Nil
        };
        let sizes: Vec<u64> = rest
            .into_iter()
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
                "cancelled" => c.cancelled = n_u,
                "paused" => stats.paused = n == 1,
                _ => {}
            }
        }
        stats.sizes.input = sizes.first().copied().unwrap_or(0);
        stats.sizes.work = sizes.get(1).copied().unwrap_or(0);
        stats.sizes.dead = sizes.get(2).copied().unwrap_or(0);
        stats.sizes.completed = sizes.get(3).copied().unwrap_or(0);
        stats.sizes.cancelled = sizes.get(4).copied().unwrap_or(0);
        let later = sizes.get(5).copied().unwrap_or(0);
        stats.sizes.retrying = sizes.get(6).copied().unwrap_or(0);
        stats.sizes.scheduled = later.saturating_sub(stats.sizes.retrying);
        stats.earliest_run_at = match earliest {
            Value::Nil => None,
            v => Some(Timestamp::from_millis(int(&v, "earliest run_at")?)),
        };
        per_topic.insert(topic.to_string(), stats);
    }
    Ok(Stats::from_topics(per_topic))
}

/// [`Store::get`](taskmill_core::Store::get).
pub(crate) async fn get(store: &RedisStore, id: TaskId) -> Result<Option<TaskRecord>> {
    let topics = topics(store).await?;
    let calls: Vec<Call<'_>> = topics
        .iter()
        .map(|t| {
            let mut call = call(store, &SCRIPTS.get, &topic_keys(store, t));
            call.arg(id.get());
            call
        })
        .collect();
    let replies = store.shared.conn.eval(&calls).await?;
    for (topic, reply) in topics.iter().zip(replies) {
        let mut items = array(reply, "get")?.into_iter();
        let mut next = || items.next().unwrap_or(Value::Nil);
        let record = record_bytes(next())?;
        let lease = next();
        let queue = string(next(), "get")?;
        let run = Run::from_values(lease, next(), next())?;
        let record = with_end(record, next())?;
        let queue = match queue.as_str() {
            "input" => Queue::Input,
            "dead" => Queue::Dead,
            "work" => Queue::Work,
            "completed" => Queue::Completed,
            "cancelled" => Queue::Cancelled,
            _ if record.is_some() => {
                return Err(taskmill_core::Error::corrupt(format!(
                    "task {id} of topic {topic:?} has a record but is in no queue"
                )))
            }
            _ => continue,
        };
        return decode_stored(record.as_deref(), id, topic, queue, &run).map(Some);
    }
    Ok(None)
}

/// [`Store::list`](taskmill_core::Store::list).
pub(crate) async fn list(store: &RedisStore, query: &ListOptions) -> Result<Page> {
    query.validate()?;
    // The part of INPUT the script keeps (see list.lua), and the time that splits it.
    let (part, now) = query
        .waiting
        .map_or(("", 0), |(kind, now)| (kind.as_str(), now.as_millis()));
    let topics = match &query.topic {
        Some(topic) => vec![topic.clone()],
        None => topics(store).await?,
    };
    let limit = query.limit.max(1);
    let after = query.after.map_or(0, TaskId::get);
    let calls: Vec<Call<'_>> = topics
        .iter()
        .map(|t| {
            let mut call = call(store, &SCRIPTS.list, &topic_keys(store, t));
            call.arg(query.queue.as_str()).arg(after).arg(limit + 1);
            call.arg(part).arg(now);
            call
        })
        .collect();
    let replies = store.shared.conn.eval(&calls).await?;
    type Found<'t> = (TaskId, &'t Arc<str>, Option<Vec<u8>>, Run);
    let mut found: Vec<Found<'_>> = Vec::new();
    for (topic, reply) in topics.iter().zip(replies) {
        let mut items = array(reply, "list")?.into_iter();
        let mut next = || array(items.next().unwrap_or(Value::Nil), "list");
        let (ids, records) = (next()?, next()?);
        // The run's parts come only for WORK, the ends of the runs only for COMPLETED.
        let (leases, requests, progress, ends) = (next()?, next()?, next()?, next()?);
        if records.len() != ids.len()
            || [&leases, &requests, &progress, &ends]
                .iter()
                .any(|part| !part.is_empty() && part.len() != ids.len())
        {
            return Err(taskmill_core::Error::storage(
                "list script returned a bad reply",
            ));
        }
        let mut leases = leases.into_iter();
        let mut requests = requests.into_iter();
        let mut progress = progress.into_iter();
        let mut ends = ends.into_iter();
        for (id, record) in ids.into_iter().zip(records) {
            let record = with_end(record_bytes(record)?, ends.next().unwrap_or(Value::Nil))?;
            let run = Run::lenient(
                leases.next().unwrap_or(Value::Nil),
                requests.next().unwrap_or(Value::Nil),
                progress.next().unwrap_or(Value::Nil),
            );
            found.push((task_id(&id, "list")?, topic, record, run));
        }
    }
    found.sort_by_key(|(id, ..)| *id);
    let more = found.len() > limit;
    found.truncate(limit);
    let tasks: Vec<TaskRecord> = found
        .into_iter()
        .map(|(id, topic, record, run)| {
            decode_lenient(record.as_deref(), id, topic, query.queue, &run)
        })
        .collect();
    let next = if more {
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Page { tasks, next })
}

/// [`Store::requeue`](taskmill_core::Store::requeue).
pub(crate) async fn requeue(
    store: &RedisStore,
    ids: &[TaskId],
    now: Timestamp,
) -> Result<Vec<bool>> {
    let now = [now.as_millis().to_string()];
    let codes = on_every_topic(store, &SCRIPTS.requeue, ids, &now).await?;
    Ok(codes.into_iter().map(|(c, _)| c == 1).collect())
}

/// [`Store::delete`](taskmill_core::Store::delete).
pub(crate) async fn delete(store: &RedisStore, ids: &[TaskId]) -> Result<Vec<bool>> {
    let codes = on_every_topic(store, &SCRIPTS.delete, ids, &[]).await?;
    Ok(codes.into_iter().map(|(c, _)| c == 1).collect())
}

/// [`Store::cancel`](taskmill_core::Store::cancel). The scripts publish the requests for
/// running tasks on the cancel channel and the events of the tasks cancelled at once.
pub(crate) async fn cancel(
    store: &RedisStore,
    ids: &[TaskId],
    opts: &CancelOptions,
) -> Result<Vec<Cancellation>> {
    let leading = [
        opts.now.as_millis().to_string(),
        opts.by.to_string(),
        json_string(&opts.by),
        store.shared.keys.cancel.clone(),
    ];
    let codes = on_every_topic(store, &SCRIPTS.cancel, ids, &leading).await?;
    store
        .publish_for_scripts(|| {
            ids.iter()
                .zip(&codes)
                .filter_map(|(id, (code, topic))| match (code, topic) {
                    (1, Some(topic)) => Some(Event::TaskCancelled {
                        id: *id,
                        topic: topic.clone(),
                        by: Some(opts.by.clone()),
                        was_running: false,
                    }),
                    _ => None,
                })
                .collect()
        })
        .await;
    Ok(codes
        .into_iter()
        .map(|(code, _)| match code {
            1 => Cancellation::Cancelled,
            2 => Cancellation::Requested,
            3 => Cancellation::Refused(Queue::Dead),
            4 => Cancellation::Refused(Queue::Completed),
            5 => Cancellation::Refused(Queue::Cancelled),
            _ => Cancellation::NotFound,
        })
        .collect())
}

/// [`Store::set_paused`](taskmill_core::Store::set_paused).
pub(crate) async fn set_paused(store: &RedisStore, topic: &str, paused: bool) -> Result<()> {
    let topic: Arc<str> = Arc::from(topic);
    let mut cmd = redis::cmd("SADD");
    cmd.arg(&store.shared.keys.topics).arg(&*topic);
    store.shared.conn.command(&cmd).await?;
    let mut call = call(store, &SCRIPTS.pause, &topic_keys(store, &topic));
    call.arg(if paused { "1" } else { "0" });
    store.shared.conn.eval_one(call).await?;
    Ok(())
}

/// A schedule state as the schedule scripts return it.
fn schedule_state(name: &str, value: Value) -> Result<ScheduleState> {
    match value {
        Value::BulkString(bytes) => decode_schedule(name, &bytes),
        Value::SimpleString(s) => decode_schedule(name, s.as_bytes()),
        other => Err(crate::codec::unexpected("schedule state", &other)),
    }
}

/// [`Store::register_schedules`](taskmill_core::Store::register_schedules): one `register`
/// script call per chunk of entries (pipelined), each upserting its entries in order in one
/// step, so a fire in between cannot be lost by a registration's rewrite of the state.
pub(crate) async fn register_schedules(
    store: &RedisStore,
    entries: &[ScheduleEntry],
    opts: &RegisterOptions,
) -> Result<Vec<ScheduleState>> {
    let keys = &store.shared.keys;
    let now = opts.now.as_millis();
    let calls: Vec<Call<'_>> = entries
        .chunks(CHUNK)
        .map(|chunk| {
            let mut call = Call::of_namespace(&SCRIPTS.register, &[&keys.schedules]);
            call.arg(now);
            for entry in chunk {
                call.arg(&*entry.name)
                    .arg(&*entry.spec)
                    .arg(&*entry.zone)
                    .arg(&*entry.topic);
            }
            call
        })
        .collect();
    let replies = store.shared.conn.eval(&calls).await?;
    let mut states = Vec::with_capacity(entries.len());
    for (reply, chunk) in replies.into_iter().zip(entries.chunks(CHUNK)) {
        let stored = array(reply, "register")?;
        if stored.len() != chunk.len() {
            return Err(taskmill_core::Error::storage(
                "register script returned a bad reply",
            ));
        }
        for (entry, value) in chunk.iter().zip(stored) {
            states.push(schedule_state(&entry.name, value)?);
        }
    }
    Ok(states)
}

/// A tick on its way through [`fire`]: its index in the call, the tick, its task's record
/// (with the id reserved for it) and the other topic whose keys its script gets, if any.
struct Firing {
    index: usize,
    schedule: Arc<str>,
    at: Timestamp,
    skip: bool,
    record: TaskRecord,
    other: Option<Arc<str>>,
}

/// How many times one tick is sent again with the keys of its last task's topic before
/// `fire` gives up: each time means the last task's topic changed in between, which
/// takes another manager firing the same schedule to another topic at that moment.
const FIRE_ATTEMPTS: usize = 8;

/// [`Store::fire`](taskmill_core::Store::fire): one `fire` script call per tick, each
/// deciding and enqueueing in one step (`scripts/fire.lua`).
///
/// The ids are reserved first, one per tick (one `INCRBY`), because a record is encoded
/// with its id; a tick that is not enqueued leaves its id unused, as a duplicate does.
/// The calls go pipelined, in rounds: round `r` holds the `r`-th tick of each schedule, so
/// a schedule's ticks run in the order given even when one of them is sent again. A tick
/// is sent again (nothing changed) when its overlap check needs the keys of a topic its
/// script did not get: the topic the schedule's last task went to, when the schedule was
/// registered to another topic since.
pub(crate) async fn fire(
    store: &RedisStore,
    ticks: Vec<Tick>,
    opts: &EnqueueOptions,
) -> Result<Vec<Fired>> {
    let count = ticks.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let shared = &store.shared;
    let first = reserve_ids(store, count).await?;
    if shared.conn.is_cluster() {
        return fire_on_cluster(store, ticks, first, opts).await;
    }
    let mut rounds: Vec<Vec<Firing>> = Vec::new();
    let mut per_schedule: BTreeMap<Arc<str>, usize> = BTreeMap::new();
    for (index, tick) in ticks.into_iter().enumerate() {
        let Tick {
            schedule,
            at,
            task,
            overlap,
            ..
        } = tick;
        let round = per_schedule.entry(schedule.clone()).or_default();
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(Firing {
            index,
            schedule,
            at,
            skip: overlap == Overlap::Skip,
            record: task.into_record(TaskId::new(first + index as u64), opts),
            other: None,
        });
        *round += 1;
    }
    let now = opts.now.as_millis();
    let mut results: Vec<Option<Fired>> = vec![None; count];
    let mut buffer = Vec::new();
    for mut pending in rounds {
        for attempt in 1.. {
            let other_keys: Vec<Option<Arc<TopicKeys>>> = pending
                .iter()
                .map(|f| f.other.as_ref().map(|t| topic_keys(store, t)))
                .collect();
            let calls: Vec<Call<'_>> = pending
                .iter()
                .zip(&other_keys)
                .map(|(f, other)| {
                    let keys = topic_keys(store, &f.record.topic);
                    let mut extra = vec![&shared.keys.schedules[..], &shared.keys.topics[..]];
                    if let Some(other) = other {
                        extra.extend(other.unfinished());
                    }
                    let mut call = Call::with_keys(&SCRIPTS.fire, &shared.keys, &keys, &extra);
                    call.arg(&*f.schedule)
                        .arg(f.at.as_millis())
                        .arg(if f.skip { "1" } else { "0" })
                        .arg(now)
                        .arg(&*f.record.topic)
                        .arg(f.other.as_deref().unwrap_or(""))
                        .arg(f.record.id.get());
                    enqueue_args(&mut call, &[(0, f.record.clone())], now, &mut buffer, None);
                    call
                })
                .collect();
            let replies = shared.conn.eval(&calls).await?;
            let mut again = Vec::new();
            for (mut firing, reply) in pending.into_iter().zip(replies) {
                match fired(&firing.schedule, reply)? {
                    Ok(answer) => results[firing.index] = Some(answer),
                    Err(topic) => {
                        firing.other = Some(topic);
                        again.push(firing);
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            if attempt == FIRE_ATTEMPTS {
                return Err(taskmill_core::Error::storage(format!(
                    "schedule {:?}: its last task's topic kept changing while it fired",
                    again[0].schedule
                )));
            }
            pending = again;
        }
    }
    let results = results
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| taskmill_core::Error::storage("fire skipped a tick"))?;
    // One server: the connection's writes, whatever key is named.
    wait_for_replicas(store, &[&shared.keys.ids]).await?;
    Ok(results)
}

/// Waits for [`RedisOptions::enqueue_replicas`](crate::RedisOptions::enqueue_replicas)
/// replicas to have the writes to the slots of `keys`, if any are asked for.
async fn wait_for_replicas(store: &RedisStore, keys: &[&str]) -> Result<()> {
    let options = &store.shared.options;
    if options.enqueue_replicas == 0 || keys.is_empty() {
        return Ok(());
    }
    store
        .shared
        .conn
        .wait_for_replicas(keys, options.enqueue_replicas, options.replica_timeout)
        .await
}

/// Reserves `count` task ids and returns the first.
async fn reserve_ids(store: &RedisStore, count: usize) -> Result<u64> {
    let keys = &store.shared.keys;
    let mut cmd = redis::cmd("INCRBY");
    cmd.arg(&keys.ids).arg(count);
    let last = task_id(&store.shared.conn.command(&cmd).await?, "id counter")?.get();
    (last + 1).checked_sub(count as u64).ok_or_else(|| {
        taskmill_core::Error::corrupt(format!(
            "the id counter {} went backwards (reads {last})",
            keys.ids
        ))
    })
}

/// [`fire`] on a Redis Cluster, where the schedule hash and a tick's topic are in
/// different slots, so no one script can decide, enqueue and record. Each tick (in the
/// order given) takes three script calls:
///
/// 1. `fire_decide` on the schedule hash: stale, paused or overlapped (recorded there), or
///    go. For `Overlap::Skip` it names the schedule's last task, and is called again once
///    the task's topic was asked whether it is unfinished.
/// 2. `fire_enqueue` on the topic: enqueues unless the topic marks the schedule as fired
///    at this tick or later, and marks it. Of managers firing the same tick to the same
///    topic exactly one enqueues.
/// 3. `fire_commit` on the schedule hash: records the tick and its task. A manager that
///    stops between 2 and 3 leaves the tick unrecorded; the next fire of it finds the mark
///    (step 2 answers "fired") and records it then.
///
/// What the single script holds and these steps do not: a pause, or a registration to
/// another topic, that lands between steps 1 and 2 does not stop that tick (it is decided
/// already); two managers firing one tick while its schedule moves to another topic may
/// enqueue it once in each; and the overlap check reads the last task's state before the
/// decision, not with it.
async fn fire_on_cluster(
    store: &RedisStore,
    ticks: Vec<Tick>,
    first: u64,
    opts: &EnqueueOptions,
) -> Result<Vec<Fired>> {
    let shared = &store.shared;
    let schedules = [&shared.keys.schedules[..]];
    let mut topics: Vec<Arc<str>> = ticks.iter().map(|t| Arc::from(t.task.topic())).collect();
    topics.sort_unstable();
    topics.dedup();
    let mut cmd = redis::cmd("SADD");
    cmd.arg(&shared.keys.topics);
    for topic in &topics {
        cmd.arg(&**topic);
    }
    shared.conn.command(&cmd).await?;
    let now = opts.now.as_millis();
    let mut results = Vec::with_capacity(ticks.len());
    // The events of the tasks enqueued, published at the end (scripts publish none here).
    let mut enqueued = Vec::new();
    let mut buffer = Vec::new();
    for (index, tick) in ticks.into_iter().enumerate() {
        let Tick {
            schedule,
            at,
            task,
            overlap,
            ..
        } = tick;
        let record = task.into_record(TaskId::new(first + index as u64), opts);
        let skip = overlap == Overlap::Skip;
        let mut checked: Option<(String, bool)> = None;
        // `Some(None)` to go on and enqueue, `Some(Some(answer))` when decided otherwise.
        let mut decision = None;
        for _ in 0..FIRE_ATTEMPTS {
            let mut call = Call::of_namespace(&SCRIPTS.fire_decide, &schedules);
            call.arg(&*schedule)
                .arg(at.as_millis())
                .arg(if skip { "1" } else { "0" })
                .arg(now)
                .arg(&*record.topic);
            match &checked {
                Some((task, unfinished)) => call.arg(task).arg(if *unfinished { "1" } else { "0" }),
                None => call.arg("").arg("0"),
            };
            let reply = shared.conn.eval_one(call).await?;
            let mut items = array(reply, "fire_decide")?.into_iter();
            let kind = string(items.next().unwrap_or(Value::Nil), "fire_decide")?;
            let mut value = || items.next().unwrap_or(Value::Nil);
            decision = Some(match kind.as_str() {
                "go" => None,
                "stale" => Some(Fired::Stale {
                    last: Timestamp::from_millis(int(&value(), "fire_decide")?),
                }),
                "paused" => Some(Fired::Paused),
                "overlapped" => Some(Fired::Overlapped {
                    running: task_id(&value(), "fire_decide")?,
                }),
                "check" => {
                    let task = string(value(), "fire_decide")?;
                    let topic: Arc<str> = Arc::from(string(value(), "fire_decide")?);
                    let id = task.parse::<u64>().map_err(|_| {
                        taskmill_core::Error::corrupt(format!(
                            "schedule {schedule:?} names the last task {task:?}"
                        ))
                    })?;
                    let unfinished = is_unfinished(store, &topic, TaskId::new(id)).await?;
                    checked = Some((task, unfinished));
                    continue;
                }
                "corrupt" => {
                    return Err(taskmill_core::Error::corrupt(format!(
                        "schedule {schedule:?} has a corrupt state"
                    )))
                }
                other => {
                    return Err(taskmill_core::Error::storage(format!(
                        "fire_decide script answered {other:?}"
                    )))
                }
            });
            break;
        }
        match decision {
            Some(None) => {}
            Some(Some(answer)) => {
                results.push(answer);
                continue;
            }
            None => {
                return Err(taskmill_core::Error::storage(format!(
                    "schedule {schedule:?}: its last task kept changing while it fired"
                )))
            }
        }
        let keys = topic_keys(store, &record.topic);
        let mut call = call(store, &SCRIPTS.fire_enqueue, &keys);
        call.arg(&*schedule)
            .arg(at.as_millis())
            .arg(record.id.get());
        enqueue_args(&mut call, &[(0, record.clone())], now, &mut buffer, None);
        let reply = shared.conn.eval_one(call).await?;
        let mut items = array(reply, "fire_enqueue")?.into_iter();
        let kind = string(items.next().unwrap_or(Value::Nil), "fire_enqueue")?;
        let mut value = || items.next().unwrap_or(Value::Nil);
        let (answer, tick, task) = match kind.as_str() {
            "enqueued" | "duplicate" => {
                let id = task_id(&value(), "fire_enqueue")?;
                let answer = if kind == "enqueued" {
                    enqueued.push(Event::enqueued(&record));
                    Enqueued::New(id)
                } else {
                    Enqueued::Duplicate(id)
                };
                (Fired::Enqueued(answer), at, id)
            }
            "fired" => {
                let tick = Timestamp::from_millis(int(&value(), "fire_enqueue")?);
                let id = task_id(&value(), "fire_enqueue")?;
                (Fired::Stale { last: tick }, tick, id)
            }
            other => {
                return Err(taskmill_core::Error::storage(format!(
                    "fire_enqueue script answered {other:?}"
                )))
            }
        };
        let mut call = Call::of_namespace(&SCRIPTS.fire_commit, &schedules);
        call.arg(&*schedule)
            .arg(tick.as_millis())
            .arg(task.get())
            .arg(now)
            .arg(&*record.topic);
        shared.conn.eval_one(call).await?;
        results.push(answer);
    }
    let mut replicated: Vec<&str> = vec![&shared.keys.ids, &shared.keys.schedules];
    let fired_to: Vec<Arc<TopicKeys>> = topics.iter().map(|t| topic_keys(store, t)).collect();
    replicated.extend(fired_to.iter().map(|k| &*k.keys[0]));
    wait_for_replicas(store, &replicated).await?;
    store.publish_for_scripts(|| enqueued).await;
    Ok(results)
}

/// Whether task `id` of `topic` is in INPUT or WORK.
async fn is_unfinished(store: &RedisStore, topic: &Arc<str>, id: TaskId) -> Result<bool> {
    let mut call = call(store, &SCRIPTS.get, &topic_keys(store, topic));
    call.arg(id.get());
    let reply = store.shared.conn.eval_one(call).await?;
    // The record, the lease, then the queue (see get.lua).
    let queue = array(reply, "get")?
        .into_iter()
        .nth(2)
        .unwrap_or(Value::Nil);
    Ok(matches!(string(queue, "get")?.as_str(), "input" | "work"))
}

/// The answer of the `fire` script: what became of the tick, or (`Err`) the topic whose
/// keys it needs to tell whether the schedule's last task is unfinished.
fn fired(schedule: &str, reply: Value) -> Result<std::result::Result<Fired, Arc<str>>> {
    let mut items = array(reply, "fire")?.into_iter();
    let kind = string(items.next().unwrap_or(Value::Nil), "fire")?;
    let mut value = || items.next().unwrap_or(Value::Nil);
    Ok(Ok(match kind.as_str() {
        "enqueued" => Fired::Enqueued(Enqueued::New(task_id(&value(), "fire")?)),
        "duplicate" => Fired::Enqueued(Enqueued::Duplicate(task_id(&value(), "fire")?)),
        "stale" => Fired::Stale {
            last: Timestamp::from_millis(int(&value(), "fire")?),
        },
        "paused" => Fired::Paused,
        "overlapped" => Fired::Overlapped {
            running: task_id(&value(), "fire")?,
        },
        "topic" => return Ok(Err(Arc::from(string(value(), "fire")?))),
        "corrupt" => {
            return Err(taskmill_core::Error::corrupt(format!(
                "schedule {schedule:?} has a corrupt state"
            )))
        }
        other => {
            return Err(taskmill_core::Error::storage(format!(
                "fire script answered {other:?}"
            )))
        }
    }))
}

/// [`Store::schedules`](taskmill_core::Store::schedules): one `HGETALL`, sorted by name
/// here (byte order, as `str` orders).
pub(crate) async fn schedules(store: &RedisStore) -> Result<Vec<ScheduleState>> {
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(&store.shared.keys.schedules);
    let reply = store.shared.conn.command(&cmd).await?;
    let mut states = Vec::new();
    match reply {
        // RESP3 answers a map.
        Value::Map(pairs) => {
            for (name, value) in pairs {
                let name = string(name, "schedule name")?;
                states.push(schedule_state(&name, value)?);
            }
        }
        reply => {
            let mut items = array(reply, "schedules")?.into_iter();
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                let name = string(name, "schedule name")?;
                states.push(schedule_state(&name, value)?);
            }
        }
    }
    states.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(states)
}

/// [`Store::set_schedule_paused`](taskmill_core::Store::set_schedule_paused).
pub(crate) async fn set_schedule_paused(
    store: &RedisStore,
    name: &str,
    paused: bool,
) -> Result<bool> {
    let keys = &store.shared.keys;
    let mut call = Call::of_namespace(&SCRIPTS.pause_schedule, &[&keys.schedules]);
    call.arg(name).arg(if paused { "1" } else { "0" });
    match int(&store.shared.conn.eval_one(call).await?, "pause_schedule")? {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(taskmill_core::Error::corrupt(format!(
            "schedule {name:?} has a corrupt state"
        ))),
    }
}

/// [`Store::prune_schedules`](taskmill_core::Store::prune_schedules).
pub(crate) async fn prune_schedules(
    store: &RedisStore,
    opts: &PruneSchedulesOptions,
) -> Result<u64> {
    let keys = &store.shared.keys;
    let mut call = Call::of_namespace(&SCRIPTS.prune_schedules, &[&keys.schedules]);
    call.arg(opts.seen_before.as_millis());
    let removed = int(&store.shared.conn.eval_one(call).await?, "prune_schedules")?;
    Ok(removed.max(0) as u64)
}

/// [`RedisStore::delete_namespace`].
///
/// On a cluster, every primary is scanned in turn.
pub(crate) async fn delete_namespace(store: &RedisStore) -> Result<u64> {
    let conn = &store.shared.conn;
    let Conn::Cluster(cluster) = conn else {
        return delete_keys(store, None).await;
    };
    let mut deleted = 0;
    for (host, port) in cluster.nodes(true).await? {
        deleted += delete_keys(store, Some((cluster, &host, port))).await?;
    }
    Ok(deleted)
}

/// Deletes the namespace's keys on one server, or (`at`) on one cluster node.
async fn delete_keys(store: &RedisStore, at: Option<(&Cluster, &str, u16)>) -> Result<u64> {
    let conn = &store.shared.conn;
    let run = |cmd: redis::Cmd| async move {
        match at {
            Some((cluster, host, port)) => cluster.command_at(&cmd, host, port).await,
            None => conn.command(&cmd).await,
        }
    };
    let mut deleted = 0;
    for pattern in store.shared.keys.patterns() {
        // SCAN returns cursor 0 once it has visited every key that existed throughout.
        let mut cursor = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let mut reply = array(run(scan).await?, "SCAN")?.into_iter();
            let (Some(next), Some(keys)) = (reply.next(), reply.next()) else {
                return Err(taskmill_core::Error::storage(
                    "SCAN returned fewer than two values",
                ));
            };
            let keys = array(keys, "SCAN")?;
            if !keys.is_empty() {
                // On a cluster node, redis-rs splits a many-key UNLINK by slot.
                let mut unlink = redis::cmd("UNLINK");
                for key in keys {
                    unlink.arg(string(key, "SCAN")?);
                }
                deleted += int(&conn.command(&unlink).await?, "UNLINK")? as u64;
            }
            cursor = string(next, "SCAN")?.parse::<u64>().map_err(|e| {
                taskmill_core::Error::storage("SCAN returned a bad cursor").with_source(e)
            })?;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(deleted)
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
