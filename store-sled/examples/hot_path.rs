//! The store alone on the benchmark's workload, for profiling its hot path: `TASKS` tasks
//! enqueued round robin over 5 topics in calls of 1,000, then claimed 100 at a time and
//! completed in one `apply` per claim, kept (`keep`) or not (`drop`), with a `stats` call
//! every `STATS_EVERY` claims (0: none), as a metrics scrape would. No flush, so the
//! figures are the store's work rather than the disk's.
//!
//! ```sh
//! cargo run --release -p taskmill-sled --example hot_path -- 20000 keep 0
//! valgrind --tool=callgrind target/release/examples/hot_path 20000 keep 0
//! ```
//!
//! Prints the time of each phase. Counting instructions at two sizes and taking the
//! difference leaves out what does not grow with the tasks (opening, the runtime).

use std::time::Instant;
use taskmill_core::store::{
    ApplyOptions, ClaimOptions, Claimed, EnqueueOptions, LeaseRef, Outcome, OutcomeKind, TopicClaim,
};
use taskmill_core::{Store, Task, Timestamp};
use taskmill_sled::{FlushPolicy, SledOptions, SledStore};

const TOPICS: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> taskmill_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: hot_path TASKS keep|drop STATS_EVERY";
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).expect(usage);
    let keep = match args.get(1).map(String::as_str) {
        Some("keep") => true,
        Some("drop") => false,
        _ => panic!("{usage}"),
    };
    let stats_every: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let dir = std::env::temp_dir().join(format!("taskmill-hot-path-{}", std::process::id()));
    let options = SledOptions::default().flush(FlushPolicy::Periodic);
    let store = SledStore::open_with(&dir, options).await?;
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("bench-{i}")).collect();
    let now = Timestamp::from_millis(1_000);

    let started = Instant::now();
    for batch in 0..tasks.div_ceil(1000) {
        let calls = (batch * 1000..tasks.min(batch * 1000 + 1000))
            .map(|i| Task::new(topics[i % TOPICS].as_str(), &"x".repeat(14)).expect("a task"))
            .collect();
        store.enqueue(calls, &EnqueueOptions::new(now)).await?;
    }
    let enqueued = started.elapsed();

    let started = Instant::now();
    let (mut done, mut claims) = (0, 0);
    let wanted: Vec<TopicClaim> = topics.iter().map(|t| TopicClaim::new(t.as_str())).collect();
    while done < tasks {
        let claim = ClaimOptions::new(wanted.clone(), 100, "hot-path", now);
        let claimed = store.claim(&claim).await?;
        assert!(
            !claimed.is_empty(),
            "nothing left to claim at {done} of {tasks}"
        );
        let outcomes: Vec<Outcome> = claimed
            .iter()
            .map(|c| Outcome::new(lease_of(c), OutcomeKind::complete()).keep(keep))
            .collect();
        store.apply(&outcomes, &ApplyOptions::new(now)).await?;
        done += outcomes.len();
        claims += 1;
        if stats_every > 0 && claims % stats_every == 0 {
            store.stats(&taskmill_testkit::all_due()).await?;
        }
    }
    let processed = started.elapsed();
    let stats = store.stats(&taskmill_testkit::all_due()).await?;
    assert_eq!(stats.total.counters.completed, tasks as u64);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    let rate = |d: std::time::Duration| tasks as f64 / d.as_secs_f64();
    println!(
        "{tasks} tasks, keep {keep}: enqueue {:.0}/s, claim+complete {:.0}/s",
        rate(enqueued),
        rate(processed)
    );
    Ok(())
}

fn lease_of(claimed: &Claimed) -> LeaseRef {
    match claimed {
        Claimed::Ready(record) => LeaseRef::of(record),
        Claimed::Corrupt { lease, .. } => lease.clone(),
    }
}
