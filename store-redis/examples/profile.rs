//! Redis time per script call, per task: enqueues, claims and completes tasks in separate
//! phases and reads `INFO commandstats` between them, so each phase's `EVALSHA` time is
//! its script's alone. Less noisy than a wall-clock benchmark on a shared machine.
//!
//! ```text
//! cargo run --release -p taskmill-redis --example profile -- redis://127.0.0.1:6392/0 [tasks] [keep|drop]
//! ```
//!
//! `keep` (the default) completes tasks into COMPLETED and then reports what a kept
//! completed task costs in memory and what pruning them costs; `drop` completes them with
//! `keep(false)`, removing them as a completion did before history.
//!
//! `PROFILE_TOPICS=N` spreads the tasks over N topics (5 unless set).
//!
//! Uses a fresh namespace and deletes its keys at the end.

use std::time::{Duration, Instant};
use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, Outcome, OutcomeKind,
    PruneOptions, TopicClaim,
};
use taskmill_core::{Payload, Store, Task, Timestamp};
use taskmill_redis::RedisStore;

const ENQUEUE_BATCH: usize = 1000;
const CLAIM_BATCH: usize = 100;

/// What the server has counted so far.
struct Snapshot {
    /// Calls of EVALSHA.
    calls: u64,
    /// µs inside EVALSHA.
    usec: u64,
    /// The server's CPU time in µs (user + system, which also counts reading arguments
    /// and writing replies, outside any command's time).
    cpu: u64,
    /// µs per command (those the scripts call are counted apart from EVALSHA too).
    commands: Vec<(String, u64)>,
}

