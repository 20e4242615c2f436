//! The conformance suite on the Redis store, and tests with several processes on one Redis.
//!
//! Every test starts its own `redis-server` on a free loopback port (never a Redis the
//! user runs) and kills it when done; without the binary they fail saying how to install it.

use std::sync::Arc;
use taskmill_core::Store;
use taskmill_redis::RedisStore;
use taskmill_testkit::redis::{fresh_namespace, RedisServer};
use taskmill_tests::Harness;

struct RedisHarness {
    store: RedisStore,
    url: String,
    _server: RedisServer,
}

async fn open(url: &str) -> RedisStore {
    RedisStore::open(url).await.expect("open the redis store")
}

#[async_trait::async_trait]
impl Harness for RedisHarness {
    async fn setup() -> Self {
        let server = RedisServer::start();
        let url = server.url(&fresh_namespace());
        RedisHarness {
            store: open(&url).await,
            url,
            _server: server,
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
    async fn open_another(&self) -> Arc<dyn Store> {
        Arc::new(open(&self.url).await)
    }
    /// A new handle with connections of its own: what the store keeps lives in the server.
    async fn reopen(&mut self) -> Arc<dyn Store> {
        self.store = open(&self.url).await;
        self.store()
    }
}

mod redis {
    taskmill_tests::conformance_suite!(super::RedisHarness, taskmill_tests::Capabilities::SHARED);
}

/// Several manager processes sharing one Redis.
mod redis_processes {
    use std::collections::HashSet;
    use std::path::Path;
    use std::time::{Duration, Instant};
    use taskmill_core::{Counters, QueueSizes, Store};
    use taskmill_redis::RedisStore;
    use taskmill_testkit::redis::{fresh_namespace, RedisServer};
    use taskmill_testkit::{temp_dir, TempDir};
    use taskmill_tests::process::{enqueue_with_worker, kill9, spawn_worker, wait_child, Records};
    use taskmill_tests::worker_bin;

    /// The path of `name` in `dir`, as a worker argument.
    fn file(dir: &TempDir, name: &str) -> String {
        dir.path().join(name).display().to_string()
    }

    fn merged(paths: &[String]) -> Records {
        let mut all = Records::default();
        for path in paths {
            let r = Records::read(Path::new(path));
            all.runs.extend(r.runs);
            all.started.extend(r.started);
        }
        all
    }

    /// Three processes, one Redis: 30,000 tasks over three topics all complete, none runs
    /// twice at overlapping times, and the shared stats equal the recorded transitions.
    #[test]
    fn three_processes_share_one_queue() {
        const TASKS: u64 = 30_000;
        let server = RedisServer::start();
        let url = server.url(&fresh_namespace());
        let dir = temp_dir();
        enqueue_with_worker(worker_bin!(), &url, TASKS, 3);
        let records: Vec<String> = (0..3)
            .map(|i| file(&dir, &format!("runs-{i}.log")))
            .collect();
        let mut children: Vec<_> = records
            .iter()
            .map(|record| {
                spawn_worker(
                    worker_bin!(),
                    &[
                        "run",
                        "--store",
                        &url,
                        "--record",
                        record,
                        "--topics",
                        "3",
                        "--concurrency",
                        "25",
                        "--until-empty",
                    ],
                )
            })
            .collect();
        for child in &mut children {
            let status = wait_child(child, Duration::from_secs(300));
            assert!(status.success(), "a worker failed: {status}");
        }
        let all = merged(&records);
        let pids: HashSet<u32> = all.runs.iter().map(|r| r.pid).collect();
        eprintln!("{} runs by {} processes", all.runs.len(), pids.len());
        assert!(
            all.lost(TASKS).is_empty(),
            "tasks never completed: {:?}",
            &all.lost(TASKS)[..10.min(all.lost(TASKS).len())]
        );
        assert!(
            all.overlapping().is_empty(),
            "overlapping runs: {:?}",
            &all.overlapping()[..1]
        );
        assert_eq!(
            all.duplicated(),
            0,
            "a task ran twice although no process died"
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stats = rt.block_on(async {
            RedisStore::open(&url)
                .await
                .unwrap()
                .stats(&taskmill_core::store::StatsOptions::new(
                    taskmill_core::Timestamp::now(),
                ))
                .await
                .unwrap()
        });
        let mut kept = QueueSizes::default();
        kept.completed = TASKS;
        assert_eq!(
            stats.total.sizes, kept,
            "nothing active, one record kept per task"
        );
        let mut counted = Counters::default();
        counted.enqueued = TASKS;
        counted.started = all.started.len() as u64;
        counted.completed = all.runs.len() as u64;
        assert_eq!(stats.total.counters, counted);
        assert_eq!(stats.topics.len(), 3);
    }

    /// Two processes, one killed with SIGKILL mid-run: the survivor recovers the dead one's
    /// leases once they expire and finishes every task.
    #[test]
    fn survivor_recovers_a_killed_managers_leases() {
        const TASKS: u64 = 6_000;
        let server = RedisServer::start();
        let url = server.url(&fresh_namespace());
        let dir = temp_dir();
        enqueue_with_worker(worker_bin!(), &url, TASKS, 2);
        let (victim_log, survivor_log) = (file(&dir, "victim.log"), file(&dir, "survivor.log"));
        let common = [
            "--topics",
            "2",
            "--concurrency",
            "20",
            "--work-ms",
            "2",
            "--lease-ms",
            "1500",
        ];
        let mut victim = spawn_worker(
            worker_bin!(),
            &[
                &["run", "--store", &url, "--record", &victim_log][..],
                &common,
            ]
            .concat(),
        );
        let mut survivor = spawn_worker(
            worker_bin!(),
            &[
                &[
                    "run",
                    "--store",
                    &url,
                    "--record",
                    &survivor_log,
                    "--until-empty",
                ][..],
                &common,
            ]
            .concat(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while Records::read(Path::new(&victim_log)).runs.len() < 500 {
            assert!(
                Instant::now() < deadline,
                "the victim did not get going within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let victim_pid = victim.id();
        kill9(&mut victim);
        let status = wait_child(&mut survivor, Duration::from_secs(300));
        assert!(status.success(), "the survivor failed: {status}");
        let all = merged(&[victim_log, survivor_log]);
        assert!(
            all.lost(TASKS).is_empty(),
            "lost tasks: {:?}",
            all.lost(TASKS).len()
        );
        assert!(
            all.overlapping().is_empty(),
            "overlapping runs: {:?}",
            &all.overlapping()[..1]
        );
        let killed: HashSet<u32> = [victim_pid].into();
        assert!(
            all.unexplained_duplicates(&killed).is_empty(),
            "tasks ran twice without a process dying mid-run"
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stats = rt.block_on(async {
            RedisStore::open(&url)
                .await
                .unwrap()
                .stats(&taskmill_core::store::StatsOptions::new(
                    taskmill_core::Timestamp::now(),
                ))
                .await
                .unwrap()
        });
        let mut kept = QueueSizes::default();
        kept.completed = TASKS;
        assert_eq!(
            stats.total.sizes, kept,
            "nothing active, one record kept per task"
        );
        let c = stats.total.counters;
        assert_eq!(c.completed, TASKS);
        assert!(
            c.recovered > 0,
            "the victim's leases were never recovered: {c:?}"
        );
        assert_eq!(
            c.started,
            c.completed + c.recovered + c.retried + c.released,
            "{c:?}"
        );
    }
}
