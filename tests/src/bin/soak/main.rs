//! `soak`: a mixed load on one store for a set time, with worker processes killed and
//! restarted, then an audit of every task.
//!
//! ```text
//! cargo run --release -p taskmill-tests --bin soak -- --store URL [--duration 10m]
//!     [--workers N] [--kill-every 20s] [--seed S] [--dir DIR] [--concurrency 16]
//!     [--lease 4s] [--backlog 500] [--drain-timeout 3m]
//! ```
//!
//! The load runs in worker processes (this binary again, `soak child …`), so that sled,
//! which one process opens at a time, is soaked like the others. Each incarnation of a
//! worker enqueues tasks numbered from a range of its own ([`plan`] decides from the
//! number what each task does: succeed, fail then succeed, die, time out once, or be
//! cancelled by its enqueuer), records every acknowledged enqueue, cancel result and run
//! in its record file ([`record`]), and processes every topic. At seeded moments the
//! parent SIGKILLs a random worker and starts a new incarnation in its place. When the
//! time is up it creates the stop file: the workers stop enqueueing, drain the store and
//! exit. Then the parent opens the store and audits every acknowledged task ([`audit`]).
//!
//! `memory://` cannot be shared between processes: its load runs in this process, one
//! incarnation, with no kills. SQLite and Redis run three workers by default, sled one.
//!
//! Prints one summary line, and exits 1 on any violation (lost tasks among them).

mod audit;
mod load;
mod plan;
mod record;

use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use taskmill_tests::process::kill9;

#[derive(Parser)]
#[command(name = "soak", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    child: Option<Sub>,
    #[command(flatten)]
    soak: Soak,
}

#[derive(Subcommand)]
enum Sub {
    /// One worker incarnation (started by the parent).
    #[command(hide = true)]
    Child(ChildArgs),
}

/// The parent's options.
#[derive(Args)]
struct Soak {
    /// The store: `sqlite://FILE`, `sled://DIR`, `redis://HOST:PORT/DB?namespace=NS` or
    /// `memory://`. It must hold no task yet.
    #[arg(long, required = false, default_value = "")]
    store: String,
    /// How long the load runs (the drain and audit come after).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Worker processes at once (default 3; 1 for sled and memory, which allow no more).
    #[arg(long)]
    workers: Option<usize>,
    /// The mean time between kills (each gap is 0.5–1.5 times it); 0s for none.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    kill_every: Duration,
    /// The seed of the plans and of the kill moments (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the record files go (default: a new directory in the temp dir; kept).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Each worker's manager concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The managers' lease: how long a killed worker's tasks wait to be recovered.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Workers enqueue only while INPUT and WORK hold fewer tasks than this.
    #[arg(long, default_value_t = 500)]
    backlog: u64,
    /// How long the drain may take before the run fails.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
}

#[derive(Args)]
struct ChildArgs {
    #[arg(long)]
    store: String,
    #[arg(long)]
    record: PathBuf,
    #[arg(long)]
    first: u64,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    stop: PathBuf,
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    lease_ms: u64,
    #[arg(long)]
    backlog: u64,
}

/// How many task numbers each incarnation may use: incarnation `k` gets
/// `(k + 1) << 32 ..`, far below 2^53, so every number is exact in JSON.
const RANGE: u64 = 1 << 32;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(Sub::Child(c)) = cli.child {
        let store = taskmill::open(&c.store).await.unwrap_or_else(|e| {
            eprintln!("soak child: cannot open {}: {e}", c.store);
            std::process::exit(2)
        });
        let load = load::Load {
            record: c.record,
            first: c.first,
            count: c.count,
            seed: c.seed,
            stop: c.stop,
            concurrency: c.concurrency,
            lease: Duration::from_millis(c.lease_ms),
            backlog: c.backlog,
        };
        load::run(store, load).await;
        return;
    }
    let ok = soak(cli.soak).await;
    std::process::exit(if ok { 0 } else { 1 });
}

/// A worker process and its incarnation number.
struct Worker {
    child: Child,
    incarnation: u64,
}

