//! The Redis store in cluster mode (`redis+cluster://`), on private Redis Clusters
//! (`taskmill_testkit::redis_cluster`): topics spread over the shards, a large run
//! completes exactly, a busy topic's slot moves to another primary mid-run, a primary dies
//! and its replica takes over mid-run, and a plain `redis://` URL at a cluster node is
//! refused with the fix.
//!
//! The tests that only read and write their own namespace share the process's cluster
//! (`RedisCluster::shared`); those that move slots or kill nodes start their own. Counts
//! can be lowered for a quick run: `TASKMILL_CLUSTER_TASKS` (default 100,000) for the large
//! run, `TASKMILL_CLUSTER_BUSY_TASKS` (default 30,000) for the resharding and failover
//! runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{
    Counters, ErrorKind, Manager, QueueSizes, Stats, Store, Task, TaskContext, TaskError, Timestamp,
};
use taskmill_redis::{RedisOptions, RedisStore};
use taskmill_testkit::redis::fresh_namespace;
use taskmill_testkit::redis_cluster::RedisCluster;
use taskmill_testkit::{all_due, wait_until};

/// The count of an environment variable, or `default`.
fn count(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v} is not a count")),
        Err(_) => default,
    }
}

fn topic_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:02}")).collect()
}

/// The hash tag of `topic`'s keys: every key of a topic is in its slot.
fn tag(namespace: &str, topic: &str) -> String {
    format!("{{{namespace}:{topic}}}")
}

/// Task `n` goes to topic `n % topics`.
fn topic_of(topics: &[String], n: u64) -> &str {
    &topics[(n % topics.len() as u64) as usize]
}

/// How many of `0..total` go to each topic.
fn per_topic(topics: &[String], total: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for n in 0..total {
        *counts.entry(topic_of(topics, n).to_string()).or_insert(0) += 1;
    }
    counts
}

/// Enqueues tasks `0..total` (argument `n`, topic `n % topics`) in batches of 1000, each
/// batch spanning every topic and so every shard.
async fn enqueue_all(store: &RedisStore, topics: &[String], total: u64) {
    let mut n = 0;
    while n < total {
        let end = (n + 1000).min(total);
        let tasks = (n..end)
            .map(|i| Task::new(topic_of(topics, i), &i).unwrap())
            .collect();
        let enqueued = store
            .enqueue(tasks, &EnqueueOptions::new(Timestamp::now()))
            .await
            .unwrap_or_else(|e| panic!("enqueueing tasks {n}..{end}: {e}"));
        assert!(enqueued.iter().all(|e| e.is_new()));
        n = end;
    }
}

/// One run of a task, as its processor saw it.
#[derive(Debug, Clone, Copy)]
struct Run {
    n: u64,
    manager: usize,
    start: Instant,
    end: Instant,
}

type Runs = Arc<Mutex<Vec<Run>>>;

