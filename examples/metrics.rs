//! Metrics: an axum app with its own route at `/` and taskmill's Prometheus metrics at
//! `/metrics`, next to a manager working through a stream of tasks (some failing and
//! retried, some dead, some scheduled, one topic paused).
//!
//! Run it with `cargo run --example metrics --features metrics` and scrape it with
//! `curl 127.0.0.1:3000/metrics` (or point Prometheus at it); `ADDR=127.0.0.1:9000` listens
//! elsewhere. With `-- --once` it scrapes itself once the first emails went through,
//! prints the exposition and exits; `cargo test` runs that too (the test at the end
//! parses what it prints).

use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskmill::metrics::Metrics;
use taskmill::{Backoff, Client, Manager, Task, TaskContext, TaskError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let once = std::env::args().any(|a| a == "--once");
    let addr = std::env::var("ADDR").unwrap_or_else(|_| {
        if once {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3000"
        }
        .to_string()
    });
    let app = App::start(&addr).await?;
    println!("serving http://{0}/ and http://{0}/metrics", app.addr);
    if once {
        print!("{}", app.scrape_once().await?);
    } else {
        tokio::signal::ctrl_c().await?;
    }
    app.stop().await
}

/// The application: its server, and the manager working through its tasks.
struct App {
    addr: SocketAddr,
    manager: Manager,
    server: JoinHandle<std::io::Result<()>>,
    /// Email runs that returned, for `--once` to wait on.
    email_runs: Arc<AtomicU64>,
}

impl App {
    async fn start(addr: &str) -> Result<App, BoxError> {
        let store = taskmill::open("memory://").await?;
        // One handle for both halves: store-wide figures at each scrape, and (as a run
        // observer) the durations of this process's runs.
        let metrics = Metrics::new(Client::shared(store.clone()));
        let manager = Manager::builder_shared(store.clone())
            .observer(metrics.clone())
            .backoff(Backoff::constant(Duration::from_millis(200)))
            .default_retries(2)
            .build();
        let email_runs = Arc::new(AtomicU64::new(0));
        let runs = email_runs.clone();
        manager.register("emails", move |ctx: TaskContext| {
            let runs = runs.clone();
            async move {
                let n: u64 = ctx.args()?;
                tokio::time::sleep(Duration::from_millis(5 + n % 20)).await;
                runs.fetch_add(1, Ordering::Relaxed);
                match n % 10 {
                    // Bounces once, then goes through.
                    7 if ctx.attempt() == 1 => Err(TaskError::msg("mailbox busy")),
                    // Never goes through: dead after its retries.
                    9 => Err(TaskError::msg("no such mailbox")),
                    _ => Ok(()),
                }
            }
        })?;
        manager.register("reports", |_ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, TaskError>(())
        })?;
        manager.client().pause("reports").await?;
        manager.start().await?;

        // The application's work: an email every 50 ms, a report every second (waiting
        // while the topic is paused, which shows in its queue latency), one scheduled for
        // later.
        let producer = manager.client().clone();
        producer
            .enqueue(Task::new("reports", &"monthly")?.delay(Duration::from_secs(3600)))
            .await?;
        tokio::spawn(async move {
            for n in 0u64.. {
                let mut batch = vec![Task::new("emails", &n)?];
                if n % 20 == 0 {
                    batch.push(Task::new("reports", &n)?);
                }
                producer.enqueue_batch(batch).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, taskmill::Error>(())
        });

        // The user's own routes, and taskmill's next to them.
        let app = Router::new()
            .route(
                "/",
                get(|| async { "hello from the app; metrics at /metrics\n" }),
            )
            .merge(metrics.router());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(App {
            addr,
            manager,
            server,
            email_runs,
        })
    }

    /// What `--once` prints: the exposition, scraped once 20 email runs returned (some
    /// failed, the ninth for good) or after 10 s, whichever comes first.
    async fn scrape_once(&self) -> Result<String, BoxError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.email_runs.load(Ordering::Relaxed) < 20 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(get_text(self.addr, "/metrics").await?)
    }

    async fn stop(self) -> Result<(), BoxError> {
        self.server.abort();
        self.manager
            .close_with_timeout(Duration::from_secs(5))
            .await?;
        Ok(())
    }
}

/// The body of `GET path` from `addr`, over a bare HTTP/1.0 connection.
async fn get_text(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(match response.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => response,
    })
}

// The strict OpenMetrics parser of the metrics crate's tests (not every helper is used).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../metrics/tests/common/exposition.rs"]
mod exposition;

/// `cargo test` runs what `--once` does and checks what it prints: a well-formed
/// exposition with every metric the README lists, showing what the example made happen.
#[cfg(test)]
mod tests {
    use super::*;

    const FAMILIES: [(&str, &str); 14] = [
        ("taskmill_tasks_enqueued", "counter"),
        ("taskmill_tasks_started", "counter"),
        ("taskmill_tasks_completed", "counter"),
        ("taskmill_tasks_retried", "counter"),
        ("taskmill_tasks_failed", "counter"),
        ("taskmill_tasks_cancelled", "counter"),
        ("taskmill_tasks_recovered", "counter"),
        ("taskmill_tasks_released", "counter"),
        ("taskmill_tasks_requeued", "counter"),
        ("taskmill_queue_size", "gauge"),
        ("taskmill_queue_latency_seconds", "gauge"),
        ("taskmill_topic_paused", "gauge"),
        ("taskmill_run_duration_seconds", "histogram"),
        ("taskmill_runs_in_progress", "gauge"),
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_prints_every_metric_in_a_strict_exposition() {
        let app = App::start("127.0.0.1:0").await.unwrap();
        let once = exposition::parse(&app.scrape_once().await.unwrap());
        assert!(
            app.email_runs.load(Ordering::Relaxed) >= 20,
            "--once scraped before 20 email runs, at its deadline"
        );
        for (family, kind) in FAMILIES {
            assert_eq!(once.kind(family), Some(kind), "{family}");
        }
        let reports = [("topic", "reports")];
        assert_eq!(once.value("taskmill_topic_paused", &reports), Some(1.0));
        // The monthly one, and the first of the producer's, which came before any email.
        let enqueued = once.value("taskmill_tasks_enqueued_total", &reports);
        assert!(enqueued.is_some_and(|n| n >= 2.0), "{enqueued:?}");
        let waiting = [("topic", "reports"), ("queue", "input")];
        let waiting = once.value("taskmill_queue_size", &waiting);
        assert!(waiting.is_some_and(|n| n >= 2.0), "{waiting:?}");
        let latency = once.value("taskmill_queue_latency_seconds", &reports);
        assert!(latency.is_some_and(|s| s > 0.0), "{latency:?}");

        // Outcomes reach the store a moment after the runs return: scrape until the
        // exposition shows an email completed, timed, retried and dead.
        let deadline = Instant::now() + Duration::from_secs(30);
        let emails = [("topic", "emails")];
        let ok = [("topic", "emails"), ("outcome", "ok")];
        loop {
            let text = get_text(app.addr, "/metrics").await.unwrap();
            let m = exposition::parse(&text);
            let at_least_one = |name: &str, labels: &[(&str, &str)]| {
                m.value(name, labels).is_some_and(|n| n >= 1.0)
            };
            if at_least_one("taskmill_tasks_completed_total", &emails)
                && at_least_one("taskmill_run_duration_seconds_count", &ok)
                && at_least_one("taskmill_tasks_retried_total", &emails)
                && at_least_one("taskmill_tasks_failed_total", &emails)
            {
                break;
            }
            assert!(Instant::now() < deadline, "no dead email by now:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app.stop().await.unwrap();
    }
}