struct Parent<'a> {
    soak: &'a Soak,
    dir: PathBuf,
    seed: u64,
    incarnations: u64,
    /// Problems seen outside the audit (a worker that died by itself, a drain too long).
    problems: Vec<String>,
}

impl Parent<'_> {
    fn load(&mut self) -> load::Load {
        let k = self.incarnations;
        self.incarnations += 1;
        load::Load {
            record: self.dir.join(format!("worker-{k}.log")),
            first: (k + 1) * RANGE,
            count: RANGE,
            seed: self.seed,
            stop: self.dir.join("stop"),
            concurrency: self.soak.concurrency,
            lease: self.soak.lease,
            backlog: self.soak.backlog,
        }
    }

    fn spawn(&mut self) -> Worker {
        let incarnation = self.incarnations;
        let load = self.load();
        let child = Command::new(std::env::current_exe().expect("this binary"))
            .arg("child")
            .args(["--store", &self.soak.store])
            .arg("--record")
            .arg(&load.record)
            .args(["--first", &load.first.to_string()])
            .args(["--count", &load.count.to_string()])
            .args(["--seed", &load.seed.to_string()])
            .arg("--stop")
            .arg(&load.stop)
            .args(["--concurrency", &load.concurrency.to_string()])
            .args(["--lease-ms", &load.lease.as_millis().to_string()])
            .args(["--backlog", &load.backlog.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker");
        Worker { child, incarnation }
    }
}

fn scheme(url: &str) -> &str {
    url.split("://").next().unwrap_or(url)
}

/// Runs the soak; whether the audit passed.
async fn soak(soak: Soak) -> bool {
    if soak.store.is_empty() {
        eprintln!("soak: --store URL is required");
        std::process::exit(2);
    }
    let seed = soak.seed.unwrap_or_else(|| fastrand::u64(..));
    let dir = soak.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "taskmill-soak-{}-{}",
            scheme(&soak.store),
            record::micros() / 1000
        ))
    });
    std::fs::create_dir_all(&dir).expect("create the record directory");
    let _ = std::fs::remove_file(dir.join("stop"));
    let store_kind = scheme(&soak.store).to_string();
    let in_process = store_kind == "memory";
    let workers = soak
        .workers
        .unwrap_or(if in_process || store_kind == "sled" {
            1
        } else {
            3
        });
    if (in_process || store_kind == "sled") && workers != 1 {
        eprintln!("soak: {store_kind} allows one worker process");
        std::process::exit(2);
    }
    let store = taskmill::open(&soak.store)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", soak.store));
    let before = store
        .stats(&taskmill_testkit::all_due())
        .await
        .expect("stats");
    if before.total.sizes.total() != 0 || before.total.counters.enqueued != 0 {
        eprintln!(
            "soak: {} already holds tasks; give it an empty store",
            soak.store
        );
        std::process::exit(2);
    }
    eprintln!(
        "soak: {} for {:?}, {workers} worker(s), kills every ~{:?}, seed {seed} \
         (--seed {seed} replays the plans and kill moments), records in {}",
        soak.store,
        soak.duration,
        if in_process {
            Duration::ZERO
        } else {
            soak.kill_every
        },
        dir.display()
    );
    let mut parent = Parent {
        soak: &soak,
        dir: dir.clone(),
        seed,
        incarnations: 0,
        problems: Vec::new(),
    };
    let started = Instant::now();
    let mut killed: HashMap<u32, u128> = HashMap::new();
    let store = if in_process {
        // One process: the load runs here, on this store, and nothing is killed.
        let load = parent.load();
        let handle = tokio::spawn(load::run(store.clone(), load));
        tokio::time::sleep(soak.duration).await;
        std::fs::write(dir.join("stop"), b"").expect("create the stop file");
        match tokio::time::timeout(soak.drain_timeout, handle).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => parent.problems.push(format!("the load failed: {e}")),
            Err(_) => parent
                .problems
                .push(format!("the drain took over {:?}", soak.drain_timeout)),
        }
        store
    } else {
        // Sled allows one process: the parent lets go of it while the workers run.
        drop(store);
        run_workers(&mut parent, workers, &mut killed, started);
        taskmill::open(&soak.store)
            .await
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", soak.store))
    };
    let load_secs = soak.duration.as_secs();
    let mut log = record::Log::default();
    for k in 0..parent.incarnations {
        log.read(&dir.join(format!("worker-{k}.log")));
    }
    let audit = audit::audit(&store, &log, &killed, seed).await;
    let a = &audit;
    println!(
        "soak {store_kind}: {load_secs} s of load, {workers} worker(s), seed {seed}: {} tasks \
         (+{} unacknowledged), {} kills, {} incarnations, {} runs, {} retries, {} timeouts, \
         {} recoveries, {} dead, {} cancelled (cancel found {} waiting, {} running, {} \
         finished), {} completed, {} duplicates ({} explained by kills, {} by timeouts), \
         lost {}, {} violations; total time {:.0} s",
        a.tasks,
        a.unacked,
        killed.len(),
        parent.incarnations,
        a.runs,
        a.retried,
        a.timeouts,
        a.recovered,
        a.dead,
        a.cancelled,
        a.cancels.0,
        a.cancels.1,
        a.cancels.2,
        a.completed,
        a.duplicates,
        a.explained_by_kills,
        a.explained_by_timeouts,
        a.lost,
        a.violations.values().map(|v| v.0).sum::<u64>() + parent.problems.len() as u64,
        started.elapsed().as_secs_f64(),
    );
    for (kind, (count, examples)) in &audit.violations {
        println!("VIOLATION {kind}: {count}");
        for e in examples {
            println!("  {e}");
        }
    }
    for p in &parent.problems {
        println!("PROBLEM {p}");
    }
    audit.passed() && parent.problems.is_empty() && a.tasks > 0
}