/// `count` managers, each on a store handle of its own (as separate processes would be),
/// running every topic, recording each run in `runs`.
async fn start_managers(
    url: &str,
    count: usize,
    topics: &[String],
    runs: &Runs,
    lease: Duration,
) -> Vec<Manager> {
    let mut managers = Vec::new();
    for m in 0..count {
        let store = RedisStore::open(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        let manager = Manager::builder(store)
            .concurrency(32)
            .lease(lease)
            .poll_interval(Duration::from_millis(100))
            .stats_interval(None)
            .build();
        for topic in topics {
            let runs = runs.clone();
            manager
                .register(topic.as_str(), move |ctx: TaskContext| {
                    let runs = runs.clone();
                    async move {
                        let start = Instant::now();
                        let n: u64 = ctx.args()?;
                        tokio::task::yield_now().await;
                        runs.lock().unwrap().push(Run {
                            n,
                            manager: m,
                            start,
                            end: Instant::now(),
                        });
                        Ok::<_, TaskError>(())
                    }
                })
                .unwrap();
        }
        manager.start().await.unwrap();
        managers.push(manager);
    }
    managers
}

async fn close_all(managers: Vec<Manager>) {
    for manager in managers {
        manager
            .close_with_timeout(Duration::from_secs(30))
            .await
            .unwrap();
    }
}

/// Waits until the store holds `total` completed tasks and nothing active, printing
/// progress every few seconds; the stats then.
async fn wait_all_completed(store: &RedisStore, total: u64, limit: Duration) -> Stats {
    let started = Instant::now();
    let deadline = started + limit;
    let mut said = started;
    loop {
        match store.stats(&all_due()).await {
            Ok(stats)
                if stats.total.sizes.active() == 0 && stats.total.sizes.completed == total =>
            {
                return stats
            }
            Ok(stats) if said.elapsed() > Duration::from_secs(5) => {
                said = Instant::now();
                eprintln!("{:?}: {:?}", started.elapsed(), stats.total.sizes);
            }
            Ok(_) => {}
            Err(e) => eprintln!("{:?}: stats: {e}", started.elapsed()),
        }
        assert!(
            Instant::now() < deadline,
            "not every task completed within {limit:?}: {:?}",
            store.stats(&all_due()).await.map(|s| s.total.sizes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs per task number.
fn runs_by_task(runs: &Runs) -> HashMap<u64, Vec<Run>> {
    let mut by_task: HashMap<u64, Vec<Run>> = HashMap::new();
    for run in runs.lock().unwrap().iter() {
        by_task.entry(run.n).or_default().push(*run);
    }
    by_task
}

/// Every task of `0..total` ran exactly once.
fn assert_exactly_once(runs: &Runs, total: u64) {
    let by_task = runs_by_task(runs);
    let missing: Vec<u64> = (0..total).filter(|n| !by_task.contains_key(n)).collect();
    let twice: BTreeMap<u64, Vec<Run>> = by_task.into_iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(
        missing.is_empty(),
        "{} tasks never ran, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{} tasks ran more than once although no lease expired and no node died, e.g. {:?}",
        twice.len(),
        twice.iter().next()
    );
}

/// The stats of a run where every task of `counts` completed at its first attempt: per
/// topic and in total, `enqueued = started = completed` = its count and nothing else
/// moved, one completed record kept per task.
fn assert_exact_stats(stats: &Stats, counts: &BTreeMap<String, u64>) {
    let exact = |n: u64| {
        let mut c = Counters::default();
        c.enqueued = n;
        c.started = n;
        c.completed = n;
        let mut s = QueueSizes::default();
        s.completed = n;
        (c, s)
    };
    assert_eq!(
        stats.topics.keys().collect::<Vec<_>>(),
        counts.keys().collect::<Vec<_>>(),
        "the topics"
    );
    for (topic, &n) in counts {
        let t = &stats.topics[topic];
        assert_eq!((t.counters, t.sizes), exact(n), "topic {topic}");
    }
    let total = counts.values().sum();
    assert_eq!(
        (stats.total.counters, stats.total.sizes),
        exact(total),
        "the totals"
    );
}

/// Each topic's keys are in its own slot, so twenty topics spread over the three
/// primaries: every primary holds keys of the namespace, and each topic's keys are all on
/// the primary that serves its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_land_on_every_shard() {
    let cluster = RedisCluster::shared();
    let ns = fresh_namespace();
    let store = RedisStore::open(&cluster.url(&ns)).await.unwrap();
    // Twenty topics, and more if the hash slots of the first twenty leave a primary out
    // (about one namespace in a thousand): every primary must get one for the test to
    // say something. Bounded: each topic lands on a given primary with odds 1/3.
    let primaries = cluster.primaries();
    let mut topics = topic_names(20);
    let owner = |topic: &str| cluster.owner_of_slot(cluster.slot_of(&tag(&ns, topic)));
    while !primaries
        .iter()
        .all(|p| topics.iter().any(|t| owner(t) == *p))
    {
        assert!(topics.len() < 200, "no topic lands on some primary");
        topics.push(format!("t{:02}", topics.len()));
    }
    for topic in &topics {
        store
            .enqueue(
                vec![Task::new(topic.as_str(), &1).unwrap()],
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .unwrap();
    }
    let per_node = cluster.keys_per_node(&format!("{{{ns}:*"));
    eprintln!("{} topics; keys per primary: {per_node:?}", topics.len());
    assert_eq!(per_node.len(), 3);
    for (port, keys) in &per_node {
        assert!(
            *keys > 0,
            "no key of the namespace on 127.0.0.1:{port}: {per_node:?}"
        );
    }
    for topic in &topics {
        let home = owner(topic);
        for (port, keys) in cluster.keys_per_node(&format!("{}*", tag(&ns, topic))) {
            if port == home {
                assert!(
                    keys > 0,
                    "topic {topic} has no key on its own primary {port}"
                );
            } else {
                assert_eq!(
                    keys, 0,
                    "keys of topic {topic} on 127.0.0.1:{port}, not {home}"
                );
            }
        }
    }
    let stats = store.stats(&all_due()).await.unwrap();
    assert_eq!(stats.topics.len(), topics.len());
    assert_eq!(stats.total.sizes.input, topics.len() as u64);

    // There is no waiting-topic index on a cluster (it would span slots): rebuilding one
    // is refused, not half done.
    let err = store.rebuild_waiting_index().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(cluster
        .keys_per_node(&format!("{ns}:waiting*"))
        .iter()
        .all(|(_, n)| *n == 0));

    // Deleting the namespace scans every primary: nothing of it is left on any.
    let before: u64 = cluster
        .keys_per_node(&format!("{ns}:*"))
        .iter()
        .chain(&cluster.keys_per_node(&format!("{{{ns}:*")))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(store.delete_namespace().await.unwrap(), before);
    for pattern in [format!("{ns}:*"), format!("{{{ns}:*")] {
        let left = cluster.keys_per_node(&pattern);
        assert!(left.iter().all(|(_, n)| *n == 0), "{pattern}: {left:?}");
    }
}

/// 100,000 tasks over twenty topics (on every shard), two managers: every task runs once,
/// and the stats, gathered from every shard, are exact per topic and in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_tasks_over_twenty_topics_complete_exactly() {
    let total = count("TASKMILL_CLUSTER_TASKS", 100_000);
    let cluster = RedisCluster::shared();
    let url = cluster.url(&fresh_namespace());
    let store = RedisStore::open(&url).await.unwrap();
    let topics = topic_names(20);
    let began = Instant::now();
    enqueue_all(&store, &topics, total).await;
    let enqueued = began.elapsed();
    let runs: Runs = Arc::default();
    let managers = start_managers(&url, 2, &topics, &runs, Duration::from_secs(30)).await;
    let stats = wait_all_completed(&store, total, Duration::from_secs(600)).await;
    let processed = began.elapsed() - enqueued;
    close_all(managers).await;
    eprintln!("{total} tasks: enqueued in {enqueued:?}, processed in {processed:?}");
    assert_exactly_once(&runs, total);
    assert_exact_stats(&stats, &per_topic(&topics, total));
}

/// A busy topic's slot moves to another primary while two managers work on it (and on
/// other topics): the slot is moved key batch by key batch, the managers meeting ASK and
/// TRYAGAIN on the way and MOVED after; they keep going, other topics keep completing
/// while the slot is half-moved, and in the end every task ran exactly once (no lease
/// expired, no process died, so no run may repeat) with exact stats, the topic's keys all
/// on its new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_topics_slot_moves_mid_run() {
    let busy_total = count("TASKMILL_CLUSTER_BUSY_TASKS", 30_000);
    let cluster = Arc::new(RedisCluster::start(3, 0));
    let ns = fresh_namespace();
    let url = cluster.url(&ns);
    let store = RedisStore::open(&url).await.unwrap();
    // Half the tasks on the busy topic, the rest over four others.
    let mut topics = vec!["busy".to_string()];
    topics.extend(topic_names(4));
    let counts: BTreeMap<String, u64> = topics
        .iter()
        .map(|t| {
            let n = if t == "busy" {
                busy_total / 2
            } else {
                busy_total / 8
            };
            (t.clone(), n)
        })
        .collect();
    let total: u64 = counts.values().sum();
    // Numbered so that task n's topic is known: the busy topic's first, then the others'.
    let mut next = 0;
    let mut topic_of_task = Vec::new();
    for (topic, &n) in &counts {
        let tasks: Vec<Task> = (next..next + n)
            .map(|i| Task::new(topic.as_str(), &i).unwrap())
            .collect();
        for chunk in tasks.chunks(1000) {
            store
                .enqueue(chunk.to_vec(), &EnqueueOptions::new(Timestamp::now()))
                .await
                .unwrap();
        }
        topic_of_task.extend(std::iter::repeat_n(topic.clone(), n as usize));
        next += n;
    }
    let busy_done = {
        let topic_of_task = Arc::new(topic_of_task);
        move |runs: &Runs| {
            runs.lock()
                .unwrap()
                .iter()
                .filter(|r| topic_of_task[r.n as usize] == "busy")
                .count() as u64
        }
    };
    let slot = cluster.slot_of(&tag(&ns, "busy"));
    let from = cluster.owner_of_slot(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();

    let runs: Runs = Arc::default();
    let managers_started = Instant::now();
    let managers = start_managers(&url, 2, &topics, &runs, Duration::from_secs(30)).await;
    wait_until(
        "the managers to get going on the busy topic",
        Duration::from_secs(60),
        || {
            let done = busy_done(&runs);
            async move { done >= 500 }
        },
    )
    .await;
    let (at_start, runs_at_start) = (busy_done(&runs), runs.lock().unwrap().len());
    let began = Instant::now();
    let rate_before = runs_at_start as f64 / (began - managers_started).as_secs_f64();
    let migration = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut batches = 0;
            // One key per batch, the slot held half-moved for HOLD after each while the
            // managers keep working: a fixed time, not a wait for something. It keeps the
            // half-moved state far shorter than the 30 s lease, so that no lease can expire
            // because a run's completion could not be recorded meanwhile (a busy-topic
            // script meets TRYAGAIN until every key of the slot moved), and a repeated run
            // is a fault.
            const HOLD: Duration = Duration::from_millis(250);
            cluster.migrate_slot_with(slot, to, 1, |step| {
                batches = step.batches;
                std::thread::sleep(HOLD);
            });
            batches
        })
    };
    let batches = migration.await.expect("the migration");
    let moved_in = began.elapsed();
    let (at_end, runs_at_end) = (busy_done(&runs), runs.lock().unwrap().len());
    let mid_migration = runs_at_end - runs_at_start;
    eprintln!(
        "slot {slot} moved from {from} to {to} in {batches} batches, {moved_in:?}; {} tasks \
         completed meanwhile ({:.0}/s, {:.0}/s before), {} of the busy topic",
        mid_migration,
        mid_migration as f64 / moved_in.as_secs_f64(),
        rate_before,
        at_end - at_start
    );
    assert!(
        mid_migration > 0,
        "no task completed in {moved_in:?} while slot {slot} was half-moved"
    );
    assert!(
        at_end < counts["busy"],
        "the busy topic finished before its slot moved: MOVED after the move was not tested"
    );
    assert_eq!(cluster.owner_of_slot(slot), to);

    let stats = wait_all_completed(&store, total, Duration::from_secs(300)).await;
    close_all(managers).await;
    eprintln!(
        "all {total} done {:?} after the migration began; counters {:?}",
        began.elapsed(),
        stats.total.counters
    );
    assert_exactly_once(&runs, total);
    assert_exact_stats(&stats, &counts);
    for (port, keys) in cluster.keys_per_node(&format!("{}*", tag(&ns, "busy"))) {
        if port == to {
            assert!(keys > 0, "the busy topic has no key on its new primary");
        } else {
            assert_eq!(keys, 0, "keys of the busy topic left on 127.0.0.1:{port}");
        }
    }
}

/// A primary is SIGKILLed mid-run on a cluster of three primaries with a replica each: its
/// replica takes over, and the managers, left alone, carry on and complete every task.
///
/// What can be asserted honestly: replication is asynchronous, so a failover may lose
/// writes the old primary acknowledged but had not yet sent to its replica. Here every
/// task is enqueued with `RedisOptions::enqueue_replicas(1, …)`, so each enqueue returned
/// only once replicated, before the managers start, so no task can be lost: every one must complete, and the stats must say so.
/// The writes of the run itself (claims, renewals, completions) on the killed primary may
/// be lost in the failover window; a lost claim or completion makes its task run again.
/// So a task may run twice, but only a task of a topic on the killed primary, and only
/// if its first run began before the failover was over; any other repeat fails the test.
/// Counters are written with the transitions they count, so they describe the surviving
/// history: `completed` is exact, and `started` adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_carry_on_after_a_primary_fails_over() {
    let total = count("TASKMILL_CLUSTER_BUSY_TASKS", 30_000);
    let cluster = Arc::new(RedisCluster::start(3, 1));
    let ns = fresh_namespace();
    let url = cluster.url(&ns);
    // Each enqueue returns once the replica of every primary it wrote to has it.
    let replicated = RedisOptions::default().enqueue_replicas(1, Duration::from_secs(10));
    let store = RedisStore::open_with(&url, replicated).await.unwrap();
    let topics = topic_names(20);
    enqueue_all(&store, &topics, total).await;
    let victim_slot = cluster.slot_of(&tag(&ns, &topics[0]));
    let victim = cluster.owner_of_slot(victim_slot);
    let on_victim: BTreeSet<&str> = topics
        .iter()
        .filter(|t| cluster.owner_of_slot(cluster.slot_of(&tag(&ns, t))) == victim)
        .map(String::as_str)
        .collect();

    let runs: Runs = Arc::default();
    // A short lease, so that a claim lost in the failover, whose task sits in WORK on the
    // new primary under a lease nobody renews, comes back soon.
    let managers = start_managers(&url, 2, &topics, &runs, Duration::from_secs(5)).await;
    wait_until("the managers to get going", Duration::from_secs(60), || {
        let done = runs.lock().unwrap().len() as u64;
        async move { done >= total / 5 }
    })
    .await;
    let victim_done_at_kill = runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| on_victim.contains(topic_of(&topics, r.n)))
        .count() as u64;
    let victim_total: u64 = per_topic(&topics, total)
        .iter()
        .filter(|(t, _)| on_victim.contains(t.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert!(
        victim_done_at_kill < victim_total,
        "the killed primary's topics were done before the kill: nothing was tested"
    );
    let killed_at = Instant::now();
    let promoted = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            assert_eq!(cluster.kill_primary_of(victim_slot), victim);
            cluster.wait_failover(Duration::from_secs(30))
        })
        .await
        .expect("the failover")
    };
    let failed_over = Instant::now();
    eprintln!(
        "killed 127.0.0.1:{victim} (topics {on_victim:?}, {victim_done_at_kill} of their \
         {victim_total} tasks done); 127.0.0.1:{promoted} took over after {:?}",
        failed_over - killed_at
    );

    let stats = wait_all_completed(&store, total, Duration::from_secs(300)).await;
    eprintln!("all {total} done {:?} after the kill", killed_at.elapsed());
    close_all(managers).await;

    let by_task = runs_by_task(&runs);
    let missing: Vec<u64> = (0..total).filter(|n| !by_task.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} tasks never ran although all were replicated before the kill, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let repeated: Vec<(&u64, &Vec<Run>)> = by_task.iter().filter(|(_, r)| r.len() > 1).collect();
    let unexplained: Vec<_> = repeated
        .iter()
        .filter(|(n, r)| {
            let first = r.iter().map(|r| r.start).min().unwrap();
            !on_victim.contains(topic_of(&topics, **n)) || first >= failed_over
        })
        .collect();
    // Informational: a repeat whose runs overlapped came from a lost claim (the task went
    // back to INPUT and another claim took it while the first run went on); one after the
    // other, from a lost completion or an expired lease.
    let ms = |t: Instant| match t.checked_duration_since(killed_at) {
        Some(d) => d.as_millis() as i64,
        None => -((killed_at - t).as_millis() as i64),
    };
    // (task, its runs as (manager, start ms, end ms) from the kill)
    type Overlap = (u64, Vec<(usize, i64, i64)>);
    let overlapping: Vec<Overlap> = repeated
        .iter()
        .filter(|(_, r)| {
            r.iter()
                .any(|a| r.iter().any(|b| a.start < b.start && b.start < a.end))
        })
        .map(|(n, r)| {
            let runs = r
                .iter()
                .map(|r| (r.manager, ms(r.start), ms(r.end)))
                .collect();
            (**n, runs)
        })
        .collect();
    eprintln!(
        "{} tasks ran more than once ({} of them with runs at the same time, e.g. \
         (manager, start ms, end ms) from the kill: {:?}); unexplained: {}",
        repeated.len(),
        overlapping.len(),
        overlapping.first(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} tasks ran again without a failover to explain it, e.g. {:?}",
        unexplained.len(),
        unexplained.first()
    );
    let c = stats.total.counters;
    assert_eq!(
        (c.enqueued, c.completed, c.failed),
        (total, total, 0),
        "{c:?}"
    );
    assert_eq!(
        c.started,
        c.completed + c.recovered + c.retried + c.released,
        "every start ended once: {c:?}"
    );
    let mut kept = QueueSizes::default();
    kept.completed = total;
    assert_eq!(stats.total.sizes, kept);
    for (topic, n) in per_topic(&topics, total) {
        assert_eq!(stats.topics[&topic].counters.completed, n, "topic {topic}");
    }
}