async fn snapshot(conn: &mut redis::aio::MultiplexedConnection) -> Snapshot {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(conn)
        .await
        .expect("INFO all");
    let cpu: f64 = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum();
    let cpu = (cpu * 1e6) as u64;
    let field = |rest: &str, name: &str| {
        rest.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut snap = Snapshot {
        calls: 0,
        usec: 0,
        cpu,
        commands: Vec::new(),
    };
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        if name == "evalsha" {
            (snap.calls, snap.usec) = (field(rest, "calls="), field(rest, "usec="));
        } else {
            snap.commands.push((name.to_owned(), field(rest, "usec=")));
        }
    }
    snap
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn report(what: &str, before: &Snapshot, after: &Snapshot, tasks: usize, wall: Duration) {
    let (calls, usec) = (after.calls - before.calls, after.usec - before.usec);
    let cpu = after.cpu.saturating_sub(before.cpu);
    println!(
        "{what:8} {calls:6} calls  {:7.1} µs/call  {:5.2} µs/task in scripts  {:5.2} µs/task redis cpu  {:7.0} tasks/s wall",
        usec as f64 / calls.max(1) as f64,
        usec as f64 / tasks as f64,
        cpu as f64 / tasks as f64,
        tasks as f64 / wall.as_secs_f64()
    );
    let mut commands: Vec<(&str, u64)> = after
        .commands
        .iter()
        .map(|(name, usec)| {
            let was = before
                .commands
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, u)| *u);
            (name.as_str(), usec.saturating_sub(was))
        })
        .filter(|(name, usec)| *usec > 0 && !name.starts_with("info"))
        .collect();
    commands.sort_by_key(|(_, usec)| std::cmp::Reverse(*usec));
    let inside: Vec<String> = commands
        .iter()
        .take(6)
        .map(|(name, usec)| format!("{name} {:.2}", *usec as f64 / tasks as f64))
        .collect();
    println!("           inside, µs/task: {}", inside.join(", "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_owned());
    let tasks: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let keep = match args.next().as_deref() {
        None | Some("keep") => true,
        Some("drop") => false,
        Some(other) => panic!("expected keep or drop, not {other:?}"),
    };
    let complete = |claimed: &Claimed| complete(claimed, keep);
    let namespace = format!("profile-{}", std::process::id());
    let store = RedisStore::open(&format!("{server}?namespace={namespace}"))
        .await
        .expect("open the store");
    let client = redis::Client::open(server.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let topic_count: usize = std::env::var("PROFILE_TOPICS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let topics: Vec<String> = (0..topic_count).map(|i| format!("topic-{i}")).collect();

    // Warm-up: loads the scripts, so NOSCRIPT replies do not count.
    let warm = vec![Task::new(topics[0].as_str(), &0).unwrap()];
    store
        .enqueue(warm, &EnqueueOptions::new(Timestamp::now()))
        .await
        .unwrap();
    let owner = "profile";
    let all_topics = || topics.iter().map(|t| TopicClaim::new(t.as_str()));
    let claimed = store
        .claim(&ClaimOptions::new(all_topics(), 1, owner, Timestamp::now()))
        .await
        .unwrap();
    let leases: Vec<Outcome> = claimed.iter().map(complete).collect();
    store
        .apply(&leases, &ApplyOptions::new(Timestamp::now()))
        .await
        .unwrap();

    let memory_before = used_memory(&mut conn).await;
    let before = snapshot(&mut conn).await;
    let started = Instant::now();
    let payload = Payload::from_json("{\"n\":\"0123456789\"}").unwrap();
    for start in (0..tasks).step_by(ENQUEUE_BATCH) {
        let batch = (start..tasks.min(start + ENQUEUE_BATCH))
            .map(|i| Task::with_payload(topics[i % topic_count].as_str(), payload.clone()).unwrap())
            .collect();
        store
            .enqueue(batch, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }
    let enqueued = snapshot(&mut conn).await;
    report("enqueue", &before, &enqueued, tasks, started.elapsed());
    let grown = used_memory(&mut conn).await.saturating_sub(memory_before);
    println!(
        "memory   {:.0} bytes per queued task (used_memory growth; the args are 20 bytes)",
        grown as f64 / tasks as f64
    );

    let started = Instant::now();
    let mut leases = Vec::with_capacity(tasks);
    while leases.len() < tasks {
        let req = ClaimOptions::new(all_topics(), CLAIM_BATCH, owner, Timestamp::now())
            .lease(Duration::from_secs(600));
        let claimed = store.claim(&req).await.unwrap();
        assert!(!claimed.is_empty(), "ran out of tasks");
        leases.extend(claimed.iter().map(complete));
    }
    let claimed = snapshot(&mut conn).await;
    report("claim", &enqueued, &claimed, tasks, started.elapsed());

    let started = Instant::now();
    for chunk in leases.chunks(CLAIM_BATCH) {
        store
            .apply(chunk, &ApplyOptions::new(Timestamp::now()))
            .await
            .unwrap();
    }
    let applied = snapshot(&mut conn).await;
    report("complete", &claimed, &applied, tasks, started.elapsed());

    if keep {
        // What the history holds: each topic's records hash, the ends of their runs, and
        // the finished tasks by id (a sorted set) and in finish order (the log, and the
        // sorted set of those out of order), nothing else being left.
        let mut bytes = 0u64;
        let mut parts = Vec::new();
        for suffix in ["tasks", "ends", "completed", "finish_log", "finished"] {
            let mut part = 0u64;
            for topic in &topics {
                let usage: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(format!("{{{namespace}:{topic}}}:{suffix}"))
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                part += usage.unwrap_or(0);
            }
            bytes += part;
            parts.push(format!("{suffix} {:.0}", part as f64 / tasks as f64));
        }
        println!(
            "memory   {:.0} bytes per kept completed task (MEMORY USAGE: {}), {:.0} by used_memory growth",
            bytes as f64 / tasks as f64,
            parts.join(", "),
            used_memory(&mut conn).await.saturating_sub(memory_before) as f64 / tasks as f64
        );
        let started = Instant::now();
        let mut pruned = 0;
        while pruned < tasks as u64 {
            let opts = PruneOptions::new(Timestamp::now() + Duration::from_secs(1), Duration::ZERO);
            let n = store.prune(&opts).await.unwrap();
            assert!(n > 0, "nothing left to prune after {pruned}");
            pruned += n;
        }
        let after = snapshot(&mut conn).await;
        report("prune", &applied, &after, tasks, started.elapsed());
    }

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn complete(claimed: &Claimed, keep: bool) -> Outcome {
    let lease = match claimed {
        Claimed::Ready(record) => LeaseRef::of(record),
        Claimed::Corrupt { lease, .. } => lease.clone(),
    };
    Outcome::new(lease, OutcomeKind::complete()).keep(keep)
}