/// Runs `workers` worker processes for the soak's duration, killing one at each seeded
/// moment and starting a new incarnation in its place; then stops and drains them.
fn run_workers(
    parent: &mut Parent<'_>,
    workers: usize,
    killed: &mut HashMap<u32, u128>,
    started: Instant,
) {
    let soak = parent.soak;
    let mut rng = fastrand::Rng::with_seed(parent.seed);
    let mut running: Vec<Worker> = (0..workers).map(|_| parent.spawn()).collect();
    let gap = |rng: &mut fastrand::Rng| soak.kill_every.mul_f64(0.5 + rng.f64());
    let mut next_kill = (!soak.kill_every.is_zero()).then(|| started + gap(&mut rng));
    let end = started + soak.duration;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        for worker in &mut running {
            if let Some(status) = worker.child.try_wait().expect("try_wait") {
                parent.problems.push(format!(
                    "worker incarnation {} (pid {}) exited by itself: {status}",
                    worker.incarnation,
                    worker.child.id()
                ));
                *worker = parent.spawn();
            }
        }
        if next_kill.is_some_and(|at| Instant::now() >= at) {
            let i = rng.usize(..running.len());
            let pid = running[i].child.id();
            kill9(&mut running[i].child);
            killed.insert(pid, record::micros());
            eprintln!(
                "soak: killed worker {pid} at {:.1} s",
                started.elapsed().as_secs_f64()
            );
            running[i] = parent.spawn();
            next_kill = Some(Instant::now() + gap(&mut rng));
        }
    }
    std::fs::write(parent.dir.join("stop"), b"").expect("create the stop file");
    eprintln!("soak: stopped enqueueing; draining");
    let deadline = Instant::now() + soak.drain_timeout;
    for worker in &mut running {
        loop {
            if let Some(status) = worker.child.try_wait().expect("try_wait") {
                if !status.success() {
                    parent.problems.push(format!(
                        "worker pid {} failed its drain: {status}",
                        worker.child.id()
                    ));
                }
                break;
            }
            if Instant::now() >= deadline {
                kill9(&mut worker.child);
                parent.problems.push(format!(
                    "the drain took over {:?} (worker pid {} killed)",
                    soak.drain_timeout,
                    worker.child.id()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