/// A plain `redis://` URL at a cluster node would put every topic on that one node, and
/// fail with MOVED for the slots it does not serve: the store refuses it, at open or at
/// the first enqueue (even to a topic the node serves), naming the URL to use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_url_at_a_cluster_node_is_misuse() {
    let cluster = RedisCluster::shared();
    let ns = fresh_namespace();
    let node = cluster.ports()[0];
    let url = format!("{}?namespace={ns}", cluster.node_url(0));
    let check = |err: taskmill_core::Error, when: &str| {
        eprintln!("refused at {when}: {err}");
        assert_eq!(err.kind(), ErrorKind::Misuse, "{when}: {err}");
        assert!(
            err.to_string().contains("redis+cluster://"),
            "{when}: the error does not name redis+cluster://: {err}"
        );
    };
    let store = match RedisStore::open(&url).await {
        Err(err) => return check(err, "open"),
        Ok(store) => store,
    };
    // A topic this node serves (no MOVED to give it away), then one it does not.
    let topics = topic_names(200);
    let here = topics
        .iter()
        .find(|t| cluster.owner_of_slot(cluster.slot_of(&tag(&ns, t))) == node)
        .expect("a topic on the first node");
    let there = topics
        .iter()
        .find(|t| cluster.owner_of_slot(cluster.slot_of(&tag(&ns, t))) != node)
        .expect("a topic elsewhere");
    for topic in [here, there] {
        let err = store
            .enqueue(
                vec![Task::new(topic.as_str(), &1).unwrap()],
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await
            .expect_err("an enqueue through a plain URL at a cluster node");
        check(err, &format!("enqueue to {topic}"));
    }
    assert_eq!(
        cluster.keys_per_node(&format!("{{{ns}:*")),
        cluster
            .primaries()
            .iter()
            .map(|&p| (p, 0))
            .collect::<Vec<_>>(),
        "a refused enqueue wrote keys of its topic"
    );
}

/// The node the subscription connection is on (the primary of the event channel's slot,
/// through which the store publishes) is SIGKILLed: once its replica took over, the
/// subscription is on the new primary, and wake-ups and events published through another
/// handle (another process's connections) reach it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_and_events_survive_the_loss_of_the_subscribed_node() {
    use futures_util::StreamExt;
    let cluster = Arc::new(RedisCluster::start(3, 1));
    let ns = fresh_namespace();
    let url = cluster.url(&ns);
    let listener = RedisStore::open(&url).await.unwrap();
    let publisher = RedisStore::open(&url).await.unwrap();
    let mut events = listener.subscribe().await.unwrap();
    let mut wakeups = listener.wakeups().await.unwrap();

    // Before: a round trip works.
    let published = publisher
        .enqueue(
            vec![Task::new("t", &0).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event before the kill")
        .expect("the event stream ended");
    assert_eq!(event.task_id(), Some(published[0].id()), "{event:?}");

    let slot = cluster.slot_of(&format!("{ns}:events"));
    let subscribed_on = cluster.owner_of_slot(slot);
    let promoted = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            assert_eq!(cluster.kill_primary_of(slot), subscribed_on);
            cluster.wait_failover(Duration::from_secs(30))
        })
        .await
        .expect("the failover")
    };
    assert_ne!(promoted, subscribed_on);

    // After: each try enqueues one task and looks for its event; the subscription
    // reconnects with backoff, so the first tries may find nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 1;
    loop {
        assert!(
            Instant::now() < deadline,
            "no event through the subscription after the failover"
        );
        let enqueued = publisher
            .enqueue(
                vec![Task::new("t", &n).unwrap()],
                &EnqueueOptions::new(Timestamp::now()),
            )
            .await;
        n += 1;
        let Ok(enqueued) = enqueued else {
            // The slot of `t` or of the id counter may be on the failed node still.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let id = enqueued[0].id();
        let mut heard = false;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), events.next()).await
        {
            if event.task_id() == Some(id) {
                heard = true;
                break;
            }
        }
        if heard {
            break;
        }
    }
    // The subscription is back (the event came through it): a wake-up published now
    // arrives too. Those already delivered (the reconnect wakes by itself) are drained.
    while let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(200), wakeups.next()).await
    {
    }
    publisher
        .enqueue(
            vec![Task::new("t", &n).unwrap()],
            &EnqueueOptions::new(Timestamp::now()),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("a wake-up after the failover")
        .expect("the wake-up stream ended");
}
